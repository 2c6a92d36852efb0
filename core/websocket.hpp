// WebSocket (RFC 6455) for the HTTP edge: the opening handshake, and a
// server session over Debian's wslay, which frames, unmasks, checks UTF-8,
// sizes and control frames, and does no I/O of its own: the HTTP worker
// feeds it the bytes it read and sends the bytes it produces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "http.hpp"

struct wslay_event_context;

namespace lt::ws {

// Sec-WebSocket-Accept for a Sec-WebSocket-Key (SHA-1 from libcrypto).
std::string accept_key(std::string_view key);

// Checks an upgrade request (RFC 6455 4.2.1). On success `response` is the
// 101 answer; otherwise it is the HTTP error to send (400, 426).
bool handshake(const http::Request &r, std::string &response, int &status);

// One unmasked, final text frame as the server sends it, built with wslay's
// framing. The same bytes go to every WebSocket client of a message.
std::string text_frame(std::string_view payload);

class Session {
public:
	struct Events {
		std::function<void(std::string_view)> text;                 // a whole text message
		std::function<void(const uint8_t *, size_t)> send;          // bytes for the client (pongs, close)
	};
	Session(Events ev, size_t max_message);
	~Session();
	Session(const Session &) = delete;
	Session &operator=(const Session &) = delete;

	// Takes all of [p, p+n). False once the session is over: a close was
	// exchanged, or the client broke the protocol (unmasked frame, bad
	// UTF-8, a message over max_message, ...; a close frame with the
	// matching code has been sent).
	bool feed(const uint8_t *p, size_t n);
	void ping();
	void close(uint16_t code, std::string_view reason);
	bool open() const;
	uint16_t close_code_sent() const;     // 0 if none
	uint16_t close_code_received() const; // 0 if none

	// wslay callbacks (public for the C trampolines).
	long recv_cb(uint8_t *buf, size_t len);
	long send_cb(const uint8_t *data, size_t len);
	void msg_cb(uint8_t opcode, const uint8_t *msg, size_t len);

private:
	void flush();
	Events ev_;
	wslay_event_context *ctx_ = nullptr;
	const uint8_t *in_ = nullptr;
	size_t in_len_ = 0;
};

} // namespace lt::ws
