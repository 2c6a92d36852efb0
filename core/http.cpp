#include "http.hpp"

#include <climits>
#include <cstring>

#include <http_parser.h>

#include "base64.hpp"

namespace lt::http {
namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
	if (a.size() != b.size())
		return false;
	for (size_t i = 0; i < a.size(); i++)
		if (lower(a[i]) != lower(b[i]))
			return false;
	return true;
}

std::string_view trim(std::string_view s) {
	while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
		s.remove_prefix(1);
	while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
		s.remove_suffix(1);
	return s;
}

Parser &self(http_parser *p) { return *static_cast<Parser *>(p->data); }
int cb_url(http_parser *p, const char *at, size_t n) { return self(p).on_url(at, n); }
int cb_field(http_parser *p, const char *at, size_t n) { return self(p).on_header_field(at, n); }
int cb_value(http_parser *p, const char *at, size_t n) { return self(p).on_header_value(at, n); }
int cb_headers(http_parser *p) { return self(p).on_headers_complete(); }
int cb_body(http_parser *p, const char *at, size_t n) { return self(p).on_body(at, n); }
int cb_done(http_parser *p) { return self(p).on_message_complete(); }

http_parser_settings make_settings() {
	http_parser_settings s;
	http_parser_settings_init(&s);
	s.on_url = cb_url;
	s.on_header_field = cb_field;
	s.on_header_value = cb_value;
	s.on_headers_complete = cb_headers;
	s.on_body = cb_body;
	s.on_message_complete = cb_done;
	return s;
}

} // namespace

struct Parser::Impl {
	http_parser p;
	http_parser_settings settings;
};

const std::string *Request::header(std::string_view name) const {
	for (const auto &h : headers)
		if (h.first == name)
			return &h.second;
	return nullptr;
}

bool Request::forwarded() const { return header("forwarded") != nullptr || header("x-forwarded-for") != nullptr; }

Parser::Parser() : impl_(new Impl) {
	impl_->settings = make_settings();
	next();
}

Parser::~Parser() = default;

void Parser::next() {
	http_parser_init(&impl_->p, HTTP_REQUEST);
	impl_->p.data = this;
	req_ = Request{};
	head_bytes_ = 0;
	error_ = 0;
	error_text_ = "";
	in_value_ = false;
	complete_ = false;
	want_continue_ = false;
}

int Parser::fail(int status, const char *text) {
	if (error_ == 0) {
		error_ = status;
		error_text_ = text;
	}
	return -1; // stops http-parser (HPE_CB_*)
}

bool Parser::count_head(size_t n) {
	head_bytes_ += n;
	return head_bytes_ <= kMaxHead;
}

int Parser::on_url(const char *p, size_t n) {
	if (!count_head(n))
		return fail(414, "request line too long");
	req_.target.append(p, n);
	return 0;
}

int Parser::on_header_field(const char *p, size_t n) {
	if (!count_head(n))
		return fail(431, "request headers too large");
	if (in_value_ || req_.headers.empty())
		req_.headers.emplace_back();
	in_value_ = false;
	for (size_t i = 0; i < n; i++)
		req_.headers.back().first += lower(p[i]);
	return 0;
}

int Parser::on_header_value(const char *p, size_t n) {
	if (!count_head(n))
		return fail(431, "request headers too large");
	if (req_.headers.empty())
		return fail(400, "bad header");
	in_value_ = true;
	req_.headers.back().second.append(p, n);
	return 0;
}

int Parser::on_headers_complete() {
	for (auto &h : req_.headers)
		h.second = std::string(trim(h.second));
	http_parser &p = impl_->p;
	req_.method = http_method_str(http_method(p.method));
	req_.keep_alive = http_should_keep_alive(&p) != 0;
	req_.upgrade = p.upgrade != 0;
	if (p.http_major != 1)
		return fail(505, "only HTTP/1.x is served");
	http_parser_url u;
	http_parser_url_init(&u);
	if (http_parser_parse_url(req_.target.data(), req_.target.size(), req_.method == "CONNECT", &u) != 0)
		return fail(400, "bad request target");
	if (u.field_set & (1 << UF_PATH))
		req_.path = req_.target.substr(u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
	else
		req_.path = "/";
	if (u.field_set & (1 << UF_QUERY))
		req_.query = req_.target.substr(u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
	// http-parser leaves content_length at ULLONG_MAX when there is no header.
	bool sized = p.content_length != ULLONG_MAX;
	bool has_body = (p.flags & F_CHUNKED) || (sized && p.content_length > 0);
	if (sized && !(p.flags & F_CHUNKED) && p.content_length > kMaxBody)
		return fail(413, "request body over 1 MB");
	const std::string *expect = req_.header("expect");
	if (expect != nullptr) {
		if (!iequals(*expect, "100-continue"))
			return fail(417, "unsupported Expect");
		want_continue_ = has_body;
	}
	if (want_continue_)
		http_parser_pause(&p, 1);
	return 0;
}

int Parser::on_body(const char *p, size_t n) {
	if (req_.body.size() + n > kMaxBody)
		return fail(413, "request body over 1 MB");
	req_.body.append(p, n);
	return 0;
}

int Parser::on_message_complete() {
	complete_ = true;
	http_parser_pause(&impl_->p, 1); // one request at a time
	return 0;
}

Parser::Status Parser::feed(const char *p, size_t n, size_t *consumed) {
	*consumed = 0;
	if (error_ != 0)
		return Status::Error;
	if (complete_)
		return Status::Complete;
	http_parser &hp = impl_->p;
	if (HTTP_PARSER_ERRNO(&hp) == HPE_PAUSED)
		http_parser_pause(&hp, 0);
	bool was_waiting = want_continue_;
	size_t used = http_parser_execute(&hp, &impl_->settings, p, n);
	enum http_errno err = HTTP_PARSER_ERRNO(&hp);
	if (complete_) {
		// Stopped at the request's end; an upgrade stops there too.
		*consumed = used;
		return Status::Complete;
	}
	if (hp.upgrade && err == HPE_OK) {
		// http-parser does not call on_message_complete for an upgrade
		// without a body: the request ends with the headers.
		complete_ = true;
		*consumed = used;
		return Status::Complete;
	}
	if (err == HPE_PAUSED && want_continue_ && !was_waiting) {
		*consumed = used;
		return Status::Continue;
	}
	if (err != HPE_OK && err != HPE_PAUSED) {
		if (error_ == 0) {
			if (err == HPE_HEADER_OVERFLOW)
				fail(431, "request headers too large");
			else
				fail(400, http_errno_description(err));
		}
		*consumed = used;
		return Status::Error;
	}
	*consumed = used;
	return Status::NeedMore;
}

bool url_decode(std::string_view in, bool plus_space, std::string &out) {
	auto hex = [](char h) -> int {
		if (h >= '0' && h <= '9')
			return h - '0';
		if (h >= 'a' && h <= 'f')
			return h - 'a' + 10;
		if (h >= 'A' && h <= 'F')
			return h - 'A' + 10;
		return -1;
	};
	out.clear();
	out.reserve(in.size());
	for (size_t i = 0; i < in.size(); i++) {
		char c = in[i];
		if (c == '+' && plus_space) {
			out += ' ';
		} else if (c == '%') {
			if (i + 2 >= in.size())
				return false;
			int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			out += char(hi * 16 + lo);
			i += 2;
		} else {
			out += c;
		}
	}
	return true;
}

std::vector<std::pair<std::string, std::string>> parse_form(std::string_view s) {
	std::vector<std::pair<std::string, std::string>> out;
	size_t start = 0;
	while (start <= s.size()) {
		size_t amp = s.find('&', start);
		std::string_view part = s.substr(start, amp == std::string_view::npos ? std::string_view::npos : amp - start);
		if (!part.empty()) {
			size_t eq = part.find('=');
			std::string k, v;
			if (url_decode(part.substr(0, eq), true, k) &&
			    url_decode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1), true, v))
				out.emplace_back(std::move(k), std::move(v));
		}
		if (amp == std::string_view::npos)
			break;
		start = amp + 1;
	}
	return out;
}

const std::string *form_value(const std::vector<std::pair<std::string, std::string>> &f, std::string_view key) {
	for (const auto &kv : f)
		if (kv.first == key)
			return &kv.second;
	return nullptr;
}

bool basic_credentials(std::string_view a, std::string &user, std::string &password) {
	a = trim(a);
	if (a.size() < 6 || !iequals(a.substr(0, 6), "basic "))
		return false;
	std::string raw;
	if (!b64::decode(trim(a.substr(6)), false, raw))
		return false;
	size_t colon = raw.find(':');
	if (colon == std::string::npos)
		return false;
	user = raw.substr(0, colon);
	password = raw.substr(colon + 1);
	return true;
}

std::string token_of(const Request &r, const std::vector<std::pair<std::string, std::string>> &query) {
	if (const std::string *a = r.header("authorization")) {
		std::string_view v = trim(*a);
		if (v.size() > 7 && iequals(v.substr(0, 7), "bearer "))
			return std::string(trim(v.substr(7)));
		std::string user, password;
		if (basic_credentials(v, user, password))
			return password;
	}
	if (const std::string *t = form_value(query, "access_token"))
		return *t;
	return {};
}

Route route(std::string_view method, std::string_view path, uint64_t &id) {
	id = 0;
	if (method == "OPTIONS")
		return Route::Options;
	bool get = method == "GET", post = method == "POST";
	auto only = [&](bool ok, Route r) { return ok ? r : Route::MethodNotAllowed; };
	if (path == "/v1/pings")
		return only(post, Route::Pings);
	if (path == "/v1/osmand" || path == "/v1/osmand/")
		return only(get || post, Route::Osmand);
	if (path == "/v1/drivers/stream")
		return only(get, Route::DriversStream);
	if (path == "/v1/ws")
		return only(get, Route::WebSocket);
	if (path == "/map" || path == "/map/")
		return only(get, Route::Map);
	if (path.size() > 5 && path.substr(0, 5) == "/map/")
		return only(get, Route::MapAsset);
	if (path == "/metrics")
		return only(get, Route::Metrics);
	if (path == "/healthz")
		return only(get, Route::Healthz);
	constexpr std::string_view kOrders = "/v1/orders/";
	if (path.size() > kOrders.size() && path.substr(0, kOrders.size()) == kOrders) {
		std::string_view rest = path.substr(kOrders.size());
		size_t slash = rest.find('/');
		std::string_view digits = rest.substr(0, slash);
		if (digits.empty() || digits.size() > 19)
			return Route::NotFound;
		uint64_t v = 0;
		for (char c : digits) {
			if (c < '0' || c > '9')
				return Route::NotFound;
			v = v * 10 + uint64_t(c - '0');
		}
		if (v == 0 || v >= (uint64_t(1) << 63))
			return Route::NotFound;
		id = v;
		if (slash == std::string_view::npos)
			return only(get, Route::Order);
		if (rest.substr(slash) == "/stream")
			return only(get, Route::OrderStream);
		if (rest.substr(slash) == "/places")
			return only(get, Route::OrderPlaces);
	}
	return Route::NotFound;
}

const char *reason(int status) {
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 426: return "Upgrade Required";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	}
	return "Unknown";
}

std::string response(int status, std::string_view content_type, std::string_view body, bool keep_alive,
                     std::string_view extra) {
	std::string r;
	r.reserve(160 + extra.size() + body.size());
	r += "HTTP/1.1 ";
	r += std::to_string(status);
	r += ' ';
	r += reason(status);
	r += "\r\n";
	if (!content_type.empty()) {
		r += "Content-Type: ";
		r += content_type;
		r += "\r\n";
	}
	r += "Content-Length: ";
	r += std::to_string(body.size());
	r += "\r\n";
	// Tokens travel in headers or the URL, never in cookies: any origin may read.
	r += "Access-Control-Allow-Origin: *\r\n";
	r += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
	r += extra;
	r += "\r\n";
	r += body;
	return r;
}

void json_string(std::string &out, std::string_view s) {
	static const char *hex = "0123456789abcdef";
	out += '"';
	for (unsigned char c : s) {
		switch (c) {
		case '"': out += "\\\""; break;
		case '\\': out += "\\\\"; break;
		case '\n': out += "\\n"; break;
		case '\r': out += "\\r"; break;
		case '\t': out += "\\t"; break;
		default:
			if (c < 0x20) {
				out += "\\u00";
				out += hex[c >> 4];
				out += hex[c & 15];
			} else {
				out += char(c);
			}
		}
	}
	out += '"';
}

std::string error_response(int status, std::string_view message, bool keep_alive, std::string_view extra) {
	std::string body = "{\"error\":";
	json_string(body, message);
	body += "}";
	return response(status, "application/json", body, keep_alive, extra);
}

} // namespace lt::http
