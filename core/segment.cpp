#include "segment.hpp"

namespace lt::segment {
namespace {

constexpr uint16_t kUnknown = 0xFFFF;
constexpr int64_t kMaxAbsTs = int64_t(1) << 53; // ms: far past any real clock, and exact in a double

uint64_t zig(int64_t v) { return (uint64_t(v) << 1) ^ uint64_t(v >> 63); }
int64_t unzig(uint64_t v) { return int64_t(v >> 1) ^ -int64_t(v & 1); }

void put(uint8_t *&o, uint64_t v) {
	while (v >= 0x80) {
		*o++ = uint8_t(v) | 0x80;
		v >>= 7;
	}
	*o++ = uint8_t(v);
}
void put_s(uint8_t *&o, int64_t v) { put(o, zig(v)); }

int32_t opt(uint16_t v) { return v == kUnknown ? -1 : int32_t(v); }

struct Reader {
	const uint8_t *p, *end;
	const char *why = nullptr;
	bool get(uint64_t &v) {
		v = 0;
		for (int shift = 0; shift < 64; shift += 7) {
			if (p == end)
				return fail("cut short");
			uint8_t b = *p++;
			if (shift == 63 && b > 1)
				return fail("varint overflow");
			v |= uint64_t(b & 0x7F) << shift;
			if (!(b & 0x80)) {
				if (b == 0 && shift > 0)
					return fail("varint not minimal");
				return true;
			}
		}
		return fail("varint overflow");
	}
	bool get_s(int64_t &v) {
		uint64_t u;
		if (!get(u))
			return false;
		v = unzig(u);
		return true;
	}
	bool fail(const char *w) {
		why = w;
		return false;
	}
};

// Adds d to v unless that overflows or leaves [lo, hi].
bool step(int64_t &v, int64_t d, int64_t lo, int64_t hi) {
	if ((d > 0 && v > hi - d) || (d < 0 && v < lo - d))
		return false;
	v += d;
	return v >= lo && v <= hi;
}

} // namespace

size_t encode(const Point *p, size_t n, uint8_t *out) {
	uint8_t *o = out;
	*o++ = kVersion;
	put(o, n);
	uint8_t present = 0;
	for (size_t i = 0; i < n; i++)
		present |= (p[i].speed_cms != kUnknown ? 1 : 0) | (p[i].heading_cd != kUnknown ? 2 : 0) |
		           (p[i].accuracy_dm != kUnknown ? 4 : 0);
	*o++ = present;
	int64_t prev_ts = 0, prev_delta = 0, prev_lag = 0;
	int32_t prev_lat = 0, prev_lon = 0, prev_opt[3] = {0, 0, 0};
	for (size_t i = 0; i < n; i++) {
		const Point &f = p[i];
		int64_t lag = f.received_us - f.ts_ms * 1000;
		if (i == 0) {
			put_s(o, f.ts_ms);
		} else {
			int64_t delta = f.ts_ms - prev_ts;
			put_s(o, i == 1 ? delta : delta - prev_delta);
			prev_delta = delta;
		}
		put_s(o, int64_t(f.lat_e7) - prev_lat);
		put_s(o, int64_t(f.lon_e7) - prev_lon);
		put_s(o, lag - prev_lag);
		const int32_t v[3] = {opt(f.speed_cms), opt(f.heading_cd), opt(f.accuracy_dm)};
		for (int k = 0; k < 3; k++)
			if (present & (1 << k)) {
				put_s(o, int64_t(v[k]) - prev_opt[k]);
				prev_opt[k] = v[k];
			}
		prev_ts = f.ts_ms;
		prev_lat = f.lat_e7;
		prev_lon = f.lon_e7;
		prev_lag = lag;
	}
	return size_t(o - out);
}

std::string encode(const Point *p, size_t n) {
	std::string o(max_size(n), '\0');
	o.resize(encode(p, n, reinterpret_cast<uint8_t *>(&o[0])));
	return o;
}

bool count(const uint8_t *data, size_t len, size_t *n) {
	Reader r{data, data + len};
	uint64_t v;
	if (len < 1 || data[0] != kVersion)
		return false;
	r.p++;
	if (!r.get(v) || v == 0 || v > kMaxFixes || r.p == r.end)
		return false;
	r.p++; // present
	if (v > uint64_t(r.end - r.p) / 4)
		return false;
	*n = size_t(v);
	return true;
}

bool decode(const uint8_t *data, size_t len, std::vector<Point> &out, const char **why) {
	size_t n = 0;
	out.clear();
	if (!count(data, len, &n)) {
		if (why)
			*why = "malformed header";
		return false;
	}
	out.resize(n);
	if (!decode(data, len, out.data(), n, &n, why)) {
		out.clear();
		return false;
	}
	return true;
}

bool decode(const uint8_t *data, size_t len, Point *out, size_t cap, size_t *count_out, const char **why) {
	Reader r{data, data + len};
	size_t got = 0;
	*count_out = 0;
	auto fail = [&](const char *w) {
		if (why)
			*why = w;
		return false;
	};
	if (len < 1 || data[0] != kVersion)
		return fail("unknown segment version");
	r.p++;
	uint64_t n;
	if (!r.get(n))
		return fail(r.why);
	if (n == 0 || n > kMaxFixes)
		return fail("fix count out of range");
	if (r.p == r.end)
		return fail("cut short");
	uint8_t present = *r.p++;
	if (present & ~7)
		return fail("unknown fields");
	// Each fix takes at least 4 bytes (ts, lat, lon, lag): a count the bytes
	// cannot hold is refused before anything is allocated for it.
	if (n > uint64_t(r.end - r.p) / 4)
		return fail("count larger than the data");
	if (n > cap)
		return fail("more fixes than room");
	int64_t ts = 0, delta = 0, lat = 0, lon = 0, lag = 0, o[3] = {0, 0, 0};
	const int64_t hi[3] = {65534, 35999, 65534};
	uint8_t known = 0; // fields with a known value somewhere: exactly `present`, as encode() writes it
	for (uint64_t i = 0; i < n; i++) {
		int64_t d;
		if (!r.get_s(d))
			return fail(r.why);
		if (i == 0) {
			ts = d;
			if (ts < -kMaxAbsTs || ts > kMaxAbsTs)
				return fail("ts out of range");
		} else {
			int64_t nd = delta;
			if (i == 1)
				nd = d;
			else if (!step(nd, d, -2 * kMaxAbsTs, 2 * kMaxAbsTs))
				return fail("ts out of range");
			if (!step(ts, nd, -kMaxAbsTs, kMaxAbsTs))
				return fail("ts out of range");
			delta = nd;
		}
		if (!r.get_s(d) || !step(lat, d, -900000000, 900000000))
			return fail(r.why ? r.why : "latitude out of range");
		if (!r.get_s(d) || !step(lon, d, -1800000000, 1800000000))
			return fail(r.why ? r.why : "longitude out of range");
		// lag: received_at - ts, within a century either way.
		if (!r.get_s(d) || !step(lag, d, -3155760000000000LL, 3155760000000000LL))
			return fail(r.why ? r.why : "received_at out of range");
		Point f{ts, int32_t(lat), int32_t(lon), kUnknown, kUnknown, kUnknown, ts * 1000 + lag};
		uint16_t *dst[3] = {&f.speed_cms, &f.heading_cd, &f.accuracy_dm};
		for (int k = 0; k < 3; k++) {
			if (!(present & (1 << k)))
				continue;
			if (!r.get_s(d) || !step(o[k], d, -1, hi[k]))
				return fail(r.why ? r.why : "field out of range");
			*dst[k] = o[k] < 0 ? kUnknown : uint16_t(o[k]);
			known |= o[k] < 0 ? 0 : uint8_t(1 << k);
		}
		out[got++] = f;
	}
	if (r.p != r.end)
		return fail("trailing bytes");
	if (known != present)
		return fail("a field marked present is never known");
	*count_out = got;
	return true;
}

} // namespace lt::segment
