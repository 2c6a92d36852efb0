// HTTP/1.1 requests for the HTTP edge (SPEC 6): parsing through Debian's
// http-parser (the one Node.js used for a decade), with our limits on top,
// plus the small pieces every handler needs (query strings, forms, Basic
// credentials, responses). No sockets: worker/http_server.cpp owns those.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lt::http {

constexpr size_t kMaxHead = 8192;       // request line + headers
constexpr size_t kMaxBody = 1 << 20;    // SPEC 6: 413 above 1 MB

struct Request {
	std::string method; // "GET", "POST", ...
	std::string target; // as sent
	std::string path;   // without the query, not percent-decoded
	std::string query;  // after '?', raw
	std::vector<std::pair<std::string, std::string>> headers; // names in lower case
	std::string body;
	bool keep_alive = true;
	bool upgrade = false; // Upgrade requested (WebSocket)

	// The first header of that (lower-case) name, or nullptr.
	const std::string *header(std::string_view name) const;
	// Came through a proxy: carries Forwarded or X-Forwarded-For (SPEC 6),
	// so it is never treated as coming from loopback.
	bool forwarded() const;
};

// Feeds a connection's bytes through http-parser, one request at a time:
// feed() stops right after a complete request (pipelined bytes stay with the
// caller for the next call) and after the headers of a request that sent
// "Expect: 100-continue" (the caller answers 100 or refuses).
class Parser {
public:
	enum class Status : uint8_t {
		NeedMore,       // everything consumed, no request complete yet
		Continue,       // headers done and the client waits for "100 Continue"
		Complete,       // request() holds a whole request
		Error,          // error_status() says which 4xx; the connection must close after it
	};
	Parser();
	~Parser();
	Parser(const Parser &) = delete;
	Parser &operator=(const Parser &) = delete;

	// Consumes up to n bytes; *consumed says how many.
	Status feed(const char *p, size_t n, size_t *consumed);
	Request &request() { return req_; }
	int error_status() const { return error_; }
	const char *error_text() const { return error_text_; }
	// Ready for the next request on the same connection.
	void next();
	// Bytes of the current request read so far (0 between requests).
	size_t bytes_seen() const { return head_bytes_ + req_.body.size(); }

	// http-parser callbacks (public for the C trampolines only).
	int on_url(const char *p, size_t n);
	int on_header_field(const char *p, size_t n);
	int on_header_value(const char *p, size_t n);
	int on_headers_complete();
	int on_body(const char *p, size_t n);
	int on_message_complete();

private:
	int fail(int status, const char *text);
	bool count_head(size_t n);

	struct Impl;
	std::unique_ptr<Impl> impl_;
	Request req_;
	size_t head_bytes_ = 0;
	int error_ = 0;
	const char *error_text_ = "";
	bool in_value_ = false;
	bool complete_ = false;
	bool want_continue_ = false;
};

// Percent-decoding; `plus_space` for query strings and forms. False on a
// bad escape.
bool url_decode(std::string_view in, bool plus_space, std::string &out);
// key=value&... (query strings, application/x-www-form-urlencoded).
// Pairs that do not decode are skipped.
std::vector<std::pair<std::string, std::string>> parse_form(std::string_view s);
const std::string *form_value(const std::vector<std::pair<std::string, std::string>> &f, std::string_view key);

// "Basic base64(user:password)" -> password (and user); false if not Basic.
bool basic_credentials(std::string_view authorization, std::string &user, std::string &password);

// The token of a request (SPEC 6): "Authorization: Bearer", else the
// password of Basic credentials, else ?access_token=. Empty if none.
std::string token_of(const Request &r, const std::vector<std::pair<std::string, std::string>> &query);

// What a request asks for (SPEC 6). `id` is the order id of the order routes.
enum class Route : uint8_t {
	NotFound,
	MethodNotAllowed,
	Options, // CORS preflight, any path
	Pings,
	Osmand,
	Order,
	OrderStream,
	OrderPlaces, // GET /v1/orders/{id}/places: pickup and dropoff (for maps)
	DriversStream,
	WebSocket,
	Map,      // GET /map: the page
	MapAsset, // GET /map/<file>: its scripts, styles and images
	Metrics,
	Healthz,
};
Route route(std::string_view method, std::string_view path, uint64_t &id);

const char *reason(int status);

// A complete response with a body. Extra headers are whole lines, each
// ending in "\r\n".
std::string response(int status, std::string_view content_type, std::string_view body, bool keep_alive,
                     std::string_view extra_headers = {});
// {"error":"..."} with the status (SPEC 6 error shape).
std::string error_response(int status, std::string_view message, bool keep_alive,
                           std::string_view extra_headers = {});
// Appends s as a JSON string literal (quotes included).
void json_string(std::string &out, std::string_view s);

} // namespace lt::http
