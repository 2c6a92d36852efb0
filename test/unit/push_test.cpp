// The push rules of SPEC 4 as the flushers apply them (core/push.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "core/geo.hpp"
#include "core/push.hpp"

namespace {

lt::Fix fix_at(double lat, double lon, int64_t ts_ms = 1764777672123, uint16_t speed_cms = lt::kUnknown16) {
	lt::Fix f{};
	f.driver_id = 7;
	f.ts_ms = ts_ms;
	f.lat_e7 = int32_t(std::llround(lat * 1e7));
	f.lon_e7 = int32_t(std::llround(lon * 1e7));
	f.speed_cms = speed_cms;
	f.heading_cd = lt::kUnknown16;
	f.accuracy_dm = lt::kUnknown16;
	return f;
}

lt::OrderWatch watch(double lat, double lon) {
	lt::OrderWatch w{};
	w.driver_id = 7;
	w.order_id = 42;
	w.target_lat = lat;
	w.target_lon = lon;
	w.target = lt::kTargetPickup;
	return w;
}

constexpr int64_t kSecond = 1000000;

TEST(Push, EtaUsesTheReportedSpeedButNeverLessThanTheFloor) {
	EXPECT_DOUBLE_EQ(lt::eta_s(1000, 1000), 100.0);                        // 10 m/s
	EXPECT_DOUBLE_EQ(lt::eta_s(900, 100), 900 / lt::kEtaMinSpeedMps);      // 1 m/s: the floor
	EXPECT_DOUBLE_EQ(lt::eta_s(900, lt::kUnknown16), 900 / lt::kEtaMinSpeedMps);
	EXPECT_DOUBLE_EQ(lt::eta_s(0, 500), 0.0);
}

TEST(Push, PositionAtMostOncePerIntervalAndOncePerBatch) {
	lt::OrderWatch w = watch(12.98, 77.60);
	lt::Fix f = fix_at(12.97, 77.59);
	int64_t t = 100 * kSecond;
	EXPECT_TRUE(lt::watch_fix(w, f, false, 1, t, kSecond, 300).position); // first ever
	EXPECT_FALSE(lt::watch_fix(w, f, false, 1, t, kSecond, 300).position); // same batch: older fix
	EXPECT_FALSE(lt::watch_fix(w, f, false, 2, t + kSecond / 2, kSecond, 300).position); // too soon
	EXPECT_TRUE(lt::watch_fix(w, f, false, 3, t + kSecond, kSecond, 300).position);
	EXPECT_EQ(w.last_position_us, t + kSecond);
	// A late fix is history only: it says nothing and does not use up the batch.
	lt::PushDecision d = lt::watch_fix(w, f, true, 4, t + 5 * kSecond, kSecond, 300);
	EXPECT_FALSE(d.position);
	EXPECT_TRUE(lt::watch_fix(w, f, false, 4, t + 5 * kSecond, kSecond, 300).position);
}

TEST(Push, NearOnlyWithinTheRadiusAndUntilSent) {
	lt::OrderWatch w = watch(12.97, 77.59);
	// 0.003 degrees of latitude is about 332 m: outside 300 m, inside 400 m.
	lt::Fix far = fix_at(12.973, 77.59), close = fix_at(12.9725, 77.59);
	lt::PushDecision d = lt::watch_fix(w, far, false, 1, kSecond, kSecond, 300);
	EXPECT_FALSE(d.near);
	EXPECT_NEAR(d.distance_m, lt::geo::geodesic_m(12.973, 77.59, 12.97, 77.59), 1e-6);
	EXPECT_NEAR(d.distance_m, 331.8, 1.0);
	d = lt::watch_fix(w, close, false, 1, kSecond, kSecond, 300);
	EXPECT_TRUE(d.near);
	EXPECT_LT(d.distance_m, 300);
	w.near_sent = true; // the flusher sets it once the event is recorded
	EXPECT_FALSE(lt::watch_fix(w, close, false, 2, 3 * kSecond, kSecond, 300).near);
	EXPECT_FALSE(lt::watch_fix(w, close, true, 3, 4 * kSecond, kSecond, 1e9).near);
}

TEST(Push, UtcTimestamps) {
	char s[32];
	lt::format_utc_ms(0, s);
	EXPECT_STREQ(s, "1970-01-01T00:00:00.000Z");
	lt::format_utc_ms(951782400000 + 86399999, s); // the last millisecond of a leap day
	EXPECT_STREQ(s, "2000-02-29T23:59:59.999Z");
	lt::format_utc_ms(1764777672123, s);
	EXPECT_STREQ(s, "2025-12-03T16:01:12.123Z");
	lt::format_utc_ms(-1, s);
	EXPECT_STREQ(s, "1969-12-31T23:59:59.999Z");
}

TEST(Push, PositionPayloadIsTheSpecShape) {
	lt::OrderWatch w = watch(12.98, 77.60);
	w.target = lt::kTargetDropoff;
	lt::Fix f = fix_at(12.9716, 77.5946, 1764777672123, 830);
	lt::PushDecision d = lt::watch_fix(w, f, false, 1, kSecond, kSecond, 300);
	std::string s = lt::format_order_message(lt::position_message(w, f, d));
	char want[512];
	// jsonb's key order and spacing, so the text equals payload::text.
	std::snprintf(want, sizeof want,
	              "{\"ts\": \"2025-12-03T16:01:12.123Z\", \"lat\": 12.9716000, \"lon\": 77.5946000, "
	              "\"type\": \"position\", \"eta_s\": %.1f, \"status\": \"picked_up\", \"target\": \"dropoff\", "
	              "\"order_id\": 42, \"driver_id\": 7, \"distance_m\": %.1f}",
	              d.distance_m / 8.3, d.distance_m);
	EXPECT_EQ(s, want);
	char buf[512];
	ASSERT_TRUE(lt::format_order_message(buf, sizeof buf, lt::position_message(w, f, d)));
	EXPECT_EQ(std::string(buf), s);
	EXPECT_FALSE(lt::format_order_message(buf, 16, lt::position_message(w, f, d)));
}

TEST(Push, StatusMessageNullsAndEventId) {
	lt::OrderMessage m;
	m.type = "status";
	m.event_id = 17;
	m.order_id = 5;
	m.status = "created";
	m.ts_ms = 0;
	EXPECT_EQ(lt::format_order_message(m),
	          "{\"ts\": \"1970-01-01T00:00:00.000Z\", \"lat\": null, \"lon\": null, \"type\": \"status\", "
	          "\"eta_s\": null, \"status\": \"created\", \"target\": null, \"event_id\": 17, \"order_id\": 5, "
	          "\"driver_id\": null, \"distance_m\": null}");
	m.has_position = true;
	m.lat = -0.0;
	m.lon = -12.5;
	m.target = "pickup";
	m.has_distance = true;
	m.distance_m = 0.04; // rounds to 0.0, never "-0.0"
	m.eta_s = -0.0;
	std::string s = lt::format_order_message(m);
	EXPECT_NE(s.find("\"lat\": 0.0000000, \"lon\": -12.5000000"), std::string::npos) << s;
	EXPECT_NE(s.find("\"eta_s\": 0.0,"), std::string::npos) << s;
	EXPECT_NE(s.find("\"distance_m\": 0.0}"), std::string::npos) << s;
}

} // namespace
