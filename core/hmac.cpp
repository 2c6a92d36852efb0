#include "hmac.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdexcept>

namespace lt {
namespace {

// OpenSSL 3's one-shot HMAC() fetches the algorithm on every call (a few
// microseconds); a per-thread context fetched once and re-keyed per message
// costs a fraction of that. Made on first use: no static constructor.
struct MacCtx {
	EVP_MAC *mac = nullptr;
	EVP_MAC_CTX *ctx = nullptr;
};
thread_local MacCtx tls;

EVP_MAC_CTX *mac_ctx() {
	if (tls.ctx != nullptr)
		return tls.ctx;
	if (tls.mac == nullptr)
		tls.mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
	if (tls.mac != nullptr)
		tls.ctx = EVP_MAC_CTX_new(tls.mac);
	if (tls.ctx == nullptr)
		throw std::runtime_error("libcrypto: HMAC is not available");
	return tls.ctx;
}

} // namespace

void sha256(const uint8_t *data, size_t n, uint8_t out[kSha256Bytes]) {
	unsigned int len = 0;
	if (EVP_Digest(data, n, out, &len, EVP_sha256(), nullptr) != 1 || len != kSha256Bytes)
		throw std::runtime_error("libcrypto: SHA-256 failed");
}

void hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t n, uint8_t out[kSha256Bytes]) {
	static const uint8_t kEmpty = 0; // HMAC with an empty key is defined; OpenSSL wants a non-null pointer
	EVP_MAC_CTX *ctx = mac_ctx();
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_construct_end()};
	size_t len = 0;
	if (EVP_MAC_init(ctx, key_len ? key : &kEmpty, key_len, params) != 1 || EVP_MAC_update(ctx, data, n) != 1 ||
	    EVP_MAC_final(ctx, out, &len, kSha256Bytes) != 1 || len != kSha256Bytes)
		throw std::runtime_error("libcrypto: HMAC-SHA256 failed");
}

bool equal_ct(const uint8_t *a, const uint8_t *b, size_t n) { return CRYPTO_memcmp(a, b, n) == 0; }

} // namespace lt
