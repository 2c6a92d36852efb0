// Fuzz target: bytes -> a UDP datagram in the binary protocol (SPEC 2.1).
//
// The input is one datagram. Like the listener, it is parsed with
// parse_header() and, when it holds a whole frame, judged with
// judge_message() under every auth mode and peer kind. The UDP rule (length
// must be exactly the frame length) is checked, and when the datagram is
// longer than one frame the first frame is judged too, as the TCP path would.
// A signed frame is also judged against a key store holding its key: once
// as it came (its tag is almost surely wrong), and once re-signed with the
// key (as a device key of its first record's driver when the seq is odd,
// else a gateway key), then replayed.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/hmac.hpp"
#include "core/key_store.hpp"
#include "fuzz_common.hpp"

namespace {

const uint8_t kSecret[32] = {7, 1, 7, 1, 7, 1, 7, 1, 9, 9, 9, 9, 9, 9, 9, 9, 3, 3, 3, 3, 3, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5};

void check_signed(const uint8_t *data, const lt::wire::Header &h, size_t frame_len) {
	using namespace lt;
	std::vector<uint64_t> mem(KeyStore::bytes_needed(4) / 8 + 1);
	std::vector<uint8_t> frame(data, data + frame_len);
	size_t body = frame_len - wire::kTagSize;
	uint8_t tag[kSha256Bytes];
	hmac_sha256(kSecret, sizeof kSecret, frame.data(), body, tag);
	bool came_signed = equal_ct(tag, frame.data() + body, wire::kTagSize);
	Fix first;
	wire::decode_record(frame.data(), 0, first);
	uint64_t device = h.seq % 2 ? first.driver_id : 0;
	for (int pi = 0; pi < fuzz::kPolicies; pi++) {
		const Policy &p = fuzz::policy(pi);
		KeyStore ks{};
		KeyStore::format(mem.data(), 4);
		ks.attach(mem.data());
		FUZZ_CHECK(ks.install(h.key_id, device, kSecret) == KeyStore::Install::Ok);
		MessageVerdict v;
		if (!came_signed) {
			judge_message(frame.data(), h, false, p, fuzz::kNow, v, &ks);
			FUZZ_CHECK(v.message == (h.reserved ? Reject::Malformed : p.auth == AuthMode::Off ? Reject::None : Reject::Auth));
			FUZZ_CHECK(ks.find(h.key_id)->seen == 0); // a forgery moves no window
		}
		std::memcpy(frame.data() + body, tag, wire::kTagSize);
		for (int round = 0; round < 2; round++) {
			judge_message(frame.data(), h, false, p, fuzz::kNow, v, &ks);
			Reject want = h.reserved ? Reject::Malformed
			              : p.auth == AuthMode::Off || round == 0 ? Reject::None
			                                                       : Reject::Replay;
			FUZZ_CHECK(v.message == want);
			if (v.message != Reject::None)
				continue;
			for (uint16_t i = 0; i < h.count; i++) {
				bool other_driver = p.auth != AuthMode::Off && device != 0 && v.fix[i].driver_id != device;
				FUZZ_CHECK(v.record[i] == (other_driver ? Reject::Auth : validate_fix(v.fix[i], fuzz::kNow, fuzz::kClock)));
				FUZZ_CHECK((v.record[i] == Reject::None) == (!other_driver && fuzz::spec_record_ok(v.fix[i])));
			}
		}
		std::memcpy(frame.data() + body, data + body, wire::kTagSize);
	}
}

} // namespace

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
	if (h.is_signed())
		check_signed(data, h, frame_len);
	return 0;
}
