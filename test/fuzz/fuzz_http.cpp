// Fuzz target: bytes -> HTTP requests (core/http.hpp), as a connection
// receives them.
//
// Byte 0 seeds the sizes of the chunks the bytes arrive in; the rest is the
// stream. The same stream is parsed twice, whole and in chunks, the way
// HttpServer::process_input() drives the parser (feed, keep what was not
// consumed, next() after each request). Both must see the same requests
// and end the same way; every request must respect the limits; and each
// one goes through routing, query and form parsing and token extraction.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/http.hpp"
#include "fuzz_common.hpp"

namespace {

struct Seen {
	std::vector<std::string> requests; // method, path, query, body, headers, flattened
	int error = 0;
};

std::string flatten(const lt::http::Request &r) {
	std::string s = r.method + '\n' + r.path + '\n' + r.query + '\n' + r.body + '\n';
	for (const auto &h : r.headers)
		s += h.first + ':' + h.second + '\n';
	s += r.keep_alive ? "k" : "c";
	s += r.upgrade ? "u" : "-";
	return s;
}

void exercise(const lt::http::Request &r) {
	FUZZ_CHECK(!r.method.empty());
	FUZZ_CHECK(r.body.size() <= lt::http::kMaxBody);
	FUZZ_CHECK(r.target.size() <= lt::http::kMaxHead);
	for (const auto &h : r.headers)
		for (char c : h.first)
			FUZZ_CHECK(!(c >= 'A' && c <= 'Z')); // names are lower case
	uint64_t id = 0;
	lt::http::Route route = lt::http::route(r.method, r.path, id);
	if (route == lt::http::Route::Order || route == lt::http::Route::OrderStream)
		FUZZ_CHECK(id > 0 && id < (uint64_t(1) << 63));
	auto q = lt::http::parse_form(r.query);
	(void)lt::http::token_of(r, q);
	(void)lt::http::parse_form(r.body);
	(void)r.forwarded();
}

Seen parse(const uint8_t *data, size_t size, uint8_t seed) {
	Seen out;
	lt::http::Parser p;
	std::string buf;
	size_t off = 0;
	uint32_t rng = seed * 2654435761u + 1;
	for (;;) {
		if (off < size) {
			size_t n = seed == 0 ? size : 1 + (rng = rng * 1103515245u + 12345u) % 97;
			n = std::min(n, size - off);
			buf.append(reinterpret_cast<const char *>(data) + off, n);
			off += n;
		}
		size_t used = 0;
		lt::http::Parser::Status st = p.feed(buf.data(), buf.size(), &used);
		FUZZ_CHECK(used <= buf.size());
		buf.erase(0, used);
		if (st == lt::http::Parser::Status::Complete) {
			exercise(p.request());
			out.requests.push_back(flatten(p.request()));
			bool upgrade = p.request().upgrade;
			p.next();
			if (upgrade)
				break; // what follows belongs to another protocol
			continue;
		}
		if (st == lt::http::Parser::Status::Error) {
			out.error = p.error_status();
			FUZZ_CHECK(out.error >= 400 && out.error < 600);
			break;
		}
		if (st == lt::http::Parser::Status::Continue)
			continue;
		if (off >= size)
			break; // NeedMore with nothing left to give
	}
	return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	if (size < 1 || size > 200000)
		return 0;
	Seen whole = parse(data + 1, size - 1, 0);
	Seen split = parse(data + 1, size - 1, data[0] | 1);
	FUZZ_CHECK(whole.requests == split.requests);
	FUZZ_CHECK(whole.error == split.error);
	return 0;
}
