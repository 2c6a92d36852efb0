// HMAC-SHA256 for message tags (SPEC 2.3) and tokens (SPEC 6), from OpenSSL's
// libcrypto (which Debian's Postgres links already): the listener's engine,
// the HTTP worker and the fuzzers verify with the same maintained code.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lt {

constexpr size_t kSha256Bytes = 32;

void sha256(const uint8_t *data, size_t n, uint8_t out[kSha256Bytes]);
// Throws std::runtime_error if libcrypto fails (out of memory).
void hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t n, uint8_t out[kSha256Bytes]);

// Compares without an early exit (CRYPTO_memcmp), so the time taken says
// nothing about where a forged tag first differs.
bool equal_ct(const uint8_t *a, const uint8_t *b, size_t n);

} // namespace lt
