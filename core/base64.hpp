// Base64 (RFC 4648): the standard alphabet for HTTP Basic credentials and
// WebSocket keys, the URL-safe one without padding for JWTs (RFC 7515).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lt::b64 {

std::string encode(const uint8_t *p, size_t n, bool url);
inline std::string encode(std::string_view s, bool url) {
	return encode(reinterpret_cast<const uint8_t *>(s.data()), s.size(), url);
}

// Strict: characters of the one alphabet only, no whitespace. `url`: no
// padding allowed; standard: padding required to a multiple of four. Bits
// left over in the last character must be zero (one encoding per value).
bool decode(std::string_view in, bool url, std::string &out);

} // namespace lt::b64
