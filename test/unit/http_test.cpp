// HTTP requests (core/http.hpp) and Server-Sent Events (core/sse.hpp).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/http.hpp"
#include "core/sse.hpp"

using namespace lt;
using http::Parser;

namespace {

// Feeds all of `in`, in pieces of `step` bytes; returns the requests
// completed, and the final status.
std::vector<http::Request> parse_all(const std::string &in, size_t step, Parser::Status *last = nullptr,
                                     int *error = nullptr) {
	Parser p;
	std::vector<http::Request> out;
	std::string buf;
	Parser::Status st = Parser::Status::NeedMore;
	for (size_t off = 0; off < in.size() || !buf.empty();) {
		if (off < in.size()) {
			buf += in.substr(off, step);
			off += step;
		}
		size_t used = 0;
		st = p.feed(buf.data(), buf.size(), &used);
		buf.erase(0, used);
		if (st == Parser::Status::Complete) {
			out.push_back(p.request());
			p.next();
			continue;
		}
		if (st == Parser::Status::Error) {
			if (error)
				*error = p.error_status();
			break;
		}
		if (st == Parser::Status::NeedMore && off >= in.size())
			break;
	}
	if (last)
		*last = st;
	return out;
}

} // namespace

TEST(Http, ParsesARequestInAnyPieces) {
	const std::string req = "POST /v1/pings?x=1&y=%20z HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
	                        "X-Forwarded-For: 10.0.0.1\r\nContent-Length: 5\r\n\r\nhello";
	for (size_t step : {size_t(1), size_t(3), size_t(7), req.size()}) {
		auto r = parse_all(req, step);
		ASSERT_EQ(r.size(), 1u) << step;
		EXPECT_EQ(r[0].method, "POST");
		EXPECT_EQ(r[0].path, "/v1/pings");
		EXPECT_EQ(r[0].query, "x=1&y=%20z");
		EXPECT_EQ(r[0].body, "hello");
		ASSERT_NE(r[0].header("content-type"), nullptr);
		EXPECT_EQ(*r[0].header("content-type"), "application/json");
		EXPECT_TRUE(r[0].forwarded());
		EXPECT_TRUE(r[0].keep_alive);
	}
}

TEST(Http, PipelinedAndChunked) {
	const std::string two = "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
	                        "POST /v1/pings HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
	                        "GET /metrics HTTP/1.0\r\n\r\n";
	auto r = parse_all(two, 5);
	ASSERT_EQ(r.size(), 3u);
	EXPECT_EQ(r[0].path, "/healthz");
	EXPECT_FALSE(r[0].forwarded());
	EXPECT_EQ(r[1].body, "abcde");
	EXPECT_EQ(r[2].path, "/metrics");
	EXPECT_FALSE(r[2].keep_alive); // HTTP/1.0 without keep-alive
}

TEST(Http, Limits) {
	int err = 0;
	Parser::Status st;
	std::string big_header = "GET / HTTP/1.1\r\nX-A: " + std::string(9000, 'a') + "\r\n\r\n";
	EXPECT_TRUE(parse_all(big_header, 1000, &st, &err).empty());
	EXPECT_EQ(err, 431);
	std::string long_url = "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n";
	EXPECT_TRUE(parse_all(long_url, 1000, &st, &err).empty());
	EXPECT_EQ(err, 414);
	// The size is known from the header: refused before the body arrives.
	std::string big_body = "POST /v1/pings HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n";
	EXPECT_TRUE(parse_all(big_body, 100, &st, &err).empty());
	EXPECT_EQ(err, 413);
	// Chunked past 1 MB.
	std::string chunks = "POST /v1/pings HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
	for (int i = 0; i < 17; i++)
		chunks += "10000\r\n" + std::string(65536, 'x') + "\r\n";
	EXPECT_TRUE(parse_all(chunks, 65536, &st, &err).empty());
	EXPECT_EQ(err, 413);
	EXPECT_TRUE(parse_all("NOT HTTP AT ALL\r\n\r\n", 4, &st, &err).empty());
	EXPECT_EQ(err, 400);
	EXPECT_TRUE(parse_all("GET / HTTP/2.0\r\n\r\n", 4, &st, &err).empty());
	EXPECT_EQ(err, 505);
	// A body of exactly 1 MB is fine.
	std::string edge = "POST /v1/pings HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n" + std::string(1048576, 'y');
	EXPECT_EQ(parse_all(edge, 65536).size(), 1u);
}

TEST(Http, ExpectContinue) {
	Parser p;
	std::string head = "POST /v1/pings HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
	size_t used = 0;
	EXPECT_EQ(p.feed(head.data(), head.size(), &used), Parser::Status::Continue);
	EXPECT_LE(used, head.size());
	// What was not consumed is fed again with what follows, as the server does.
	std::string rest = head.substr(used) + "abc";
	EXPECT_EQ(p.feed(rest.data(), rest.size(), &used), Parser::Status::Complete);
	EXPECT_EQ(p.request().body, "abc");
	p.next();
	std::string bad = "POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: something\r\n\r\n";
	EXPECT_EQ(p.feed(bad.data(), bad.size(), &used), Parser::Status::Error);
	EXPECT_EQ(p.error_status(), 417);
}

TEST(Http, Upgrade) {
	Parser p;
	std::string ws = "GET /v1/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x80";
	size_t used = 0;
	EXPECT_EQ(p.feed(ws.data(), ws.size(), &used), Parser::Status::Complete);
	EXPECT_TRUE(p.request().upgrade);
	EXPECT_EQ(used, ws.size() - 2); // the frame bytes are left for the WebSocket
}

TEST(Http, Routes) {
	uint64_t id = 0;
	EXPECT_EQ(http::route("POST", "/v1/pings", id), http::Route::Pings);
	EXPECT_EQ(http::route("GET", "/v1/pings", id), http::Route::MethodNotAllowed);
	EXPECT_EQ(http::route("GET", "/v1/osmand", id), http::Route::Osmand);
	EXPECT_EQ(http::route("POST", "/v1/osmand/", id), http::Route::Osmand);
	EXPECT_EQ(http::route("GET", "/v1/orders/42", id), http::Route::Order);
	EXPECT_EQ(id, 42u);
	EXPECT_EQ(http::route("GET", "/v1/orders/42/stream", id), http::Route::OrderStream);
	EXPECT_EQ(http::route("GET", "/v1/orders/0", id), http::Route::NotFound);
	EXPECT_EQ(http::route("GET", "/v1/orders/9223372036854775808", id), http::Route::NotFound);
	EXPECT_EQ(http::route("GET", "/v1/orders/4x", id), http::Route::NotFound);
	EXPECT_EQ(http::route("GET", "/v1/orders/42/other", id), http::Route::NotFound);
	EXPECT_EQ(http::route("GET", "/v1/drivers/stream", id), http::Route::DriversStream);
	EXPECT_EQ(http::route("GET", "/v1/ws", id), http::Route::WebSocket);
	EXPECT_EQ(http::route("GET", "/map", id), http::Route::Map);
	EXPECT_EQ(http::route("GET", "/map/leaflet.js", id), http::Route::MapAsset);
	EXPECT_EQ(http::route("GET", "/metrics", id), http::Route::Metrics);
	EXPECT_EQ(http::route("GET", "/healthz", id), http::Route::Healthz);
	EXPECT_EQ(http::route("OPTIONS", "/anything", id), http::Route::Options);
	EXPECT_EQ(http::route("GET", "/", id), http::Route::NotFound);
}

TEST(Http, FormsCredentialsAndTokens) {
	auto f = http::parse_form("id=42&lat=12.5&name=a+b%21&bad=%zz&&empty=");
	ASSERT_NE(http::form_value(f, "name"), nullptr);
	EXPECT_EQ(*http::form_value(f, "name"), "a b!");
	EXPECT_EQ(http::form_value(f, "bad"), nullptr);
	EXPECT_EQ(*http::form_value(f, "empty"), "");
	std::string u, pw;
	ASSERT_TRUE(http::basic_credentials("Basic dXNlcjpwYXNzOndvcmQ=", u, pw)); // user:pass:word
	EXPECT_EQ(u, "user");
	EXPECT_EQ(pw, "pass:word");
	EXPECT_FALSE(http::basic_credentials("Bearer x", u, pw));
	EXPECT_FALSE(http::basic_credentials("Basic !!!!", u, pw));

	http::Request r;
	EXPECT_EQ(http::token_of(r, http::parse_form("access_token=t3")), "t3");
	r.headers.push_back({"authorization", "Basic " + std::string("eDp0Mg==")}); // x:t2
	EXPECT_EQ(http::token_of(r, http::parse_form("access_token=t3")), "t2");
	r.headers[0].second = "Bearer t1";
	EXPECT_EQ(http::token_of(r, http::parse_form("access_token=t3")), "t1");
	r.headers.clear();
	EXPECT_EQ(http::token_of(r, {}), "");
}

TEST(Http, Responses) {
	std::string r = http::error_response(413, "too \"big\"\n", false);
	EXPECT_EQ(r.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u);
	EXPECT_NE(r.find("Connection: close\r\n"), std::string::npos);
	EXPECT_NE(r.find("Content-Length: 25\r\n"), std::string::npos) << r;
	EXPECT_EQ(r.substr(r.size() - 25), "{\"error\":\"too \\\"big\\\"\\n\"}");
}

TEST(Sse, EncodesAndParsesBack) {
	std::string s;
	sse::append_retry(s, 2000);
	sse::append_event(s, "snapshot", 0, "{\"a\":1}");
	sse::append_event(s, "status", 17, "line one\nline two\r\nline three\rfour");
	sse::append_comment(s, "heart\nbeat");
	sse::append_event(s, "", 0, "");
	EXPECT_NE(s.find("id: 17\nevent: status\ndata: line one\ndata: line two\ndata: line three\ndata: four\n\n"),
	          std::string::npos);
	EXPECT_NE(s.find(": heart beat\n\n"), std::string::npos);
	// Read back in every split, as a browser would.
	for (size_t step : {size_t(1), size_t(2), size_t(5), s.size()}) {
		sse::Parser p;
		std::vector<sse::Event> ev;
		for (size_t off = 0; off < s.size(); off += step)
			p.feed(s.data() + off, std::min(step, s.size() - off), ev);
		ASSERT_EQ(ev.size(), 3u);
		EXPECT_EQ(ev[0].event, "snapshot");
		EXPECT_EQ(ev[0].data, "{\"a\":1}");
		EXPECT_EQ(ev[1].event, "status");
		EXPECT_EQ(ev[1].id, "17");
		EXPECT_EQ(ev[1].data, "line one\nline two\nline three\nfour");
		EXPECT_EQ(ev[2].event, "message");
		EXPECT_EQ(ev[2].data, "");
		EXPECT_EQ(ev[2].id, "17"); // the last id carries on, as Last-Event-ID does
		EXPECT_EQ(p.retry_ms(), 2000u);
		EXPECT_EQ(p.comments(), 1u);
	}
}
