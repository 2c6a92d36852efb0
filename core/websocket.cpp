#include "websocket.hpp"

#include <cstring>
#include <new>
#include <openssl/evp.h>
#include <stdexcept>
#include <wslay/wslay.h>

#include "base64.hpp"

namespace lt::ws {
namespace {

constexpr char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

char lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

// A comma-separated header value contains the token, case-insensitively.
bool has_token(std::string_view value, std::string_view token) {
	size_t start = 0;
	while (start <= value.size()) {
		size_t comma = value.find(',', start);
		std::string_view part = value.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
		while (!part.empty() && (part.front() == ' ' || part.front() == '\t'))
			part.remove_prefix(1);
		while (!part.empty() && (part.back() == ' ' || part.back() == '\t'))
			part.remove_suffix(1);
		if (part.size() == token.size()) {
			bool eq = true;
			for (size_t i = 0; i < part.size() && eq; i++)
				eq = lower(part[i]) == lower(token[i]);
			if (eq)
				return true;
		}
		if (comma == std::string_view::npos)
			break;
		start = comma + 1;
	}
	return false;
}

Session &self(void *user) { return *static_cast<Session *>(user); }

ssize_t recv_tramp(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int, void *user) {
	long n = self(user).recv_cb(buf, len);
	if (n == 0)
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	return n == 0 ? -1 : n;
}

ssize_t send_tramp(wslay_event_context_ptr, const uint8_t *data, size_t len, int, void *user) {
	return self(user).send_cb(data, len);
}

void msg_tramp(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg *arg, void *user) {
	self(user).msg_cb(arg->opcode, arg->msg, arg->msg_length);
}

// For text_frame(): wslay's frame API writes into a string.
ssize_t frame_send(const uint8_t *data, size_t len, int, void *user) {
	static_cast<std::string *>(user)->append(reinterpret_cast<const char *>(data), len);
	return ssize_t(len);
}
ssize_t frame_recv(uint8_t *, size_t, int, void *) { return -1; }
int frame_genmask(uint8_t *, size_t, void *) { return -1; }

} // namespace

std::string accept_key(std::string_view key) {
	std::string in(key);
	in += kGuid;
	uint8_t sha[20];
	unsigned int len = 0;
	if (EVP_Digest(in.data(), in.size(), sha, &len, EVP_sha1(), nullptr) != 1 || len != 20)
		throw std::runtime_error("libcrypto: SHA-1 failed");
	return b64::encode(sha, 20, false);
}

bool handshake(const http::Request &r, std::string &response, int &status) {
	const std::string *upgrade = r.header("upgrade"), *connection = r.header("connection");
	const std::string *key = r.header("sec-websocket-key"), *version = r.header("sec-websocket-version");
	if (r.method != "GET" || upgrade == nullptr || !has_token(*upgrade, "websocket") || connection == nullptr ||
	    !has_token(*connection, "upgrade")) {
		status = 426;
		response = http::error_response(426, "a WebSocket upgrade is expected here", false,
		                                "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
		return false;
	}
	if (version == nullptr || *version != "13") {
		status = 426;
		response = http::error_response(426, "only WebSocket version 13", false, "Sec-WebSocket-Version: 13\r\n");
		return false;
	}
	std::string raw;
	if (key == nullptr || !b64::decode(*key, false, raw) || raw.size() != 16) {
		status = 400;
		response = http::error_response(400, "Sec-WebSocket-Key must be 16 bytes in base64", false);
		return false;
	}
	status = 101;
	response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	           "Sec-WebSocket-Accept: " +
	           accept_key(*key) + "\r\n\r\n";
	return true;
}

std::string text_frame(std::string_view payload) {
	std::string out;
	out.reserve(payload.size() + 10);
	wslay_frame_callbacks cb = {frame_send, frame_recv, frame_genmask};
	wslay_frame_context_ptr fc = nullptr;
	if (wslay_frame_context_init(&fc, &cb, &out) != 0)
		throw std::bad_alloc();
	wslay_frame_iocb iocb;
	std::memset(&iocb, 0, sizeof iocb);
	iocb.fin = 1;
	iocb.opcode = WSLAY_TEXT_FRAME;
	iocb.mask = 0;
	iocb.payload_length = payload.size();
	iocb.data = reinterpret_cast<const uint8_t *>(payload.data());
	iocb.data_length = payload.size();
	// Our callback takes everything, so one call writes the whole frame
	// (for an empty payload it returns 0 having written the header).
	ssize_t r = wslay_frame_send(fc, &iocb);
	wslay_frame_context_free(fc);
	if (r < 0 || size_t(r) != payload.size())
		throw std::runtime_error("wslay: could not frame a message");
	return out;
}

Session::Session(Events ev, size_t max_message) : ev_(std::move(ev)) {
	wslay_event_callbacks cb = {recv_tramp, send_tramp, nullptr, nullptr, nullptr, nullptr, msg_tramp};
	if (wslay_event_context_server_init(&ctx_, &cb, this) != 0)
		throw std::bad_alloc();
	wslay_event_config_set_max_recv_msg_length(ctx_, max_message);
}

Session::~Session() {
	if (ctx_)
		wslay_event_context_free(ctx_);
}

long Session::recv_cb(uint8_t *buf, size_t len) {
	size_t n = len < in_len_ ? len : in_len_;
	std::memcpy(buf, in_, n);
	in_ += n;
	in_len_ -= n;
	return long(n);
}

long Session::send_cb(const uint8_t *data, size_t len) {
	ev_.send(data, len); // the worker queues it: everything is taken
	return long(len);
}

void Session::msg_cb(uint8_t opcode, const uint8_t *msg, size_t len) {
	// Pings are answered and closes acknowledged by wslay itself; binary
	// messages mean nothing to us and are ignored.
	if (opcode == WSLAY_TEXT_FRAME)
		ev_.text(std::string_view(reinterpret_cast<const char *>(msg), len));
}

void Session::flush() {
	while (wslay_event_want_write(ctx_))
		if (wslay_event_send(ctx_) != 0)
			break;
}

bool Session::feed(const uint8_t *p, size_t n) {
	in_ = p;
	in_len_ = n;
	while (in_len_ > 0 && wslay_event_get_read_enabled(ctx_)) {
		if (wslay_event_recv(ctx_) != 0)
			break;
		flush();
	}
	flush();
	in_ = nullptr;
	in_len_ = 0;
	return open();
}

void Session::ping() {
	wslay_event_msg m = {WSLAY_PING, nullptr, 0};
	(void)wslay_event_queue_msg(ctx_, &m);
	flush();
}

void Session::close(uint16_t code, std::string_view reason) {
	(void)wslay_event_queue_close(ctx_, code, reinterpret_cast<const uint8_t *>(reason.data()), reason.size());
	flush();
}

bool Session::open() const {
	return wslay_event_get_read_enabled(ctx_) && !wslay_event_get_close_sent(ctx_);
}

uint16_t Session::close_code_sent() const {
	return wslay_event_get_close_sent(ctx_) ? wslay_event_get_status_code_sent(ctx_) : 0;
}

uint16_t Session::close_code_received() const {
	return wslay_event_get_close_received(ctx_) ? wslay_event_get_status_code_received(ctx_) : 0;
}

} // namespace lt::ws
