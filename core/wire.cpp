#include "wire.hpp"

namespace lt::wire {

Parse parse_header(const uint8_t *p, size_t n, Header &h, size_t &frame_len) {
	if (n >= 1 && p[0] != kMagic0)
		return Parse::Bad;
	if (n >= 2 && p[1] != kMagic1)
		return Parse::Bad;
	if (n >= 3 && p[2] != kVersion)
		return Parse::Bad;
	if (n >= 4 && (p[3] & ~kFlagSigned) != 0)
		return Parse::Bad;
	if (n >= 5 && p[4] != 0) // count <= 64: the high byte must be 0
		return Parse::Bad;
	if (n >= 6) {
		uint16_t count = get16(p + 4);
		if (count == 0 || count > kMaxCount)
			return Parse::Bad;
	}
	if (n < kHeaderSize)
		return Parse::NeedMore;
	h.version = p[2];
	h.flags = p[3];
	h.count = get16(p + 4);
	h.reserved = get16(p + 6);
	h.key_id = get32(p + 8);
	h.seq = get32(p + 12);
	frame_len = kHeaderSize + size_t(h.count) * kRecordSize + (h.is_signed() ? kTagSize : 0);
	return Parse::Ok;
}

void decode_record(const uint8_t *frame, size_t i, Fix &f) {
	const uint8_t *r = frame + kHeaderSize + i * kRecordSize;
	f.driver_id = get64(r);
	f.ts_ms = int64_t(get64(r + 8));
	f.lat_e7 = int32_t(get32(r + 16));
	f.lon_e7 = int32_t(get32(r + 20));
	f.speed_cms = get16(r + 24);
	f.heading_cd = get16(r + 26);
	f.accuracy_dm = get16(r + 28);
	f.status = r[30];
	f.reserved = r[31];
}

void encode_header(uint8_t *out, const Header &h) {
	out[0] = kMagic0;
	out[1] = kMagic1;
	out[2] = h.version;
	out[3] = h.flags;
	put16(out + 4, h.count);
	put16(out + 6, h.reserved);
	put32(out + 8, h.key_id);
	put32(out + 12, h.seq);
}

void encode_record(uint8_t *r, const Fix &f) {
	put64(r, f.driver_id);
	put64(r + 8, uint64_t(f.ts_ms));
	put32(r + 16, uint32_t(f.lat_e7));
	put32(r + 20, uint32_t(f.lon_e7));
	put16(r + 24, f.speed_cms);
	put16(r + 26, f.heading_cd);
	put16(r + 28, f.accuracy_dm);
	r[30] = f.status;
	r[31] = f.reserved;
}

void encode_ack(uint8_t *out, const Ack &a) {
	out[0] = 'L';
	out[1] = 'A';
	out[2] = kVersion;
	out[3] = a.status;
	put32(out + 4, a.n);
	put32(out + 8, a.accepted);
}

bool decode_ack(const uint8_t *in, Ack &a) {
	if (in[0] != 'L' || in[1] != 'A' || in[2] != kVersion)
		return false;
	a.status = in[3];
	a.n = get32(in + 4);
	a.accepted = get32(in + 8);
	return true;
}

} // namespace lt::wire
