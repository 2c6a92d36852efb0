#include "json_lines.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "rj.hpp"

namespace lt::json {
namespace {

enum Field : uint8_t { kNone, kDriver, kLat, kLon, kTs, kSpeed, kHeading, kAccuracy, kStatus };

Field field_of(const char *k, size_t n) {
	auto is = [&](const char *name) { return n == std::strlen(name) && std::memcmp(k, name, n) == 0; };
	if (is("driver_id"))
		return kDriver;
	if (is("lat") || is("latitude"))
		return kLat;
	if (is("lon") || is("longitude"))
		return kLon;
	if (is("ts") || is("timestamp"))
		return kTs;
	if (is("speed"))
		return kSpeed;
	if (is("heading"))
		return kHeading;
	if (is("accuracy"))
		return kAccuracy;
	if (is("status"))
		return kStatus;
	return kNone;
}

constexpr int kMaxDepth = 32;

// Collects the top-level fields we know; anything nested is skipped.
struct Handler : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, Handler> {
	Fix &f;
	int depth = 0;
	Field field = kNone;
	bool have_driver = false, have_lat = false, have_lon = false, have_ts = false;
	Reject verdict = Reject::None; // first value-level problem seen

	explicit Handler(Fix &out) : f(out) {}

	bool top() const { return depth == 1; }
	void range() {
		if (verdict == Reject::None)
			verdict = Reject::Range;
	}
	void malformed() { verdict = Reject::Malformed; }

	// Scales a physical value to a uint16 wire unit; 0xFFFF stays "unknown".
	void set_u16(uint16_t &dst, double v, double scale, double max_units) {
		double u = std::nearbyint(v * scale);
		if (!(u >= 0 && u <= max_units))
			range();
		else
			dst = uint16_t(u);
	}

	bool number(double v, bool integral_u64, uint64_t u) {
		if (!top())
			return true;
		switch (field) {
		case kDriver:
			if (!integral_u64)
				range();
			else
				f.driver_id = u;
			have_driver = true;
			break;
		case kLat:
		case kLon: {
			double e7 = std::nearbyint(v * 1e7);
			if (!(std::fabs(e7) <= 2e9))
				range();
			else
				(field == kLat ? f.lat_e7 : f.lon_e7) = int32_t(e7);
			(field == kLat ? have_lat : have_lon) = true;
			break;
		}
		case kTs:
			if (!(std::fabs(v) < 9e15))
				range();
			else
				f.ts_ms = integral_u64 ? int64_t(u) : int64_t(std::nearbyint(v));
			have_ts = true;
			break;
		case kSpeed: set_u16(f.speed_cms, v, 100, 65534); break;
		case kHeading:
			// [359.995, 360) rounds to 36000 centidegrees: that is north again.
			if (v >= 0 && v < 360 && std::nearbyint(v * 100) == 36000)
				f.heading_cd = 0;
			else
				set_u16(f.heading_cd, v, 100, 35999);
			break;
		case kAccuracy: set_u16(f.accuracy_dm, v, 10, 65534); break;
		case kStatus: malformed(); break;
		case kNone: break;
		}
		return true;
	}

	bool Null() { return true; } // an explicit null is the same as absent
	bool Bool(bool) {
		if (top() && field != kNone)
			malformed();
		return true;
	}
	bool Int(int v) { return v >= 0 ? Uint64(uint64_t(v)) : number(v, false, 0); }
	bool Int64(int64_t v) { return v >= 0 ? Uint64(uint64_t(v)) : number(double(v), false, 0); }
	bool Uint(unsigned v) { return Uint64(v); }
	bool Uint64(uint64_t v) {
		// Keep full integer precision for ids and epoch milliseconds.
		if (top() && field == kTs && v <= uint64_t(INT64_MAX)) {
			f.ts_ms = int64_t(v);
			have_ts = true;
			return true;
		}
		return number(double(v), true, v);
	}
	bool Double(double v) { return number(v, false, 0); }

	bool String(const char *s, rapidjson::SizeType n, bool) {
		if (!top())
			return true;
		switch (field) {
		case kStatus:
			f.status = status_from_name(s, n);
			if (f.status == 0)
				range();
			break;
		case kTs:
			if (!parse_iso8601_ms(s, n, f.ts_ms))
				malformed();
			have_ts = true;
			break;
		case kDriver: {
			// Some pipelines quote 64-bit ids; accept plain decimal digits.
			uint64_t v = 0;
			bool ok = n > 0 && n <= 19;
			for (size_t i = 0; ok && i < n; i++) {
				ok = s[i] >= '0' && s[i] <= '9';
				v = v * 10 + uint64_t(s[i] - '0');
			}
			if (!ok)
				malformed();
			else
				f.driver_id = v;
			have_driver = true;
			break;
		}
		case kNone: break;
		default: malformed(); break;
		}
		return true;
	}

	bool StartObject() {
		if (top() && field != kNone)
			malformed(); // an object where a known field's value belongs
		return ++depth <= kMaxDepth;
	}
	bool Key(const char *s, rapidjson::SizeType n, bool) {
		if (top())
			field = field_of(s, n);
		return true;
	}
	bool EndObject(rapidjson::SizeType) {
		--depth;
		return true;
	}
	bool StartArray() {
		if (depth == 0)
			return false; // the line itself must be an object
		if (top() && field != kNone)
			malformed();
		return ++depth <= kMaxDepth;
	}
	bool EndArray(rapidjson::SizeType) {
		--depth;
		return true;
	}
	bool Default() { return depth > 0; } // scalars at the root are not objects
};

bool digits(const char *s, size_t n, size_t &pos, int count, int &out) {
	if (pos + size_t(count) > n)
		return false;
	out = 0;
	for (int i = 0; i < count; i++) {
		char c = s[pos + size_t(i)];
		if (c < '0' || c > '9')
			return false;
		out = out * 10 + (c - '0');
	}
	pos += size_t(count);
	return true;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
int64_t days_from_civil(int y, int m, int d) {
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const int64_t yoe = y - era * 400;
	const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

} // namespace

bool parse_iso8601_ms(const char *s, size_t n, int64_t &out_ms) {
	size_t p = 0;
	int Y, M, D, h, m, sec = 0;
	if (!digits(s, n, p, 4, Y) || p >= n || s[p++] != '-' || !digits(s, n, p, 2, M) || p >= n || s[p++] != '-' ||
	    !digits(s, n, p, 2, D))
		return false;
	if (p >= n || (s[p] != 'T' && s[p] != 't' && s[p] != ' '))
		return false;
	p++;
	if (!digits(s, n, p, 2, h) || p >= n || s[p++] != ':' || !digits(s, n, p, 2, m))
		return false;
	int64_t frac_ms = 0;
	if (p < n && s[p] == ':') {
		p++;
		if (!digits(s, n, p, 2, sec))
			return false;
		if (p < n && (s[p] == '.' || s[p] == ',')) {
			p++;
			size_t start = p;
			int64_t scale = 100;
			while (p < n && s[p] >= '0' && s[p] <= '9') {
				frac_ms += (s[p] - '0') * scale;
				scale /= 10;
				p++;
			}
			if (p == start)
				return false;
		}
	}
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
	if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || (M == 2 && D == 29 && !leap) || h > 23 || m > 59 ||
	    sec > 60)
		return false;
	int64_t offset_min = 0;
	if (p < n && (s[p] == 'Z' || s[p] == 'z')) {
		p++;
	} else if (p < n && (s[p] == '+' || s[p] == '-')) {
		int sign = s[p++] == '-' ? -1 : 1, oh, om = 0;
		if (!digits(s, n, p, 2, oh))
			return false;
		if (p < n && s[p] == ':' && ++p == n)
			return false; // "+05:" has no minutes
		if (p < n && !digits(s, n, p, 2, om))
			return false;
		if (oh > 23 || om > 59)
			return false;
		offset_min = sign * (oh * 60 + om);
	}
	if (p != n)
		return false;
	int64_t secs = days_from_civil(Y, M, D) * 86400 + h * 3600 + m * 60 + sec - offset_min * 60;
	out_ms = secs * 1000 + frac_ms;
	return true;
}

Reject parse_line(const char *s, size_t n, int64_t now_ms, Fix &out, uint64_t default_driver) {
	out = Fix{};
	out.speed_cms = out.heading_cd = out.accuracy_dm = kUnknown16;
	if (std::memchr(s, 0, n) != nullptr)
		return Reject::Malformed; // the parser would stop at it and ignore the rest
	Handler h(out);
	// Parse from a fixed buffer: the reader's stack stays off the heap for
	// ordinary lines, and nothing outlives this call.
	char stack_buf[2048];
	rapidjson::MemoryPoolAllocator<> pool(stack_buf, sizeof stack_buf);
	rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>, rapidjson::MemoryPoolAllocator<>> reader(&pool,
	                                                                                                      256);
	rapidjson::MemoryStream ms(s, n);
	rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> is(ms);
	// Default precision: its error is far below the 1e-7 degree we keep (ts
	// keeps full integer precision through Uint64), and RapidJSON 1.1.0's
	// full-precision path reads out of bounds on some long mantissas with
	// tiny exponents (upstream #1251).
	if (reader.Parse<rapidjson::kParseDefaultFlags>(is, h).IsError())
		return Reject::Malformed;
	if (!h.have_driver && default_driver != 0) {
		out.driver_id = default_driver;
		h.have_driver = true;
	}
	if (h.verdict == Reject::Malformed || !h.have_driver || !h.have_lat || !h.have_lon)
		return Reject::Malformed;
	if (h.verdict != Reject::None)
		return h.verdict;
	if (!h.have_ts)
		out.ts_ms = now_ms;
	return Reject::None;
}

} // namespace lt::json
