#include "jwt.hpp"

#include <cmath>
#include <cstring>
#include <vector>

#include "base64.hpp"
#include "hmac.hpp"
#include "rj.hpp"

namespace lt::jwt {
namespace {

constexpr char kHeader[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

bool is_str(const rapidjson::Value &o, const char *k, const char *want) {
	auto it = o.FindMember(k);
	return it != o.MemberEnd() && it->value.IsString() && std::strcmp(it->value.GetString(), want) == 0;
}

// A JSON number that is a whole number of seconds (RFC 7519 NumericDate may
// carry a fraction; we accept and truncate it).
bool seconds(const rapidjson::Value &o, const char *k, int64_t &out) {
	auto it = o.FindMember(k);
	if (it == o.MemberEnd() || !it->value.IsNumber())
		return false;
	double d = it->value.GetDouble();
	if (!(d > -1e15 && d < 1e15))
		return false;
	out = int64_t(std::floor(d));
	return true;
}

bool positive_id(const rapidjson::Value &o, const char *k, uint64_t &out) {
	auto it = o.FindMember(k);
	if (it == o.MemberEnd() || !it->value.IsUint64())
		return false;
	out = it->value.GetUint64();
	return out > 0 && out < (uint64_t(1) << 63);
}

// GeoJSON MultiPolygon coordinates: polygons of rings of [lon, lat].
bool read_area(const rapidjson::Value &v, Area &a) {
	if (!v.IsArray() || v.Empty())
		return false;
	for (const auto &poly : v.GetArray()) {
		if (!poly.IsArray() || poly.Empty())
			return false;
		a.begin_polygon();
		for (const auto &ring : poly.GetArray()) {
			if (!ring.IsArray() || ring.Size() < 3)
				return false;
			std::vector<double> ll;
			for (const auto &pt : ring.GetArray()) {
				if (!pt.IsArray() || pt.Size() < 2 || !pt[0].IsNumber() || !pt[1].IsNumber())
					return false;
				double lon = pt[0].GetDouble(), lat = pt[1].GetDouble();
				if (!(lon >= -180 && lon <= 180 && lat >= -90 && lat <= 90))
					return false;
				ll.push_back(lon);
				ll.push_back(lat);
			}
			a.add_ring(ll);
		}
	}
	return true;
}

} // namespace

const char *scope_name(Scope s) {
	switch (s) {
	case Scope::Watch: return "watch";
	case Scope::Dispatch: return "dispatch";
	case Scope::Device: return "device";
	}
	return "?";
}

const char *verdict_text(Verdict v) {
	switch (v) {
	case Verdict::Ok: return "ok";
	case Verdict::Malformed: return "malformed token";
	case Verdict::Algorithm: return "token algorithm not accepted (only HS256)";
	case Verdict::Signature: return "invalid token signature";
	case Verdict::Expired: return "token expired";
	case Verdict::NotYetValid: return "token not valid yet";
	}
	return "invalid token";
}

Verdict verify(std::string_view token, const uint8_t *secret, size_t secret_len, int64_t now_s, Claims &out) {
	if (token.size() > kMaxTokenBytes)
		return Verdict::Malformed;
	size_t d1 = token.find('.');
	if (d1 == std::string_view::npos)
		return Verdict::Malformed;
	size_t d2 = token.find('.', d1 + 1);
	if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
		return Verdict::Malformed;
	std::string header, payload, sig;
	if (!b64::decode(token.substr(0, d1), true, header) || !b64::decode(token.substr(d2 + 1), true, sig))
		return Verdict::Malformed;

	rapidjson::Document h;
	if (!rj::parse(h, header.data(), header.size()) || !h.IsObject())
		return Verdict::Malformed;
	// Only HS256: "none", RS256 (whose public key an attacker might pass off
	// as our HMAC secret) and anything else are refused before any check.
	if (!is_str(h, "alg", "HS256") || h.HasMember("crit"))
		return Verdict::Algorithm;
	if (h.HasMember("typ") && !is_str(h, "typ", "JWT"))
		return Verdict::Malformed;

	uint8_t mac[kSha256Bytes];
	hmac_sha256(secret, secret_len, reinterpret_cast<const uint8_t *>(token.data()), d2, mac);
	if (sig.size() != kSha256Bytes || !equal_ct(mac, reinterpret_cast<const uint8_t *>(sig.data()), kSha256Bytes))
		return Verdict::Signature;

	if (!b64::decode(token.substr(d1 + 1, d2 - d1 - 1), true, payload))
		return Verdict::Malformed;
	rapidjson::Document p;
	if (!rj::parse(p, payload.data(), payload.size()) || !p.IsObject())
		return Verdict::Malformed;
	Claims c;
	if (!is_str(p, "iss", "livetrack") || !seconds(p, "exp", c.exp))
		return Verdict::Malformed;
	if (p.HasMember("iat") && !seconds(p, "iat", c.iat))
		return Verdict::Malformed;
	int64_t nbf = 0;
	if (p.HasMember("nbf") && !seconds(p, "nbf", nbf))
		return Verdict::Malformed;
	if (is_str(p, "scope", "watch")) {
		c.scope = Scope::Watch;
		if (!positive_id(p, "order_id", c.order_id))
			return Verdict::Malformed;
	} else if (is_str(p, "scope", "device")) {
		c.scope = Scope::Device;
		if (!positive_id(p, "driver_id", c.driver_id))
			return Verdict::Malformed;
	} else if (is_str(p, "scope", "dispatch")) {
		c.scope = Scope::Dispatch;
		auto it = p.FindMember("area");
		if (it != p.MemberEnd() && !it->value.IsNull()) {
			auto a = std::make_shared<Area>();
			if (!read_area(it->value, *a))
				return Verdict::Malformed;
			c.area = std::move(a);
		}
	} else {
		return Verdict::Malformed;
	}
	if (now_s >= c.exp)
		return Verdict::Expired;
	if (nbf > now_s + kClockSkewS || c.iat > now_s + kClockSkewS)
		return Verdict::NotYetValid;
	out = std::move(c);
	return Verdict::Ok;
}

std::string sign(std::string_view payload_json, const uint8_t *secret, size_t secret_len) {
	std::string t = b64::encode(kHeader, true);
	t += '.';
	t += b64::encode(payload_json, true);
	uint8_t mac[kSha256Bytes];
	hmac_sha256(secret, secret_len, reinterpret_cast<const uint8_t *>(t.data()), t.size(), mac);
	t += '.';
	t += b64::encode(mac, sizeof mac, true);
	return t;
}

} // namespace lt::jwt
