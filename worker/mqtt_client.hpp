// The listener's MQTT client (SPEC 7): one connection to livetrack.mqtt_broker
// on the listener's epoll set, a persistent session subscribed at QoS 1, and
// each PUBACK sent only once the message's records are committed, in the
// order the messages came. Plain C++ with no Postgres header (the codec is
// core/mqtt.cpp); the listener's engine owns it, feeds it its socket's
// events and the commit watermark, and gets each message through a callback.
//
// Faults: a broker that is down, restarts or cuts the connection is tried
// again with exponential backoff and jitter; a broker that breaks the
// protocol is cut off (counted). Nothing here blocks: the broker's name is
// resolved with getaddrinfo_a, the socket is non-blocking.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../core/counters.hpp"
#include "../core/histogram.hpp"
#include "../core/mqtt.hpp"

struct gaicb;

namespace lt {

struct MqttBroker {
	std::string host;
	int port = 1883;
	bool operator==(const MqttBroker &o) const { return host == o.host && port == o.port; }
};

struct MqttConfig {
	// Empty: MQTT off. Several: nodes of one broker cluster, tried in turn
	// when the connection to the current one fails.
	std::vector<MqttBroker> brokers;
	std::vector<std::string> topics;
	std::string client_id;
	std::string username, password;
	int keepalive_s = 30;
	int version = 0; // 0: 5, falling back to 3.1.1 if the broker asks; 4 or 5: only that
	uint32_t session_expiry_s = 7 * 24 * 3600;
	// v5: unacknowledged messages the broker may send us. Half the packet-id
	// space: a broker that hands out ids by counting (mosquitto) cannot come
	// round to one we still hold.
	uint16_t receive_maximum = 32768;
	bool operator==(const MqttConfig &o) const {
		return brokers == o.brokers && topics == o.topics && client_id == o.client_id &&
		       username == o.username && password == o.password && keepalive_s == o.keepalive_s && version == o.version;
	}
};

// parse_mqtt_url("mqtt://host:port") -> host, port; false if it is not one.
bool parse_mqtt_url(const std::string &url, std::string &host, int &port);
// "mqtt://a:1883, mqtt://b:1884" -> brokers; false (and `bad` set) at the first that is not one.
bool parse_mqtt_urls(const std::string &list, std::vector<MqttBroker> &out, std::string &bad);

class MqttClient {
public:
	// What the engine does with a message: false if it has no room now (the
	// message is kept and offered again after resume()); otherwise *need is
	// the commit watermark after which it may be acknowledged.
	using Deliver = std::function<bool(std::string_view topic, std::string_view payload, uint64_t *need)>;

	// ack_latency (optional) receives, per QoS 1 message, the time from its
	// arrival to its PUBACK going out.
	MqttClient(int epfd, uint64_t epoll_tag, Counters &counters, Deliver deliver, Histogram *ack_latency = nullptr);
	~MqttClient();
	MqttClient(const MqttClient &) = delete;
	MqttClient &operator=(const MqttClient &) = delete;

	void configure(const MqttConfig &cfg); // connects, or reconnects if it changed
	void on_event(uint32_t epoll_events);
	void tick(int64_t now_us);       // timers: resolving, connecting, keep-alive, backoff
	void committed(uint64_t watermark); // PUBACKs for what is committed, in order, in one write
	void resume();                    // the engine has room again
	int64_t next_timer_us() const;   // monotonic; INT64_MAX: none
	bool connected() const { return state_ == State::Up; }
	size_t pending_acks() const { return pending_.size(); }
	// Lines for the server log (the engine has no logger of its own).
	std::vector<std::string> take_log();

private:
	enum class State : uint8_t { Off, Waiting, Resolving, Connecting, Connack, Up };
	void start_resolve(int64_t now);
	void start_connect(int64_t now);
	void drop(const std::string &why, bool error, int64_t now);
	void read_socket(int64_t now);
	void process(int64_t now);
	void send(const std::string &bytes);
	void flush();
	void update_events();
	void log(const std::string &s);
	bool holding(uint16_t id) const { return held_[id >> 6] >> (id & 63) & 1; }
	bool matches(std::string_view topic) const; // one of cfg_.topics
	uint16_t next_id();

	int epfd_;
	uint64_t tag_;
	Counters &c_;
	Deliver deliver_;
	Histogram *ack_latency_;
	MqttConfig cfg_;
	mqtt::Version version_ = mqtt::Version::V5;
	mqtt::Decoder decoder_;
	State state_ = State::Off;
	int fd_ = -1;
	uint32_t events_ = 0;
	std::string in_, out_;
	size_t out_off_ = 0;
	bool paused_ = false;
	bool ever_up_ = false;
	int64_t next_attempt_us_ = 0;
	int64_t deadline_us_ = 0;   // CONNACK due / PINGRESP due
	int64_t last_sent_us_ = 0;
	bool ping_outstanding_ = false;
	int failures_ = 0;
	size_t target_ = 0; // index into cfg_.brokers
	const MqttBroker &broker() const { return cfg_.brokers[target_]; }
	std::string where() const { return broker().host + ":" + std::to_string(broker().port); }
	uint16_t next_id_ = 1;
	size_t skip_left_ = 0;                  // bytes still to drop of a PUBLISH too large to take
	bool warned_other_ = false;
	std::vector<std::string> unsubscribe_;  // filters to unsubscribe from at the next session
	gaicb *gai_ = nullptr;
	struct Pending {
		uint64_t need;
		int64_t arrived_us; // monotonic
		uint16_t packet_id;
	};
	std::deque<Pending> pending_;
	std::array<uint64_t, 1024> held_; // packet ids in pending_, one bit each
	std::vector<std::string> log_;
};

} // namespace lt
