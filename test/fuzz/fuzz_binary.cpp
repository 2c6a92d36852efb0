// Fuzz target: bytes -> a UDP datagram in the binary protocol (SPEC 2.1).
//
// The input is one datagram. Like the listener, it is parsed with
// parse_header() and, when it holds a whole frame, judged with
// judge_message() under every auth mode and peer kind. The UDP rule (length
// must be exactly the frame length) is checked, and when the datagram is
// longer than one frame the first frame is judged too, as the TCP path would.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	using namespace lt;
	fuzz::check_header_prefixes(data, size);

	// A datagram starting with '{' is JSON, not binary.
	if (is_json(data, size))
		return 0;

	wire::Header h;
	size_t frame_len = 0;
	wire::Parse r = wire::parse_header(data, size, h, frame_len);
	if (r != wire::Parse::Ok) {
		FUZZ_CHECK(r == wire::Parse::Bad || size < wire::kHeaderSize);
		return 0;
	}
	fuzz::check_header(data, size, h, frame_len);
	bool udp_accepts = frame_len == size; // anything else: the whole datagram is rejected
	(void)udp_accepts;
	if (size < frame_len)
		return 0;
	for (int pi = 0; pi < fuzz::kPolicies; pi++)
		for (bool lo : {false, true})
			fuzz::check_message(data, h, lo, fuzz::policy(pi));
	return 0;
}
