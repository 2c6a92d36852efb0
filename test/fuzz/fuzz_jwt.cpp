// Fuzz target: bytes -> token checks (core/jwt.hpp, core/base64.hpp).
//
// 1. The bytes as a token: without our secret nothing may verify.
// 2. The bytes as a payload signed with our secret: verification must pass
//    the signature, and anything it accepts must be a well-formed claim set
//    that has not expired.
// 3. base64 both ways: decode(encode(x)) == x; a decoded string re-encodes
//    to the input (one encoding per value).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/base64.hpp"
#include "core/jwt.hpp"
#include "fuzz_common.hpp"

namespace {
const uint8_t kSecret[32] = {9, 8, 7, 6, 5, 4, 3, 2, 1};
constexpr int64_t kNowS = 1763700000;
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	std::string in(reinterpret_cast<const char *>(data), size);
	lt::jwt::Claims c;
	FUZZ_CHECK(lt::jwt::verify(in, kSecret, sizeof kSecret, kNowS, c) != lt::jwt::Verdict::Ok);

	std::string t = lt::jwt::sign(in, kSecret, sizeof kSecret);
	lt::jwt::Verdict v = lt::jwt::verify(t, kSecret, sizeof kSecret, kNowS, c);
	FUZZ_CHECK(v != lt::jwt::Verdict::Signature && v != lt::jwt::Verdict::Algorithm);
	if (t.size() <= lt::jwt::kMaxTokenBytes && v == lt::jwt::Verdict::Ok) {
		FUZZ_CHECK(c.exp > kNowS);
		switch (c.scope) {
		case lt::jwt::Scope::Watch: FUZZ_CHECK(c.order_id > 0); break;
		case lt::jwt::Scope::Device: FUZZ_CHECK(c.driver_id > 0 && c.driver_id < (uint64_t(1) << 63)); break;
		case lt::jwt::Scope::Dispatch:
			if (c.area)
				(void)c.area->contains(12.9, 77.6);
			break;
		}
	}

	for (bool url : {false, true}) {
		std::string out;
		FUZZ_CHECK(lt::b64::decode(lt::b64::encode(in, url), url, out) && out == in);
		if (lt::b64::decode(in, url, out))
			FUZZ_CHECK(lt::b64::encode(out, url) == in);
	}
	return 0;
}
