// The listener's network engine: sockets, framing, validation, live-state
// updates, the ring, and TCP acknowledgements. Plain C++ with no Postgres
// header: the background worker (listener.cpp) owns the process, waits on a
// WaitEventSet that includes epoll_fd(), and calls run_once().
//
// Sockets are registered in the engine's own epoll set, which is itself one
// socket in the worker's WaitEventSet: connections come and go without
// rebuilding the WaitEventSet (PostgreSQL 15 cannot remove events from one).
#pragma once

#include <cstdint>
#include <string>
#include <sys/socket.h>
#include <unordered_map>
#include <vector>

#include "../core/counters.hpp"
#include "../core/fix.hpp"
#include "../core/histogram.hpp"
#include "../core/live_table.hpp"
#include "../core/message.hpp"
#include "../core/moved_feed.hpp"
#include "../core/ring.hpp"
#include "mqtt_client.hpp"

namespace lt {

struct EngineConfig {
	std::vector<std::string> addresses; // "127.0.0.1", "::1", "*", host names
	int port = 5480;
	int max_connections = 1024;
	int idle_timeout_s = 300;
	uint64_t flush_hint = 8192; // wake the flusher when the ring reaches this
	Policy policy{AuthMode::LoopbackTrust, {30000, 600000}};
	MqttConfig mqtt; // host empty: no MQTT
};

struct Conn;

class ListenerEngine {
public:
	// visible_latency (optional) receives, per UDP record, the time from the
	// kernel's receive timestamp to the record being in the live state.
	ListenerEngine(Ring<Ping> &ring, Ring<Ping> &ingest, LiveTable &live, Counters &counters,
	               Histogram *visible_latency = nullptr);
	~ListenerEngine();
	ListenerEngine(const ListenerEngine &) = delete;
	ListenerEngine &operator=(const ListenerEngine &) = delete;

	// Binds UDP and TCP on every address. Addresses that fail are reported in
	// `err`; returns false only if nothing could be bound.
	bool open(const EngineConfig &cfg, std::string &err);
	void close_all();
	bool is_open() const { return !udp_.empty() || !tcp_listen_.empty(); }
	int epoll_fd() const { return epfd_; }
	void set_config(const EngineConfig &cfg); // SIGHUP-able parts
	// Signing keys to verify signed messages with (nullptr: none, every signed
	// message is refused unless auth is off). The listener owns their replay windows.
	void set_keys(KeyStore *keys) { keys_ = keys; }
	// Where to publish the ring's head each time ingest records have been
	// moved onto the ring, before they are released from the ingest queue.
	void set_ingest_mark(uint64_t *mark) { ingest_mark_ = mark; }
	// Where to append the live-table entry of each driver a fix moved.
	void set_moved_feed(MovedFeed *feed) { moved_ = feed; }
	// Where to record MQTT arrival -> PUBACK times (before open()).
	void set_mqtt_latency(Histogram *h) { mqtt_latency_ = h; }

	// Does everything that is ready, without blocking. With drain=true it reads
	// every socket until the kernel has nothing more (wait_flushed()).
	void run_once(bool drain);
	// Moves ingest() records from the ingest queue onto the ring.
	void drain_ingest();
	// Sends ACKs / "ok N" for everything the flusher has committed.
	void send_acks();
	// Closes idle and timed-out connections; call about once a second.
	void housekeeping();
	// Monotonic µs of the next timer (MQTT keep-alive, reconnect); INT64_MAX: none.
	int64_t next_timer_us() const;
	bool mqtt_connected() const { return mqtt_ && mqtt_->connected(); }
	size_t mqtt_pending() const { return mqtt_ ? mqtt_->pending_acks() : 0; }
	std::vector<std::string> take_log(); // lines for the server log

	// True once after the ring went from empty, or past flush_hint.
	bool take_flusher_wake();
	size_t connections() const { return nconns_; }

private:
	void accept_all(int lfd);
	void read_udp(int fd, bool drain);
	void handle_datagram(const uint8_t *p, size_t n, bool loopback, int64_t received_us);
	int64_t read_control(int fd, msghdr &h, int64_t fallback_us);
	void read_conn(Conn *c, bool drain);
	void process(Conn *c);
	bool handle_frame(Conn *c, const uint8_t *p, size_t len);
	bool handle_line(Conn *c, const uint8_t *p, size_t len, bool too_long);
	void resume_paused();
	void update_events(Conn *c);
	void flush_out(Conn *c);
	void close_conn(Conn *c);
	void count_reject(Reject r, uint64_t n = 1);
	void accept_fix(const Fix &f, int64_t received_us);
	void apply_status(const Ping &p);
	void note_ring_growth(uint64_t before);
	void release_ingest(uint64_t n);
	bool mqtt_message(std::string_view topic, std::string_view payload, uint64_t *need);

	Ring<Ping> &ring_;
	Ring<Ping> &ingest_;
	LiveTable &live_;
	KeyStore *keys_ = nullptr;
	uint64_t *ingest_mark_ = nullptr;
	MovedFeed *moved_ = nullptr;
	Counters &c_;
	Histogram *visible_;
	EngineConfig cfg_;
	int epfd_ = -1;
	std::vector<int> udp_;
	std::vector<int> tcp_listen_;
	std::vector<Conn *> conns_; // slot -> connection (nullptr = free)
	size_t nconns_ = 0;
	std::vector<uint8_t> udp_buf_;
	bool wake_flusher_ = false;
	bool any_paused_ = false;
	std::unordered_map<int, uint32_t> udp_drops_seen_; // per UDP socket
	MqttClient *mqtt_ = nullptr;
	Histogram *mqtt_latency_ = nullptr;
};

} // namespace lt
