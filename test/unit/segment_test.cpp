// The segment codec (core/segment.hpp): round trips of real-looking and
// extreme fixes, its size on a regular fleet, and the decoder refusing what
// encode() cannot have written.
#include <gtest/gtest.h>

#include <random>

#include "core/segment.hpp"

using lt::segment::Point;

namespace {

std::vector<Point> drive(size_t n, uint32_t seed, int64_t period_ms = 1000) {
	std::mt19937 r(seed);
	std::vector<Point> v;
	int64_t ts = 1796700000000;
	int32_t lat = 129716000, lon = 775946000;
	for (size_t i = 0; i < n; i++) {
		ts += period_ms + int64_t(r() % 41) - 20; // a beat with jitter
		lat += int32_t(r() % 2001) - 1000;        // up to 11 m a step
		lon += int32_t(r() % 2001) - 1000;
		uint16_t speed = uint16_t(r() % 1500), heading = uint16_t((r() % 4) * 9000), acc = uint16_t(30 + r() % 170);
		v.push_back(Point{ts, lat, lon, speed, heading, acc, ts * 1000 + int64_t(r() % 400000)});
	}
	return v;
}

std::vector<Point> round_trip(const std::vector<Point> &in) {
	std::string e = lt::segment::encode(in.data(), in.size());
	std::vector<Point> out;
	const char *why = nullptr;
	EXPECT_TRUE(lt::segment::decode(reinterpret_cast<const uint8_t *>(e.data()), e.size(), out, &why)) << why;
	return out;
}

} // namespace

TEST(Segment, RoundTripAFleetMinute) {
	for (uint32_t seed = 1; seed <= 50; seed++) {
		auto in = drive(1 + seed * 7, seed);
		EXPECT_EQ(round_trip(in), in) << "seed " << seed;
	}
}

TEST(Segment, RegularFixesTakeAboutTenBytes) {
	// A courier: a 1 s beat with 20 ms of jitter, 8 m/s along a street,
	// speed changing slowly, a turn now and then, accuracy noisy, receipt a
	// few hundred ms after the fix.
	std::mt19937 r(7);
	std::vector<Point> in;
	int64_t ts = 1796700000000;
	int32_t lat = 129716000, lon = 775946000;
	int speed = 800, heading = 9000;
	for (int i = 0; i < 60; i++) {
		ts += 1000 + int64_t(r() % 41) - 20;
		if (r() % 20 == 0)
			heading = int((r() % 4) * 9000);
		speed = std::max(0, speed + int(r() % 41) - 20);
		lat += heading == 0 ? 720 : heading == 18000 ? -720 : 0;
		lon += heading == 9000 ? 740 : heading == 27000 ? -740 : 0;
		in.push_back(Point{ts, lat, lon, uint16_t(speed), uint16_t(heading), uint16_t(30 + r() % 170),
		                   ts * 1000 + 150000 + int64_t(r() % 100000)});
	}
	std::string e = lt::segment::encode(in.data(), in.size());
	EXPECT_LE(e.size(), 60u * 12) << "bytes per fix: " << double(e.size()) / 60;
	EXPECT_EQ(round_trip(in), in);
	// Parked, on a steady beat, no optional fields: a handful of bytes each.
	std::vector<Point> parked;
	for (int i = 0; i < 60; i++)
		parked.push_back(Point{1796700000000 + i * 1000, 129716000, 775946000, 0xFFFF, 0xFFFF, 0xFFFF,
		                       (1796700000000 + i * 1000) * 1000 + 2500});
	e = lt::segment::encode(parked.data(), parked.size());
	EXPECT_LE(e.size(), 60u * 4 + 20) << e.size();
	EXPECT_EQ(round_trip(parked), parked);
}

TEST(Segment, ExtremesRoundTrip) {
	std::vector<Point> in = {
	    {-62135596800000, -900000000, -1800000000, 0, 0, 0, -62135596800000 * 1000 - 5},
	    {253402300799999, 900000000, 1800000000, 65534, 35999, 65534, 253402300799999 * 1000 + 9999999},
	    {0, 0, 0, 0xFFFF, 0xFFFF, 0xFFFF, 0},
	    {0, 0, 0, 1, 1, 1, 0}, // duplicates and ts going backwards are kept as they are
	    {-5, 1, -1, 0xFFFF, 2, 0xFFFF, 7},
	};
	EXPECT_EQ(round_trip(in), in);
	std::vector<Point> one = {in[1]};
	EXPECT_EQ(round_trip(one), one);
}

TEST(Segment, RefusesWhatEncodeCannotWrite) {
	auto in = drive(10, 3);
	std::string e = lt::segment::encode(in.data(), in.size());
	std::vector<Point> out;
	auto bad = [&](std::string s) {
		return !lt::segment::decode(reinterpret_cast<const uint8_t *>(s.data()), s.size(), out);
	};
	EXPECT_TRUE(bad(""));
	EXPECT_TRUE(bad(std::string(1, '\x02') + e.substr(1)));     // version
	EXPECT_TRUE(bad(e.substr(0, e.size() - 1)));                 // cut short
	EXPECT_TRUE(bad(e + '\0'));                                  // trailing byte
	EXPECT_TRUE(bad(std::string("\x01\x00\x00", 3)));           // no fixes
	EXPECT_TRUE(bad(std::string("\x01\xff\xff\x7f\x00", 5)));   // a count the bytes cannot hold
	EXPECT_TRUE(bad(std::string("\x01\x01\x08\x00\x00\x00\x00", 7))); // unknown field bit
	// Latitude 90.0000001: one step past the pole.
	EXPECT_TRUE(bad(std::string("\x01\x01\x00\x00", 4) + std::string("\x82\xe8\xea\xd6\x06", 5) + "\x00\x00"));
	// A field marked present that is never known.
	EXPECT_TRUE(bad(std::string("\x01\x01\x01\x00\x00\x00\x00\x01", 8)));
	// A varint padded with a zero continuation byte.
	EXPECT_TRUE(bad(std::string("\x01\x81\x00\x00\x00\x00\x00\x00", 8)));
	EXPECT_FALSE(bad(e));
	EXPECT_EQ(out, in);
}
