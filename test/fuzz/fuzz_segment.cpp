// Fuzz target: bytes -> the segment decoder (core/segment.hpp).
//
// Whatever comes in, decode() either refuses it or returns fixes within the
// wire's ranges, and then the bytes are exactly what encode() writes for
// those fixes (one encoding per history). The same bytes read as fixes go
// through encode() and decode() back to themselves.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/segment.hpp"
#include "fuzz_common.hpp"

using lt::segment::Point;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	if (size > 1 << 16)
		return 0;
	std::vector<Point> out;
	const char *why = nullptr;
	if (lt::segment::decode(data, size, out, &why)) {
		FUZZ_CHECK(!out.empty());
		for (const Point &p : out) {
			FUZZ_CHECK(p.lat_e7 >= -900000000 && p.lat_e7 <= 900000000);
			FUZZ_CHECK(p.lon_e7 >= -1800000000 && p.lon_e7 <= 1800000000);
			FUZZ_CHECK(p.heading_cd <= 35999 || p.heading_cd == 0xFFFF);
		}
		std::string again = lt::segment::encode(out.data(), out.size());
		FUZZ_CHECK(again.size() == size && std::memcmp(again.data(), data, size) == 0);
	} else {
		FUZZ_CHECK(why != nullptr && out.empty());
	}
	// The bytes as fixes (32 bytes each, clamped into range): a round trip.
	std::vector<Point> in;
	for (size_t off = 0; off + 32 <= size && in.size() < 256; off += 32) {
		Point p;
		int64_t a, b;
		int32_t la, lo;
		uint16_t s3[3];
		std::memcpy(&a, data + off, 8);
		std::memcpy(&la, data + off + 8, 4);
		std::memcpy(&lo, data + off + 12, 4);
		std::memcpy(s3, data + off + 16, 6);
		std::memcpy(&b, data + off + 22, 8);
		p.ts_ms = a % (int64_t(1) << 53);
		p.lat_e7 = la % 900000001;
		p.lon_e7 = lo % 1800000001;
		p.speed_cms = s3[0];
		p.heading_cd = s3[1] == 0xFFFF ? s3[1] : uint16_t(s3[1] % 36000);
		p.accuracy_dm = s3[2];
		p.received_us = p.ts_ms * 1000 + b % 3155760000000000LL;
		in.push_back(p);
	}
	if (!in.empty()) {
		std::string e = lt::segment::encode(in.data(), in.size());
		FUZZ_CHECK(lt::segment::decode(reinterpret_cast<const uint8_t *>(e.data()), e.size(), out, &why));
		FUZZ_CHECK(out == in);
	}
	return 0;
}
