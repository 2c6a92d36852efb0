// WebSocket (core/websocket.hpp): the handshake and a server session over
// wslay, with RFC 6455's own examples.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/websocket.hpp"

using namespace lt;

namespace {

// A client frame: masked with a fixed key.
std::string client_frame(uint8_t first, const std::string &payload, bool mask = true) {
	std::string f(1, char(first));
	size_t n = payload.size();
	uint8_t m = mask ? 0x80 : 0;
	if (n < 126) {
		f += char(m | n);
	} else if (n < 65536) {
		f += char(m | 126);
		f += char(n >> 8);
		f += char(n & 0xFF);
	} else {
		f += char(m | 127);
		for (int i = 7; i >= 0; i--)
			f += char((uint64_t(n) >> (8 * i)) & 0xFF);
	}
	if (!mask)
		return f + payload;
	const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
	f.append(reinterpret_cast<const char *>(key), 4);
	for (size_t i = 0; i < n; i++)
		f += char(uint8_t(payload[i]) ^ key[i % 4]);
	return f;
}

struct Harness {
	std::vector<std::string> texts;
	std::string sent;
	ws::Session s{ws::Session::Events{[this](std::string_view t) { texts.emplace_back(t); },
	                                  [this](const uint8_t *p, size_t n) { sent.append(reinterpret_cast<const char *>(p), n); }},
	              1024};
	bool feed(const std::string &b) { return s.feed(reinterpret_cast<const uint8_t *>(b.data()), b.size()); }
	// The close code in the close frame we sent (server frames are unmasked).
	int close_code() const {
		for (size_t i = 0; i + 1 < sent.size();) {
			uint8_t op = uint8_t(sent[i]) & 0x0F, len = uint8_t(sent[i + 1]) & 0x7F;
			if (op == 8 && len >= 2)
				return uint8_t(sent[i + 2]) << 8 | uint8_t(sent[i + 3]);
			i += 2 + len;
		}
		return 0;
	}
};

} // namespace

TEST(WebSocket, AcceptKeyFromTheRfc) {
	EXPECT_EQ(ws::accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WebSocket, Handshake) {
	http::Request r;
	r.method = "GET";
	r.headers = {{"upgrade", "WebSocket"}, {"connection", "keep-alive, Upgrade"},
	             {"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="}, {"sec-websocket-version", "13"}};
	std::string answer;
	int status = 0;
	ASSERT_TRUE(ws::handshake(r, answer, status));
	EXPECT_EQ(status, 101);
	EXPECT_NE(answer.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), std::string::npos);
	r.headers[3].second = "8";
	EXPECT_FALSE(ws::handshake(r, answer, status));
	EXPECT_EQ(status, 426);
	r.headers[3].second = "13";
	r.headers[2].second = "c2hvcnQ="; // "short": not 16 bytes
	EXPECT_FALSE(ws::handshake(r, answer, status));
	EXPECT_EQ(status, 400);
	r.headers[0].second = "h2c";
	EXPECT_FALSE(ws::handshake(r, answer, status));
	EXPECT_EQ(status, 426);
}

TEST(WebSocket, ServerFramesAsTheRfcWritesThem) {
	EXPECT_EQ(ws::text_frame("Hello"), std::string("\x81\x05Hello", 7)); // RFC 6455 5.7
	std::string f = ws::text_frame(std::string(200, 'a'));
	EXPECT_EQ(f.substr(0, 4), std::string("\x81\x7e\x00\xc8", 4));
	f = ws::text_frame(std::string(70000, 'a'));
	EXPECT_EQ(f.substr(0, 10), std::string("\x81\x7f\x00\x00\x00\x00\x00\x01\x11\x70", 10));
	EXPECT_EQ(f.size(), 70010u);
	EXPECT_EQ(ws::text_frame(""), std::string("\x81\x00", 2));
}

TEST(WebSocket, ReceivesMaskedAndFragmentedMessages) {
	Harness h;
	// RFC 6455 5.7: a masked "Hello", then the same in two fragments, byte by byte.
	EXPECT_TRUE(h.feed(std::string("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11)));
	std::string frag = client_frame(0x01, "Hel") + client_frame(0x80, "lo");
	for (char c : frag)
		EXPECT_TRUE(h.feed(std::string(1, c)));
	ASSERT_EQ(h.texts.size(), 2u);
	EXPECT_EQ(h.texts[0], "Hello");
	EXPECT_EQ(h.texts[1], "Hello");
	// A ping in between gets its pong.
	EXPECT_TRUE(h.feed(client_frame(0x89, "hi")));
	EXPECT_EQ(h.sent, std::string("\x8a\x02hi", 4));
	EXPECT_TRUE(h.s.open());
}

TEST(WebSocket, CloseAndProtocolErrors) {
	{
		Harness h; // the client closes: answered, session over
		EXPECT_FALSE(h.feed(client_frame(0x88, std::string("\x03\xe8", 2))));
		EXPECT_EQ(h.close_code(), 1000);
		EXPECT_EQ(h.s.close_code_received(), 1000);
	}
	struct Case {
		std::string bytes;
		int code;
	};
	for (const Case &c : {Case{client_frame(0x81, "x", false), 1002},        // unmasked
	                      Case{client_frame(0x81, std::string(2000, 'x')), 1009}, // over the 1024 limit
	                      Case{client_frame(0x81, "\xff\xfe"), 1007},           // not UTF-8
	                      Case{client_frame(0x83, "x"), 1002},                  // reserved opcode
	                      Case{client_frame(0xC1, "x"), 1002}}) {               // RSV1 without an extension
		Harness h;
		EXPECT_FALSE(h.feed(c.bytes));
		EXPECT_EQ(h.close_code(), c.code);
		EXPECT_TRUE(h.texts.empty());
		EXPECT_FALSE(h.feed(client_frame(0x81, "late"))); // nothing after
		EXPECT_TRUE(h.texts.empty());
	}
}

TEST(WebSocket, ServerPingAndClose) {
	Harness h;
	h.s.ping();
	EXPECT_EQ(h.sent, std::string("\x89\x00", 2));
	h.sent.clear();
	h.s.close(1008, "token");
	EXPECT_EQ(h.close_code(), 1008);
	EXPECT_FALSE(h.s.open());
}
