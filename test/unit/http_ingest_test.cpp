// Fixes posted over HTTP (core/http_ingest.hpp): POST /v1/pings bodies, and
// what Traccar Client and OwnTracks send to /v1/osmand. The app requests are
// the ones in Traccar's own decoder tests (traccar/traccar,
// OsmAndProtocolDecoderTest.java), Traccar Client's templates and OwnTracks'
// documented payloads (owntracks/booklet), with the clock moved to now.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/http_ingest.hpp"
#include "test_helpers.hpp"

using namespace lt;
using http::IngestResult;
using http::Poster;

namespace {

constexpr int64_t kNow = 1763700000123LL; // 2025-11-21T04:40:00.123Z
const Policy kTrust{AuthMode::LoopbackTrust, {30000, 600000}};
const Poster kLoopback{true, 0};

http::Request post(const std::string &content_type, const std::string &body) {
	http::Request r;
	r.method = "POST";
	if (!content_type.empty())
		r.headers.push_back({"content-type", content_type});
	r.body = body;
	return r;
}

IngestResult osmand(const http::Request &r, const std::string &query, const Poster &who = kLoopback) {
	IngestResult out;
	http::parse_osmand(r, http::parse_form(query), who, kTrust, kNow, out);
	return out;
}

std::string bytes(const std::vector<uint8_t> &v) { return std::string(v.begin(), v.end()); }

IngestResult pings(const std::string &ct, const std::string &body, const Poster &who = kLoopback) {
	IngestResult out;
	http::parse_pings(ct, body, who, kTrust, kNow, nullptr, out);
	return out;
}

} // namespace

TEST(HttpIngest, JsonLinesArrayAndBinary) {
	std::string line = "{\"driver_id\":7,\"lat\":12.9716,\"lon\":77.5946,\"ts\":" + std::to_string(kNow) + "}";
	IngestResult r = pings("application/x-ndjson", line + "\n\n" + line + "\r\n{\"driver_id\":7,\"lat\":95,\"lon\":1}\n");
	EXPECT_EQ(r.messages, 3u);
	ASSERT_EQ(r.fixes.size(), 2u);
	EXPECT_EQ(r.fixes[0].lat_e7, 129716000);
	EXPECT_EQ(r.verdict[2], Reject::Range);
	EXPECT_EQ(http::ingest_answer(r), "{\"accepted\":2,\"rejected\":1,\"errors\":[{\"index\":3,\"reason\":\"range\"}]}");

	r = pings("application/json", " [" + line + ", {\"driver_id\":8,\"latitude\":1,\"longitude\":2}, 5]");
	EXPECT_EQ(r.messages, 3u);
	EXPECT_EQ(r.fixes.size(), 2u);
	EXPECT_EQ(r.verdict[2], Reject::Malformed);
	EXPECT_EQ(r.fixes[1].ts_ms, kNow); // no ts: the time of receipt

	r = pings("application/json", "[{\"driver_id\":7,");
	EXPECT_NE(r.bad_body, nullptr);
	r = pings("application/json", "   ");
	EXPECT_NE(r.bad_body, nullptr);

	std::string two = bytes(lt_test::make_frame({lt_test::make_fix(9, kNow), lt_test::make_fix(10, kNow)}));
	r = pings("application/octet-stream", two + two);
	EXPECT_EQ(r.messages, 2u);
	EXPECT_EQ(r.fixes.size(), 4u);
	// A frame that cannot be parsed ends the body: what follows is unread.
	r = pings("application/octet-stream", two + "LTxxxxxxxxxxxxxx" + two);
	EXPECT_EQ(r.fixes.size(), 2u);
	EXPECT_TRUE(r.truncated);
	EXPECT_EQ(r.verdict.back(), Reject::Malformed);
	EXPECT_NE(http::ingest_answer(r).find("\"truncated\":true"), std::string::npos);
}

TEST(HttpIngest, WhoMayPost) {
	std::string body = "{\"driver_id\":7,\"lat\":1,\"lon\":2}\n{\"driver_id\":8,\"lat\":1,\"lon\":2}\n";
	IngestResult r = pings("", body, Poster{false, 0}); // not loopback, no token
	EXPECT_EQ(r.fixes.size(), 0u);
	EXPECT_EQ(r.verdict[0], Reject::Auth);
	r = pings("", body, Poster{true, 7}); // a device token for driver 7
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].driver_id, 7u);
	EXPECT_EQ(r.verdict[1], Reject::Auth);
	std::string frame = bytes(lt_test::make_frame({lt_test::make_fix(7, kNow), lt_test::make_fix(8, kNow)}));
	r = pings("application/octet-stream", frame, Poster{true, 8});
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].driver_id, 8u);
}

// Traccar Client (legacy Android and iOS; v10 sends the same as a form).
TEST(HttpIngest, TraccarOsmAndQueries) {
	http::Request get;
	get.method = "GET";
	// OsmAndProtocolDecoderTest, with the timestamp moved to now (1763700000 s).
	IngestResult r = osmand(get, "id=123456&timestamp=1763700000&lat=60.0&lon=30.0&speed=0.0&bearing=0.0&altitude=0&hdop=0.0");
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].driver_id, 123456u);
	EXPECT_EQ(r.fixes[0].ts_ms, 1763700000000);
	EXPECT_EQ(r.fixes[0].lat_e7, 600000000);
	EXPECT_EQ(r.fixes[0].speed_cms, 0);
	EXPECT_EQ(r.fixes[0].heading_cd, 0);

	// Speed in knots; bearing; accuracy; timestamp in milliseconds.
	r = osmand(get, "id=902064&lat=42.06288&lon=-88.23412&timestamp=1763700000100&hdop=6.0&altitude=224.0&speed=10.0&bearing=7.5&accuracy=12.3");
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].ts_ms, 1763700000100);
	EXPECT_EQ(r.fixes[0].lon_e7, -882341200);
	EXPECT_EQ(r.fixes[0].speed_cms, 514); // 10 kn = 5.14444 m/s
	EXPECT_EQ(r.fixes[0].heading_cd, 750);
	EXPECT_EQ(r.fixes[0].accuracy_dm, 123);

	// ISO timestamps, with and without a zone ("2014-06-04 09:10:11" style).
	r = osmand(get, "id=902064&lat=42.06288&lon=-88.23412&timestamp=2025-11-21T04%3A39%3A47Z&hdop=6.0");
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].ts_ms, 1763699987000);
	r = osmand(get, "lat=49.60688&lon=6.15788&timestamp=2025-11-21+04%3A39%3A50&altitude=384.7&speed=0.0&id=353861053849681");
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].driver_id, 353861053849681u);

	// location=lat,lon; deviceid; no timestamp (now).
	r = osmand(get, "id=123456&location=60.0,30.0");
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].lon_e7, 300000000);
	EXPECT_EQ(r.fixes[0].ts_ms, kNow);
	r = osmand(get, "lat=60.0&lon=30.0&speed=0.0&heading=0.0&vacc=0&hacc=0&altitude=0&deviceid=123456");
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].driver_id, 123456u);

	// The legacy Android app's own format (ProtocolFormatterTest).
	r = osmand(get, "id=123456789012345&timestamp=1763700000&lat=0.0&lon=0.0&speed=0.0&bearing=0.0&altitude=0.0&accuracy=0.0&batt=0.0");
	EXPECT_EQ(r.fixes.size(), 1u);

	// No id: the token's driver; with neither, rejected (range).
	r = osmand(get, "timestamp=1763700000&lat=60.0&lon=30.0", Poster{true, 77});
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].driver_id, 77u);
	r = osmand(get, "timestamp=1763700000&lat=60.0&lon=30.0");
	EXPECT_EQ(r.verdict.at(0), Reject::Range);
	// A device id that is not a driver id.
	r = osmand(get, "id=phone&lat=60.0&lon=30.0");
	EXPECT_EQ(r.verdict.at(0), Reject::Range);
	// Cell towers only, a push token: valid requests without a position.
	r = osmand(get, "id=123456&timestamp=1763700000&cell=257,02,16,2224");
	EXPECT_EQ(r.verdict.size(), 0u);
	EXPECT_EQ(r.messages, 0u);
	EXPECT_EQ(r.bad_body, nullptr);
	r = osmand(post("application/x-www-form-urlencoded", "id=123456&notificationToken=abc"), "");
	EXPECT_EQ(r.verdict.size(), 0u);
	// Junk numbers.
	r = osmand(get, "id=1&lat=north&lon=30.0");
	EXPECT_EQ(r.verdict.at(0), Reject::Malformed);
	r = osmand(get, "id=1&lat=91&lon=30.0");
	EXPECT_EQ(r.verdict.at(0), Reject::Range);
	r = osmand(get, "id=1&lat=1&lon=30.0&timestamp=1");
	EXPECT_EQ(r.verdict.at(0), Reject::Clock);
}

// Traccar Client 10: the same protocol as a form body.
TEST(HttpIngest, TraccarFormBody) {
	IngestResult r = osmand(post("application/x-www-form-urlencoded",
	                             "id=123456&lat=60.0&lon=30.0&timestamp=1763700000&accuracy=5.0&altitude=0.0&"
	                             "speed=0.0&bearing=0.0&batt=87&charge=false"),
	                        "");
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].accuracy_dm, 50);
}

// Traccar Client 9 (transistorsoft): JSON, speed in m/s, -1 = unknown.
TEST(HttpIngest, TraccarJson) {
	std::string body =
	    "{\"location\":{\"timestamp\":\"2025-11-21T04:39:59.862Z\",\"coords\":{\"latitude\":37.4219983,"
	    "\"longitude\":-122.084,\"accuracy\":5,\"speed\":0,\"heading\":-1,\"altitude\":5},\"is_moving\":false,"
	    "\"odometer\":0,\"event\":\"motionchange\",\"battery\":{\"level\":1,\"is_charging\":false},\"activity\":"
	    "{\"type\":\"still\"},\"extras\":{},\"_\":\"&id=48241179&lat=37.4219983&lon=-122.084&timestamp=2025-11-21T04:"
	    "39:59.862Z&\"},\"device_id\":\"48241179\"}";
	IngestResult r = osmand(post("application/json", body), "");
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].driver_id, 48241179u);
	EXPECT_EQ(r.fixes[0].ts_ms, 1763699999862);
	EXPECT_EQ(r.fixes[0].lat_e7, 374219983);
	EXPECT_EQ(r.fixes[0].speed_cms, 0);
	EXPECT_EQ(r.fixes[0].heading_cd, kUnknown16);
	EXPECT_EQ(r.fixes[0].accuracy_dm, 50);

	// The iOS simulator's payload: speed -1, extra fields, floor null.
	body = "{\"location\":{\"extras\":{},\"mock\":true,\"coords\":{\"speed_accuracy\":-1,\"speed\":-1,"
	       "\"longitude\":-122.406417,\"ellipsoidal_altitude\":0,\"floor\":null,\"heading_accuracy\":-1,"
	       "\"latitude\":37.785834000000001,\"accuracy\":5,\"altitude_accuracy\":-1,\"altitude\":0,\"heading\":-1},"
	       "\"is_moving\":false,\"age\":188,\"odometer\":0,\"uuid\":\"2FB04C65-99CF-42AB-8DD3-EBCB4B108BF8\","
	       "\"event\":\"motionchange\",\"battery\":{\"level\":-1,\"is_charging\":false},\"activity\":{\"type\":"
	       "\"unknown\",\"confidence\":100},\"timestamp\":\"2025-11-21T04:39:30.579Z\"},\"device_id\":\"658765\"}";
	r = osmand(post("application/json; charset=utf-8", body), "");
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].speed_cms, kUnknown16);
	EXPECT_EQ(r.fixes[0].lat_e7, 377858340);

	// An older payload with a speed: 18.67 m/s.
	body = "{\"location\":{\"event\":\"motionchange\",\"is_moving\":false,\"uuid\":\"0e9a2473\",\"timestamp\":"
	       "\"2025-11-21T04:39:34.444Z\",\"odometer\":0,\"coords\":{\"latitude\":-6.1148096,\"longitude\":106.6837015,"
	       "\"accuracy\":3.8,\"speed\":18.67,\"speed_accuracy\":0.26,\"heading\":63,\"heading_accuracy\":0.28,"
	       "\"altitude\":35.7,\"altitude_accuracy\":3.8},\"activity\":{\"type\":\"still\",\"confidence\":100},"
	       "\"battery\":{\"is_charging\":false,\"level\":0.79},\"extras\":{}},\"device_id\":\"8737767034\"}";
	r = osmand(post("application/json", body), "");
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].speed_cms, 1867);
	EXPECT_EQ(r.fixes[0].heading_cd, 6300);

	r = osmand(post("application/json", "{\"location\":{\"coords\":{}},\"device_id\":\"1\"}"), "");
	EXPECT_EQ(r.verdict.at(0), Reject::Malformed);
	r = osmand(post("application/json", "{\"x\":1}"), "");
	EXPECT_NE(r.bad_body, nullptr);
	r = osmand(post("application/json", "not json"), "");
	EXPECT_NE(r.bad_body, nullptr);
}

TEST(HttpIngest, OwnTracks) {
	// The booklet's test payload, tst moved to now; the driver from the topic.
	std::string body = "{\"_type\":\"location\",\"t\":\"u\",\"batt\":11,\"lat\":48.856826,\"lon\":2.292713,\"tid\":\"JJ\","
	                   "\"tst\":1763700000,\"topic\":\"owntracks/jane/42\"}";
	IngestResult r = osmand(post("application/json", body), "");
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].driver_id, 42u);
	EXPECT_EQ(r.fixes[0].ts_ms, 1763700000000);
	EXPECT_EQ(r.fixes[0].speed_cms, kUnknown16); // vel left out when 0... or unknown

	// Android's serialisation: vel km/h, cog, acc; the driver from X-Limit-D.
	body = "{\"_type\":\"location\",\"created_at\":1763700001,\"_id\":\"dummyTestId\",\"batt\":30,\"bs\":2,\"acc\":10,"
	       "\"vac\":1,\"lat\":50.1,\"lon\":60.2,\"alt\":20,\"vel\":36,\"cog\":56,\"tst\":1763700000,\"m\":1,\"conn\":"
	       "\"w\",\"inregions\":[\"a\",\"b\"],\"BSSID\":\"12:34:56:78\",\"SSID\":\"Wifi SSID\"}";
	http::Request req = post("application/json; charset=utf-8", body);
	req.headers.push_back({"x-limit-u", "jane"});
	req.headers.push_back({"x-limit-d", "43"});
	r = osmand(req, "");
	ASSERT_EQ(r.fixes.size(), 1u);
	EXPECT_EQ(r.fixes[0].driver_id, 43u);
	EXPECT_EQ(r.fixes[0].speed_cms, 1000); // 36 km/h
	EXPECT_EQ(r.fixes[0].heading_cd, 5600);
	EXPECT_EQ(r.fixes[0].accuracy_dm, 100);

	// Other _types and empty bodies are valid and carry nothing.
	for (const char *other : {"{\"_type\":\"transition\",\"wtst\":1,\"lat\":1,\"lon\":2,\"tst\":3,\"event\":\"enter\"}",
	                          "{\"_type\":\"waypoint\",\"desc\":\"home\",\"lat\":1,\"lon\":2,\"rad\":50,\"tst\":3}",
	                          "{\"_type\":\"encrypted\",\"data\":\"abc\"}", "", "  "}) {
		r = osmand(post("application/json", other), "");
		EXPECT_EQ(r.verdict.size(), 0u) << other;
		EXPECT_EQ(r.bad_body, nullptr) << other;
	}
	// A device name that is not a driver id.
	r = osmand(post("application/json", "{\"_type\":\"location\",\"lat\":1,\"lon\":2,\"tst\":1763700000,\"topic\":"
	                                     "\"owntracks/jane/phone\"}"),
	           "");
	EXPECT_EQ(r.verdict.at(0), Reject::Range);
	// A device token vouches for its own driver only.
	r = osmand(post("application/json", "{\"_type\":\"location\",\"lat\":1,\"lon\":2,\"tst\":1763700000,\"topic\":"
	                                     "\"owntracks/jane/44\"}"),
	           "", Poster{true, 45});
	EXPECT_EQ(r.verdict.at(0), Reject::Auth);
}
