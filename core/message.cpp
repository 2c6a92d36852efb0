#include "message.hpp"

#include <cstring>

#include "atomics.hpp"
#include "hmac.hpp"
#include "json_lines.hpp"

namespace lt {
namespace {

// Unsigned input is trusted from loopback only, unless auth is off; never
// when signatures are required.
bool unsigned_allowed(bool peer_loopback, const Policy &p) {
	switch (p.auth) {
	case AuthMode::Off: return true;
	case AuthMode::LoopbackTrust: return peer_loopback;
	case AuthMode::Required: return false;
	}
	return false;
}

// The key that signed the message, if the tag is right; nullptr otherwise.
const KeyEntry *verified_key(const uint8_t *frame, const wire::Header &h, KeyStore *keys, Reject &why) {
	KeyEntry *e = keys != nullptr && keys->attached() ? keys->find(h.key_id) : nullptr;
	why = Reject::Auth;
	if (e == nullptr || load_acquire(e->revoked))
		return nullptr;
	size_t signed_len = wire::kHeaderSize + wire::kRecordSize * size_t(h.count);
	uint8_t tag[kSha256Bytes];
	hmac_sha256(e->secret, kSecretBytes, frame, signed_len, tag);
	if (!equal_ct(tag, frame + signed_len, wire::kTagSize))
		return nullptr;
	// Only an authentic message may move the window, or a forger could
	// push it past the device's next sequence numbers.
	if (!keys->accept_seq(*e, h.seq)) {
		why = Reject::Replay;
		return nullptr;
	}
	return e;
}

} // namespace

void judge_message(const uint8_t *frame, const wire::Header &h, bool peer_loopback, const Policy &p,
                   int64_t now_ms, MessageVerdict &out, KeyStore *keys) {
	out.count = h.count;
	out.accepted = 0;
	out.message = Reject::None;
	const KeyEntry *key = nullptr;
	// An unsigned header has no key and no sequence: anything there is as
	// malformed as a set reserved field (SPEC 2.1: "0 when unsigned").
	if (h.reserved != 0 || (!h.is_signed() && (h.key_id != 0 || h.seq != 0)))
		out.message = Reject::Malformed;
	else if (h.is_signed() && p.auth != AuthMode::Off)
		key = verified_key(frame, h, keys, out.message);
	else if (!h.is_signed() && !unsigned_allowed(peer_loopback, p))
		out.message = Reject::Auth;
	if (key != nullptr)
		out.message = Reject::None;
	uint64_t only_driver = key != nullptr ? key->driver_id : 0; // a device key signs for its driver only
	for (uint16_t i = 0; i < h.count; i++) {
		wire::decode_record(frame, i, out.fix[i]);
		if (out.message != Reject::None)
			out.record[i] = out.message;
		else if (only_driver != 0 && out.fix[i].driver_id != only_driver)
			out.record[i] = Reject::Auth;
		else
			out.record[i] = validate_fix(out.fix[i], now_ms, p.clock);
		if (out.record[i] == Reject::None)
			out.accepted++;
	}
}

Reject judge_json_line(const char *s, size_t n, bool peer_loopback, const Policy &p, int64_t now_ms, Fix &out) {
	if (!unsigned_allowed(peer_loopback, p))
		return Reject::Auth;
	Reject r = json::parse_line(s, n, now_ms, out);
	if (r != Reject::None)
		return r;
	return validate_fix(out, now_ms, p.clock);
}

Unit next_unit(const uint8_t *p, size_t n, bool json, size_t max_line, size_t &len, size_t &consumed) {
	if (json) {
		const void *nl = std::memchr(p, '\n', n < max_line + 1 ? n : max_line + 1);
		if (nl == nullptr) {
			if (n > max_line) {
				// Drop what was scanned; the caller skips the rest up to the newline.
				len = 0;
				consumed = max_line + 1;
				return Unit::TooLong;
			}
			return Unit::NeedMore;
		}
		consumed = size_t(static_cast<const uint8_t *>(nl) - p) + 1;
		len = consumed - 1;
		if (len > 0 && p[len - 1] == '\r')
			len--;
		return Unit::Line;
	}
	wire::Header h;
	size_t frame_len = 0;
	switch (wire::parse_header(p, n, h, frame_len)) {
	case wire::Parse::Bad: return Unit::Bad;
	case wire::Parse::NeedMore: return Unit::NeedMore;
	case wire::Parse::Ok: break;
	}
	if (n < frame_len)
		return Unit::NeedMore;
	len = consumed = frame_len;
	return Unit::Frame;
}

bool is_json(const uint8_t *p, size_t n) { return n > 0 && p[0] == '{'; }

} // namespace lt
