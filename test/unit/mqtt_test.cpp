// MQTT (SPEC 7): the packet codec (core/mqtt.hpp), and the listener's
// client (worker/mqtt_client.hpp) inside the engine against a fake broker
// played by the test on a real socket: PUBACKs only after commit and in
// order, payload formats, duplicates, version fallback, garbage, reconnects.
#include "core/mqtt.hpp"

#include "engine_fixture.hpp"

using namespace lt;
using namespace lt_test;
namespace m = lt::mqtt;

namespace {

std::string bytes(std::initializer_list<int> b) {
	std::string s;
	for (int c : b)
		s += char(c);
	return s;
}

std::string str16(const std::string &s) { return bytes({int(s.size() >> 8), int(s.size() & 0xFF)}) + s; }

// A packet as a broker would frame it.
std::string frame(uint8_t first, const std::string &body) {
	std::string o(1, char(first));
	size_t n = body.size();
	do {
		uint8_t b = n % 128;
		n /= 128;
		o += char(n ? b | 0x80 : b);
	} while (n);
	return o + body;
}

std::string publish(uint16_t id, const std::string &topic, const std::string &payload, bool v5 = true,
                    uint8_t flags = 0) {
	std::string b = str16(topic);
	if (id)
		b += bytes({id >> 8, id & 0xFF});
	if (v5)
		b += '\0';
	return frame(uint8_t(0x30 | (id ? 2 : 0) | flags), b + payload);
}

m::Decoder::Status decode(const std::string &s, m::Packet &p, m::Version v = m::Version::V5, size_t *used = nullptr) {
	m::Decoder d(v, 4096);
	size_t u = 0;
	auto st = d.next(reinterpret_cast<const uint8_t *>(s.data()), s.size(), &u, p);
	if (used)
		*used = u;
	return st;
}

m::Decoder::Status decode(const std::string &s, m::Version v = m::Version::V5) {
	m::Packet p;
	return decode(s, p, v);
}

} // namespace

// ---- codec -----------------------------------------------------------------

TEST(MqttCodec, ConnectV5PersistentSession) {
	m::ConnectOptions o;
	o.client_id = "lt";
	o.keepalive_s = 30;
	o.session_expiry_s = 604800;
	o.receive_maximum = 65535;
	std::string want = bytes({0x10, 23, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x00, 0, 30, 8, 0x11, 0x00, 0x09, 0x3A, 0x80,
	                          0x21, 0xFF, 0xFF, 0, 2, 'l', 't'});
	EXPECT_EQ(m::encode_connect(o), want);
}

TEST(MqttCodec, ConnectV311WithCredentials) {
	m::ConnectOptions o;
	o.version = m::Version::V311;
	o.client_id = "c";
	o.username = "u";
	o.password = "pw";
	o.keepalive_s = 60;
	o.session_expiry_s = 100; // v5 only: not written
	std::string want = bytes({0x10, 20, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xC0, 0, 60, 0, 1, 'c', 0, 1, 'u', 0, 2, 'p', 'w'});
	EXPECT_EQ(m::encode_connect(o), want);
}

TEST(MqttCodec, SubscribeAtQos1) {
	EXPECT_EQ(m::encode_subscribe(m::Version::V311, 7, {"a/+", "b/#"}, 1),
	          bytes({0x82, 14, 0, 7, 0, 3, 'a', '/', '+', 1, 0, 3, 'b', '/', '#', 1}));
	// v5: no properties, and retain handling 2 (no retained fixes on subscribe).
	EXPECT_EQ(m::encode_subscribe(m::Version::V5, 7, {"a/+"}, 1), bytes({0x82, 9, 0, 7, 0, 0, 3, 'a', '/', '+', 0x21}));
}

TEST(MqttCodec, SmallPackets) {
	EXPECT_EQ(m::encode_puback(0x1234), bytes({0x40, 2, 0x12, 0x34}));
	EXPECT_EQ(m::encode_pingreq(), bytes({0xC0, 0}));
	EXPECT_EQ(m::encode_disconnect(m::Version::V5), bytes({0xE0, 0}));
}

TEST(MqttCodec, ConnackV5WithProperties) {
	m::Packet p;
	ASSERT_EQ(decode(frame(0x20, bytes({1, 0, 6, 0x21, 0, 20, 0x13, 0, 60})), p), m::Decoder::Status::Packet);
	EXPECT_EQ(p.type, m::kConnack);
	EXPECT_TRUE(p.session_present);
	EXPECT_EQ(p.reason, 0);
	EXPECT_EQ(p.receive_maximum, 20);
	EXPECT_EQ(p.server_keepalive, 60);
	EXPECT_FALSE(p.short_connack);
}

TEST(MqttCodec, A311ConnackToAV5ConnectIsRecognised) {
	// What nats-server answers to a v5 CONNECT: "unacceptable protocol version".
	m::Packet p;
	ASSERT_EQ(decode(bytes({0x20, 2, 0, 1}), p), m::Decoder::Status::Packet);
	EXPECT_TRUE(p.short_connack);
	EXPECT_EQ(p.reason, 1);
}

TEST(MqttCodec, PublishBothVersions) {
	m::Packet p;
	std::string v5 = publish(9, "livetrack/blr/42", "{}", true);
	ASSERT_EQ(decode(v5, p), m::Decoder::Status::Packet);
	EXPECT_EQ(p.type, m::kPublish);
	EXPECT_EQ(p.qos, 1);
	EXPECT_EQ(p.packet_id, 9);
	EXPECT_EQ(p.topic, "livetrack/blr/42");
	EXPECT_EQ(p.payload, "{}");
	std::string v3 = publish(0, "t/1", "xyz", false, 0x01);
	ASSERT_EQ(decode(v3, p, m::Version::V311), m::Decoder::Status::Packet);
	EXPECT_EQ(p.qos, 0);
	EXPECT_TRUE(p.retain);
	EXPECT_EQ(p.payload, "xyz");
	// A v5 PUBLISH with properties a broker may add (user property, message expiry).
	std::string props = bytes({0x26}) + str16("k") + str16("v") + bytes({0x02, 0, 0, 0, 9});
	std::string with_props = frame(0x32, str16("t/2") + bytes({0, 3, int(props.size())}) + props + "pay");
	ASSERT_EQ(decode(with_props, p), m::Decoder::Status::Packet); // p's views point into with_props
	EXPECT_EQ(p.topic, "t/2");
	EXPECT_EQ(p.payload, "pay");
	// Our encoder decodes to itself.
	std::string ours = m::encode_publish(m::Version::V5, "a/b", "P", 1, 77);
	ASSERT_EQ(decode(ours, p), m::Decoder::Status::Packet);
	EXPECT_EQ(p.packet_id, 77);
	EXPECT_EQ(p.payload, "P");
}

TEST(MqttCodec, EveryPrefixNeedsMore) {
	std::string s = publish(3, "livetrack/x/1", std::string(300, 'a'));
	for (size_t n = 0; n < s.size(); n++) {
		m::Packet p;
		size_t used = 99;
		EXPECT_EQ(decode(s.substr(0, n), p, m::Version::V5, &used), m::Decoder::Status::NeedMore) << n;
		EXPECT_EQ(used, 0u);
	}
	m::Packet p;
	size_t used = 0;
	EXPECT_EQ(decode(s + "trailing", p, m::Version::V5, &used), m::Decoder::Status::Packet);
	EXPECT_EQ(used, s.size());
}

TEST(MqttCodec, ProtocolErrors) {
	auto E = m::Decoder::Status::Error;
	EXPECT_EQ(decode(bytes({0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F})), E);            // five-byte length
	EXPECT_EQ(decode(bytes({0xD0, 0x80, 0x00})), E);                               // length not minimal
	EXPECT_EQ(decode(publish(1, "a/+/1", "x")), E);                                 // wildcard in a topic name
	EXPECT_EQ(decode(publish(1, "a/\xC3(", "x")), E);                               // bad UTF-8
	EXPECT_EQ(decode(publish(1, std::string("a\0b", 3), "x")), E);                 // U+0000
	EXPECT_EQ(decode(publish(1, "a/\xED\xA0\x80", "x")), E);                        // a surrogate
	EXPECT_EQ(decode(publish(0, "", "x")), E);                                      // empty topic
	EXPECT_EQ(decode(frame(0x36, str16("a") + bytes({0, 1, 0}))), E);              // QoS 3
	EXPECT_EQ(decode(frame(0x34, str16("a") + bytes({0, 1, 0}))), E);              // QoS 2: we subscribed at 1
	EXPECT_EQ(decode(frame(0x38, str16("a") + bytes({0}))), E);                     // QoS 0 with DUP
	EXPECT_EQ(decode(frame(0x32, str16("a") + bytes({0, 0, 0}))), E);              // packet id 0
	EXPECT_EQ(decode(frame(0x32, str16("a") + bytes({0, 1, 3, 0x23, 0, 1}))), E);  // a topic alias
	EXPECT_EQ(decode(frame(0x32, str16("a") + bytes({0, 1, 2, 0x7F, 0}))), E);     // unknown property
	EXPECT_EQ(decode(frame(0x20, bytes({0, 0, 6, 0x21, 0, 1, 0x21, 0, 2}))), E);   // repeated property
	EXPECT_EQ(decode(frame(0x20, bytes({0, 0, 3, 0x21, 0, 0}))), E);               // receive maximum 0
	EXPECT_EQ(decode(frame(0x20, bytes({1, 0x80, 0}))), E);                         // session present with an error
	EXPECT_EQ(decode(frame(0x10, str16("MQTT") + bytes({4, 2, 0, 30}) + str16("c"))), E); // CONNECT from a server
	EXPECT_EQ(decode(bytes({0xC0, 0})), E);                                         // PINGREQ from a server
	EXPECT_EQ(decode(bytes({0x50, 2, 0, 1})), E);                                   // PUBREC: we never asked for QoS 2
	EXPECT_EQ(decode(bytes({0xE0, 0}), m::Version::V311), E);                       // DISCONNECT from a 3.1.1 server
	EXPECT_EQ(decode(bytes({0xD1, 0})), E);                                         // PINGRESP flags
	EXPECT_EQ(decode(bytes({0x20, 3, 0, 0, 0}), m::Version::V311), E);             // 3.1.1 CONNACK length
}

TEST(MqttCodec, OversizedPublishIsSkippedNotFatal) {
	// 5000 bytes against a 4096-byte limit: reported once the id is in.
	std::string big = publish(7, "livetrack/x/1", std::string(5000, 'a'));
	m::Decoder d(m::Version::V5, 4096);
	m::Packet p;
	size_t used = 9;
	EXPECT_EQ(d.next(reinterpret_cast<const uint8_t *>(big.data()), 10, &used, p), m::Decoder::Status::NeedMore);
	ASSERT_EQ(d.next(reinterpret_cast<const uint8_t *>(big.data()), 100, &used, p), m::Decoder::Status::Skip);
	EXPECT_EQ(p.packet_id, 7);
	EXPECT_EQ(p.topic, "livetrack/x/1");
	EXPECT_EQ(d.skip_bytes(), big.size());
	// Anything else that large ends the connection.
	EXPECT_EQ(decode(frame(0x90, std::string(5000, '\1'))), m::Decoder::Status::Error);
}

TEST(MqttCodec, TopicFilters) {
	EXPECT_TRUE(m::topic_matches("livetrack/+/+", "livetrack/blr/42"));
	EXPECT_FALSE(m::topic_matches("livetrack/+/+", "livetrack/42"));
	EXPECT_FALSE(m::topic_matches("livetrack/+/+", "livetrack/blr/42/x"));
	EXPECT_TRUE(m::topic_matches("livetrack/blr/+", "livetrack/blr/42"));
	EXPECT_FALSE(m::topic_matches("livetrack/blr/+", "livetrack/del/42"));
	EXPECT_TRUE(m::topic_matches("livetrack/#", "livetrack"));
	EXPECT_TRUE(m::topic_matches("livetrack/#", "livetrack/a/b/c"));
	EXPECT_TRUE(m::topic_matches("#", "a/b"));
	EXPECT_FALSE(m::topic_matches("#", "$SYS/x"));
	EXPECT_FALSE(m::topic_matches("+/x", "$SYS/x"));
	EXPECT_TRUE(m::topic_matches("a//b", "a//b"));
	EXPECT_TRUE(m::topic_matches("a/+/b", "a//b"));
	EXPECT_FALSE(m::topic_matches("a/b", "a/bb"));
	EXPECT_EQ(m::encode_unsubscribe(m::Version::V311, 3, {"a/+"}), bytes({0xA2, 7, 0, 3, 0, 3, 'a', '/', '+'}));
}

TEST(MqttCodec, Utf8) {
	EXPECT_TRUE(m::valid_utf8("livetrack/\xC3\xA9/\xE2\x82\xAC/\xF0\x9F\x9A\x97"));
	EXPECT_FALSE(m::valid_utf8("\xC0\xAF"));         // overlong
	EXPECT_FALSE(m::valid_utf8("\xF4\x90\x80\x80")); // past U+10FFFF
	EXPECT_FALSE(m::valid_utf8("\xE2\x82"));         // cut short
	EXPECT_FALSE(m::valid_utf8("\x80"));
}

TEST(MqttUrl, Parse) {
	std::string h;
	int p;
	EXPECT_TRUE(parse_mqtt_url("mqtt://broker.local", h, p));
	EXPECT_EQ(h, "broker.local");
	EXPECT_EQ(p, 1883);
	EXPECT_TRUE(parse_mqtt_url("mqtt://127.0.0.1:18830/", h, p));
	EXPECT_EQ(p, 18830);
	EXPECT_TRUE(parse_mqtt_url("mqtt://[::1]:1884", h, p));
	EXPECT_EQ(h, "::1");
	EXPECT_FALSE(parse_mqtt_url("tcp://x:1", h, p));
	EXPECT_FALSE(parse_mqtt_url("mqtt://x:0", h, p));
	EXPECT_FALSE(parse_mqtt_url("mqtt://:1883", h, p));
	std::vector<MqttBroker> b;
	std::string bad;
	ASSERT_TRUE(parse_mqtt_urls("mqtt://a:1, mqtt://b", b, bad));
	ASSERT_EQ(b.size(), 2u);
	EXPECT_EQ(b[1].host, "b");
	EXPECT_EQ(b[1].port, 1883);
	EXPECT_FALSE(parse_mqtt_urls("mqtt://a:1,b:2", b, bad));
	EXPECT_EQ(bad, "b:2");
}

// ---- the client in the engine, against a fake broker -------------------------

namespace {

// A client packet as the broker reads it.
struct In {
	uint8_t type = 0, flags = 0;
	std::string body;
};

class MqttEngineTest : public EngineTest {
protected:
	int lfd = -1, bfd = -1; // the broker's listening socket and its one connection
	int broker_port = 0;
	std::string rx; // bytes from the listener not yet taken as packets

	void SetUp() override { listen_broker(0); }
	void TearDown() override {
		if (bfd >= 0)
			::close(bfd);
		if (lfd >= 0)
			::close(lfd);
		EngineTest::TearDown();
	}

	void listen_broker(int port) {
		lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int one = 1;
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		sockaddr_in a = addr_of("127.0.0.1", port);
		ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr *>(&a), sizeof a), 0) << std::strerror(errno);
		ASSERT_EQ(listen(lfd, 8), 0);
		socklen_t len = sizeof a;
		getsockname(lfd, reinterpret_cast<sockaddr *>(&a), &len);
		broker_port = ntohs(a.sin_port);
	}

	void start_mqtt(uint64_t ring_cap = 1024, int keepalive = 30, int version = 0) {
		cfg.mqtt.brokers = {MqttBroker{"127.0.0.1", broker_port}};
		cfg.mqtt.topics = {"livetrack/+/+"};
		cfg.mqtt.client_id = "livetrack-test";
		cfg.mqtt.keepalive_s = keepalive;
		cfg.mqtt.version = version;
		start(ring_cap);
	}

	// Pumps until the listener connects to the broker.
	bool accept_listener(int timeout_ms = 3000) {
		if (bfd >= 0)
			::close(bfd);
		bfd = -1;
		rx.clear();
		return pump_until(
		    [&] {
			    bfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
			    return bfd >= 0;
		    },
		    timeout_ms);
	}

	// The next packet the listener sent, within the timeout.
	bool next_packet(In &p, int timeout_ms = 2000) {
		bool closed = false;
		auto take = [&] {
			if (rx.size() >= 2) {
				size_t len = 0, mul = 1, i = 1;
				for (; i < rx.size() && i <= 4; i++) {
					len += size_t(uint8_t(rx[i]) & 0x7F) * mul;
					mul *= 128;
					if (!(uint8_t(rx[i]) & 0x80))
						break;
				}
				if (i < rx.size() && rx.size() >= i + 1 + len) {
					p.type = uint8_t(rx[0]) >> 4;
					p.flags = uint8_t(rx[0]) & 0x0F;
					p.body = rx.substr(i + 1, len);
					rx.erase(0, i + 1 + len);
					return true;
				}
			}
			return false;
		};
		if (take())
			return true;
		pump_until(
		    [&] {
			    Rx r;
			    drain(bfd, r);
			    rx += r.data;
			    closed = r.eof || r.reset;
			    return take() || closed;
		    },
		    timeout_ms);
		return p.type != 0;
	}

	void send_broker(const std::string &s) { tcp_send(bfd, s); }

	// CONNECT in, CONNACK out, SUBSCRIBE in, SUBACK out. Returns the CONNECT.
	In handshake(bool session_present = false, const std::string &connack_props = std::string(1, '\0')) {
		In c;
		EXPECT_TRUE(next_packet(c));
		EXPECT_EQ(c.type, m::kConnect);
		bool v5 = c.body.size() > 6 && c.body[6] == 5;
		send_broker(frame(0x20, bytes({session_present ? 1 : 0, 0}) + (v5 ? connack_props : "")));
		In s;
		EXPECT_TRUE(next_packet(s));
		EXPECT_EQ(s.type, m::kSubscribe);
		EXPECT_EQ(s.flags, 2);
		send_broker(frame(0x90, s.body.substr(0, 2) + (v5 ? std::string(1, '\0') : "") + bytes({1})));
		EXPECT_TRUE(pump_until([&] { return eng->mqtt_connected(); }));
		return c;
	}

	// PUBACK packet ids the listener sent within `ms`.
	std::vector<uint16_t> pubacks(int ms = 150) {
		std::vector<uint16_t> ids;
		auto deadline = Clock::now() + std::chrono::milliseconds(ms);
		In p;
		while (Clock::now() < deadline) {
			p = In{};
			if (!next_packet(p, 20))
				continue;
			if (p.type == m::kPuback && p.body.size() == 2)
				ids.push_back(uint16_t(uint8_t(p.body[0]) << 8 | uint8_t(p.body[1])));
			else
				ADD_FAILURE() << "unexpected packet type " << int(p.type);
		}
		return ids;
	}

	static std::string fix_json(uint64_t id, double lat = 12.97, double lon = 77.59) {
		return EngineTest::json_line(id, lat, lon);
	}
};

} // namespace

TEST_F(MqttEngineTest, PubackOnlyAfterCommitAndInOrder) {
	start_mqtt();
	ASSERT_TRUE(accept_listener());
	In c = handshake();
	// CONNECT: MQTT 5, persistent session (clean start off), our client id.
	ASSERT_GE(c.body.size(), 10u);
	EXPECT_EQ(c.body[6], 5);
	EXPECT_EQ(uint8_t(c.body[7]) & 0x02, 0);
	EXPECT_NE(c.body.find("livetrack-test"), std::string::npos);

	int64_t now = now_ms();
	send_broker(publish(5, "livetrack/blr/42", R"({"lat":12.97,"lon":77.59})"));
	send_broker(publish(6, "livetrack/blr/43",
	                    R"({"_type":"location","lat":12.5,"lon":77.5,"tst":)" + std::to_string(now / 1000) +
	                        R"(,"vel":36,"cog":90,"acc":12})"));
	std::vector<uint8_t> bin = make_frame({make_fix(44, now), make_fix(44, now + 1)});
	send_broker(publish(7, "livetrack/del/44", std::string(bin.begin(), bin.end())));
	ASSERT_TRUE(pump_until([&] { return ring.size() == 4; }));
	EXPECT_TRUE(pubacks().empty()) << "a PUBACK before the commit";
	EXPECT_EQ(ctr.mqtt_messages, 3u);
	EXPECT_EQ(ctr.received_messages, 3u);
	EXPECT_EQ(ctr.accepted_records, 4u);

	// Commit the first record only: only message 5 is durable.
	flush(1);
	EXPECT_EQ(pubacks(), std::vector<uint16_t>({5}));
	flush();
	EXPECT_EQ(pubacks(), std::vector<uint16_t>({6, 7}));
	EXPECT_EQ(ctr.mqtt_acks, 3u);
	ASSERT_EQ(flushed.size(), 4u);
	EXPECT_EQ(flushed[0].fix.driver_id, 42u);
	EXPECT_EQ(flushed[1].fix.driver_id, 43u);
	EXPECT_EQ(flushed[1].fix.ts_ms, now / 1000 * 1000);
	EXPECT_EQ(flushed[1].fix.speed_cms, 1000); // 36 km/h
	EXPECT_EQ(flushed[1].fix.heading_cd, 9000);
	EXPECT_EQ(flushed[1].fix.accuracy_dm, 120);
	EXPECT_EQ(flushed[2].fix.driver_id, 44u);
	EXPECT_EQ(flushed[3].fix.ts_ms, now + 1);
}

TEST_F(MqttEngineTest, RejectedMessagesAreCountedAndAcknowledgedInTurn) {
	start_mqtt();
	ASSERT_TRUE(accept_listener());
	handshake();
	send_broker(publish(1, "livetrack/blr/42", fix_json(42)));
	send_broker(publish(2, "livetrack/blr/42", fix_json(7)));        // names another driver
	send_broker(publish(3, "livetrack/blr/abc", fix_json(1)));       // the topic names no driver
	send_broker(publish(4, "livetrack/blr/42", "not json"));         // junk
	send_broker(publish(5, "livetrack/blr/42", fix_json(42, 91, 0))); // out of range
	send_broker(publish(6, "livetrack/blr/42", R"({"_type":"transition","event":"enter"})")); // no position
	ASSERT_TRUE(pump_until([&] { return ctr.mqtt_messages == 6; }));
	EXPECT_EQ(ctr.accepted_records, 1u);
	EXPECT_EQ(ctr.rejected_auth, 1u);
	EXPECT_EQ(ctr.rejected_malformed, 2u);
	EXPECT_EQ(ctr.rejected_range, 1u);
	// Nothing is acknowledged ahead of message 1's commit, even the rejected.
	EXPECT_TRUE(pubacks().empty());
	flush();
	EXPECT_EQ(pubacks(), std::vector<uint16_t>({1, 2, 3, 4, 5, 6}));
}

TEST_F(MqttEngineTest, QosZeroIsTakenWithoutPuback) {
	start_mqtt();
	ASSERT_TRUE(accept_listener());
	handshake();
	send_broker(publish(0, "livetrack/blr/42", fix_json(42)));
	ASSERT_TRUE(pump_until([&] { return ring.size() == 1; }));
	flush();
	EXPECT_TRUE(pubacks().empty());
}

TEST_F(MqttEngineTest, RedeliveryWhileWaitingForCommitIsOneMessage) {
	start_mqtt();
	ASSERT_TRUE(accept_listener());
	handshake();
	send_broker(publish(9, "livetrack/blr/42", fix_json(42)));
	ASSERT_TRUE(pump_until([&] { return ring.size() == 1; }));
	send_broker(publish(9, "livetrack/blr/42", fix_json(42), true, 0x08)); // DUP
	ASSERT_TRUE(pump_until([&] { return ctr.mqtt_duplicates == 1; }));
	EXPECT_EQ(ring.size(), 1u);
	flush();
	EXPECT_EQ(pubacks(), std::vector<uint16_t>({9}));
	// Once acknowledged, the id is free again: a new message.
	send_broker(publish(9, "livetrack/blr/42", fix_json(42)));
	ASSERT_TRUE(pump_until([&] { return ring.size() == 1; }));
	flush();
	EXPECT_EQ(pubacks(), std::vector<uint16_t>({9}));
}

TEST_F(MqttEngineTest, FullRingPausesTheBrokerAndLosesNothing) {
	start_mqtt(8);
	ASSERT_TRUE(accept_listener());
	handshake();
	for (uint16_t i = 1; i <= 30; i++)
		send_broker(publish(i, "livetrack/blr/" + std::to_string(100 + i), fix_json(100 + i)));
	std::vector<uint16_t> acked;
	auto deadline = Clock::now() + std::chrono::seconds(5);
	while (flushed.size() < 30 && Clock::now() < deadline) {
		pump_for(5);
		flush();
		for (uint16_t id : pubacks(5))
			acked.push_back(id);
	}
	for (uint16_t id : pubacks())
		acked.push_back(id);
	ASSERT_EQ(flushed.size(), 30u);
	ASSERT_EQ(acked.size(), 30u);
	for (uint16_t i = 0; i < 30; i++) {
		EXPECT_EQ(acked[i], i + 1);
		EXPECT_EQ(flushed[i].fix.driver_id, 101u + i);
	}
	EXPECT_EQ(ctr.dropped_ring_full, 0u);
}

TEST_F(MqttEngineTest, FallsBackTo311WhenTheBrokerAsks) {
	start_mqtt();
	ASSERT_TRUE(accept_listener());
	In c;
	ASSERT_TRUE(next_packet(c));
	ASSERT_EQ(c.body[6], 5);
	send_broker(bytes({0x20, 2, 0, 1})); // 3.1.1: unacceptable protocol version
	ASSERT_TRUE(accept_listener());
	In again = handshake();
	EXPECT_EQ(again.body[6], 4);
	EXPECT_EQ(uint8_t(again.body[7]) & 0x02, 0); // still a persistent session
	send_broker(publish(3, "livetrack/blr/42", fix_json(42), false));
	ASSERT_TRUE(pump_until([&] { return ring.size() == 1; }));
	flush();
	EXPECT_EQ(pubacks(), std::vector<uint16_t>({3}));
	EXPECT_EQ(ctr.mqtt_reconnects, 0u); // the first session only now came up
}

TEST_F(MqttEngineTest, GarbageEndsTheConnectionAndTheListenerComesBack) {
	start_mqtt();
	ASSERT_TRUE(accept_listener());
	handshake();
	send_broker(publish(1, "livetrack/blr/42", fix_json(42)));
	send_broker(bytes({0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}));
	ASSERT_TRUE(pump_until([&] { return ctr.mqtt_protocol_errors == 1; }));
	EXPECT_FALSE(eng->mqtt_connected());
	EXPECT_EQ(ring.size(), 1u); // what came before the garbage was taken
	flush();
	// Reconnects (after a backoff of at most 0.75 s) and resumes its session;
	// the broker sends the unacknowledged message again.
	ASSERT_TRUE(accept_listener(3000));
	handshake(true);
	EXPECT_EQ(ctr.mqtt_reconnects, 1u);
	send_broker(publish(1, "livetrack/blr/42", fix_json(42), true, 0x08));
	ASSERT_TRUE(pump_until([&] { return ring.size() == 1; }));
	flush();
	EXPECT_EQ(pubacks(), std::vector<uint16_t>({1}));
	bool logged = false;
	for (const std::string &l : eng->take_log())
		logged = logged || l.find("protocol error") != std::string::npos;
	EXPECT_TRUE(logged);
}

TEST_F(MqttEngineTest, BrokerDownAtStartIsRetried) {
	::close(lfd); // nothing listens on the port now
	lfd = -1;
	start_mqtt();
	pump_for(1200); // refused, backing off; the device port still serves
	udp_send(fix_json(5));
	ASSERT_TRUE(pump_until([&] { return ring.size() == 1; }));
	EXPECT_FALSE(eng->mqtt_connected());
	listen_broker(cfg.mqtt.brokers[0].port);
	ASSERT_TRUE(accept_listener(5000));
	handshake();
	EXPECT_TRUE(eng->mqtt_connected());
}

TEST_F(MqttEngineTest, KeepAlivePingsAndASilentBrokerIsLeft) {
	start_mqtt(1024, 1);
	ASSERT_TRUE(accept_listener());
	handshake();
	In p;
	ASSERT_TRUE(next_packet(p, 1500));
	EXPECT_EQ(p.type, m::kPingreq);
	send_broker(bytes({0xD0, 0}));
	p = In{};
	ASSERT_TRUE(next_packet(p, 1500));
	EXPECT_EQ(p.type, m::kPingreq);
	// No PINGRESP this time: within the keep-alive the listener gives up.
	ASSERT_TRUE(pump_until([&] { return !eng->mqtt_connected(); }, 2500));
	ASSERT_TRUE(accept_listener(3000));
}

TEST_F(MqttEngineTest, TheNextNodeOfAClusterIsTriedWhenOneIsDown) {
	int dead = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); // bound, never listening: connections are refused
	sockaddr_in a = addr_of("127.0.0.1", 0);
	ASSERT_EQ(bind(dead, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
	socklen_t len = sizeof a;
	getsockname(dead, reinterpret_cast<sockaddr *>(&a), &len);
	cfg.mqtt.brokers = {MqttBroker{"127.0.0.1", ntohs(a.sin_port)}, MqttBroker{"127.0.0.1", broker_port}};
	cfg.mqtt.topics = {"livetrack/+/+"};
	cfg.mqtt.client_id = "livetrack-test";
	start();
	ASSERT_TRUE(accept_listener(3000));
	handshake();
	::close(dead);
}

TEST_F(MqttEngineTest, AnOversizedMessageIsAcknowledgedAndCountedNotFatal) {
	start_mqtt();
	ASSERT_TRUE(accept_listener());
	In c = handshake();
	// MQTT 5: the listener says how large a packet it takes.
	EXPECT_NE(c.body.find(bytes({0x27, 0x00, 0x10, 0x00, 0x00})), std::string::npos);
	send_broker(publish(1, "livetrack/blr/42", fix_json(42)));
	send_broker(publish(2, "livetrack/blr/42", std::string(3 << 20, 'x'))); // 3 MB
	send_broker(publish(3, "livetrack/blr/43", fix_json(43)));
	ASSERT_TRUE(pump_until([&] { return ctr.mqtt_messages == 3; }, 5000));
	EXPECT_EQ(ctr.rejected_malformed, 1u);
	EXPECT_EQ(ctr.mqtt_protocol_errors, 0u);
	EXPECT_TRUE(eng->mqtt_connected());
	flush();
	EXPECT_EQ(pubacks(), std::vector<uint16_t>({1, 2, 3}));
	ASSERT_EQ(flushed.size(), 2u);
	EXPECT_EQ(flushed[1].fix.driver_id, 43u);
}

TEST_F(MqttEngineTest, FiltersDroppedFromTheSettingsAreUnsubscribedAndNotStored) {
	cfg.mqtt.topics = {"livetrack/+/+"};
	start_mqtt();
	ASSERT_TRUE(accept_listener());
	handshake();
	// A reload names only region blr: the listener reconnects, unsubscribes
	// from the old filter, subscribes to the new one.
	EngineConfig next = cfg;
	next.mqtt.topics = {"livetrack/blr/+"};
	eng->set_config(next);
	ASSERT_TRUE(accept_listener());
	In connect;
	ASSERT_TRUE(next_packet(connect));
	send_broker(frame(0x20, bytes({1, 0, 0})));
	In unsub;
	ASSERT_TRUE(next_packet(unsub));
	EXPECT_EQ(unsub.type, m::kUnsubscribe);
	EXPECT_NE(unsub.body.find("livetrack/+/+"), std::string::npos);
	In sub;
	ASSERT_TRUE(next_packet(sub));
	EXPECT_EQ(sub.type, m::kSubscribe);
	EXPECT_NE(sub.body.find("livetrack/blr/+"), std::string::npos);
	send_broker(frame(0x90, sub.body.substr(0, 2) + bytes({0, 1})));
	ASSERT_TRUE(pump_until([&] { return eng->mqtt_connected(); }));
	// A message the old subscription still brings: acknowledged, not stored.
	send_broker(publish(5, "livetrack/del/9", fix_json(9)));
	send_broker(publish(6, "livetrack/blr/8", fix_json(8)));
	ASSERT_TRUE(pump_until([&] { return ring.size() == 1; }));
	EXPECT_EQ(ctr.mqtt_other_topics, 1u);
	flush();
	EXPECT_EQ(pubacks(), std::vector<uint16_t>({5, 6}));
	ASSERT_EQ(flushed.size(), 1u);
	EXPECT_EQ(flushed[0].fix.driver_id, 8u);
}
