// Shared invariant checks for the libFuzzer targets. Each check states a
// property of the SPEC or of the core's own contract; a violation aborts with
// a message, which libFuzzer reports as a crash with the input saved.
#pragma once

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/fix.hpp"
#include "core/json_lines.hpp"
#include "core/message.hpp"
#include "core/wire.hpp"

#define FUZZ_CHECK(cond)                                                                   \
	do {                                                                                   \
		if (!(cond)) {                                                                     \
			std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			std::abort();                                                                  \
		}                                                                                  \
	} while (0)

namespace fuzz {

constexpr int64_t kNow = 1763700000123LL; // fixed, so inputs reproduce
constexpr lt::ClockLimits kClock{30000, 600000};

constexpr int kPolicies = 3;
inline const lt::Policy &policy(int i) {
	static const lt::Policy p[kPolicies] = {
	    {lt::AuthMode::LoopbackTrust, kClock}, {lt::AuthMode::Off, kClock}, {lt::AuthMode::Required, kClock}};
	return p[i % kPolicies];
}

// SPEC 2.3 without a key store (fuzz_binary also judges with one): signed
// input only where auth is off;
// unsigned where auth is off, or from loopback under loopback_trust.
inline bool auth_allows(const lt::Policy &p, bool is_signed, bool loopback) {
	if (p.auth == lt::AuthMode::Off)
		return true;
	return !is_signed && loopback && p.auth == lt::AuthMode::LoopbackTrust;
}

inline bool valid_reject(lt::Reject r) { return uint8_t(r) <= uint8_t(lt::Reject::Clock); }

// SPEC 2.4, written from the SPEC rather than from validate_fix().
inline bool spec_record_ok(const lt::Fix &f) {
	return f.driver_id >= 1 && f.driver_id < (uint64_t{1} << 63) && f.lat_e7 >= -900000000 && f.lat_e7 <= 900000000 &&
	       f.lon_e7 >= -1800000000 && f.lon_e7 <= 1800000000 && (f.heading_cd <= 35999 || f.heading_cd == 0xFFFF) &&
	       f.status <= 3 && f.reserved == 0 && f.ts_ms <= kNow + kClock.max_future_ms &&
	       f.ts_ms >= kNow - kClock.max_late_ms;
}

// A header parse_header() accepted, checked against SPEC 2.1.
inline void check_header(const uint8_t *p, size_t n, const lt::wire::Header &h, size_t frame_len) {
	using namespace lt::wire;
	FUZZ_CHECK(n >= kHeaderSize);
	FUZZ_CHECK(p[0] == 0x4C && p[1] == 0x54);
	FUZZ_CHECK(h.version == 1 && p[2] == 1);
	FUZZ_CHECK((h.flags & ~kFlagSigned) == 0 && h.flags == p[3]);
	FUZZ_CHECK(h.count >= 1 && h.count <= 64 && h.count == get16(p + 4));
	FUZZ_CHECK(h.reserved == get16(p + 6) && h.key_id == get32(p + 8) && h.seq == get32(p + 12));
	FUZZ_CHECK(frame_len == kHeaderSize + size_t(h.count) * kRecordSize + (h.is_signed() ? kTagSize : 0));
	FUZZ_CHECK(frame_len <= kMaxFrame);
	// The header re-encodes to the same bytes.
	uint8_t again[kHeaderSize];
	encode_header(again, h);
	FUZZ_CHECK(std::memcmp(again, p, kHeaderSize) == 0);
}

// Whether the first k bytes already prove that p cannot start a frame
// (SPEC 2.1: magic, version, flags, count 1..64).
inline bool proven_bad(const uint8_t *p, size_t k) {
	if (k >= 1 && p[0] != 0x4C)
		return true;
	if (k >= 2 && p[1] != 0x54)
		return true;
	if (k >= 3 && p[2] != 1)
		return true;
	if (k >= 4 && (p[3] & 0xFE) != 0)
		return true;
	if (k >= 5 && p[4] != 0) // count > 255
		return true;
	if (k >= 6 && (p[4] != 0 || p[5] == 0 || p[5] > 64))
		return true;
	return false;
}

// The results of parse_header over growing prefixes of p[0..n) must be:
// NeedMore while nothing is proven, Bad as soon as (and only when) the bytes
// prove it, and Ok at 16 bytes otherwise; a verdict never flips later.
inline void check_header_prefixes(const uint8_t *p, size_t n) {
	using namespace lt::wire;
	size_t limit = n < kHeaderSize ? n : kHeaderSize;
	for (size_t k = 0; k <= limit; k++) {
		Header h;
		size_t fl = 0;
		Parse r = parse_header(p, k, h, fl);
		if (proven_bad(p, k)) {
			FUZZ_CHECK(r == Parse::Bad);
		} else if (k < kHeaderSize) {
			FUZZ_CHECK(r == Parse::NeedMore);
		} else {
			FUZZ_CHECK(r == Parse::Ok);
			check_header(p, k, h, fl);
		}
	}
	if (n > kHeaderSize) {
		Header h1, h2;
		size_t f1 = 0, f2 = 0;
		Parse a = parse_header(p, kHeaderSize, h1, f1), b = parse_header(p, n, h2, f2);
		FUZZ_CHECK(a == b);
		if (a == Parse::Ok)
			FUZZ_CHECK(f1 == f2);
	}
}

// judge_message on a frame parse_header accepted: the verdict is coherent
// with the SPEC rules and with validate_fix.
inline void check_message(const uint8_t *frame, const lt::wire::Header &h, bool loopback, const lt::Policy &p) {
	using namespace lt;
	MessageVerdict v;
	std::memset(&v, 0xA5, sizeof v);
	judge_message(frame, h, loopback, p, kNow, v);
	FUZZ_CHECK(v.count == h.count);
	FUZZ_CHECK(v.accepted <= v.count);
	FUZZ_CHECK(valid_reject(v.message));
	// Whole-message verdict per SPEC 2.3, with no key store.
	bool auth_ok = auth_allows(p, h.is_signed(), loopback);
	if (h.reserved != 0 || (!h.is_signed() && (h.key_id != 0 || h.seq != 0)))
		FUZZ_CHECK(v.message == Reject::Malformed);
	else if (!auth_ok)
		FUZZ_CHECK(v.message == Reject::Auth);
	else
		FUZZ_CHECK(v.message == Reject::None);
	uint16_t accepted = 0;
	for (uint16_t i = 0; i < v.count; i++) {
		FUZZ_CHECK(valid_reject(v.record[i]));
		Fix d;
		wire::decode_record(frame, i, d);
		FUZZ_CHECK(std::memcmp(&d, &v.fix[i], sizeof d) == 0);
		// The record re-encodes to its bytes.
		uint8_t again[wire::kRecordSize];
		wire::encode_record(again, v.fix[i]);
		FUZZ_CHECK(std::memcmp(again, frame + wire::kHeaderSize + i * wire::kRecordSize, wire::kRecordSize) == 0);
		if (v.message != Reject::None) {
			FUZZ_CHECK(v.record[i] == v.message);
		} else {
			FUZZ_CHECK(v.record[i] == validate_fix(v.fix[i], kNow, kClock));
			// Accepted exactly when SPEC 2.4 says so, judged here independently,
			// so a valid record wrongly refused is caught as well.
			FUZZ_CHECK((v.record[i] == Reject::None) == spec_record_ok(v.fix[i]));
		}
		if (v.record[i] == Reject::None) {
			accepted++;
			FUZZ_CHECK(spec_record_ok(v.fix[i]));
		}
	}
	FUZZ_CHECK(accepted == v.accepted);
	uint8_t st = v.ack_status();
	if (v.message != Reject::None)
		FUZZ_CHECK(st == wire::kAckRejected && v.accepted == 0);
	else
		FUZZ_CHECK(st == (v.accepted == v.count ? wire::kAckAll : wire::kAckSome));
}

// ---- JSON ----------------------------------------------------------------

// Proleptic Gregorian date of a day count (Howard Hinnant's civil_from_days).
inline void civil_from_days(int64_t z, int64_t &y, unsigned &m, unsigned &d) {
	z += 719468;
	const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	const unsigned doe = unsigned(z - era * 146097);
	const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = int64_t(yoe) + era * 400;
	const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	const unsigned mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	y += m <= 2;
}

// Epoch ms -> "YYYY-MM-DDThh:mm:ss.mmmZ"; false if the year has not 4 digits.
inline bool format_iso(int64_t ms, std::string &out) {
	int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
	int64_t rem = ms - days * 86400000;
	int64_t y;
	unsigned mo, d;
	civil_from_days(days, y, mo, d);
	if (y < 0 || y > 9999)
		return false;
	char buf[64];
	std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", int(y), mo, d, int(rem / 3600000),
	              int(rem / 60000 % 60), int(rem / 1000 % 60), int(rem % 1000));
	out = buf;
	return true;
}

// A Fix as a canonical JSON line (SPEC 2.2 units).
inline std::string to_json(const lt::Fix &f) {
	char buf[512];
	int n = std::snprintf(buf, sizeof buf, "{\"driver_id\":%" PRIu64 ",\"lat\":%.7f,\"lon\":%.7f,\"ts\":%" PRId64,
	                      f.driver_id, double(f.lat_e7) / 1e7, double(f.lon_e7) / 1e7, f.ts_ms);
	std::string s(buf, size_t(n));
	if (f.speed_cms != 0xFFFF) {
		std::snprintf(buf, sizeof buf, ",\"speed\":%.2f", f.speed_cms / 100.0);
		s += buf;
	}
	if (f.heading_cd != 0xFFFF) {
		std::snprintf(buf, sizeof buf, ",\"heading\":%.2f", f.heading_cd / 100.0);
		s += buf;
	}
	if (f.accuracy_dm != 0xFFFF) {
		std::snprintf(buf, sizeof buf, ",\"accuracy\":%.1f", f.accuracy_dm / 10.0);
		s += buf;
	}
	if (const char *name = lt::status_name(f.status)) {
		s += ",\"status\":\"";
		s += name;
		s += "\"";
	}
	s += "}";
	return s;
}

// One JSON line through parse_line and judge_json_line, with invariants.
inline void check_json_line(const char *s, size_t n) {
	using namespace lt;
	Fix f1, f2;
	Reject r1 = json::parse_line(s, n, kNow, f1);
	FUZZ_CHECK(valid_reject(r1));
	FUZZ_CHECK(r1 == Reject::None || r1 == Reject::Malformed || r1 == Reject::Range);
	// Deterministic, and the receipt time only matters when ts is missing.
	const int64_t other_now = kNow + 777;
	Reject r2 = json::parse_line(s, n, other_now, f2);
	FUZZ_CHECK(r1 == r2);
	if (r1 == Reject::None) {
		FUZZ_CHECK(f1.reserved == 0);
		FUZZ_CHECK(f1.status <= 3);
		FUZZ_CHECK(f1.heading_cd <= 35999 || f1.heading_cd == 0xFFFF);
		if (f1.ts_ms != f2.ts_ms)
			FUZZ_CHECK(f1.ts_ms == kNow && f2.ts_ms == other_now);
		Fix a = f1, b = f2;
		a.ts_ms = b.ts_ms = 0;
		FUZZ_CHECK(std::memcmp(&a, &b, sizeof a) == 0);
		// What was parsed survives a round trip through canonical JSON.
		std::string canon = to_json(f1);
		Fix g;
		FUZZ_CHECK(json::parse_line(canon.data(), canon.size(), 0, g) == Reject::None);
		FUZZ_CHECK(std::memcmp(&g, &f1, sizeof g) == 0);
	}
	// judge_json_line = auth rule, then parse_line, then validate_fix.
	for (int pi = 0; pi < kPolicies; pi++) {
		for (bool lo : {false, true}) {
			const Policy &p = policy(pi);
			Fix f;
			Reject j = judge_json_line(s, n, lo, p, kNow, f);
			if (!auth_allows(p, false, lo)) {
				FUZZ_CHECK(j == Reject::Auth);
				continue;
			}
			if (r1 != Reject::None) {
				FUZZ_CHECK(j == r1);
				continue;
			}
			FUZZ_CHECK(std::memcmp(&f, &f1, sizeof f) == 0);
			FUZZ_CHECK(j == validate_fix(f1, kNow, kClock));
		}
	}
}

// parse_iso8601_ms on arbitrary bytes: if it accepts, the time formats back
// to a string that parses to the same instant.
inline void check_iso(const char *s, size_t n) {
	int64_t ms = 0;
	if (!lt::json::parse_iso8601_ms(s, n, ms))
		return;
	FUZZ_CHECK(n >= 16);
	FUZZ_CHECK(s[4] == '-' && s[7] == '-' && s[13] == ':');
	// Years 0000..9999 with offsets up to a day: bounded.
	FUZZ_CHECK(ms >= -62167219200000LL - 2 * 86400000LL);
	FUZZ_CHECK(ms <= 253402300800000LL + 2 * 86400000LL);
	// Without a zone offset, the instant falls on the calendar date written
	// (unless a leap second :60 rolls it over): no date is silently shifted.
	bool offset = false;
	for (size_t i = 16; i < n; i++)
		offset |= s[i] == '+' || s[i] == '-';
	bool leap = n >= 19 && s[16] == ':' && s[17] == '6' && s[18] == '0';
	auto num = [&](size_t at, size_t len) {
		int v = 0;
		for (size_t i = 0; i < len; i++)
			v = v * 10 + (s[at + i] - '0');
		return v;
	};
	int Y = num(0, 4), M = num(5, 2), D = num(8, 2);
	if (!offset && !leap) {
		int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
		int64_t y;
		unsigned m, d;
		civil_from_days(days, y, m, d);
		FUZZ_CHECK(y == Y && int(m) == M && int(d) == D);
	}
	std::string again;
	if (format_iso(ms, again)) {
		int64_t back = 0;
		FUZZ_CHECK(lt::json::parse_iso8601_ms(again.data(), again.size(), back));
		FUZZ_CHECK(back == ms);
	}
}

} // namespace fuzz
