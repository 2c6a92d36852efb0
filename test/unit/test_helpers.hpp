// Shared helpers for the unit tests: building wire frames from SPEC 2.1.
#pragma once

#include <cstdint>
#include <cstring>
#include <ostream>
#include <vector>

#include "core/fix.hpp"
#include "core/hmac.hpp"
#include "core/message.hpp"
#include "core/wire.hpp"

// Readable gtest output for the core's enums (found by ADL).
namespace lt {
inline void PrintTo(Reject r, std::ostream *os) { *os << "Reject::" << reject_name(r); }
inline void PrintTo(Unit u, std::ostream *os) {
	static const char *const names[] = {"Frame", "Line", "NeedMore", "Bad", "TooLong"};
	unsigned i = unsigned(u);
	*os << "Unit::" << (i < 5 ? names[i] : "?");
}
namespace wire {
inline void PrintTo(Parse p, std::ostream *os) {
	static const char *const names[] = {"Ok", "NeedMore", "Bad"};
	unsigned i = unsigned(p);
	*os << "Parse::" << (i < 3 ? names[i] : "?");
}
} // namespace wire
} // namespace lt

namespace lt_test {

// A valid fix (SPEC 2.1 units) for driver `id` at time `ts`.
inline lt::Fix make_fix(uint64_t id, int64_t ts, int32_t lat_e7 = 129716000, int32_t lon_e7 = 775946000) {
	lt::Fix f{};
	f.driver_id = id;
	f.ts_ms = ts;
	f.lat_e7 = lat_e7;
	f.lon_e7 = lon_e7;
	f.speed_cms = 830;
	f.heading_cd = 9000;
	f.accuracy_dm = 50;
	f.status = lt::kStatusNoChange;
	f.reserved = 0;
	return f;
}

// Header || records (|| 16-byte zero tag when `flags` has SIGNED).
inline std::vector<uint8_t> make_frame(const std::vector<lt::Fix> &fixes, uint8_t flags = 0, uint16_t reserved = 0,
                                       uint32_t key_id = 0, uint32_t seq = 0) {
	lt::wire::Header h{};
	h.version = lt::wire::kVersion;
	h.flags = flags;
	h.count = uint16_t(fixes.size());
	h.reserved = reserved;
	h.key_id = key_id;
	h.seq = seq;
	std::vector<uint8_t> out(lt::wire::kHeaderSize + fixes.size() * lt::wire::kRecordSize +
	                         ((flags & lt::wire::kFlagSigned) ? lt::wire::kTagSize : 0));
	lt::wire::encode_header(out.data(), h);
	for (size_t i = 0; i < fixes.size(); i++)
		lt::wire::encode_record(out.data() + lt::wire::kHeaderSize + i * lt::wire::kRecordSize, fixes[i]);
	return out;
}

// Writes the tag of a signed frame from make_frame(): HMAC-SHA256 of header
// and records under `secret`, first 16 bytes (SPEC 2.1).
inline void sign_frame(std::vector<uint8_t> &frame, const uint8_t *secret, size_t secret_len = 32) {
	size_t n = frame.size() - lt::wire::kTagSize;
	uint8_t tag[lt::kSha256Bytes];
	lt::hmac_sha256(secret, secret_len, frame.data(), n, tag);
	std::memcpy(frame.data() + n, tag, lt::wire::kTagSize);
}

inline bool same_fix(const lt::Fix &a, const lt::Fix &b) { return std::memcmp(&a, &b, sizeof a) == 0; }

} // namespace lt_test
