// The segment codec: one driver's fixes of one history period in a few bytes
// each (docs/architecture.md, History). The compactor encodes; the pings
// view, trail() and the live-state rebuild decode. No I/O, no Postgres.
//
// Layout (version 1), every integer a LEB128 varint, signed ones zig-zagged:
//   version (1) | count | present (bit 0 speed, 1 heading, 2 accuracy)
//   first fix:  ts_ms, lat_e7, lon_e7, lag_us (received_us - ts_ms * 1000),
//               then speed, heading, accuracy as present (-1: unknown)
//   each next:  ts as delta-of-delta, lat/lon/lag as deltas, and the
//               optional fields as deltas of their values (-1 for unknown)
// Fixes on a regular beat, moving steadily, cost about 6-12 bytes each.
// The decoder is strict: any byte out of place is an error, never a crash
// (test/fuzz/fuzz_segment.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lt::segment {

constexpr uint8_t kVersion = 1;
constexpr size_t kMaxFixes = 1 << 20; // a decoder refuses a count above this

struct Point {
	int64_t ts_ms;
	int32_t lat_e7, lon_e7;
	uint16_t speed_cms, heading_cd, accuracy_dm; // 0xFFFF: unknown
	int64_t received_us;
	bool operator==(const Point &o) const {
		return ts_ms == o.ts_ms && lat_e7 == o.lat_e7 && lon_e7 == o.lon_e7 && speed_cms == o.speed_cms &&
		       heading_cd == o.heading_cd && accuracy_dm == o.accuracy_dm && received_us == o.received_us;
	}
};

// The most bytes encode() writes for n fixes.
constexpr size_t max_size(size_t n) { return 16 + n * 70; }

// Encodes p[0..n) in the order given (the compactor sorts by ts first:
// that is what makes the deltas small) into out (max_size(n) bytes);
// returns the length. n must be 1..kMaxFixes. Allocates nothing, so the
// Postgres side can call it with palloc'd memory.
size_t encode(const Point *p, size_t n, uint8_t *out);
std::string encode(const Point *p, size_t n);

// The fix count a segment says it holds (checked against its length, so it
// is safe to allocate for); false if the header is malformed.
bool count(const uint8_t *data, size_t len, size_t *n);

// Decodes a whole segment into out[0..*n) (cap entries, at least count()).
// False, with a reason, for anything encode() cannot have written.
bool decode(const uint8_t *data, size_t len, Point *out, size_t cap, size_t *n, const char **why = nullptr);
bool decode(const uint8_t *data, size_t len, std::vector<Point> &out, const char **why = nullptr);

} // namespace lt::segment
