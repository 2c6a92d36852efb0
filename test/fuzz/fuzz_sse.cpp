// Fuzz target: bytes -> Server-Sent Events (core/sse.hpp).
//
// 1. The bytes as an event's data, encoded and parsed back (in chunks the
//    first byte picks): the same data, with line breaks as "\n", under the
//    same id and event name.
// 2. The bytes as a stream, parsed whole and in chunks: the same events.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/sse.hpp"
#include "fuzz_common.hpp"

namespace {

std::vector<lt::sse::Event> read(const std::string &s, size_t step) {
	lt::sse::Parser p;
	std::vector<lt::sse::Event> ev;
	for (size_t off = 0; off < s.size(); off += step)
		p.feed(s.data() + off, std::min(step, s.size() - off), ev);
	return ev;
}

bool same(const std::vector<lt::sse::Event> &a, const std::vector<lt::sse::Event> &b) {
	if (a.size() != b.size())
		return false;
	for (size_t i = 0; i < a.size(); i++)
		if (a[i].event != b[i].event || a[i].id != b[i].id || a[i].data != b[i].data)
			return false;
	return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	if (size < 1)
		return 0;
	size_t step = 1 + data[0] % 13;
	std::string in(reinterpret_cast<const char *>(data + 1), size - 1);

	std::string want;
	for (size_t i = 0; i < in.size(); i++) {
		if (in[i] == '\r') {
			want += '\n';
			if (i + 1 < in.size() && in[i + 1] == '\n')
				i++;
		} else {
			want += in[i];
		}
	}
	std::string s;
	lt::sse::append_comment(s, in);
	lt::sse::append_event(s, "status", 42, in);
	std::vector<lt::sse::Event> ev = read(s, step);
	// A leading byte-order mark in the stream would be dropped; ours starts with ':'.
	FUZZ_CHECK(ev.size() == 1);
	FUZZ_CHECK(ev[0].event == "status" && ev[0].id == "42" && ev[0].data == want);

	FUZZ_CHECK(same(read(in, in.size() + 1), read(in, step)));
	return 0;
}
