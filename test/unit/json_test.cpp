// JSON lines (SPEC 2.2): fields, aliases, timestamps, units, and bad input.
#include <gtest/gtest.h>

#include <cstdint>
#include <ctime>
#include <random>
#include <string>

#include "core/fix.hpp"
#include "core/json_lines.hpp"
#include "core/message.hpp"
#include "test_helpers.hpp"

using namespace lt;

namespace {

constexpr int64_t kNow = 1763700000123LL; // 2025-11-21T04:40:00.123Z
const Policy kPolicy{AuthMode::LoopbackTrust, {30000, 600000}};

Reject parse(const std::string &s, Fix &f, int64_t now = kNow) { return json::parse_line(s.data(), s.size(), now, f); }
Reject parse(const std::string &s) {
	Fix f;
	return parse(s, f);
}
// The whole path a line takes: parse + validation (loopback peer).
Reject judge(const std::string &s, Fix &f, int64_t now = kNow) {
	return judge_json_line(s.data(), s.size(), true, kPolicy, now, f);
}
Reject judge(const std::string &s) {
	Fix f;
	return judge(s, f);
}

bool iso(const std::string &s, int64_t &ms) { return json::parse_iso8601_ms(s.data(), s.size(), ms); }

// A line with the required fields plus `extra` (",..." or "").
std::string line(const std::string &extra) { return R"({"driver_id":7,"lat":1.5,"lon":-2.25)" + extra + "}"; }

} // namespace

TEST(JsonLine, SpecExample) {
	Fix f;
	const std::string s = R"({"driver_id":42,"lat":12.9716,"lon":77.5946,"ts":1763700000123,"speed":8.3,"heading":90,"accuracy":5,"status":"available"})";
	ASSERT_EQ(parse(s, f), Reject::None);
	EXPECT_EQ(f.driver_id, 42u);
	EXPECT_EQ(f.lat_e7, 129716000);
	EXPECT_EQ(f.lon_e7, 775946000);
	EXPECT_EQ(f.ts_ms, 1763700000123LL);
	EXPECT_EQ(f.speed_cms, 830);    // 8.3 m/s
	EXPECT_EQ(f.heading_cd, 9000);  // 90 degrees
	EXPECT_EQ(f.accuracy_dm, 50);   // 5 m
	EXPECT_EQ(f.status, kStatusAvailable);
	EXPECT_EQ(f.reserved, 0);
	EXPECT_EQ(judge(s), Reject::None);
}

TEST(JsonLine, RequiredOnlyDefaults) {
	Fix f;
	ASSERT_EQ(parse(line(""), f, kNow), Reject::None);
	EXPECT_EQ(f.driver_id, 7u);
	EXPECT_EQ(f.lat_e7, 15000000);
	EXPECT_EQ(f.lon_e7, -22500000);
	EXPECT_EQ(f.ts_ms, kNow); // missing ts = time of receipt
	EXPECT_EQ(f.speed_cms, 0xFFFF);
	EXPECT_EQ(f.heading_cd, 0xFFFF);
	EXPECT_EQ(f.accuracy_dm, 0xFFFF);
	EXPECT_EQ(f.status, kStatusNoChange);
	EXPECT_EQ(f.reserved, 0);
	// A different receipt time is used as given.
	ASSERT_EQ(parse(line(""), f, 5), Reject::None);
	EXPECT_EQ(f.ts_ms, 5);
}

TEST(JsonLine, OutputIsResetBetweenCalls) {
	Fix f;
	ASSERT_EQ(parse(line(R"(,"speed":1,"heading":2,"accuracy":3,"status":"busy","ts":1000)"), f), Reject::None);
	ASSERT_EQ(parse(line(""), f), Reject::None);
	EXPECT_EQ(f.speed_cms, 0xFFFF);
	EXPECT_EQ(f.heading_cd, 0xFFFF);
	EXPECT_EQ(f.accuracy_dm, 0xFFFF);
	EXPECT_EQ(f.status, 0);
	EXPECT_EQ(f.ts_ms, kNow);
}

TEST(JsonLine, Aliases) {
	Fix f;
	ASSERT_EQ(parse(R"({"driver_id":9,"latitude":-33.8688,"longitude":151.2093,"timestamp":1763700000000})", f),
	          Reject::None);
	EXPECT_EQ(f.driver_id, 9u);
	EXPECT_EQ(f.lat_e7, -338688000);
	EXPECT_EQ(f.lon_e7, 1512093000);
	EXPECT_EQ(f.ts_ms, 1763700000000LL);
	// Mixed: alias for one, short name for the other.
	ASSERT_EQ(parse(R"({"lat":1,"longitude":2,"driver_id":3})", f), Reject::None);
	EXPECT_EQ(f.lat_e7, 10000000);
	EXPECT_EQ(f.lon_e7, 20000000);
}

TEST(JsonLine, FieldOrderDoesNotMatter) {
	Fix f;
	ASSERT_EQ(parse(R"({"status":"busy","ts":1763700000001,"lon":77.5,"lat":12.5,"driver_id":5})", f), Reject::None);
	EXPECT_EQ(f.driver_id, 5u);
	EXPECT_EQ(f.lat_e7, 125000000);
	EXPECT_EQ(f.lon_e7, 775000000);
	EXPECT_EQ(f.ts_ms, 1763700000001LL);
	EXPECT_EQ(f.status, kStatusBusy);
}

TEST(JsonLine, TimestampEpochMs) {
	Fix f;
	ASSERT_EQ(parse(line(R"(,"ts":1763700000123)"), f), Reject::None);
	EXPECT_EQ(f.ts_ms, 1763700000123LL);
	// Full integer precision is kept, well beyond double's 2^53.
	ASSERT_EQ(parse(line(R"(,"ts":9007199254740993)"), f), Reject::None);
	EXPECT_EQ(f.ts_ms, 9007199254740993LL);
	ASSERT_EQ(parse(line(R"(,"ts":0)"), f), Reject::None);
	EXPECT_EQ(f.ts_ms, 0);
	ASSERT_EQ(parse(line(R"(,"ts":-1000)"), f), Reject::None);
	EXPECT_EQ(f.ts_ms, -1000);
	// A fractional millisecond value is rounded to a whole millisecond.
	ASSERT_EQ(parse(line(R"(,"ts":1763700000123.25)"), f), Reject::None);
	EXPECT_EQ(f.ts_ms, 1763700000123LL);
	// ts null is the same as absent.
	ASSERT_EQ(parse(line(R"(,"ts":null)"), f), Reject::None);
	EXPECT_EQ(f.ts_ms, kNow);
	// Far outside anything representable: rejected, never wrapped.
	EXPECT_NE(parse(line(R"(,"ts":1e300)")), Reject::None);
	EXPECT_NE(parse(line(R"(,"ts":-1e300)")), Reject::None);
	EXPECT_NE(parse(line(R"(,"ts":18446744073709551615)")), Reject::None);
}

TEST(JsonLine, TimestampIsoStrings) {
	struct Case {
		const char *ts;
		int64_t ms;
	} cases[] = {
	    {"2025-11-21T04:40:00.123Z", 1763700000123LL},
	    {"2025-11-21T10:10:00.123+05:30", 1763700000123LL},
	    {"2025-11-21T10:10:00.123+0530", 1763700000123LL},
	    {"2025-11-20T20:40:00.123-0800", 1763700000123LL},
	    {"2025-11-20T20:40:00.123-08:00", 1763700000123LL},
	    {"2025-11-20T20:40:00.123-08", 1763700000123LL},
	    {"2025-11-21T04:40:00.123", 1763700000123LL},    // no zone = UTC
	    {"2025-11-21 04:40:00.123Z", 1763700000123LL},   // space separator
	    {"2025-11-21 04:40:00.123", 1763700000123LL},
	    {"2025-11-21T04:40Z", 1763700000000LL},          // no seconds
	    {"2025-11-21T04:40", 1763700000000LL},
	    {"2025-11-21T10:10+05:30", 1763700000000LL},
	    {"2025-11-21T04:40:00Z", 1763700000000LL},
	    {"2025-11-21T04:40:00.1Z", 1763700000100LL},     // fractional digits of any length
	    {"2025-11-21T04:40:00.12Z", 1763700000120LL},
	    {"2025-11-21T04:40:00.123456Z", 1763700000123LL},
	    {"2025-11-21T04:40:00.123456789+00:00", 1763700000123LL},
	};
	for (const Case &c : cases) {
		int64_t ms = -7;
		EXPECT_TRUE(iso(c.ts, ms)) << c.ts;
		EXPECT_EQ(ms, c.ms) << c.ts;
		Fix f;
		std::string s = line(std::string(R"(,"ts":")") + c.ts + "\"");
		ASSERT_EQ(parse(s, f), Reject::None) << s;
		EXPECT_EQ(f.ts_ms, c.ms) << s;
		// With the timestamp alias too.
		s = line(std::string(R"(,"timestamp":")") + c.ts + "\"");
		ASSERT_EQ(parse(s, f), Reject::None) << s;
		EXPECT_EQ(f.ts_ms, c.ms) << s;
	}
}

TEST(Iso8601, KnownEpochValues) {
	// Values computed independently (Python datetime).
	struct Case {
		const char *ts;
		int64_t ms;
	} cases[] = {
	    {"1970-01-01T00:00:00Z", 0},
	    {"1970-01-01T00:00:00.001Z", 1},
	    {"1969-12-31T23:59:59.500Z", -500},
	    {"2000-01-01T00:00:00Z", 946684800000LL},
	    {"2024-02-29T23:59:59.999Z", 1709251199999LL},
	    {"1970-01-01T01:00:00+01:00", 0},
	    {"1969-12-31T19:00:00-05:00", 0},
	};
	for (const Case &c : cases) {
		int64_t ms = -7;
		EXPECT_TRUE(iso(c.ts, ms)) << c.ts;
		EXPECT_EQ(ms, c.ms) << c.ts;
	}
}

TEST(Iso8601, RoundTripsFormattedTimes) {
	std::mt19937_64 rng(12345);
	std::uniform_int_distribution<int64_t> dist(-2208988800000LL /* 1900 */, 4102444800000LL /* 2100 */);
	for (int i = 0; i < 20000; i++) {
		int64_t ms = dist(rng);
		int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
		int frac = int(ms - secs * 1000);
		time_t t = time_t(secs);
		tm g{};
		ASSERT_NE(gmtime_r(&t, &g), nullptr);
		char buf[64];
		std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", g.tm_year + 1900, g.tm_mon + 1,
		              g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec, frac);
		int64_t back = 0;
		ASSERT_TRUE(iso(buf, back)) << buf;
		ASSERT_EQ(back, ms) << buf;
	}
}

TEST(Iso8601, RejectsMalformed) {
	for (const char *s : {
	         "", "2025", "2025-11-21", "2025-11-21T", "2025-11-21T04", "2025-11-21T04:4", "2025/11/21T04:40Z",
	         "2025-11-21X04:40Z", "25-11-21T04:40Z", "2025-1-21T04:40Z", "2025-11-21T4:40Z",
	         "2025-13-01T00:00Z", "2025-00-01T00:00Z", "2025-11-00T00:00Z", "2025-11-32T00:00Z",
	         "2025-04-31T00:00Z", "2025-11-21T24:00Z", "2025-11-21T23:60Z", "2025-11-21T23:59:61Z",
	         "2025-11-21T04:40:00.Z", "2025-11-21T04:40:00Z ", " 2025-11-21T04:40:00Z", "2025-11-21T04:40:00ZZ",
	         "2025-11-21T04:40:00+5", "2025-11-21T04:40:00+24:00", "2025-11-21T04:40:00+05:60",
	         "2025-11-21T04:40:00 UTC", "2025-11-21T04:40:00.123Zjunk", "now", "1763700000123",
	     }) {
		int64_t ms = 0;
		EXPECT_FALSE(iso(s, ms)) << '"' << s << '"';
	}
}

TEST(Iso8601, HonoursLength) {
	// The string is not NUL-terminated: only n bytes are looked at.
	const char buf[] = "2025-11-21T04:40:00Z9999";
	int64_t ms = 0;
	ASSERT_TRUE(json::parse_iso8601_ms(buf, 20, ms));
	EXPECT_EQ(ms, 1763700000000LL);
	ms = 0;
	ASSERT_TRUE(json::parse_iso8601_ms(buf, 19, ms)); // "...04:40:00": no zone = UTC
	EXPECT_EQ(ms, 1763700000000LL);
	EXPECT_FALSE(json::parse_iso8601_ms(buf, 21, ms)); // "...Z9"
	EXPECT_FALSE(json::parse_iso8601_ms(buf, 18, ms)); // "...04:40:0"
}

// February 29 exists only in leap years (2023-02-29 used to become March 1).
TEST(Iso8601, RejectsFeb29InCommonYears) {
	int64_t ms = 0;
	EXPECT_FALSE(iso("2023-02-29T00:00:00Z", ms));
	EXPECT_FALSE(iso("1900-02-29T00:00:00Z", ms));
	EXPECT_TRUE(iso("2000-02-29T00:00:00Z", ms));
	EXPECT_TRUE(iso("2024-02-29T00:00:00Z", ms));
}

TEST(JsonLine, BadIsoTimestampIsMalformed) {
	for (const char *ts : {"yesterday", "2025-13-01T00:00Z", "2025-11-21", ""}) {
		std::string s = line(std::string(R"(,"ts":")") + ts + "\"");
		EXPECT_EQ(parse(s), Reject::Malformed) << s;
	}
}

TEST(JsonLine, UnitConversions) {
	Fix f;
	ASSERT_EQ(parse(line(R"(,"speed":0,"heading":0,"accuracy":0)"), f), Reject::None);
	EXPECT_EQ(f.speed_cms, 0);
	EXPECT_EQ(f.heading_cd, 0);
	EXPECT_EQ(f.accuracy_dm, 0);
	ASSERT_EQ(parse(line(R"(,"speed":12.34,"heading":359.99,"accuracy":0.5)"), f), Reject::None);
	EXPECT_EQ(f.speed_cms, 1234);
	EXPECT_EQ(f.heading_cd, 35999);
	EXPECT_EQ(f.accuracy_dm, 5);
	// Just below 360 rounds to 36000 centidegrees, which is north: 0.
	ASSERT_EQ(parse(line(R"(,"heading":359.996)"), f), Reject::None);
	EXPECT_EQ(f.heading_cd, 0);
	ASSERT_EQ(parse(line(R"(,"heading":359.99999)"), f), Reject::None);
	EXPECT_EQ(f.heading_cd, 0);
	ASSERT_EQ(parse(line(R"(,"heading":359.994)"), f), Reject::None);
	EXPECT_EQ(f.heading_cd, 35999);
	ASSERT_EQ(parse(line(R"(,"speed":655.34,"accuracy":6553.4)"), f), Reject::None);
	EXPECT_EQ(f.speed_cms, 65534);
	EXPECT_EQ(f.accuracy_dm, 65534);
	ASSERT_EQ(parse(line(R"(,"speed":1,"heading":180,"accuracy":1)"), f), Reject::None);
	EXPECT_EQ(f.speed_cms, 100);
	EXPECT_EQ(f.heading_cd, 18000);
	EXPECT_EQ(f.accuracy_dm, 10);
}

TEST(JsonLine, OptionalNullsAreUnknown) {
	Fix f;
	ASSERT_EQ(parse(line(R"(,"speed":null,"heading":null,"accuracy":null,"status":null,"ts":null)"), f), Reject::None);
	EXPECT_EQ(f.speed_cms, 0xFFFF);
	EXPECT_EQ(f.heading_cd, 0xFFFF);
	EXPECT_EQ(f.accuracy_dm, 0xFFFF);
	EXPECT_EQ(f.status, kStatusNoChange);
	EXPECT_EQ(f.ts_ms, kNow);
}

TEST(JsonLine, OptionalValuesOutOfRange) {
	// Not representable on the wire: rejected as a range error, not silently clamped.
	for (const char *extra : {R"(,"speed":-1)", R"(,"speed":655.35)", R"(,"speed":1e9)", R"(,"heading":360)",
	                          R"(,"heading":-0.5)", R"(,"heading":1000)", R"(,"accuracy":-3)",
	                          R"(,"accuracy":6553.5)", R"(,"accuracy":1e300)"}) {
		EXPECT_EQ(parse(line(extra)), Reject::Range) << extra;
		EXPECT_EQ(judge(line(extra)), Reject::Range) << extra;
	}
}

TEST(JsonLine, StatusStrings) {
	Fix f;
	ASSERT_EQ(parse(line(R"(,"status":"offline")"), f), Reject::None);
	EXPECT_EQ(f.status, kStatusOffline);
	ASSERT_EQ(parse(line(R"(,"status":"available")"), f), Reject::None);
	EXPECT_EQ(f.status, kStatusAvailable);
	ASSERT_EQ(parse(line(R"(,"status":"busy")"), f), Reject::None);
	EXPECT_EQ(f.status, kStatusBusy);
	for (const char *bad : {R"(,"status":"BUSY")", R"(,"status":"")", R"(,"status":"idle")",
	                        R"(,"status":"busy ")"}) {
		Reject r = judge(line(bad));
		EXPECT_TRUE(r == Reject::Range || r == Reject::Malformed) << bad << " -> " << reject_name(r);
	}
	// Status as a number is the wrong type.
	EXPECT_EQ(parse(line(R"(,"status":2)")), Reject::Malformed);
}

TEST(JsonLine, UnknownFieldsOfEveryTypeIgnored) {
	const char *values[] = {
	    "1", "-1", "1.5e3", "18446744073709551615", "-9223372036854775808", "\"x\"", "\"\"", "true", "false",
	    "null", "{}", "[]", R"({"lat":95,"lon":500,"driver_id":0,"ts":"bad","status":"nope"})",
	    R"([{"lat":1000},{"driver_id":"x"},[["ts"]]])", R"({"a":{"b":{"c":[1,2,{"lat":-999}]}}})",
	    R"(["lat","lon",1,null,true])",
	};
	for (const char *v : values) {
		for (int where = 0; where < 2; where++) {
			std::string s = where == 0 ? std::string(R"({"extra":)") + v + R"(,"driver_id":7,"lat":1.5,"lon":-2.25})"
			                           : line(std::string(R"(,"extra":)") + v);
			Fix f;
			ASSERT_EQ(parse(s, f), Reject::None) << s;
			EXPECT_EQ(f.driver_id, 7u) << s;
			EXPECT_EQ(f.lat_e7, 15000000) << s;
			EXPECT_EQ(f.lon_e7, -22500000) << s;
			EXPECT_EQ(f.ts_ms, kNow) << s;
			EXPECT_EQ(f.status, 0) << s;
			EXPECT_EQ(f.speed_cms, 0xFFFF) << s;
		}
	}
	// A nested object between the known fields does not confuse what follows.
	Fix f;
	ASSERT_EQ(parse(R"({"driver_id":7,"meta":{"lat":80,"lon":80},"lat":1.5,"x":[{"lon":9}],"lon":-2.25})", f),
	          Reject::None);
	EXPECT_EQ(f.lat_e7, 15000000);
	EXPECT_EQ(f.lon_e7, -22500000);
	// Keys that merely look like ours are not ours.
	EXPECT_EQ(parse(R"({"driver_id":7,"Lat":1,"lon":2})"), Reject::Malformed);
	EXPECT_EQ(parse(R"({"driver_id":7,"lat ":1,"lon":2})"), Reject::Malformed);
	EXPECT_EQ(parse(R"({"driverid":7,"lat":1,"lon":2})"), Reject::Malformed);
}

TEST(JsonLine, NestedRequiredFieldsDoNotCount) {
	// lat/lon/driver_id only count at the top level.
	EXPECT_EQ(parse(R"({"driver_id":7,"pos":{"lat":1,"lon":2}})"), Reject::Malformed);
	EXPECT_EQ(parse(R"({"d":{"driver_id":7},"lat":1,"lon":2})"), Reject::Malformed);
}

TEST(JsonLine, DriverIdForms) {
	Fix f;
	ASSERT_EQ(parse(R"({"driver_id":"42","lat":1,"lon":2})", f), Reject::None);
	EXPECT_EQ(f.driver_id, 42u);
	ASSERT_EQ(parse(R"({"driver_id":"9223372036854775807","lat":1,"lon":2})", f), Reject::None);
	EXPECT_EQ(f.driver_id, 9223372036854775807ULL);
	ASSERT_EQ(parse(R"({"driver_id":9223372036854775807,"lat":1,"lon":2})", f), Reject::None);
	EXPECT_EQ(f.driver_id, 9223372036854775807ULL);
	EXPECT_EQ(judge(R"({"driver_id":9223372036854775807,"lat":1,"lon":2})"), Reject::None);
	// 2^63 and above: out of range (SPEC 2.4), however it is written.
	EXPECT_EQ(judge(R"({"driver_id":9223372036854775808,"lat":1,"lon":2})"), Reject::Range);
	EXPECT_EQ(judge(R"({"driver_id":"9223372036854775808","lat":1,"lon":2})"), Reject::Range);
	EXPECT_EQ(judge(R"({"driver_id":18446744073709551615,"lat":1,"lon":2})"), Reject::Range);
	EXPECT_EQ(judge(R"({"driver_id":0,"lat":1,"lon":2})"), Reject::Range);
	EXPECT_EQ(judge(R"({"driver_id":"0","lat":1,"lon":2})"), Reject::Range);
	EXPECT_NE(judge(R"({"driver_id":-1,"lat":1,"lon":2})"), Reject::None);
	EXPECT_NE(judge(R"({"driver_id":1.5,"lat":1,"lon":2})"), Reject::None);
	EXPECT_NE(judge(R"({"driver_id":1e30,"lat":1,"lon":2})"), Reject::None);
	EXPECT_NE(judge(R"({"driver_id":"99999999999999999999","lat":1,"lon":2})"), Reject::None);
	// Quoted ids must be plain decimal digits.
	for (const char *id : {"", "-1", "+1", " 1", "1 ", "0x10", "1.0", "abc", "4 2"}) {
		std::string s = std::string(R"({"driver_id":")") + id + R"(","lat":1,"lon":2})";
		EXPECT_EQ(parse(s), Reject::Malformed) << s;
	}
}

TEST(JsonLine, InvalidJsonIsMalformed) {
	for (const char *s : {
	         "", " ", "{", "}", "{\"driver_id\":42", R"({"driver_id":42,"lat":1,"lon":2,})", "{'driver_id':42}",
	         "not json", R"({"driver_id":42 "lat":1,"lon":2})", R"({"driver_id":42,"lat":01,"lon":2})",
	         R"({"driver_id":42,"lat":NaN,"lon":2})", R"({"driver_id":42,"lat":Infinity,"lon":2})",
	         R"({"driver_id":42,"lat":1,"lon":2,"x":"unterminated})", R"({driver_id:42,"lat":1,"lon":2})",
	         "\x01\x02\x03", "\xff\xfe{}",
	     }) {
		EXPECT_EQ(parse(s), Reject::Malformed) << '"' << s << '"';
	}
}

TEST(JsonLine, NonObjectRootsAreMalformed) {
	for (const char *s : {"42", "-1.5", "\"driver_id\"", "null", "true", "false", "[]",
	                      R"([{"driver_id":42,"lat":1,"lon":2}])", R"([1,2,3])"}) {
		EXPECT_EQ(parse(s), Reject::Malformed) << s;
	}
}

TEST(JsonLine, MissingRequiredFieldsAreMalformed) {
	for (const char *s : {
	         "{}", R"({"lat":1,"lon":2})", R"({"driver_id":1,"lon":2})", R"({"driver_id":1,"lat":2})",
	         R"({"driver_id":null,"lat":1,"lon":2})", R"({"driver_id":1,"lat":null,"lon":2})",
	         R"({"driver_id":1,"lat":1,"lon":null})", R"({"driver_id":1,"latitude":null,"lon":2})",
	     }) {
		EXPECT_EQ(parse(s), Reject::Malformed) << s;
	}
}

TEST(JsonLine, WrongTypesAreMalformed) {
	for (const char *s : {
	         R"({"driver_id":true,"lat":1,"lon":2})", R"({"driver_id":[1],"lat":1,"lon":2})",
	         R"({"driver_id":1,"lat":"1.5","lon":2})", R"({"driver_id":1,"lat":true,"lon":2})",
	         R"({"driver_id":1,"lat":[1],"lon":2})", R"({"driver_id":1,"lat":{},"lon":2})",
	         R"({"driver_id":1,"lat":1,"lon":false})", R"({"driver_id":1,"lat":1,"lon":"2"})",
	         R"({"driver_id":1,"lat":1,"lon":2,"ts":true})", R"({"driver_id":1,"lat":1,"lon":2,"ts":[1]})",
	         R"({"driver_id":1,"lat":1,"lon":2,"speed":"fast"})", R"({"driver_id":1,"lat":1,"lon":2,"speed":true})",
	         R"({"driver_id":1,"lat":1,"lon":2,"heading":"N"})", R"({"driver_id":1,"lat":1,"lon":2,"heading":[90]})",
	         R"({"driver_id":1,"lat":1,"lon":2,"accuracy":"5m"})", R"({"driver_id":1,"lat":1,"lon":2,"status":1})",
	         R"({"driver_id":1,"lat":1,"lon":2,"status":true})", R"({"driver_id":1,"lat":1,"lon":2,"status":["busy"]})",
	     }) {
		EXPECT_EQ(parse(s), Reject::Malformed) << s;
		EXPECT_EQ(judge(s), Reject::Malformed) << s;
	}
}

// An object where a known field's value belongs is the wrong type, like an
// array, a string or a boolean there (it used to be silently ignored).
TEST(JsonLine, ObjectForKnownFieldIsMalformed) {
	for (const char *s : {
	         R"({"driver_id":1,"lat":1,"lon":2,"speed":{}})", R"({"driver_id":1,"lat":1,"lon":2,"status":{"x":1}})",
	         R"({"driver_id":1,"lat":1,"lon":2,"ts":{"ms":5}})", R"({"driver_id":1,"lat":1,"lon":2,"lat":{}})",
	     }) {
		EXPECT_EQ(parse(s), Reject::Malformed) << s;
	}
}

TEST(JsonLine, LatLonOutOfRange) {
	// parse_line may leave ranges to validate_fix; the full path must say Range.
	for (const char *s : {
	         R"({"driver_id":1,"lat":90.0000001,"lon":2})", R"({"driver_id":1,"lat":-90.0000001,"lon":2})",
	         R"({"driver_id":1,"lat":91,"lon":2})", R"({"driver_id":1,"lat":1,"lon":180.0000001})",
	         R"({"driver_id":1,"lat":1,"lon":-181})", R"({"driver_id":1,"lat":1000,"lon":2})",
	         R"({"driver_id":1,"lat":1,"lon":1e300})", R"({"driver_id":1,"lat":-1e300,"lon":2})",
	         R"({"driver_id":1,"lat":1,"lon":214.7483648})",
	     }) {
		EXPECT_EQ(judge(s), Reject::Range) << s;
	}
	Fix f;
	ASSERT_EQ(judge(R"({"driver_id":1,"lat":90,"lon":-180})", f), Reject::None);
	EXPECT_EQ(f.lat_e7, 900000000);
	EXPECT_EQ(f.lon_e7, -1800000000);
	ASSERT_EQ(judge(R"({"driver_id":1,"lat":-90,"lon":180})", f), Reject::None);
	EXPECT_EQ(f.lat_e7, -900000000);
	EXPECT_EQ(f.lon_e7, 1800000000);
}

TEST(JsonLine, ClockWindow) {
	EXPECT_EQ(judge(line(R"(,"ts":1763700030123)")), Reject::None);  // now + 30 s
	EXPECT_EQ(judge(line(R"(,"ts":1763700030124)")), Reject::Clock);
	EXPECT_EQ(judge(line(R"(,"ts":1763699400123)")), Reject::None);  // now - 10 min
	EXPECT_EQ(judge(line(R"(,"ts":1763699400122)")), Reject::Clock);
	EXPECT_EQ(judge(line(R"(,"ts":"2025-11-21T04:40:30.123Z")")), Reject::None);
	EXPECT_EQ(judge(line(R"(,"ts":"2025-11-21T04:40:30.124Z")")), Reject::Clock);
	EXPECT_EQ(judge(line(R"(,"ts":0)")), Reject::Clock);
	EXPECT_EQ(judge(line(R"(,"ts":-1)")), Reject::Clock);
}

TEST(JsonLine, TrailingContent) {
	EXPECT_EQ(parse(line("") + "  \t "), Reject::None); // whitespace is fine
	EXPECT_EQ(parse(line("") + "x"), Reject::Malformed);
	EXPECT_EQ(parse(line("") + " 1"), Reject::Malformed);
	EXPECT_EQ(parse(line("") + line("")), Reject::Malformed); // two objects on one line
	EXPECT_EQ(parse(line("") + "}"), Reject::Malformed);
}

// RapidJSON's stream reads a NUL byte as the end, so `{...}\0garbage` used to
// pass as one object; lines with a NUL are malformed.
TEST(JsonLine, NulByteThenGarbageIsMalformed) {
	EXPECT_EQ(parse(line("") + std::string("\0", 1)), Reject::Malformed);
	EXPECT_EQ(parse(line("") + std::string("\0garbage", 8)), Reject::Malformed);
	EXPECT_EQ(parse(line("") + std::string("\0{\"x\":1}", 8)), Reject::Malformed);
}

TEST(JsonLine, HonoursLength) {
	// Only n bytes are parsed: a valid line followed by garbage in the buffer.
	std::string s = line("") + "GARBAGE";
	Fix f;
	EXPECT_EQ(json::parse_line(s.data(), s.size() - 7, kNow, f), Reject::None);
	EXPECT_EQ(json::parse_line(s.data(), s.size() - 8, kNow, f), Reject::Malformed);
}

TEST(JsonLine, DeepNestingDoesNotCrash) {
	for (int depth : {10, 31, 32, 33, 100, 1000, 100000}) {
		// Balanced nesting inside an unknown field.
		std::string arr = std::string(size_t(depth), '[') + std::string(size_t(depth), ']');
		Reject r = parse(line(",\"x\":" + arr));
		EXPECT_TRUE(r == Reject::None || r == Reject::Malformed) << depth;
		if (depth <= 10) {
			EXPECT_EQ(r, Reject::None) << depth;
		}
		std::string obj;
		for (int i = 0; i < depth; i++)
			obj += "{\"a\":";
		obj += "1";
		obj += std::string(size_t(depth), '}');
		r = parse(line(",\"x\":" + obj));
		EXPECT_TRUE(r == Reject::None || r == Reject::Malformed) << depth;
		if (depth <= 10) {
			EXPECT_EQ(r, Reject::None) << depth;
		}
		// Unbalanced: never valid.
		EXPECT_EQ(parse("{\"x\":" + std::string(size_t(depth), '[')), Reject::Malformed) << depth;
		EXPECT_EQ(parse(std::string(size_t(depth), '{')), Reject::Malformed) << depth;
	}
}

TEST(JsonLine, ExtremeNumbersDoNotCrash) {
	// Numbers at and beyond double's range, in fields we read and in fields we skip.
	for (const char *num : {"1e308", "1e-308", "2.2250738585072011e-308", "4.9e-324", "1e-400", "1e400",
	                        "-1e400", "0.0", "-0", "1E+2", "123456789012345678901234567890",
	                        "0.1234567890123456789012345678901234567890"}) {
		for (const char *field : {"x", "lat", "speed", "ts", "driver_id"}) {
			std::string s = std::string(R"({"driver_id":7,"lat":1,"lon":2,")") + field + "\":" + num + "}";
			Reject r = parse(s);
			EXPECT_TRUE(r == Reject::None || r == Reject::Malformed || r == Reject::Range) << s;
		}
	}
}

// Regression: with kParseFullPrecisionFlag, RapidJSON 1.1.0 (Debian's) reads
// its cached-powers table out of bounds for long mantissas with very negative
// exponents (upstream #1251; "0e100" is the related #1249) and segfaulted the
// listener. Found by test/fuzz/fuzz_json; parse_line uses default precision.
TEST(JsonLine, TinyNumbersWithManyDigitsDoNotCrash) {
	for (const char *num : {"0.000000000000000000000000000000000000000000000000000000000000001e-300",
	                        "128.74836467836484838364836483643636483648e-336", "0e100"}) {
		for (const char *field : {"x", "lat"}) {
			std::string s = std::string(R"({"driver_id":7,"lat":1,"lon":2,")") + field + "\":" + num + "}";
			Reject r = parse(s);
			EXPECT_TRUE(r == Reject::None || r == Reject::Malformed || r == Reject::Range) << s;
		}
	}
}

TEST(JsonLine, LongLinesAndManyFields) {
	std::string extra;
	for (int i = 0; i < 2000; i++)
		extra += ",\"f" + std::to_string(i) + "\":\"" + std::string(20, 'v') + "\"";
	Fix f;
	ASSERT_EQ(parse(line(extra), f), Reject::None);
	EXPECT_EQ(f.driver_id, 7u);
	// A long string value for an unknown field (beyond the parser's stack buffer).
	ASSERT_EQ(parse(line(",\"blob\":\"" + std::string(100000, 'z') + "\""), f), Reject::None);
	EXPECT_EQ(f.lat_e7, 15000000);
}

TEST(JsonLine, EscapedKeysAndStrings) {
	Fix f;
	// "\u006cat" is "lat" once unescaped.
	ASSERT_EQ(parse(R"({"driver_id":7,"\u006cat":1,"lon":2,"status":"\u0062usy"})", f), Reject::None);
	EXPECT_EQ(f.lat_e7, 10000000);
	EXPECT_EQ(f.status, kStatusBusy);
	// Invalid escapes are invalid JSON.
	EXPECT_EQ(parse(R"({"driver_id":7,"lat":1,"lon":2,"x":"\q"})"), Reject::Malformed);
}
