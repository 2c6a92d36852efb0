// Record validation (SPEC 2.4): every reject reason, exactly at the limits.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "core/fix.hpp"
#include "test_helpers.hpp"

using namespace lt;
using lt_test::make_fix;

namespace {

constexpr int64_t kNow = 1763700000123LL;
constexpr ClockLimits kLim{30000, 600000}; // SPEC defaults: max_future 30 s, max_late 10 min

Reject v(const Fix &f) { return validate_fix(f, kNow, kLim); }

Fix good() { return make_fix(42, kNow); }

} // namespace

TEST(Validate, GoodFixPasses) { EXPECT_EQ(v(good()), Reject::None); }

TEST(Validate, Latitude) {
	Fix f = good();
	for (int32_t lat : {-900000000, -899999999, 0, 899999999, 900000000}) {
		f.lat_e7 = lat;
		EXPECT_EQ(v(f), Reject::None) << lat;
	}
	for (int32_t lat : {-900000001, 900000001, INT32_MIN, INT32_MAX}) {
		f.lat_e7 = lat;
		EXPECT_EQ(v(f), Reject::Range) << lat;
	}
}

TEST(Validate, Longitude) {
	Fix f = good();
	for (int32_t lon : {-1800000000, -1799999999, 0, 1799999999, 1800000000}) {
		f.lon_e7 = lon;
		EXPECT_EQ(v(f), Reject::None) << lon;
	}
	for (int32_t lon : {-1800000001, 1800000001, INT32_MIN, INT32_MAX}) {
		f.lon_e7 = lon;
		EXPECT_EQ(v(f), Reject::Range) << lon;
	}
}

TEST(Validate, DriverId) {
	Fix f = good();
	f.driver_id = 0;
	EXPECT_EQ(v(f), Reject::Range);
	f.driver_id = 1;
	EXPECT_EQ(v(f), Reject::None);
	f.driver_id = (uint64_t{1} << 63) - 1;
	EXPECT_EQ(v(f), Reject::None);
	f.driver_id = uint64_t{1} << 63;
	EXPECT_EQ(v(f), Reject::Range);
	f.driver_id = ~uint64_t{0};
	EXPECT_EQ(v(f), Reject::Range);
}

TEST(Validate, Heading) {
	Fix f = good();
	for (uint16_t hd : {uint16_t(0), uint16_t(18000), uint16_t(35999), uint16_t(0xFFFF)}) {
		f.heading_cd = hd;
		EXPECT_EQ(v(f), Reject::None) << hd;
	}
	for (uint16_t hd : {uint16_t(36000), uint16_t(36001), uint16_t(0xFFFE)}) {
		f.heading_cd = hd;
		EXPECT_EQ(v(f), Reject::Range) << hd;
	}
}

TEST(Validate, SpeedAndAccuracyAnyValue) {
	// SPEC 2.1 gives no range for speed/accuracy beyond uint16 (0xFFFF = unknown).
	Fix f = good();
	for (uint16_t x : {uint16_t(0), uint16_t(1), uint16_t(0xFFFE), uint16_t(0xFFFF)}) {
		f.speed_cms = x;
		f.accuracy_dm = x;
		EXPECT_EQ(v(f), Reject::None) << x;
	}
}

TEST(Validate, Status) {
	Fix f = good();
	for (uint8_t s = 0; s <= 3; s++) {
		f.status = s;
		EXPECT_EQ(v(f), Reject::None) << int(s);
	}
	for (int s : {4, 5, 0x80, 0xFF}) {
		f.status = uint8_t(s);
		EXPECT_EQ(v(f), Reject::Range) << s;
	}
}

TEST(Validate, ReservedByteIsMalformed) {
	Fix f = good();
	for (int r : {1, 0x80, 0xFF}) {
		f.reserved = uint8_t(r);
		EXPECT_EQ(v(f), Reject::Malformed) << r;
	}
	// Reserved bits set is reported even if other fields are also bad.
	f.reserved = 1;
	f.driver_id = 0;
	EXPECT_NE(v(f), Reject::None);
}

TEST(Validate, ClockWindowExactlyAtLimits) {
	Fix f = good();
	f.ts_ms = kNow + 30000;
	EXPECT_EQ(v(f), Reject::None);
	f.ts_ms = kNow + 30001;
	EXPECT_EQ(v(f), Reject::Clock);
	f.ts_ms = kNow - 600000;
	EXPECT_EQ(v(f), Reject::None);
	f.ts_ms = kNow - 600001;
	EXPECT_EQ(v(f), Reject::Clock);
	f.ts_ms = 0;
	EXPECT_EQ(v(f), Reject::Clock);
	f.ts_ms = INT64_MIN;
	EXPECT_EQ(v(f), Reject::Clock);
	f.ts_ms = INT64_MAX;
	EXPECT_EQ(v(f), Reject::Clock);
}

TEST(Validate, ClockWindowFollowsConfiguredLimits) {
	Fix f = good();
	ClockLimits lim{0, 0};
	f.ts_ms = kNow;
	EXPECT_EQ(validate_fix(f, kNow, lim), Reject::None);
	f.ts_ms = kNow + 1;
	EXPECT_EQ(validate_fix(f, kNow, lim), Reject::Clock);
	f.ts_ms = kNow - 1;
	EXPECT_EQ(validate_fix(f, kNow, lim), Reject::Clock);
	lim = ClockLimits{1000, 5000};
	f.ts_ms = kNow + 1000;
	EXPECT_EQ(validate_fix(f, kNow, lim), Reject::None);
	f.ts_ms = kNow - 5000;
	EXPECT_EQ(validate_fix(f, kNow, lim), Reject::None);
	f.ts_ms = kNow - 5001;
	EXPECT_EQ(validate_fix(f, kNow, lim), Reject::Clock);
}

TEST(Validate, RangeIsReportedBeforeClock) {
	// Both wrong: a value error is not a clock problem.
	Fix f = good();
	f.lat_e7 = 900000001;
	f.ts_ms = 0;
	EXPECT_EQ(v(f), Reject::Range);
}

TEST(StatusNames, RoundTrip) {
	for (uint8_t s : {uint8_t(kStatusOffline), uint8_t(kStatusAvailable), uint8_t(kStatusBusy)}) {
		const char *n = status_name(s);
		ASSERT_NE(n, nullptr);
		EXPECT_EQ(status_from_name(n, std::strlen(n)), s);
	}
	EXPECT_STREQ(status_name(kStatusOffline), "offline");
	EXPECT_STREQ(status_name(kStatusAvailable), "available");
	EXPECT_STREQ(status_name(kStatusBusy), "busy");
	EXPECT_EQ(status_name(kStatusNoChange), nullptr);
	EXPECT_EQ(status_name(4), nullptr);
	EXPECT_EQ(status_name(0xFF), nullptr);
}

TEST(StatusNames, RejectsNearMisses) {
	for (const char *s : {"", "Available", "AVAILABLE", "availabl", "availablee", "busy ", " busy", "none", "0"})
		EXPECT_EQ(status_from_name(s, std::strlen(s)), 0) << '"' << s << '"';
	// Length is honoured: a prefix of a longer buffer.
	const char *buf = "busyXYZ";
	EXPECT_EQ(status_from_name(buf, 4), kStatusBusy);
	EXPECT_EQ(status_from_name(buf, 5), 0);
}

TEST(RejectNames, MatchStatsMetricSuffixes) {
	EXPECT_STREQ(reject_name(Reject::None), "none");
	EXPECT_STREQ(reject_name(Reject::Malformed), "malformed");
	EXPECT_STREQ(reject_name(Reject::Auth), "auth");
	EXPECT_STREQ(reject_name(Reject::Replay), "replay");
	EXPECT_STREQ(reject_name(Reject::Range), "range");
	EXPECT_STREQ(reject_name(Reject::Clock), "clock");
}
