// Binary wire protocol v1 (SPEC 2.1): frames, records, ACKs. Big-endian.
//
// Decoding never allocates and never reads past the length it is given, so
// the same code serves UDP datagrams, TCP streams and the fuzzer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fix.hpp"

namespace lt::wire {

constexpr uint8_t kMagic0 = 0x4C; // 'L'
constexpr uint8_t kMagic1 = 0x54; // 'T'
constexpr uint8_t kVersion = 1;
constexpr uint8_t kFlagSigned = 0x01;
constexpr size_t kHeaderSize = 16;
constexpr size_t kRecordSize = 32;
constexpr size_t kTagSize = 16;
constexpr uint16_t kMaxCount = 64;
constexpr size_t kMaxFrame = kHeaderSize + kMaxCount * kRecordSize + kTagSize;
constexpr size_t kAckSize = 12;

struct Header {
	uint8_t version;
	uint8_t flags;
	uint16_t count;
	uint16_t reserved;
	uint32_t key_id;
	uint32_t seq;
	bool is_signed() const { return flags & kFlagSigned; }
};

enum class Parse : uint8_t {
	Ok,       // header valid, frame_len set
	NeedMore, // not enough bytes yet to decide (streams only)
	Bad,      // cannot be framed: bad magic, version, flags or count
};

// Parses the header at p[0..n). Bad is reported as soon as the bytes seen
// prove it, so a stream can drop a connection without waiting for 16 bytes.
Parse parse_header(const uint8_t *p, size_t n, Header &h, size_t &frame_len);

// Decodes record i of a frame whose header was accepted.
void decode_record(const uint8_t *frame, size_t i, Fix &out);

// ACK status byte (SPEC 2.1).
enum AckStatus : uint8_t { kAckAll = 0, kAckSome = 1, kAckRejected = 2 };

struct Ack {
	uint8_t status;
	uint32_t n;        // 1-based message index on the connection
	uint32_t accepted; // records accepted
};

// Encoders: used by the server for ACKs, by the simulator and by tests.
void encode_header(uint8_t *out, const Header &h);
void encode_record(uint8_t *out, const Fix &f);
void encode_ack(uint8_t *out, const Ack &a);
bool decode_ack(const uint8_t *in, Ack &a); // false if not an ACK

// Byte-order helpers shared with the JSON side and tools.
inline uint16_t get16(const uint8_t *p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t get32(const uint8_t *p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
inline uint64_t get64(const uint8_t *p) { return uint64_t(get32(p)) << 32 | get32(p + 4); }
inline void put16(uint8_t *p, uint16_t v) { p[0] = uint8_t(v >> 8); p[1] = uint8_t(v); }
inline void put32(uint8_t *p, uint32_t v) { put16(p, uint16_t(v >> 16)); put16(p + 2, uint16_t(v)); }
inline void put64(uint8_t *p, uint64_t v) { put32(p, uint32_t(v >> 32)); put32(p + 4, uint32_t(v)); }

} // namespace lt::wire
