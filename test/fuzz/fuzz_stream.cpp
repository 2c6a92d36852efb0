// Fuzz target: bytes -> a TCP stream split into units by next_unit().
//
// Input layout: byte 0 seeds the sizes of the chunks the stream arrives in,
// byte 1 picks the JSON line limit, the rest is the stream. As on the
// listener, the first stream byte decides the mode ('{' = JSON lines).
//
// Two models run over the same stream:
//  1. The listener's: a bounded connection buffer filled chunk by chunk,
//     drained with next_unit() after every chunk exactly as
//     ListenerEngine::process() does (including skipping the rest of an
//     over-long line). Its units must not depend on the chunking: they must
//     equal a reference split of the whole stream, and a full buffer must
//     always make progress (otherwise the connection would stall for good).
//  2. next_unit() over the whole stream at once (an unbounded buffer), with
//     the basic contract: progress, consumed within what is there, lines end
//     at a newline.
// Every unit goes to the judges, as on the TCP path.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.hpp"

namespace {

struct Out {
	enum Kind { Frame, Line, TooLong, Bad } kind;
	std::string bytes; // frame bytes, or line text (no newline, one '\r' stripped)
	bool operator==(const Out &o) const { return kind == o.kind && bytes == o.bytes; }
};

void judge(const Out &u, bool json) {
	if (u.kind == Out::Frame) {
		FUZZ_CHECK(!json);
		auto *p = reinterpret_cast<const uint8_t *>(u.bytes.data());
		lt::wire::Header h;
		size_t fl = 0;
		FUZZ_CHECK(lt::wire::parse_header(p, u.bytes.size(), h, fl) == lt::wire::Parse::Ok);
		FUZZ_CHECK(fl == u.bytes.size());
		fuzz::check_header(p, u.bytes.size(), h, fl);
		fuzz::check_message(p, h, true, fuzz::policy(0));
	} else if (u.kind == Out::Line) {
		FUZZ_CHECK(json);
		if (!u.bytes.empty())
			fuzz::check_json_line(u.bytes.data(), u.bytes.size());
	}
}

// Reference split of the whole stream, from the SPEC alone.
std::vector<Out> reference(const std::string &s, bool json, size_t max_line) {
	std::vector<Out> out;
	if (json) {
		size_t off = 0;
		while (off < s.size()) {
			size_t nl = s.find('\n', off);
			size_t raw = (nl == std::string::npos ? s.size() : nl) - off;
			if (raw > max_line) {
				out.push_back({Out::TooLong, ""});
			} else if (nl != std::string::npos) {
				size_t len = raw;
				if (len > 0 && s[off + len - 1] == '\r')
					len--;
				out.push_back({Out::Line, s.substr(off, len)});
			}
			if (nl == std::string::npos)
				break;
			off = nl + 1;
		}
	} else {
		size_t off = 0;
		while (off < s.size()) {
			auto *p = reinterpret_cast<const uint8_t *>(s.data()) + off;
			size_t avail = s.size() - off;
			bool bad = false;
			// SPEC 2.1 framing, by hand.
			if (p[0] != 0x4C || (avail > 1 && p[1] != 0x54) || (avail > 2 && p[2] != 1) ||
			    (avail > 3 && (p[3] & 0xFE)) || (avail > 4 && p[4] != 0) || (avail > 5 && (p[5] == 0 || p[5] > 64)))
				bad = true;
			if (bad) {
				out.push_back({Out::Bad, ""});
				break;
			}
			if (avail < 16)
				break;
			size_t len = 16 + size_t(p[5]) * 32 + ((p[3] & 1) ? 16 : 0);
			if (avail < len)
				break;
			out.push_back({Out::Frame, s.substr(off, len)});
			off += len;
		}
	}
	return out;
}

// ListenerEngine::read_conn()/process() with a buffer of `cap` bytes.
std::vector<Out> listener_model(const std::string &s, bool json, size_t max_line, size_t cap, uint8_t seed) {
	std::vector<Out> out;
	std::vector<uint8_t> in(cap);
	size_t in_len = 0, fed = 0;
	bool skipping = false, closed = false;
	uint32_t rng = seed * 2654435761u + 1;
	while (!closed) {
		// recv(): at most the room left, in chunks of varying size.
		size_t room = cap - in_len;
		if (fed == s.size())
			break;
		FUZZ_CHECK(room > 0); // a full buffer must have been drained (no stall)
		rng = rng * 1103515245u + 12345u;
		size_t chunk = 1 + (rng >> 16) % 64;
		if ((rng >> 8) % 4 == 0)
			chunk = room; // sometimes as much as fits
		size_t n = std::min({chunk, room, s.size() - fed});
		std::memcpy(in.data() + in_len, s.data() + fed, n);
		in_len += n;
		fed += n;
		// process()
		size_t off = 0;
		while (off < in_len) {
			const uint8_t *p = in.data() + off;
			size_t avail = in_len - off;
			if (skipping) {
				const void *nl = std::memchr(p, '\n', avail);
				if (!nl) {
					off = in_len;
					break;
				}
				off += size_t(static_cast<const uint8_t *>(nl) - p) + 1;
				skipping = false;
				continue;
			}
			size_t len = 0, consumed = 0;
			lt::Unit u = lt::next_unit(p, avail, json, max_line, len, consumed);
			if (u == lt::Unit::NeedMore)
				break;
			if (u == lt::Unit::Bad) {
				FUZZ_CHECK(!json);
				out.push_back({Out::Bad, ""});
				closed = true;
				break;
			}
			FUZZ_CHECK(consumed > 0 && consumed <= avail);
			if (u == lt::Unit::Frame) {
				FUZZ_CHECK(!json && len == consumed);
				out.push_back({Out::Frame, std::string(reinterpret_cast<const char *>(p), len)});
			} else if (u == lt::Unit::Line) {
				FUZZ_CHECK(json && len < consumed && p[consumed - 1] == '\n');
				out.push_back({Out::Line, std::string(reinterpret_cast<const char *>(p), len)});
			} else {
				FUZZ_CHECK(json && u == lt::Unit::TooLong);
				// Within the listener's buffer bound, the over-long line's
				// newline (if any) is never part of what is dropped.
				FUZZ_CHECK(std::memchr(p, '\n', consumed) == nullptr);
				out.push_back({Out::TooLong, ""});
				skipping = true;
			}
			off += consumed;
		}
		if (off > 0) {
			std::memmove(in.data(), in.data() + off, in_len - off);
			in_len -= off;
		}
	}
	return out;
}

// next_unit over the whole stream at once: the basic contract only.
void whole_buffer(const std::string &s, bool json, size_t max_line) {
	const uint8_t *p = reinterpret_cast<const uint8_t *>(s.data());
	size_t off = 0;
	while (off < s.size()) {
		size_t len = 0, consumed = 0, avail = s.size() - off;
		lt::Unit u = lt::next_unit(p + off, avail, json, max_line, len, consumed);
		if (u == lt::Unit::NeedMore) {
			if (json)
				FUZZ_CHECK(std::memchr(p + off, '\n', avail) == nullptr && avail <= max_line);
			break;
		}
		if (u == lt::Unit::Bad) {
			FUZZ_CHECK(!json);
			break;
		}
		FUZZ_CHECK(consumed > 0 && consumed <= avail);
		if (u == lt::Unit::Line) {
			FUZZ_CHECK(len < consumed && len <= max_line && p[off + consumed - 1] == '\n');
			FUZZ_CHECK(std::memchr(p + off, '\n', len) == nullptr);
		} else if (u == lt::Unit::TooLong) {
			FUZZ_CHECK(json);
			FUZZ_CHECK(std::memchr(p + off, '\n', std::min(avail, max_line + 1)) == nullptr);
			FUZZ_CHECK(std::memchr(p + off, '\n', consumed) == nullptr);
		} else {
			FUZZ_CHECK(!json && len == consumed);
		}
		off += consumed;
	}
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	if (size < 2)
		return 0;
	const uint8_t seed = data[0];
	const size_t max_line = 4 + size_t(data[1]) * 4; // 4 .. 1024
	std::string s(reinterpret_cast<const char *>(data) + 2, size - 2);
	if (s.empty())
		return 0;
	const bool json = lt::is_json(reinterpret_cast<const uint8_t *>(s.data()), s.size());
	// The listener's buffer: one byte more than the longest line; always
	// large enough for the largest frame (its real buffer is 16 KiB).
	const size_t cap = json ? max_line + 1 : lt::wire::kMaxFrame;

	std::vector<Out> got = listener_model(s, json, max_line, cap, seed);
	std::vector<Out> want = reference(s, json, max_line);
	FUZZ_CHECK(got.size() == want.size());
	for (size_t i = 0; i < got.size(); i++)
		FUZZ_CHECK(got[i] == want[i]);
	for (const Out &u : got)
		judge(u, json);

	whole_buffer(s, json, max_line);
	return 0;
}
