// Fuzz target: bytes from a broker -> the MQTT decoder (core/mqtt.hpp).
//
// Byte 0 picks the protocol version and the sizes of the chunks the bytes
// arrive in. Whatever comes in: a packet is reported only when all of it
// has arrived, never past the input; PUBLISH topics are valid UTF-8 without
// wildcards and QoS is 0 or 1 with a packet id exactly when it is 1; a
// PUBLISH encodes and decodes back to itself; one over the size limit is
// reported for skipping with a valid topic; and the same bytes in one piece
// decode to the same packets.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/mqtt.hpp"
#include "fuzz_common.hpp"

namespace {

using lt::mqtt::Decoder;
using lt::mqtt::Packet;
using lt::mqtt::Version;

struct Seen {
	uint8_t type, flags, qos, reason;
	uint16_t id;
	std::string topic, payload;
	bool operator==(const Seen &o) const {
		return type == o.type && flags == o.flags && qos == o.qos && reason == o.reason && id == o.id &&
		       topic == o.topic && payload == o.payload;
	}
};

void check_packet(const Packet &p, Version v) {
	FUZZ_CHECK(p.type >= lt::mqtt::kConnack && p.type <= lt::mqtt::kDisconnect);
	FUZZ_CHECK(p.type != lt::mqtt::kConnect && p.type != lt::mqtt::kSubscribe && p.type != lt::mqtt::kPingreq);
	if (p.type != lt::mqtt::kPublish)
		return;
	FUZZ_CHECK(p.qos <= 2);
	FUZZ_CHECK((p.qos == 0) == (p.packet_id == 0));
	FUZZ_CHECK(!p.topic.empty() && lt::mqtt::valid_utf8(p.topic));
	FUZZ_CHECK(p.topic.find_first_of("+#") == std::string_view::npos);
	if (p.qos > 1)
		return; // encode_publish writes QoS 0 and 1 only
	// Round trip: what we would send decodes to the same.
	std::string again = lt::mqtt::encode_publish(v, p.topic, p.payload, p.qos, p.packet_id);
	Decoder d(v, 1 << 21);
	Packet q;
	size_t used = 0;
	FUZZ_CHECK(d.next(reinterpret_cast<const uint8_t *>(again.data()), again.size(), &used, q) ==
	           Decoder::Status::Packet);
	FUZZ_CHECK(used == again.size() && q.topic == p.topic && q.payload == p.payload && q.qos == p.qos &&
	           q.packet_id == p.packet_id);
}

// Feeds `in` in chunks (sizes from `seed`), as the client does: bytes are
// appended and whole packets taken from the front.
std::vector<Seen> run(const std::string &in, Version v, uint8_t seed, bool &error) {
	Decoder d(v, 4096);
	std::string buf;
	std::vector<Seen> out;
	size_t pos = 0, skip = 0;
	uint32_t x = seed | 1;
	error = false;
	while (pos < in.size() && !error) {
		x = x * 1103515245 + 12345;
		size_t chunk = seed == 0 ? in.size() : 1 + (x >> 16) % 64;
		size_t n = std::min(chunk, in.size() - pos);
		buf.append(in, pos, n);
		pos += n;
		size_t drop = std::min(skip, buf.size());
		buf.erase(0, drop);
		skip -= drop;
		for (;;) {
			Packet p;
			size_t used = 0;
			auto st = d.next(reinterpret_cast<const uint8_t *>(buf.data()), buf.size(), &used, p);
			if (st == Decoder::Status::NeedMore) {
				FUZZ_CHECK(used == 0);
				break;
			}
			if (st == Decoder::Status::Skip) {
				// Too large: the topic is checked, the bytes are dropped as they come.
				FUZZ_CHECK(d.skip_bytes() > 4096 && p.type == lt::mqtt::kPublish && p.qos <= 1);
				FUZZ_CHECK(!p.topic.empty() && lt::mqtt::valid_utf8(p.topic));
				out.push_back(Seen{p.type, 0xFF, p.qos, 0, p.packet_id, std::string(p.topic), std::string()});
				skip = d.skip_bytes();
				size_t n = std::min(skip, buf.size());
				buf.erase(0, n);
				skip -= n;
				if (skip > 0)
					break;
				continue;
			}
			if (st == Decoder::Status::Error) {
				FUZZ_CHECK(d.error() != nullptr && d.error()[0] != '\0');
				error = true;
				break;
			}
			FUZZ_CHECK(used >= 2 && used <= buf.size());
			check_packet(p, v);
			out.push_back(Seen{p.type, p.flags, p.qos, p.reason, p.packet_id, std::string(p.topic),
			                   std::string(p.payload)});
			buf.erase(0, used);
		}
	}
	return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	if (size < 1 || size > 65536)
		return 0;
	Version v = (data[0] & 1) ? Version::V5 : Version::V311;
	std::string in(reinterpret_cast<const char *>(data + 1), size - 1);
	bool err_chunked = false, err_whole = false;
	std::vector<Seen> chunked = run(in, v, uint8_t(data[0] >> 1), err_chunked);
	std::vector<Seen> whole = run(in, v, 0, err_whole);
	FUZZ_CHECK(chunked == whole);
	FUZZ_CHECK(err_chunked == err_whole);
	return 0;
}
