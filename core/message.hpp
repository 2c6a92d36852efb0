// From bytes to verdicts: everything the listener decides about input before
// it touches shared state. Pure functions, so the fuzzer and the unit tests
// exercise exactly what the worker runs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fix.hpp"
#include "key_store.hpp"
#include "wire.hpp"

namespace lt {

// LoopbackTrust: unsigned input from loopback peers, signed input (tag
// checked) from anywhere. Required: only signed binary messages. Off:
// everything, tags unchecked (closed networks).
enum class AuthMode : uint8_t { LoopbackTrust = 0, Off = 1, Required = 2 };

struct Policy {
	AuthMode auth;
	ClockLimits clock;
};

// Verdicts for one binary message.
struct MessageVerdict {
	Reject message;   // None, or why the whole message was refused
	uint16_t count;   // records in the message
	uint16_t accepted;
	Reject record[wire::kMaxCount];
	Fix fix[wire::kMaxCount];
	uint8_t ack_status() const {
		if (message != Reject::None)
			return wire::kAckRejected;
		return accepted == count ? wire::kAckAll : wire::kAckSome;
	}
};

// `frame` holds a whole frame whose header parse_header() accepted. A signed
// message (unless auth is off) needs a known, unrevoked key in `keys`
// (nullptr: none), a matching tag, and a sequence number its key's replay
// window accepts, which it then records; a device key's records of other
// drivers are refused one by one.
void judge_message(const uint8_t *frame, const wire::Header &h, bool peer_loopback, const Policy &p,
                   int64_t now_ms, MessageVerdict &out, KeyStore *keys = nullptr);

// One JSON line: parse, then the same field and clock checks as binary.
// JSON is never signed, so it is accepted only where unsigned input is.
Reject judge_json_line(const char *s, size_t n, bool peer_loopback, const Policy &p, int64_t now_ms, Fix &out);

// Splitting a TCP stream into units.
enum class Unit : uint8_t {
	Frame,    // binary frame of `len` bytes at the start
	Line,     // JSON line of `len` bytes (no "\r\n"); `consumed` includes the newline
	NeedMore, // incomplete: read more
	Bad,      // binary framing error: the connection must be closed
	TooLong,  // a JSON line longer than the limit: drop `consumed` bytes (no newline in
	          // them), count it, and skip up to the next newline
};
Unit next_unit(const uint8_t *p, size_t n, bool json, size_t max_line, size_t &len, size_t &consumed);

// What a UDP datagram is. JSON when the first byte is '{'.
bool is_json(const uint8_t *p, size_t n);

} // namespace lt
