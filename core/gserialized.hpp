// PostGIS's on-disk form (GSERIALIZED v2) of a geography(Point,4326).
//
// The flusher writes history with table_multi_insert, so it builds the datum
// bytes itself instead of calling PostGIS once per row. A point carries no
// bounding box in v2, which keeps this to 32 fixed bytes:
//   varlena header (4) | srid (3) | flags (1) | type=1 (4) | npoints=1 (4) | x (8) | y (8)
// Integers and doubles are in machine byte order, as PostGIS writes them.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace lt::gser {

constexpr size_t kPointSize = 32;
constexpr uint32_t kSrid = 4326;
constexpr uint8_t kFlagGeodetic = 0x08;
constexpr uint8_t kFlagVersion2 = 0x40;
constexpr uint8_t kFlagBBox = 0x04;
constexpr uint8_t kFlagExtended = 0x10;
constexpr uint32_t kPointType = 1;
constexpr uint32_t kLineType = 2;

// A geometry(LineString,4326) of n points (trail()): header, the float box
// PostGIS keeps for lines, type, count, then x/y pairs.
//   varlena (4) | srid (3) | flags (1) | xmin xmax ymin ymax (4 floats) | type=2 | npoints | 16 n
inline size_t line_size(size_t n) { return 8 + 16 + 8 + 16 * n; }

// The box's floats round outwards, as PostGIS rounds them, so the box holds
// the doubles it stands for.
inline float float_down(double d) {
	float f = float(d);
	return double(f) > d ? std::nextafter(f, -INFINITY) : f;
}
inline float float_up(double d) {
	float f = float(d);
	return double(f) < d ? std::nextafter(f, INFINITY) : f;
}

// Writes bytes 4.. of a line through xy[0..2n) (lon, lat pairs); the
// caller sets the varlena header (SET_VARSIZE to line_size(n)).
inline void encode_line_body(uint8_t *d, const double *xy, size_t n) {
	d[4] = uint8_t((kSrid >> 16) & 0x1F);
	d[5] = uint8_t((kSrid >> 8) & 0xFF);
	d[6] = uint8_t(kSrid & 0xFF);
	d[7] = kFlagVersion2 | kFlagBBox;
	double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
	for (size_t i = 0; i < n; i++) {
		xmin = std::fmin(xmin, xy[2 * i]);
		xmax = std::fmax(xmax, xy[2 * i]);
		ymin = std::fmin(ymin, xy[2 * i + 1]);
		ymax = std::fmax(ymax, xy[2 * i + 1]);
	}
	const float box[4] = {float_down(xmin), float_up(xmax), float_down(ymin), float_up(ymax)};
	std::memcpy(d + 8, box, 16);
	uint32_t type = kLineType, npoints = uint32_t(n);
	std::memcpy(d + 24, &type, 4);
	std::memcpy(d + 28, &npoints, 4);
	std::memcpy(d + 32, xy, 16 * n);
}

// Writes bytes 4..31; the caller sets the 4-byte varlena header (SET_VARSIZE).
inline void encode_point_body(uint8_t *d, double lon, double lat) {
	d[4] = uint8_t((kSrid >> 16) & 0x1F);
	d[5] = uint8_t((kSrid >> 8) & 0xFF);
	d[6] = uint8_t(kSrid & 0xFF);
	d[7] = kFlagVersion2 | kFlagGeodetic;
	uint32_t type = kPointType, npoints = 1;
	std::memcpy(d + 8, &type, 4);
	std::memcpy(d + 12, &npoints, 4);
	std::memcpy(d + 16, &lon, 8);
	std::memcpy(d + 24, &lat, 8);
}

// Reads a point from a datum body of `len` bytes including the 4-byte header.
// False for anything but a 2D point (with or without a box).
inline bool decode_point(const uint8_t *d, size_t len, double &lon, double &lat) {
	if (len < 16)
		return false;
	uint8_t flags = d[7];
	if ((flags & kFlagVersion2) == 0 || (flags & 0x03) != 0) // v1, or Z/M
		return false;
	size_t off = 8 + ((flags & kFlagExtended) ? 8 : 0) + ((flags & kFlagBBox) ? ((flags & kFlagGeodetic) ? 24 : 16) : 0);
	if (len < off + 24)
		return false;
	uint32_t type, npoints;
	std::memcpy(&type, d + off, 4);
	std::memcpy(&npoints, d + off + 4, 4);
	if (type != kPointType || npoints != 1)
		return false;
	std::memcpy(&lon, d + off + 8, 8);
	std::memcpy(&lat, d + off + 16, 8);
	return true;
}

} // namespace lt::gser
