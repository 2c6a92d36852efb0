// MQTT 3.1.1 and 5.0 (OASIS) packets, as livetrack needs them: the
// listener is a client that subscribes at QoS 1 and sends each PUBACK only
// after the message's records are committed, which no client library in
// Debian can do (libmosquitto and Paho acknowledge on receipt). So the
// codec is ours: encoders for what a client sends (and PUBLISH, for the
// simulator), and a strict incremental decoder for what a broker sends,
// fuzzed (test/fuzz/fuzz_mqtt.cpp). No I/O here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lt::mqtt {

enum class Version : uint8_t { V311 = 4, V5 = 5 };

enum Type : uint8_t {
	kConnect = 1,
	kConnack = 2,
	kPublish = 3,
	kPuback = 4,
	kPubrec = 5,
	kPubrel = 6,
	kPubcomp = 7,
	kSubscribe = 8,
	kSuback = 9,
	kUnsubscribe = 10,
	kUnsuback = 11,
	kPingreq = 12,
	kPingresp = 13,
	kDisconnect = 14,
	kAuth = 15,
};

struct ConnectOptions {
	Version version = Version::V5;
	std::string client_id;
	std::string username; // empty: none
	std::string password; // empty: none
	uint16_t keepalive_s = 30;
	bool clean_start = false;       // false: a persistent session
	uint32_t session_expiry_s = 0;  // v5: how long the broker keeps the session after a disconnect
	uint16_t receive_maximum = 0;   // v5: QoS 1 messages the broker may have unacknowledged (0: not sent = 65535)
	uint32_t maximum_packet_size = 0; // v5: 0: not sent
};

std::string encode_connect(const ConnectOptions &o);
// One SUBSCRIBE with every filter at the given QoS (v5: retained messages
// are not sent on subscribe: they are old fixes).
std::string encode_subscribe(Version v, uint16_t packet_id, const std::vector<std::string> &filters, uint8_t qos);
std::string encode_unsubscribe(Version v, uint16_t packet_id, const std::vector<std::string> &filters);
std::string encode_puback(uint16_t packet_id); // the short form, valid in both versions
std::string encode_pingreq();
std::string encode_disconnect(Version v);
// For clients that publish (the simulator, the tests): QoS 0 or 1.
std::string encode_publish(Version v, std::string_view topic, std::string_view payload, uint8_t qos,
                           uint16_t packet_id);

struct Packet {
	uint8_t type = 0;
	uint8_t flags = 0;
	// CONNACK
	bool session_present = false;
	uint8_t reason = 0;               // CONNACK return/reason code, DISCONNECT/PUBACK reason
	bool short_connack = false;       // a v3-style CONNACK where v5 was asked (the broker speaks 3.1.1 only)
	uint16_t receive_maximum = 65535; // v5 CONNACK: how many QoS 1 messages we may have unacknowledged
	uint16_t server_keepalive = 0;    // v5 CONNACK: the keep-alive the server wants (0: none given)
	uint8_t maximum_qos = 2;
	// SUBACK / PUBACK / PUBLISH
	uint16_t packet_id = 0;
	std::vector<uint8_t> codes; // SUBACK: one per filter
	// PUBLISH
	uint8_t qos = 0;
	bool dup = false, retain = false;
	std::string_view topic;   // valid until the next call to next()
	std::string_view payload; // ditto
};

// Splits a broker's byte stream into packets and checks them as a client
// must (fixed-header flags, remaining length, property lengths and ids,
// UTF-8 topics without wildcards, QoS, packet ids, and no packet a server
// never sends). Anything wrong is a protocol error: the connection must end.
class Decoder {
public:
	// Skip: a PUBLISH over the size limit. `out` has its type, QoS, packet
	// id and topic, and skip_bytes() its whole length: the caller drops
	// that many bytes (they may not have arrived yet) and acknowledges it
	// as rejected, rather than fail the connection and have the broker
	// send it again forever.
	enum class Status : uint8_t { NeedMore, Packet, Error, Skip };
	explicit Decoder(Version v = Version::V5, size_t max_packet = 1 << 20) : v_(v), max_(max_packet) {}
	void set_version(Version v) { v_ = v; }
	// Looks at the start of [p, p+n): a whole packet is decoded into `out`
	// and *consumed set; strings in `out` point into [p, p+n).
	Status next(const uint8_t *p, size_t n, size_t *consumed, Packet &out);
	const char *error() const { return error_; }
	size_t skip_bytes() const { return skip_; }

private:
	Status fail(const char *why) {
		error_ = why;
		return Status::Error;
	}
	Status decode(uint8_t b0, const uint8_t *body, size_t len, Packet &out);
	Status properties(const uint8_t *&p, const uint8_t *end, uint8_t type, Packet &out);

	Version v_;
	size_t max_;
	size_t skip_ = 0;
	const char *error_ = "";
};

// UTF-8 as MQTT wants it (RFC 3629, no U+0000, no surrogates).
bool valid_utf8(std::string_view s);

// Whether a topic name matches a subscription filter ('+' one level, '#'
// the rest; a topic starting with '$' matches no filter starting with a
// wildcard).
bool topic_matches(std::string_view filter, std::string_view topic);

} // namespace lt::mqtt
