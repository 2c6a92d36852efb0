// Tokens of the HTTP edge (SPEC 6): base64url, HS256 JWTs, dispatch areas.
#include <gtest/gtest.h>

#include <string>

#include "core/area.hpp"
#include "core/base64.hpp"
#include "core/hmac.hpp"
#include "core/jwt.hpp"

using namespace lt;

namespace {

const uint8_t kSecret[32] = {7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                             16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
constexpr int64_t kNow = 1796674786;

std::string claims(const std::string &extra, int64_t exp = kNow + 3600) {
	return "{\"iss\":\"livetrack\",\"iat\":" + std::to_string(kNow) + ",\"exp\":" + std::to_string(exp) + "," + extra +
	       "}";
}

std::string token(const std::string &payload) { return jwt::sign(payload, kSecret, sizeof kSecret); }

jwt::Verdict check(const std::string &t, jwt::Claims &c, int64_t now = kNow) {
	return jwt::verify(t, kSecret, sizeof kSecret, now, c);
}

// A token with a header of our choosing, signed with our secret.
std::string with_header(const std::string &header, const std::string &payload) {
	std::string t = b64::encode(header, true) + "." + b64::encode(payload, true);
	uint8_t mac[32];
	hmac_sha256(kSecret, sizeof kSecret, reinterpret_cast<const uint8_t *>(t.data()), t.size(), mac);
	return t + "." + b64::encode(mac, 32, true);
}

} // namespace

TEST(Base64, Rfc4648Vectors) {
	const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	const char *std_[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	const char *url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	for (int i = 0; i < 7; i++) {
		EXPECT_EQ(b64::encode(plain[i], false), std_[i]);
		EXPECT_EQ(b64::encode(plain[i], true), url[i]);
		std::string out;
		ASSERT_TRUE(b64::decode(std_[i], false, out));
		EXPECT_EQ(out, plain[i]);
		ASSERT_TRUE(b64::decode(url[i], true, out));
		EXPECT_EQ(out, plain[i]);
	}
	std::string out;
	const uint8_t bytes[] = {0xfb, 0xff, 0xbf};
	EXPECT_EQ(b64::encode(bytes, 3, false), "+/+/");
	EXPECT_EQ(b64::encode(bytes, 3, true), "-_-_");
}

TEST(Base64, RejectsWhatIsNotOneEncoding) {
	std::string out;
	EXPECT_FALSE(b64::decode("Zg=", false, out));   // not a multiple of four
	EXPECT_FALSE(b64::decode("Zg==", true, out));   // url: no padding
	EXPECT_FALSE(b64::decode("Zh", true, out));     // leftover bits set
	EXPECT_FALSE(b64::decode("Z", true, out));      // one character is never whole bytes
	EXPECT_FALSE(b64::decode("Zm9v YmFy", false, out));
	EXPECT_FALSE(b64::decode("Zm+v", true, out));   // the other alphabet
	EXPECT_FALSE(b64::decode("Zm_v", false, out));
}

// RFC 7515 appendix A.1: an HS256 JWS with its key. Our verify() checks the
// signature before the claims, so this token (whose claims are not ours)
// passes the signature and fails on the claims, and fails the signature
// under any other key.
TEST(Jwt, Rfc7515ExampleSignatureVerifies) {
	const std::string t =
	    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
	    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
	    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
	std::string key;
	ASSERT_TRUE(b64::decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
	                        true, key));
	jwt::Claims c;
	EXPECT_EQ(jwt::verify(t, reinterpret_cast<const uint8_t *>(key.data()), key.size(), 1300000000, c),
	          jwt::Verdict::Malformed);
	key[0] ^= 1;
	EXPECT_EQ(jwt::verify(t, reinterpret_cast<const uint8_t *>(key.data()), key.size(), 1300000000, c),
	          jwt::Verdict::Signature);
}

TEST(Jwt, RoundTripsEachScope) {
	jwt::Claims c;
	ASSERT_EQ(check(token(claims("\"scope\":\"watch\",\"order_id\":42")), c), jwt::Verdict::Ok);
	EXPECT_EQ(c.scope, jwt::Scope::Watch);
	EXPECT_EQ(c.order_id, 42u);
	EXPECT_EQ(c.exp, kNow + 3600);
	ASSERT_EQ(check(token(claims("\"scope\":\"device\",\"driver_id\":9223372036854775807")), c), jwt::Verdict::Ok);
	EXPECT_EQ(c.scope, jwt::Scope::Device);
	EXPECT_EQ(c.driver_id, 9223372036854775807ull);
	ASSERT_EQ(check(token(claims("\"scope\":\"dispatch\"")), c), jwt::Verdict::Ok);
	EXPECT_EQ(c.scope, jwt::Scope::Dispatch);
	EXPECT_EQ(c.area, nullptr);
	// What livetrack.dispatch_token() writes: GeoJSON MultiPolygon coordinates
	// (here with spaces, as jsonb prints them).
	ASSERT_EQ(check(token(claims("\"scope\": \"dispatch\", \"area\": [[[[77.5, 12.9], [77.7, 12.9], [77.7, 13.1], "
	                             "[77.5, 13.1], [77.5, 12.9]]]]")),
	                c),
	          jwt::Verdict::Ok);
	ASSERT_NE(c.area, nullptr);
	EXPECT_TRUE(c.area->contains(13.0, 77.6));
	EXPECT_FALSE(c.area->contains(13.2, 77.6));
}

TEST(Jwt, RefusesEveryKindOfBadToken) {
	jwt::Claims c;
	const std::string good = token(claims("\"scope\":\"watch\",\"order_id\":42"));
	EXPECT_EQ(check("", c), jwt::Verdict::Malformed);
	EXPECT_EQ(check("abc", c), jwt::Verdict::Malformed);
	EXPECT_EQ(check("a.b", c), jwt::Verdict::Malformed);
	EXPECT_EQ(check(good + ".x", c), jwt::Verdict::Malformed);
	EXPECT_EQ(check("!!." + good.substr(good.find('.') + 1), c), jwt::Verdict::Malformed);
	EXPECT_EQ(check(std::string(5000, 'a'), c), jwt::Verdict::Malformed);

	// Forged: one character of the payload or of the signature changed.
	std::string forged = good;
	size_t mid = good.find('.') + 3;
	forged[mid] = forged[mid] == 'A' ? 'B' : 'A';
	EXPECT_EQ(check(forged, c), jwt::Verdict::Signature);
	forged = good;
	forged[good.size() - 2] = forged[good.size() - 2] == 'A' ? 'B' : 'A';
	EXPECT_EQ(check(forged, c), jwt::Verdict::Signature);
	// Another secret (a rotated one).
	uint8_t other[32] = {1};
	EXPECT_EQ(jwt::verify(good, other, sizeof other, kNow, c), jwt::Verdict::Signature);

	// Expired, and not yet valid.
	EXPECT_EQ(check(good, c, kNow + 3600), jwt::Verdict::Expired);
	EXPECT_EQ(check(good, c, kNow + 3599), jwt::Verdict::Ok);
	EXPECT_EQ(check(token(claims("\"scope\":\"watch\",\"order_id\":1,\"nbf\":" + std::to_string(kNow + 600))), c),
	          jwt::Verdict::NotYetValid);

	// alg none, RS256 and friends never get to the signature check.
	const std::string p = b64::encode(claims("\"scope\":\"watch\",\"order_id\":42"), true);
	EXPECT_EQ(check(b64::encode("{\"alg\":\"none\",\"typ\":\"JWT\"}", true) + "." + p + ".", c),
	          jwt::Verdict::Algorithm);
	EXPECT_EQ(check(with_header("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims("\"scope\":\"watch\",\"order_id\":42")), c),
	          jwt::Verdict::Algorithm);
	EXPECT_EQ(check(with_header("{\"alg\":\"HS512\"}", claims("\"scope\":\"watch\",\"order_id\":42")), c),
	          jwt::Verdict::Algorithm);
	EXPECT_EQ(check(with_header("{\"typ\":\"JWT\"}", claims("\"scope\":\"watch\",\"order_id\":42")), c),
	          jwt::Verdict::Algorithm);
	EXPECT_EQ(check(with_header("{\"alg\":\"HS256\",\"crit\":[\"x\"]}", claims("\"scope\":\"watch\",\"order_id\":42")), c),
	          jwt::Verdict::Algorithm);
	EXPECT_EQ(check(with_header("{\"alg\":\"HS256\"}", claims("\"scope\":\"watch\",\"order_id\":42")), c),
	          jwt::Verdict::Ok);

	// Signed, but not our claims.
	EXPECT_EQ(check(token("{\"scope\":\"watch\",\"order_id\":1,\"exp\":" + std::to_string(kNow + 60) + "}"), c),
	          jwt::Verdict::Malformed); // no iss
	EXPECT_EQ(check(token(claims("\"scope\":\"admin\"")), c), jwt::Verdict::Malformed);
	EXPECT_EQ(check(token(claims("\"scope\":\"watch\"")), c), jwt::Verdict::Malformed);
	EXPECT_EQ(check(token(claims("\"scope\":\"watch\",\"order_id\":0")), c), jwt::Verdict::Malformed);
	EXPECT_EQ(check(token(claims("\"scope\":\"watch\",\"order_id\":\"42\"")), c), jwt::Verdict::Malformed);
	EXPECT_EQ(check(token(claims("\"scope\":\"device\",\"driver_id\":9223372036854775808")), c),
	          jwt::Verdict::Malformed);
	EXPECT_EQ(check(token(claims("\"scope\":\"dispatch\",\"area\":[[[[200,0],[1,1],[0,1]]]]")), c),
	          jwt::Verdict::Malformed);
	EXPECT_EQ(check(token("[1,2]"), c), jwt::Verdict::Malformed);
	EXPECT_EQ(check(token("{\"iss\":\"livetrack\",\"scope\":\"dispatch\"}"), c), jwt::Verdict::Malformed); // no exp
}

TEST(Area, PolygonsWithHolesAndEdges) {
	Area a;
	a.begin_polygon();
	a.add_ring({0, 0, 10, 0, 10, 10, 0, 10, 0, 0}); // outer
	a.add_ring({4, 4, 6, 4, 6, 6, 4, 6});           // a hole, not closed
	a.begin_polygon();
	a.add_ring({20, 20, 30, 20, 25, 30});
	EXPECT_TRUE(a.contains(1, 1));
	EXPECT_FALSE(a.contains(5, 5)); // in the hole
	EXPECT_TRUE(a.contains(0, 5));  // on an edge (lat 0, lon 5)
	EXPECT_TRUE(a.contains(5, 4));  // on the hole's edge
	EXPECT_TRUE(a.contains(22, 25));
	EXPECT_FALSE(a.contains(29, 29));
	EXPECT_FALSE(a.contains(-1, 5));
	EXPECT_EQ(a.vertices(), 11u);
	EXPECT_DOUBLE_EQ(a.bounds().max_lon, 30);
	Area everywhere;
	EXPECT_TRUE(everywhere.everywhere());
	EXPECT_TRUE(everywhere.contains(-89, 179));
}
