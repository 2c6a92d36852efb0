// Binary wire protocol v1 (SPEC 2.1): header, records, ACKs, framing errors.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "core/wire.hpp"
#include "test_helpers.hpp"

using namespace lt;
using namespace lt::wire;
using lt_test::make_fix;
using lt_test::make_frame;

namespace {

// A valid unsigned 16-byte header with `count` records, written byte by byte
// from the SPEC table (not with encode_header), so the encoder is tested too.
std::vector<uint8_t> spec_header(uint16_t count = 1, uint8_t flags = 0) {
	return {0x4C, 0x54, 0x01, flags, uint8_t(count >> 8), uint8_t(count), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
}

Parse parse(const std::vector<uint8_t> &b, size_t n, Header &h, size_t &len) { return parse_header(b.data(), n, h, len); }
Parse parse(const std::vector<uint8_t> &b) {
	Header h;
	size_t len = 0;
	return parse_header(b.data(), b.size(), h, len);
}

} // namespace

TEST(WireConstants, MatchSpec) {
	EXPECT_EQ(kHeaderSize, 16u);
	EXPECT_EQ(kRecordSize, 32u);
	EXPECT_EQ(kTagSize, 16u);
	EXPECT_EQ(kMaxCount, 64);
	EXPECT_EQ(kMaxFrame, 16u + 64u * 32u + 16u);
	EXPECT_EQ(kAckSize, 12u);
}

TEST(WireHeader, EncodeMatchesSpecLayout) {
	Header h{};
	h.version = 1;
	h.flags = kFlagSigned;
	h.count = 0x0102;
	h.reserved = 0x0304;
	h.key_id = 0x05060708;
	h.seq = 0x090A0B0C;
	uint8_t b[16];
	encode_header(b, h);
	const uint8_t want[16] = {0x4C, 0x54, 0x01, 0x01, 0x01, 0x02, 0x03, 0x04,
	                          0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C};
	for (int i = 0; i < 16; i++)
		EXPECT_EQ(b[i], want[i]) << "byte " << i;
}

TEST(WireHeader, RoundTrip) {
	for (uint16_t count : {uint16_t(1), uint16_t(2), uint16_t(63), uint16_t(64)}) {
		for (uint8_t flags : {uint8_t(0), kFlagSigned}) {
			Header h{};
			h.version = kVersion;
			h.flags = flags;
			h.count = count;
			h.reserved = 0xBEEF; // parse_header does not judge reserved: judge_message does
			h.key_id = 0xFFFFFFFFu;
			h.seq = 123456789;
			uint8_t b[16];
			encode_header(b, h);
			Header g{};
			size_t len = 0;
			ASSERT_EQ(parse_header(b, sizeof b, g, len), Parse::Ok);
			EXPECT_EQ(g.version, 1);
			EXPECT_EQ(g.flags, flags);
			EXPECT_EQ(g.count, count);
			EXPECT_EQ(g.reserved, 0xBEEF);
			EXPECT_EQ(g.key_id, 0xFFFFFFFFu);
			EXPECT_EQ(g.seq, 123456789u);
			EXPECT_EQ(g.is_signed(), flags == kFlagSigned);
			EXPECT_EQ(len, 16u + 32u * count + (flags ? 16u : 0u));
		}
	}
}

TEST(WireHeader, FrameLengthWithAndWithoutSigned) {
	Header h;
	size_t len = 0;
	ASSERT_EQ(parse(spec_header(1, 0), 16, h, len), Parse::Ok);
	EXPECT_EQ(len, 48u);
	ASSERT_EQ(parse(spec_header(1, 1), 16, h, len), Parse::Ok);
	EXPECT_EQ(len, 64u);
	ASSERT_EQ(parse(spec_header(64, 0), 16, h, len), Parse::Ok);
	EXPECT_EQ(len, 16u + 2048u);
	ASSERT_EQ(parse(spec_header(64, 1), 16, h, len), Parse::Ok);
	EXPECT_EQ(len, kMaxFrame);
}

TEST(WireHeader, EveryPrefixOfAValidHeaderNeedsMore) {
	auto b = spec_header(3);
	for (size_t n = 0; n < 16; n++) {
		Header h;
		size_t len = 0;
		EXPECT_EQ(parse(b, n, h, len), Parse::NeedMore) << "n=" << n;
	}
	Header h;
	size_t len = 0;
	EXPECT_EQ(parse(b, 16, h, len), Parse::Ok);
	// Extra bytes after the header (the records) do not matter.
	b.resize(200, 0xAA);
	EXPECT_EQ(parse(b, b.size(), h, len), Parse::Ok);
	EXPECT_EQ(len, 16u + 3u * 32u);
}

TEST(WireHeader, BadMagicFirstByteDetectedAfterOneByte) {
	for (uint8_t bad : {uint8_t(0x00), uint8_t(0x4D), uint8_t('{'), uint8_t(0x54), uint8_t(0xFF)}) {
		auto b = spec_header();
		b[0] = bad;
		for (size_t n = 1; n <= 16; n++) {
			Header h;
			size_t len;
			EXPECT_EQ(parse(b, n, h, len), Parse::Bad) << "byte0=" << int(bad) << " n=" << n;
		}
	}
}

TEST(WireHeader, BadMagicSecondByteDetectedAfterTwoBytes) {
	for (uint8_t bad : {uint8_t(0x00), uint8_t(0x4C), uint8_t(0x55), uint8_t(0xFF)}) {
		auto b = spec_header();
		b[1] = bad;
		Header h;
		size_t len;
		EXPECT_EQ(parse(b, 1, h, len), Parse::NeedMore); // "L" alone could still be a header
		for (size_t n = 2; n <= 16; n++)
			EXPECT_EQ(parse(b, n, h, len), Parse::Bad) << "byte1=" << int(bad) << " n=" << n;
	}
}

TEST(WireHeader, BadVersionDetectedAfterThreeBytes) {
	for (uint8_t v : {uint8_t(0), uint8_t(2), uint8_t(0xFF)}) {
		auto b = spec_header();
		b[2] = v;
		Header h;
		size_t len;
		EXPECT_EQ(parse(b, 2, h, len), Parse::NeedMore);
		for (size_t n = 3; n <= 16; n++)
			EXPECT_EQ(parse(b, n, h, len), Parse::Bad) << "version=" << int(v) << " n=" << n;
	}
}

TEST(WireHeader, EachReservedFlagBitIsBad) {
	for (int bit = 1; bit <= 7; bit++) {
		for (uint8_t base : {uint8_t(0), kFlagSigned}) {
			auto b = spec_header(1, uint8_t(base | (1u << bit)));
			Header h;
			size_t len;
			EXPECT_EQ(parse(b, 3, h, len), Parse::NeedMore);
			for (size_t n = 4; n <= 16; n++)
				EXPECT_EQ(parse(b, n, h, len), Parse::Bad) << "bit=" << bit << " n=" << n;
		}
	}
	// Bit 0 alone (SIGNED) is a valid header.
	EXPECT_EQ(parse(spec_header(1, 1)), Parse::Ok);
}

TEST(WireHeader, CountOutOfRangeIsBad) {
	for (uint16_t c : {uint16_t(0), uint16_t(65), uint16_t(0x0100), uint16_t(0xFFFF)}) {
		auto b = spec_header(c);
		Header h;
		size_t len;
		for (size_t n = 6; n <= 16; n++)
			EXPECT_EQ(parse(b, n, h, len), Parse::Bad) << "count=" << c << " n=" << n;
	}
	for (uint16_t c : {uint16_t(1), uint16_t(64)}) {
		EXPECT_EQ(parse(spec_header(c)), Parse::Ok) << "count=" << c;
	}
	// With only the low count byte missing, count 0 or <= 64 are both still possible.
	auto b = spec_header(0);
	Header h;
	size_t len;
	EXPECT_EQ(parse(b, 5, h, len), Parse::NeedMore);
}

// Five bytes prove a bad count when its high byte is set (count > 64).
TEST(WireHeader, CountHighByteProvesBadAfterFiveBytes) {
	auto b = spec_header(0x0101);
	Header h;
	size_t len;
	EXPECT_EQ(parse(b, 5, h, len), Parse::Bad);
}

TEST(WireRecord, EncodeMatchesSpecLayout) {
	Fix f{};
	f.driver_id = 0x0102030405060708ULL;
	f.ts_ms = 0x1112131415161718LL;
	f.lat_e7 = 0x21222324;
	f.lon_e7 = 0x31323334;
	f.speed_cms = 0x4142;
	f.heading_cd = 0x5152;
	f.accuracy_dm = 0x6162;
	f.status = 0x71;
	f.reserved = 0x72;
	uint8_t r[32];
	encode_record(r, f);
	const uint8_t want[32] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x11, 0x12, 0x13,
	                          0x14, 0x15, 0x16, 0x17, 0x18, 0x21, 0x22, 0x23, 0x24, 0x31, 0x32,
	                          0x33, 0x34, 0x41, 0x42, 0x51, 0x52, 0x61, 0x62, 0x71, 0x72};
	for (int i = 0; i < 32; i++)
		EXPECT_EQ(r[i], want[i]) << "byte " << i;
}

TEST(WireRecord, NegativeValuesAreTwosComplementBigEndian) {
	Fix f = make_fix(1, -1, -1, -900000000);
	uint8_t r[32];
	encode_record(r, f);
	for (int i = 8; i < 20; i++)
		EXPECT_EQ(r[i], 0xFF) << "byte " << i; // ts -1 and lat -1
	// -900000000 = 0xCA5B1700
	EXPECT_EQ(r[20], 0xCA);
	EXPECT_EQ(r[21], 0x5B);
	EXPECT_EQ(r[22], 0x17);
	EXPECT_EQ(r[23], 0x00);
}

TEST(WireRecord, RoundTripExtremes) {
	std::vector<Fix> fixes;
	fixes.push_back(make_fix(42, 1763700000123LL, 129716000, 775946000));
	fixes.push_back(make_fix(1, -1, -900000000, -1800000000));
	fixes.push_back(make_fix((uint64_t{1} << 63) - 1, std::numeric_limits<int64_t>::max(), 900000000, 1800000000));
	fixes.push_back(make_fix(~uint64_t{0}, std::numeric_limits<int64_t>::min(), std::numeric_limits<int32_t>::min(),
	                         std::numeric_limits<int32_t>::max()));
	fixes[1].speed_cms = fixes[1].heading_cd = fixes[1].accuracy_dm = 0xFFFF;
	fixes[2].status = 3;
	fixes[3].status = 0xFF;
	fixes[3].reserved = 0xFF;
	auto frame = make_frame(fixes);
	Header h;
	size_t len = 0;
	ASSERT_EQ(parse_header(frame.data(), frame.size(), h, len), Parse::Ok);
	ASSERT_EQ(len, frame.size());
	for (size_t i = 0; i < fixes.size(); i++) {
		Fix g;
		std::memset(&g, 0xA5, sizeof g);
		decode_record(frame.data(), i, g);
		EXPECT_TRUE(lt_test::same_fix(g, fixes[i])) << "record " << i;
		EXPECT_EQ(g.lat_e7, fixes[i].lat_e7);
		EXPECT_EQ(g.lon_e7, fixes[i].lon_e7);
		EXPECT_EQ(g.ts_ms, fixes[i].ts_ms);
	}
}

TEST(WireRecord, DecodeReadsOnlyItsOwnRecord) {
	// A frame of 64 records decodes each record from its own offset.
	std::vector<Fix> fixes;
	for (int i = 0; i < 64; i++)
		fixes.push_back(make_fix(uint64_t(i + 1), 1000 + i, i * 1000, -i * 1000));
	auto frame = make_frame(fixes);
	ASSERT_EQ(frame.size(), 16u + 64u * 32u);
	for (size_t i = 0; i < 64; i++) {
		Fix g;
		decode_record(frame.data(), i, g);
		EXPECT_TRUE(lt_test::same_fix(g, fixes[i])) << i;
	}
}

TEST(WireAck, EncodeMatchesSpecLayout) {
	uint8_t b[12];
	encode_ack(b, Ack{kAckSome, 0x01020304u, 0x0A0B0C0Du});
	const uint8_t want[12] = {'L', 'A', 1, 1, 0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D};
	for (int i = 0; i < 12; i++)
		EXPECT_EQ(b[i], want[i]) << "byte " << i;
	EXPECT_EQ(int(kAckAll), 0);
	EXPECT_EQ(int(kAckSome), 1);
	EXPECT_EQ(int(kAckRejected), 2);
}

TEST(WireAck, RoundTrip) {
	for (uint8_t st : {kAckAll, kAckSome, kAckRejected}) {
		for (uint32_t n : {1u, 2u, 0xFFFFFFFFu}) {
			uint8_t b[12];
			encode_ack(b, Ack{st, n, n / 2});
			Ack a{};
			ASSERT_TRUE(decode_ack(b, a));
			EXPECT_EQ(a.status, st);
			EXPECT_EQ(a.n, n);
			EXPECT_EQ(a.accepted, n / 2);
		}
	}
}

TEST(WireAck, DecodeRejectsNonAck) {
	uint8_t b[12];
	encode_ack(b, Ack{0, 1, 1});
	for (int i = 0; i < 3; i++) {
		uint8_t c[12];
		std::memcpy(c, b, 12);
		c[i] ^= 0x01;
		Ack a;
		EXPECT_FALSE(decode_ack(c, a)) << "byte " << i;
	}
	// A message header is not an ACK.
	auto h = spec_header();
	Ack a;
	EXPECT_FALSE(decode_ack(h.data(), a));
}

TEST(WireBytes, BigEndianHelpers) {
	uint8_t b[8];
	put16(b, 0xA1B2);
	EXPECT_EQ(b[0], 0xA1);
	EXPECT_EQ(b[1], 0xB2);
	EXPECT_EQ(get16(b), 0xA1B2);
	put32(b, 0xDEADBEEF);
	EXPECT_EQ(b[0], 0xDE);
	EXPECT_EQ(b[3], 0xEF);
	EXPECT_EQ(get32(b), 0xDEADBEEFu);
	put64(b, 0x0123456789ABCDEFULL);
	EXPECT_EQ(b[0], 0x01);
	EXPECT_EQ(b[7], 0xEF);
	EXPECT_EQ(get64(b), 0x0123456789ABCDEFULL);
	put64(b, ~uint64_t{0});
	EXPECT_EQ(get64(b), ~uint64_t{0});
}
