// GSERIALIZED v2 points as PostGIS stores geography(Point,4326).
//
// The expected bytes are built by hand from the PostGIS layout
// (liblwgeom/gserialized2.c): 4-byte varlena header, 3-byte SRID (21 bits,
// high bits first), 1 flag byte (Z=0x01, M=0x02, BBOX=0x04, GEODETIC=0x08,
// EXTENDED=0x10, VER_0=0x40), optional 8-byte extended flags, optional float
// box (geodetic: 3 dims x,y,z -> 6 floats; else 2 dims -> 4 floats), then the
// geometry: uint32 type, uint32 npoints, doubles. Machine byte order.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/gserialized.hpp"

using namespace lt::gser;

namespace {

template <typename T> void put(std::vector<uint8_t> &b, T v) {
	uint8_t tmp[sizeof(T)];
	std::memcpy(tmp, &v, sizeof v);
	b.insert(b.end(), tmp, tmp + sizeof v);
}

// A point datum built from the PostGIS layout, with the options PostGIS may use.
std::vector<uint8_t> hand_point(double lon, double lat, uint8_t flags, int box_floats, bool extended,
                                uint32_t type = 1, uint32_t npoints = 1) {
	std::vector<uint8_t> b(4, 0); // varlena header: not looked at
	b.push_back(uint8_t((4326 >> 16) & 0x1F));
	b.push_back(uint8_t((4326 >> 8) & 0xFF));
	b.push_back(uint8_t(4326 & 0xFF));
	b.push_back(flags);
	if (extended)
		put<uint64_t>(b, 0);
	for (int i = 0; i < box_floats; i++)
		put<float>(b, float(i & 1 ? lon : lat)); // box values: never read as the point
	put<uint32_t>(b, type);
	put<uint32_t>(b, npoints);
	put<double>(b, lon);
	put<double>(b, lat);
	return b;
}

} // namespace

TEST(Gserialized, EncodeLayout) {
	uint8_t d[kPointSize];
	std::memset(d, 0xEE, sizeof d);
	encode_point_body(d, 77.5946, 12.9716);
	// bytes 0..3 are the caller's (SET_VARSIZE): untouched
	for (int i = 0; i < 4; i++)
		EXPECT_EQ(d[i], 0xEE);
	// SRID 4326 = 0x0010E6 in 21 bits
	EXPECT_EQ(d[4], 0x00);
	EXPECT_EQ(d[5], 0x10);
	EXPECT_EQ(d[6], 0xE6);
	EXPECT_EQ(d[7], 0x40 | 0x08); // version 2, geodetic, no box, no Z/M
	uint32_t type, np;
	double x, y;
	std::memcpy(&type, d + 8, 4);
	std::memcpy(&np, d + 12, 4);
	std::memcpy(&x, d + 16, 8);
	std::memcpy(&y, d + 24, 8);
	EXPECT_EQ(type, 1u);
	EXPECT_EQ(np, 1u);
	EXPECT_EQ(x, 77.5946); // x is longitude
	EXPECT_EQ(y, 12.9716);
	// Identical to the hand-built form without a box.
	auto hand = hand_point(77.5946, 12.9716, 0x48, 0, false);
	ASSERT_EQ(hand.size(), kPointSize);
	EXPECT_EQ(std::memcmp(hand.data() + 4, d + 4, kPointSize - 4), 0);
}

TEST(Gserialized, RoundTrip) {
	const double pts[][2] = {{0, 0}, {77.5946, 12.9716}, {-180, -90}, {180, 90}, {151.2093, -33.8688},
	                         {-0.0, -0.0}, {1e-7, -1e-7}, {-122.4194155, 37.7749295}};
	for (auto &p : pts) {
		uint8_t d[kPointSize] = {};
		encode_point_body(d, p[0], p[1]);
		double lon = 999, lat = 999;
		ASSERT_TRUE(decode_point(d, sizeof d, lon, lat));
		EXPECT_EQ(std::memcmp(&lon, &p[0], 8), 0); // bit-exact, sign of zero included
		EXPECT_EQ(std::memcmp(&lat, &p[1], 8), 0);
	}
}

TEST(Gserialized, DecodeGeodeticBoxPoint) {
	// A geography point with a box: 6 floats (x,y,z min/max on the unit sphere).
	auto b = hand_point(-122.5, 37.75, 0x40 | 0x08 | 0x04, 6, false);
	ASSERT_EQ(b.size(), 8u + 24u + 24u);
	double lon = 0, lat = 0;
	ASSERT_TRUE(decode_point(b.data(), b.size(), lon, lat));
	EXPECT_EQ(lon, -122.5);
	EXPECT_EQ(lat, 37.75);
}

TEST(Gserialized, DecodePlanarBoxPoint) {
	// A geometry point with a box: 4 floats (xmin, xmax, ymin, ymax).
	auto b = hand_point(10.25, -20.5, 0x40 | 0x04, 4, false);
	ASSERT_EQ(b.size(), 8u + 16u + 24u);
	double lon = 0, lat = 0;
	ASSERT_TRUE(decode_point(b.data(), b.size(), lon, lat));
	EXPECT_EQ(lon, 10.25);
	EXPECT_EQ(lat, -20.5);
}

TEST(Gserialized, DecodeExtendedFlags) {
	auto b = hand_point(1.5, 2.5, 0x40 | 0x08 | 0x10, 0, true);
	double lon = 0, lat = 0;
	ASSERT_TRUE(decode_point(b.data(), b.size(), lon, lat));
	EXPECT_EQ(lon, 1.5);
	EXPECT_EQ(lat, 2.5);
	b = hand_point(3.5, 4.5, 0x40 | 0x08 | 0x10 | 0x04, 6, true);
	ASSERT_TRUE(decode_point(b.data(), b.size(), lon, lat));
	EXPECT_EQ(lon, 3.5);
	EXPECT_EQ(lat, 4.5);
}

TEST(Gserialized, DecodeRejectsZAndM) {
	for (uint8_t zm : {uint8_t(0x01), uint8_t(0x02), uint8_t(0x03)}) {
		for (bool box : {false, true}) {
			auto b = hand_point(1, 2, uint8_t(0x48 | zm | (box ? 0x04 : 0)), box ? 8 : 0, false);
			put<double>(b, 3.0); // the extra ordinate
			put<double>(b, 4.0);
			double lon, lat;
			EXPECT_FALSE(decode_point(b.data(), b.size(), lon, lat)) << int(zm) << box;
		}
	}
}

TEST(Gserialized, DecodeRejectsNonPoints) {
	double lon, lat;
	for (uint32_t type : {0u, 2u, 3u, 4u, 7u, 0xFFFFFFFFu}) {
		auto b = hand_point(1, 2, 0x48, 0, false, type, 1);
		EXPECT_FALSE(decode_point(b.data(), b.size(), lon, lat)) << type;
	}
	// An empty point, or more than one point.
	for (uint32_t np : {0u, 2u}) {
		auto b = hand_point(1, 2, 0x48, 0, false, 1, np);
		EXPECT_FALSE(decode_point(b.data(), b.size(), lon, lat)) << np;
	}
}

TEST(Gserialized, DecodeRejectsVersion1) {
	// GSERIALIZED v1 has no version bit (its flags differ): not decoded.
	auto b = hand_point(1, 2, 0x08, 0, false);
	double lon, lat;
	EXPECT_FALSE(decode_point(b.data(), b.size(), lon, lat));
}

TEST(Gserialized, DecodeRejectsShortInput) {
	for (auto b : {hand_point(1, 2, 0x48, 0, false), hand_point(1, 2, 0x4C, 6, false),
	               hand_point(1, 2, 0x5C, 6, true)}) {
		double lon, lat;
		ASSERT_TRUE(decode_point(b.data(), b.size(), lon, lat));
		for (size_t n = 0; n < b.size(); n++)
			EXPECT_FALSE(decode_point(b.data(), n, lon, lat)) << n << " of " << b.size();
	}
}
