// Tokens of the HTTP edge (SPEC 6): JWTs (RFC 7519) signed with HMAC-SHA256
// (RFC 7515 "HS256") by the secret only the extension owner can read. The
// SQL functions mint them (extension/tokens.cpp); the HTTP worker verifies
// them here, with no query.
//
// Claims: "iss":"livetrack", "scope":"watch"|"dispatch"|"device", "exp" and
// "iat" (seconds), and by scope "order_id", "driver_id", or an optional
// "area" (GeoJSON MultiPolygon coordinates, [[[[lon,lat],...]...]...]).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "area.hpp"

namespace lt::jwt {

enum class Scope : uint8_t { Watch = 1, Dispatch = 2, Device = 3 };
const char *scope_name(Scope s);

struct Claims {
	Scope scope = Scope::Watch;
	uint64_t order_id = 0;  // watch
	uint64_t driver_id = 0; // device
	int64_t iat = 0, exp = 0;
	std::shared_ptr<const Area> area; // dispatch; nullptr = everywhere
};

enum class Verdict : uint8_t {
	Ok,
	Malformed,  // not three base64url parts of JSON objects, or claims missing or of the wrong type
	Algorithm,  // a header whose alg is not HS256 (alg "none", RS256, ...), or with "crit"
	Signature,  // the signature does not verify (forged, or from a rotated secret)
	Expired,    // exp is past
	NotYetValid // nbf (or iat, beyond clock skew) is in the future
};
const char *verdict_text(Verdict v);

constexpr size_t kMaxTokenBytes = 4096;   // a token longer than this is refused unread
constexpr int64_t kClockSkewS = 60;       // leeway for iat/nbf against the server clock

// Checks the header, then the signature (in constant time), and only then
// reads the claims. `now_s`: Unix seconds.
Verdict verify(std::string_view token, const uint8_t *secret, size_t secret_len, int64_t now_s, Claims &out);

// header.payload.signature for a payload that is a JSON object (the caller
// builds the claims). Throws std::runtime_error on a libcrypto failure.
std::string sign(std::string_view payload_json, const uint8_t *secret, size_t secret_len);

} // namespace lt::jwt
