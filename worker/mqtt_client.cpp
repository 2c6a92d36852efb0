#include "mqtt_client.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/atomics.hpp"
#include "../core/clock.hpp"

namespace lt {
namespace {

constexpr int64_t kConnackTimeoutUs = 10 * 1000000;
constexpr int64_t kMinBackoffUs = 500000;
constexpr int64_t kMaxBackoffUs = 30 * 1000000;
constexpr size_t kMaxPacket = 1 << 20;         // larger PUBLISHes are skipped, acknowledged and counted
constexpr size_t kMaxIn = kMaxPacket + 65536;  // one packet of the largest size we take, and some

uint64_t jitter_state = 0x9E3779B97F4A7C15ull;
double jitter() { // 0.5 .. 1.5, so that many listeners do not reconnect in step
	jitter_state ^= jitter_state << 13;
	jitter_state ^= jitter_state >> 7;
	jitter_state ^= jitter_state << 17;
	return 0.5 + double(jitter_state % 1000) / 1000.0;
}

} // namespace

bool parse_mqtt_url(const std::string &url, std::string &host, int &port) {
	const std::string scheme = "mqtt://";
	if (url.compare(0, scheme.size(), scheme) != 0)
		return false;
	std::string rest = url.substr(scheme.size());
	if (!rest.empty() && rest.back() == '/')
		rest.pop_back();
	port = 1883;
	size_t colon = rest.rfind(':');
	if (!rest.empty() && rest[0] == '[') { // [::1]:1883
		size_t close = rest.find(']');
		if (close == std::string::npos)
			return false;
		host = rest.substr(1, close - 1);
		if (close + 1 < rest.size()) {
			if (rest[close + 1] != ':')
				return false;
			port = std::atoi(rest.c_str() + close + 2);
		}
	} else if (colon != std::string::npos) {
		host = rest.substr(0, colon);
		port = std::atoi(rest.c_str() + colon + 1);
	} else {
		host = rest;
	}
	return !host.empty() && port > 0 && port < 65536 && host.find('/') == std::string::npos;
}

uint16_t MqttClient::next_id() {
	uint16_t id = next_id_++;
	if (next_id_ == 0)
		next_id_ = 1;
	return id;
}

bool MqttClient::matches(std::string_view topic) const {
	for (const std::string &f : cfg_.topics)
		if (mqtt::topic_matches(f, topic))
			return true;
	return false;
}

bool parse_mqtt_urls(const std::string &list, std::vector<MqttBroker> &out, std::string &bad) {
	out.clear();
	size_t start = 0;
	while (start <= list.size()) {
		size_t comma = list.find(',', start);
		std::string one = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
		size_t b = one.find_first_not_of(" \t"), e = one.find_last_not_of(" \t");
		one = b == std::string::npos ? "" : one.substr(b, e - b + 1);
		MqttBroker m;
		if (!parse_mqtt_url(one, m.host, m.port)) {
			bad = one;
			return false;
		}
		out.push_back(m);
		if (comma == std::string::npos)
			break;
		start = comma + 1;
	}
	return true;
}

MqttClient::MqttClient(int epfd, uint64_t tag, Counters &counters, Deliver deliver, Histogram *ack_latency)
    : epfd_(epfd), tag_(tag), c_(counters), deliver_(std::move(deliver)), ack_latency_(ack_latency) {
	held_.fill(0);
	jitter_state ^= uint64_t(getpid()) * 0x100000001B3ull ^ uint64_t(mono_us());
	if (jitter_state == 0)
		jitter_state = 1;
}

MqttClient::~MqttClient() {
	if (fd_ >= 0)
		::close(fd_);
	if (gai_) {
		// A lookup still running may not be freed under it: then it leaks.
		if (gai_cancel(gai_) == EAI_CANCELED || gai_error(gai_) != EAI_INPROGRESS) {
			if (gai_->ar_result)
				freeaddrinfo(gai_->ar_result);
			std::free(const_cast<char *>(gai_->ar_name));
			std::free(const_cast<char *>(gai_->ar_service));
			delete gai_->ar_request;
			delete gai_;
		}
	}
}

void MqttClient::log(const std::string &s) {
	if (log_.size() < 100)
		log_.push_back(s);
}

std::vector<std::string> MqttClient::take_log() {
	std::vector<std::string> l;
	l.swap(log_);
	return l;
}

void MqttClient::configure(const MqttConfig &cfg) {
	if (cfg == cfg_ && state_ != State::Off)
		return;
	bool was_on = state_ != State::Off;
	if (fd_ >= 0)
		drop("the settings changed", false, mono_us());
	// Filters no longer named are unsubscribed at the next session: a
	// persistent session keeps its subscriptions otherwise.
	for (const std::string &t : cfg_.topics)
		if (std::find(cfg.topics.begin(), cfg.topics.end(), t) == cfg.topics.end() &&
		    std::find(unsubscribe_.begin(), unsubscribe_.end(), t) == unsubscribe_.end())
			unsubscribe_.push_back(t);
	for (const std::string &t : cfg.topics)
		unsubscribe_.erase(std::remove(unsubscribe_.begin(), unsubscribe_.end(), t), unsubscribe_.end());
	cfg_ = cfg;
	version_ = cfg.version == 4 ? mqtt::Version::V311 : mqtt::Version::V5;
	decoder_.set_version(version_);
	failures_ = 0;
	target_ = 0;
	state_ = cfg.brokers.empty() ? State::Off : State::Waiting;
	next_attempt_us_ = mono_us();
	if (state_ == State::Off && was_on)
		log("MQTT is off");
}

int64_t MqttClient::next_timer_us() const {
	switch (state_) {
	case State::Off: return INT64_MAX;
	case State::Waiting: return next_attempt_us_;
	case State::Resolving: return mono_us() + 10000; // polled
	case State::Connecting:
	case State::Connack: return deadline_us_;
	case State::Up: {
		int64_t ping = last_sent_us_ + int64_t(cfg_.keepalive_s) * 500000;
		return ping_outstanding_ ? std::min(ping, deadline_us_) : ping;
	}
	}
	return INT64_MAX;
}

void MqttClient::tick(int64_t now) {
	switch (state_) {
	case State::Off: return;
	case State::Waiting:
		if (now >= next_attempt_us_)
			start_resolve(now);
		return;
	case State::Resolving: {
		int r = gai_error(gai_);
		if (r == EAI_INPROGRESS)
			return;
		addrinfo *res = gai_->ar_result;
		gai_->ar_result = nullptr;
		std::free(const_cast<char *>(gai_->ar_name));
		std::free(const_cast<char *>(gai_->ar_service));
		delete gai_->ar_request;
		delete gai_;
		gai_ = nullptr;
		if (r != 0 || res == nullptr) {
			drop(std::string("cannot resolve: ") + gai_strerror(r), true, now);
			return;
		}
		int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			freeaddrinfo(res);
			drop(std::string("socket: ") + std::strerror(errno), true, now);
			return;
		}
		int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
		freeaddrinfo(res);
		fd_ = fd;
		if (rc != 0 && errno != EINPROGRESS) {
			drop(std::string("connect: ") + std::strerror(errno), true, now);
			return;
		}
		int one = 1;
		setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		state_ = State::Connecting;
		deadline_us_ = now + kConnackTimeoutUs;
		events_ = 0;
		update_events();
		return;
	}
	case State::Connecting:
	case State::Connack:
		if (now > deadline_us_)
			drop(state_ == State::Connecting ? "connect timed out" : "no CONNACK", true, now);
		return;
	case State::Up:
		// While paused (the ring is full) the PINGRESP waits unread behind
		// the PUBLISHes: that is our stall, not a dead broker.
		if (ping_outstanding_ && now > deadline_us_ && !paused_) {
			drop("no PINGRESP within the keep-alive", true, now);
			return;
		}
		// Half the keep-alive without sending anything: a PINGREQ.
		if (!ping_outstanding_ && now - last_sent_us_ >= int64_t(cfg_.keepalive_s) * 500000) {
			send(mqtt::encode_pingreq());
			ping_outstanding_ = true;
			deadline_us_ = now + int64_t(cfg_.keepalive_s) * 1000000;
			flush();
		}
		return;
	}
}

void MqttClient::start_resolve(int64_t now) {
	(void)now;
	gai_ = new gaicb{};
	auto *hints = new addrinfo{};
	hints->ai_family = AF_UNSPEC;
	hints->ai_socktype = SOCK_STREAM;
	gai_->ar_name = strdup(broker().host.c_str());
	gai_->ar_service = strdup(std::to_string(broker().port).c_str());
	gai_->ar_request = hints;
	gaicb *list[1] = {gai_};
	// GAI_NOWAIT: a slow DNS server must not hold up the listener.
	if (getaddrinfo_a(GAI_NOWAIT, list, 1, nullptr) != 0) {
		std::free(const_cast<char *>(gai_->ar_name));
		std::free(const_cast<char *>(gai_->ar_service));
		delete hints;
		delete gai_;
		gai_ = nullptr;
		drop("cannot start resolving", true, now);
		return;
	}
	state_ = State::Resolving;
}

void MqttClient::drop(const std::string &why, bool error, int64_t now) {
	if (fd_ >= 0) {
		epoll_ctl(epfd_, EPOLL_CTL_DEL, fd_, nullptr);
		::close(fd_);
		fd_ = -1;
	}
	bool was_up = state_ == State::Up;
	in_.clear();
	out_.clear();
	out_off_ = 0;
	// Unacknowledged messages come again from the broker (the session
	// persists); their records, already taken, may go to history twice.
	pending_.clear();
	held_.fill(0);
	skip_left_ = 0;
	paused_ = false;
	ping_outstanding_ = false;
	state_ = cfg_.brokers.empty() ? State::Off : State::Waiting;
	std::string from = cfg_.brokers.empty() ? std::string() : where();
	if (error) {
		if (cfg_.brokers.size() > 1)
			target_ = (target_ + 1) % cfg_.brokers.size(); // the cluster's next node
		failures_++;
		int64_t backoff = kMinBackoffUs << std::min(failures_ - 1, 6);
		next_attempt_us_ = now + int64_t(double(std::min(backoff, kMaxBackoffUs)) * jitter());
	} else {
		next_attempt_us_ = now;
	}
	if (was_up || failures_ <= 1 || failures_ % 20 == 0)
		log("MQTT broker " + from + ": " + why +
		    (error ? "; trying " + (cfg_.brokers.size() > 1 ? where() : std::string("again")) + " in " +
		                 std::to_string((next_attempt_us_ - now) / 1000) + " ms"
		           : ""));
}

void MqttClient::on_event(uint32_t ev) {
	int64_t now = mono_us();
	if (fd_ < 0)
		return;
	if (state_ == State::Connecting && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int err = 0;
		socklen_t len = sizeof err;
		getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			drop(std::string("connect: ") + std::strerror(err), true, now);
			return;
		}
		mqtt::ConnectOptions o;
		o.version = version_;
		o.client_id = cfg_.client_id;
		o.username = cfg_.username;
		o.password = cfg_.password;
		o.keepalive_s = uint16_t(cfg_.keepalive_s);
		o.clean_start = false; // a persistent session: the broker keeps what we did not acknowledge
		o.session_expiry_s = cfg_.session_expiry_s;
		o.receive_maximum = cfg_.receive_maximum;
		o.maximum_packet_size = uint32_t(kMaxPacket); // v5: larger ones are not sent to us at all
		send(mqtt::encode_connect(o));
		state_ = State::Connack;
		deadline_us_ = now + kConnackTimeoutUs;
		flush();
		return;
	}
	if (ev & EPOLLOUT)
		flush();
	if (fd_ >= 0 && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
		read_socket(now);
}

void MqttClient::read_socket(int64_t now) {
	char buf[65536];
	while (fd_ >= 0 && !paused_ && in_.size() < kMaxIn) {
		ssize_t n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
		if (n > 0) {
			in_.append(buf, size_t(n));
			process(now);
			continue;
		}
		if (n == 0) {
			drop("the broker closed the connection", true, now);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			drop(std::string("read: ") + std::strerror(errno), true, now);
		break;
	}
	update_events();
}

void MqttClient::process(int64_t now) {
	size_t off = std::min(skip_left_, in_.size()); // the rest of a skipped PUBLISH
	skip_left_ -= off;
	while (fd_ >= 0 && !paused_) {
		mqtt::Packet p;
		size_t used = 0;
		mqtt::Decoder::Status st =
		    decoder_.next(reinterpret_cast<const uint8_t *>(in_.data()) + off, in_.size() - off, &used, p);
		if (st == mqtt::Decoder::Status::NeedMore)
			break;
		if (st == mqtt::Decoder::Status::Error) {
			bump(c_.mqtt_protocol_errors);
			drop(std::string("protocol error: ") + decoder_.error(), true, now);
			return;
		}
		bool skip = st == mqtt::Decoder::Status::Skip;
		if (skip) {
			// Too large to be a fix: taken as an empty (malformed) message,
			// acknowledged in turn, and its bytes dropped as they come.
			used = std::min(decoder_.skip_bytes(), in_.size() - off);
			p.payload = std::string_view();
		}
		if (p.type == mqtt::kPublish && state_ == State::Up && !matches(p.topic)) {
			// An earlier subscription of this persistent session, from before
			// livetrack.mqtt_topics changed across a restart: not ours now.
			bump(c_.mqtt_other_topics);
			if (!warned_other_) {
				warned_other_ = true;
				log("a message on " + std::string(p.topic) +
				    " matches none of livetrack.mqtt_topics: a subscription this session kept from before; such "
				    "messages are acknowledged and not stored (remove a filter with a reload, or use a new "
				    "livetrack.mqtt_client_id)");
			}
			if (p.qos == 1 && !holding(p.packet_id)) {
				pending_.push_back(Pending{pending_.empty() ? 0 : pending_.back().need, now, p.packet_id});
				held_[p.packet_id >> 6] |= uint64_t(1) << (p.packet_id & 63);
			}
			off += used;
			if (skip)
				skip_left_ = decoder_.skip_bytes() - used;
			continue;
		}
		if (p.type == mqtt::kPublish && state_ == State::Up) {
			if (p.qos == 1 && holding(p.packet_id)) {
				// The broker sent again what we hold uncommitted (NATS does
				// after its ack_wait): the one PUBACK to come covers both.
				bump(c_.mqtt_duplicates);
				off += used;
				if (skip)
					skip_left_ = decoder_.skip_bytes() - used;
				continue;
			}
			{
				uint64_t need = 0;
				if (!deliver_(p.topic, p.payload, &need)) {
					paused_ = true; // no room: this packet stays, read again after resume()
					break;
				}
				bump(c_.mqtt_messages);
				if (p.qos == 1) {
					pending_.push_back(Pending{need, now, p.packet_id});
					held_[p.packet_id >> 6] |= uint64_t(1) << (p.packet_id & 63);
				}
			}
		} else if (p.type == mqtt::kConnack && state_ == State::Connack) {
			bool unsupported = p.short_connack || p.reason == 0x84 ||
			                   (version_ == mqtt::Version::V311 && p.reason == 0x01);
			if (unsupported && version_ == mqtt::Version::V5 && cfg_.version == 0) {
				version_ = mqtt::Version::V311; // a 3.1.1 broker (nats-server): ask again in its version
				decoder_.set_version(version_);
				drop("speaks MQTT 3.1.1 only; connecting again with 3.1.1", false, now);
				return;
			}
			if (p.reason != 0) {
				char b[64];
				std::snprintf(b, sizeof b, "refused the connection (code 0x%02x)", p.reason);
				drop(b, true, now);
				return;
			}
			state_ = State::Up;
			failures_ = 0;
			if (ever_up_)
				bump(c_.mqtt_reconnects);
			ever_up_ = true;
			if (p.server_keepalive != 0)
				cfg_.keepalive_s = p.server_keepalive;
			log("connected to MQTT broker " + where() +
			    (version_ == mqtt::Version::V5 ? " (MQTT 5)" : " (MQTT 3.1.1)") +
			    (p.session_present ? ", session resumed" : ", new session"));
			if (!unsubscribe_.empty()) {
				send(mqtt::encode_unsubscribe(version_, next_id(), unsubscribe_));
				log("unsubscribed from " + std::to_string(unsubscribe_.size()) + " filter(s) livetrack.mqtt_topics no longer names");
				unsubscribe_.clear();
			}
			// Always (again): a subscription that exists is simply replaced.
			send(mqtt::encode_subscribe(version_, next_id(), cfg_.topics, 1));
			warned_other_ = false;
		} else if (p.type == mqtt::kSuback) {
			for (size_t i = 0; i < p.codes.size() && i < cfg_.topics.size(); i++) {
				if (p.codes[i] >= 0x80)
					log("MQTT broker refused the subscription to " + cfg_.topics[i]);
				else if (p.codes[i] == 0)
					log("MQTT broker granted only QoS 0 for " + cfg_.topics[i] + ": fixes may be lost");
			}
		} else if (p.type == mqtt::kPingresp) {
			ping_outstanding_ = false;
		} else if (p.type == mqtt::kDisconnect) {
			char b[64];
			std::snprintf(b, sizeof b, "disconnected us (reason 0x%02x)", p.reason);
			drop(b, true, now);
			return;
		} else if (p.type == mqtt::kConnack || p.type == mqtt::kPublish) {
			bump(c_.mqtt_protocol_errors);
			drop("a packet out of turn", true, now);
			return;
		}
		off += used;
		if (skip)
			skip_left_ = decoder_.skip_bytes() - used;
	}
	if (fd_ >= 0 && off > 0)
		in_.erase(0, off);
	flush();
}

void MqttClient::resume() {
	if (!paused_)
		return;
	paused_ = false;
	process(mono_us());
	update_events();
}

void MqttClient::committed(uint64_t watermark) {
	if (state_ != State::Up)
		return;
	size_t n = 0;
	int64_t now = mono_us();
	while (!pending_.empty() && pending_.front().need <= watermark) {
		uint16_t id = pending_.front().packet_id;
		if (ack_latency_)
			ack_latency_->add(uint64_t(std::max<int64_t>(0, now - pending_.front().arrived_us)));
		held_[id >> 6] &= ~(uint64_t(1) << (id & 63));
		out_ += mqtt::encode_puback(id);
		pending_.pop_front();
		n++;
	}
	if (n > 0) {
		bump(c_.mqtt_acks, n);
		last_sent_us_ = now;
		flush();
	}
}

void MqttClient::send(const std::string &bytes) {
	out_ += bytes;
	last_sent_us_ = mono_us();
}

void MqttClient::flush() {
	while (fd_ >= 0 && out_off_ < out_.size()) {
		ssize_t n = ::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			out_off_ += size_t(n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		drop(std::string("write: ") + std::strerror(errno), true, mono_us());
		return;
	}
	if (out_off_ == out_.size()) {
		out_.clear();
		out_off_ = 0;
	}
	update_events();
}

void MqttClient::update_events() {
	if (fd_ < 0)
		return;
	uint32_t want = EPOLLRDHUP;
	if (!paused_ && in_.size() < kMaxIn && state_ != State::Connecting)
		want |= EPOLLIN;
	if (state_ == State::Connecting || out_off_ < out_.size())
		want |= EPOLLOUT;
	if (want == events_)
		return;
	epoll_event ev{};
	ev.events = want;
	ev.data.u64 = tag_;
	epoll_ctl(epfd_, events_ == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd_, &ev);
	events_ = want;
}

} // namespace lt
