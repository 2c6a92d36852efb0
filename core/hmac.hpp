// HMAC-SHA256 (RFC 2104 over FIPS 180-4) for message tags (SPEC 2.3). Plain
// C++ so the listener's engine and the fuzzers verify tags without Postgres.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lt {

constexpr size_t kSha256Bytes = 32;

void sha256(const uint8_t *data, size_t n, uint8_t out[kSha256Bytes]);
void hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t n, uint8_t out[kSha256Bytes]);

// Compares without an early exit, so the time taken says nothing about where
// a forged tag first differs.
bool equal_ct(const uint8_t *a, const uint8_t *b, size_t n);

} // namespace lt
