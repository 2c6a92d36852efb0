// Fuzz target: bytes -> a WebSocket server session (core/websocket.hpp).
//
// Byte 0 seeds the sizes of the chunks the bytes arrive in. Whatever comes
// in: the messages handed up are whole UTF-8 texts within the size limit,
// the session hands up nothing once it is over, and everything it sends is
// well-formed unmasked server frames. The same bytes in one piece give the
// same messages.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/websocket.hpp"
#include "fuzz_common.hpp"

namespace {

constexpr size_t kMax = 512;

// Loosely: lead and continuation bytes fit (wslay checks strictly, so
// anything it hands up passes this).
bool utf8(const std::string &s) {
	for (size_t i = 0; i < s.size();) {
		uint8_t c = uint8_t(s[i]);
		int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
		if (n < 0 || i + size_t(n) >= s.size())
			return false;
		for (int k = 1; k <= n; k++)
			if ((uint8_t(s[i + size_t(k)]) & 0xC0) != 0x80)
				return false;
		i += size_t(n) + 1;
	}
	return true;
}

// Server frames: FIN set, no mask, a known opcode, the length as encoded.
void check_frames(const std::string &b) {
	size_t i = 0;
	while (i < b.size()) {
		FUZZ_CHECK(i + 2 <= b.size());
		uint8_t b0 = uint8_t(b[i]), b1 = uint8_t(b[i + 1]);
		uint8_t op = b0 & 0x0F;
		FUZZ_CHECK((b0 & 0x80) && !(b1 & 0x80));
		FUZZ_CHECK(op == 1 || op == 2 || op == 8 || op == 9 || op == 10);
		size_t len = b1 & 0x7F, off = 2;
		if (len == 126) {
			FUZZ_CHECK(i + 4 <= b.size());
			len = size_t(uint8_t(b[i + 2])) << 8 | uint8_t(b[i + 3]);
			off = 4;
		} else if (len == 127) {
			FUZZ_CHECK(i + 10 <= b.size());
			len = 0;
			for (int k = 0; k < 8; k++)
				len = len << 8 | uint8_t(b[i + 2 + k]);
			off = 10;
		}
		FUZZ_CHECK(i + off + len <= b.size());
		i += off + len;
	}
}

std::vector<std::string> run(const uint8_t *data, size_t size, uint8_t seed) {
	std::vector<std::string> texts;
	std::string sent;
	bool over = false;
	lt::ws::Session s(lt::ws::Session::Events{[&](std::string_view t) {
		                                         FUZZ_CHECK(!over);
		                                         texts.emplace_back(t);
	                                         },
	                                         [&](const uint8_t *p, size_t n) { sent.append(reinterpret_cast<const char *>(p), n); }},
	                  kMax);
	uint32_t rng = seed * 2654435761u + 1;
	for (size_t off = 0; off < size;) {
		size_t n = seed == 0 ? size : 1 + (rng = rng * 1103515245u + 12345u) % 61;
		n = std::min(n, size - off);
		if (!s.feed(data + off, n))
			over = true;
		off += n;
	}
	for (const std::string &t : texts) {
		FUZZ_CHECK(t.size() <= kMax);
		FUZZ_CHECK(utf8(t));
	}
	check_frames(sent);
	return texts;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	if (size < 1)
		return 0;
	std::vector<std::string> a = run(data + 1, size - 1, data[0] | 1);
	std::vector<std::string> b = run(data + 1, size - 1, 0);
	FUZZ_CHECK(a == b);
	return 0;
}
