// Signed input (SPEC 2.3): HMAC-SHA256, the shared-memory key store, the
// anti-replay window, and judge_message() with keys.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/hmac.hpp"
#include "core/key_store.hpp"
#include "core/message.hpp"
#include "test_helpers.hpp"

using namespace lt;
using lt_test::make_fix;
using lt_test::make_frame;
using lt_test::sign_frame;

namespace {

std::string hex(const uint8_t *p, size_t n) {
	static const char *d = "0123456789abcdef";
	std::string s;
	for (size_t i = 0; i < n; i++) {
		s += d[p[i] >> 4];
		s += d[p[i] & 15];
	}
	return s;
}

std::string sha_hex(const std::string &m) {
	uint8_t out[kSha256Bytes];
	sha256(reinterpret_cast<const uint8_t *>(m.data()), m.size(), out);
	return hex(out, sizeof out);
}

std::string hmac_hex(const std::vector<uint8_t> &key, const std::string &m) {
	uint8_t out[kSha256Bytes];
	hmac_sha256(key.data(), key.size(), reinterpret_cast<const uint8_t *>(m.data()), m.size(), out);
	return hex(out, sizeof out);
}

// A store in ordinary memory, as shared memory would hold it.
struct Store {
	explicit Store(uint32_t cap) : mem(new uint64_t[KeyStore::bytes_needed(cap) / 8 + 1]) {
		KeyStore::format(mem.get(), cap);
		ks.attach(mem.get());
	}
	std::unique_ptr<uint64_t[]> mem;
	KeyStore ks{};
};

const uint8_t kSecretA[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                              17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
const uint8_t kSecretB[32] = {0xAA};

constexpr int64_t kNow = 1763700000123LL;
const Policy kTrust{AuthMode::LoopbackTrust, {30000, 600000}};
const Policy kOff{AuthMode::Off, {30000, 600000}};
const Policy kRequired{AuthMode::Required, {30000, 600000}};

MessageVerdict judge(const std::vector<uint8_t> &frame, const Policy &p, KeyStore *keys, bool loopback = false) {
	wire::Header h;
	size_t len = 0;
	EXPECT_EQ(wire::parse_header(frame.data(), frame.size(), h, len), wire::Parse::Ok);
	MessageVerdict v;
	std::memset(&v, 0xCD, sizeof v);
	judge_message(frame.data(), h, loopback, p, kNow, v, keys);
	return v;
}

std::vector<uint8_t> signed_frame(const std::vector<Fix> &fixes, uint32_t key_id, uint32_t seq, const uint8_t *secret) {
	auto f = make_frame(fixes, wire::kFlagSigned, 0, key_id, seq);
	sign_frame(f, secret);
	return f;
}

} // namespace

TEST(Hmac, Sha256KnownAnswers) { // FIPS 180-4 examples
	EXPECT_EQ(sha_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	EXPECT_EQ(sha_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	EXPECT_EQ(sha_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
	          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	EXPECT_EQ(sha_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Hmac, Rfc4231TestCases) {
	EXPECT_EQ(hmac_hex(std::vector<uint8_t>(20, 0x0b), "Hi There"),
	          "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	EXPECT_EQ(hmac_hex({'J', 'e', 'f', 'e'}, "what do ya want for nothing?"),
	          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	// A key longer than the block is hashed first.
	EXPECT_EQ(hmac_hex(std::vector<uint8_t>(131, 0xaa), "Test Using Larger Than Block-Size Key - Hash Key First"),
	          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(Hmac, ConstantTimeCompare) {
	uint8_t a[16] = {1, 2, 3}, b[16] = {1, 2, 3};
	EXPECT_TRUE(equal_ct(a, b, 16));
	b[15] ^= 1;
	EXPECT_FALSE(equal_ct(a, b, 16));
}

TEST(KeyStore, InstallFindRevokeAndCapacity) {
	Store s(3);
	EXPECT_EQ(s.ks.find(1), nullptr);
	EXPECT_EQ(s.ks.install(1, 0, kSecretA), KeyStore::Install::Ok);
	EXPECT_EQ(s.ks.install(7, 42, kSecretB), KeyStore::Install::Ok);
	EXPECT_EQ(s.ks.install(7, 43, kSecretA), KeyStore::Install::Exists); // the first one stays
	ASSERT_NE(s.ks.find(7), nullptr);
	EXPECT_EQ(s.ks.find(7)->driver_id, 42u);
	EXPECT_EQ(std::memcmp(s.ks.find(1)->secret, kSecretA, 32), 0);
	EXPECT_EQ(s.ks.install(9, 0, kSecretA), KeyStore::Install::Ok);
	EXPECT_EQ(s.ks.install(10, 0, kSecretA), KeyStore::Install::Full);
	EXPECT_EQ(s.ks.size(), 3u);
	EXPECT_TRUE(s.ks.revoke(7));
	EXPECT_FALSE(s.ks.revoke(8));
	EXPECT_EQ(s.ks.find(7)->revoked, 1u);
	s.ks.clear();
	EXPECT_EQ(s.ks.find(1), nullptr);
	EXPECT_EQ(s.ks.install(10, 0, kSecretA), KeyStore::Install::Ok);
}

TEST(KeyStore, ManyKeysAllFound) {
	Store s(5000);
	for (uint32_t id = 1; id <= 5000; id++)
		ASSERT_EQ(s.ks.install(id * 7919, id, kSecretA), KeyStore::Install::Ok);
	for (uint32_t id = 1; id <= 5000; id++) {
		KeyEntry *e = s.ks.find(id * 7919);
		ASSERT_NE(e, nullptr);
		EXPECT_EQ(e->driver_id, id);
	}
	EXPECT_EQ(s.ks.find(3), nullptr);
}

TEST(ReplayWindow, Rfc4303SlidingWindow) {
	KeyEntry e{};
	EXPECT_TRUE(replay_accept(e, 100));
	EXPECT_FALSE(replay_accept(e, 100)); // seen
	EXPECT_TRUE(replay_accept(e, 99));    // older, but in the window and new
	EXPECT_FALSE(replay_accept(e, 99));
	EXPECT_TRUE(replay_accept(e, 37));    // 63 below the highest: still in
	EXPECT_FALSE(replay_accept(e, 36));   // 64 below: out
	EXPECT_TRUE(replay_accept(e, 105));   // moves the window by 5
	EXPECT_FALSE(replay_accept(e, 100));  // remembered after the shift
	EXPECT_FALSE(replay_accept(e, 41));   // 64 below 105
	EXPECT_TRUE(replay_accept(e, 42));
	EXPECT_TRUE(replay_accept(e, 1000));  // a jump past the window clears it
	EXPECT_FALSE(replay_accept(e, 105));
	EXPECT_TRUE(replay_accept(e, 999));
	KeyEntry z{};
	EXPECT_TRUE(replay_accept(z, 0)); // seq 0 is a sequence number like any other
	EXPECT_FALSE(replay_accept(z, 0));
	EXPECT_TRUE(replay_accept(z, 0xFFFFFFFFu));
}

TEST(ReplayWindow, ResumedAfterARestart) {
	KeyEntry e{};
	replay_resume(e, 500);
	EXPECT_FALSE(replay_accept(e, 500));
	EXPECT_FALSE(replay_accept(e, 470)); // in the window, but counted as seen
	EXPECT_FALSE(replay_accept(e, 3));
	EXPECT_TRUE(replay_accept(e, 501));
	EXPECT_FALSE(replay_accept(e, 501));
}

TEST(JudgeSigned, GatewayKeyFromAnywhere) {
	std::vector<Fix> fixes = {make_fix(11, kNow), make_fix(12, kNow)};
	for (const Policy *p : {&kTrust, &kRequired}) {
		Store fresh(4);
		fresh.ks.install(5, 0, kSecretA);
		auto v = judge(signed_frame(fixes, 5, 1, kSecretA), *p, &fresh.ks, /*loopback=*/false);
		EXPECT_EQ(v.message, Reject::None);
		EXPECT_EQ(v.accepted, 2);
	}
}

TEST(JudgeSigned, RefusedWithoutTheRightKey) {
	Store s(4);
	s.ks.install(5, 0, kSecretA);
	std::vector<Fix> fixes = {make_fix(11, kNow)};
	EXPECT_EQ(judge(signed_frame(fixes, 6, 1, kSecretA), kTrust, &s.ks).message, Reject::Auth); // unknown key
	EXPECT_EQ(judge(signed_frame(fixes, 5, 1, kSecretB), kTrust, &s.ks).message, Reject::Auth); // wrong secret
	auto f = signed_frame(fixes, 5, 2, kSecretA);
	f[lt::wire::kHeaderSize + 20] ^= 1; // a record changed after signing
	EXPECT_EQ(judge(f, kTrust, &s.ks).message, Reject::Auth);
	f = signed_frame(fixes, 5, 3, kSecretA);
	f[13] ^= 1; // the sequence number changed after signing
	EXPECT_EQ(judge(f, kTrust, &s.ks).message, Reject::Auth);
	EXPECT_EQ(judge(signed_frame(fixes, 5, 1, kSecretA), kTrust, nullptr).message, Reject::Auth); // no keys at all
	// Forgeries did not move the window: seq 2 and 3 are still fresh.
	EXPECT_EQ(judge(signed_frame(fixes, 5, 3, kSecretA), kTrust, &s.ks).message, Reject::None);
	EXPECT_EQ(judge(signed_frame(fixes, 5, 2, kSecretA), kTrust, &s.ks).message, Reject::None);
	s.ks.revoke(5);
	auto v = judge(signed_frame(fixes, 5, 4, kSecretA), kTrust, &s.ks);
	EXPECT_EQ(v.message, Reject::Auth);
	EXPECT_EQ(v.record[0], Reject::Auth);
	EXPECT_EQ(v.accepted, 0);
}

TEST(JudgeSigned, ReplaysRefused) {
	Store s(4);
	s.ks.install(5, 0, kSecretA);
	std::vector<Fix> fixes = {make_fix(11, kNow)};
	auto m10 = signed_frame(fixes, 5, 10, kSecretA);
	EXPECT_EQ(judge(m10, kTrust, &s.ks).message, Reject::None);
	EXPECT_EQ(judge(m10, kTrust, &s.ks).message, Reject::Replay);
	EXPECT_EQ(judge(signed_frame(fixes, 5, 80, kSecretA), kTrust, &s.ks).message, Reject::None);
	EXPECT_EQ(judge(signed_frame(fixes, 5, 16, kSecretA), kTrust, &s.ks).message, Reject::Replay); // 64 below 80
	EXPECT_EQ(judge(signed_frame(fixes, 5, 17, kSecretA), kTrust, &s.ks).message, Reject::None);
}

TEST(JudgeSigned, DeviceKeySignsForItsDriverOnly) {
	Store s(4);
	s.ks.install(8, 11, kSecretB);
	std::vector<Fix> fixes = {make_fix(11, kNow), make_fix(12, kNow), make_fix(11, kNow + 1)};
	auto v = judge(signed_frame(fixes, 8, 1, kSecretB), kRequired, &s.ks);
	EXPECT_EQ(v.message, Reject::None);
	EXPECT_EQ(v.record[0], Reject::None);
	EXPECT_EQ(v.record[1], Reject::Auth);
	EXPECT_EQ(v.record[2], Reject::None);
	EXPECT_EQ(v.accepted, 2);
	EXPECT_EQ(v.ack_status(), wire::kAckSome);
}

TEST(JudgeSigned, RequiredRefusesUnsignedEvenFromLoopbackAndOffChecksNothing) {
	Store s(4);
	s.ks.install(5, 0, kSecretA);
	std::vector<Fix> fixes = {make_fix(11, kNow)};
	EXPECT_EQ(judge(make_frame(fixes), kRequired, &s.ks, true).message, Reject::Auth);
	// Off: a closed network; tags are not checked, windows not touched.
	EXPECT_EQ(judge(signed_frame(fixes, 6, 1, kSecretB), kOff, &s.ks).message, Reject::None);
	EXPECT_EQ(s.ks.find(5)->seen, 0u);
	// Range checks still apply to signed records.
	std::vector<Fix> bad = {make_fix(11, kNow, 900000001)};
	auto v = judge(signed_frame(bad, 5, 1, kSecretA), kTrust, &s.ks);
	EXPECT_EQ(v.message, Reject::None);
	EXPECT_EQ(v.record[0], Reject::Range);
}
