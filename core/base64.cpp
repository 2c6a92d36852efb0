#include "base64.hpp"

namespace lt::b64 {
namespace {

const char kStd[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const char kUrl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int value_of(char c, bool url) {
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

} // namespace

std::string encode(const uint8_t *p, size_t n, bool url) {
	const char *a = url ? kUrl : kStd;
	std::string out;
	out.reserve((n + 2) / 3 * 4);
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = uint32_t(p[i]) << 16 | uint32_t(p[i + 1]) << 8 | p[i + 2];
		out += a[v >> 18];
		out += a[(v >> 12) & 63];
		out += a[(v >> 6) & 63];
		out += a[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = uint32_t(p[i]) << 16;
		out += a[v >> 18];
		out += a[(v >> 12) & 63];
		if (!url)
			out += "==";
	} else if (n - i == 2) {
		uint32_t v = uint32_t(p[i]) << 16 | uint32_t(p[i + 1]) << 8;
		out += a[v >> 18];
		out += a[(v >> 12) & 63];
		out += a[(v >> 6) & 63];
		if (!url)
			out += '=';
	}
	return out;
}

bool decode(std::string_view in, bool url, std::string &out) {
	out.clear();
	size_t n = in.size();
	if (!url) {
		if (n % 4 != 0)
			return false;
		size_t pad = 0;
		while (pad < 2 && n > 0 && in[n - 1] == '=') {
			n--;
			pad++;
		}
	}
	if (n % 4 == 1)
		return false;
	out.reserve(n / 4 * 3 + 2);
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = value_of(in[i], url);
		if (v < 0)
			return false;
		acc = (acc << 6) | uint32_t(v);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out += char((acc >> bits) & 0xFF);
		}
	}
	// Leftover bits (2 or 4) must be zero.
	return (acc & ((1u << bits) - 1)) == 0;
}

} // namespace lt::b64
