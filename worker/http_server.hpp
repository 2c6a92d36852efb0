// The HTTP edge's engine (SPEC 6): sockets, requests, tokens, order and
// driver streams over Server-Sent Events and WebSocket, HTTP ingest and the
// map page, in one non-blocking event loop. Plain C++ with no Postgres
// header, like the listener's engine: the background worker (http.cpp) owns
// the process, waits on a WaitEventSet that includes epoll_fd(), calls
// run_once() and tick(), and answers the engine's few questions for the
// database through HttpBackend.
//
// Fan-out: the engine follows each watched order once (an OrderChannel).
// Positions come from the live state in shared memory, at most one per
// notify_interval per order; status and near events from livetrack.events,
// polled once per commit that published any. Each message is serialised
// once per order (once for SSE, once as a WebSocket frame) and shared by
// every watcher's output queue. Dispatch streams (driver boxes) follow the
// listener's feed of drivers that moved: each is serialised once per tick,
// grouped by tile, and each box's message is put together from the tiles it
// covers; a box's snapshot comes from the grid index. A
// watcher that does not read loses stale positions (a newer one replaces
// the unsent one; a box gets a fresh snapshot instead) and never an event
// (past a limit it is cut off and resumes with Last-Event-ID).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "../core/area.hpp"
#include "../core/counters.hpp"
#include "../core/fix.hpp"
#include "../core/key_store.hpp"
#include "../core/live_table.hpp"
#include "../core/message.hpp"
#include "../core/moved_feed.hpp"
#include "../core/ring.hpp"

namespace lt {

struct HttpConfig {
	std::vector<std::string> addresses; // "127.0.0.1", "::1", "*"
	int port = 5481;
	int max_connections = 10000;
	Policy policy{AuthMode::LoopbackTrust, {30000, 600000}};
	int64_t notify_interval_us = 1000000;
	std::string map_tiles; // tile URL template for /map ("" = a plain background)
	bool reuse_port = false; // several workers share the port (SO_REUSEPORT)
};

// An order as the database has it when a watcher arrives.
struct OrderRow {
	uint64_t order_id = 0;
	bool found = false;
	std::string snapshot; // the track_order row as JSON
	std::string status;
	uint64_t driver_id = 0; // 0: none
	double pickup_lat = 0, pickup_lon = 0, dropoff_lat = 0, dropoff_lon = 0;
	uint64_t last_event_id = 0; // the order's newest event when loaded
};

// A row of livetrack.events; payload is its text (SPEC 4's one shape).
struct EventRow {
	uint64_t event_id = 0;
	uint64_t order_id = 0;
	uint64_t driver_id = 0;
	std::string type, status, target, payload;
};

// What the engine asks of the database and the installation. Every call
// may throw (a database error): the engine then answers 503, or tries again.
class HttpBackend {
public:
	virtual ~HttpBackend() = default;
	// One row per id, in any order.
	virtual void load_orders(const std::vector<uint64_t> &ids, std::vector<OrderRow> &out) = 0;
	// Events of each (order, after) pair with after < event_id <= upto, by event_id.
	virtual void order_events(const std::vector<std::pair<uint64_t, uint64_t>> &order_after, uint64_t upto,
	                          std::vector<EventRow> &out) = 0;
	// Events with event_id > after, by event_id, at most `limit`.
	virtual void events_after(uint64_t after, int limit, std::vector<EventRow> &out) = 0;
	virtual std::string metrics() = 0;             // Prometheus text format
	virtual bool healthy(std::string &detail) = 0; // the workers serve
	// A file of the map page ("map.html", "leaflet.js", "images/layers.png"...);
	// false if there is none.
	virtual bool map_file(const std::string &name, std::string &body, std::string &content_type) = 0;
};

struct HttpConn;
struct OrderChannel;
struct DriversSub;
struct LoadReq;

class HttpServer {
public:
	// ring/ingest/live/keys are the shared-memory structures; ingest_mark is
	// where the listener publishes the ring head after moving ingest records
	// (LtControl::ingest_ring_mark); counters and records are this worker's.
	HttpServer(HttpBackend &db, Ring<Ping> &ring, Ring<Ping> &ingest, const uint64_t *ingest_mark, LiveTable &live,
	           KeyStore *keys, const MovedFeed *moved, HttpCounters &counters, Counters &records);
	~HttpServer();
	HttpServer(const HttpServer &) = delete;
	HttpServer &operator=(const HttpServer &) = delete;

	bool open(const HttpConfig &cfg, std::string &err);
	void close_all();
	int epoll_fd() const { return epfd_; }
	void set_config(const HttpConfig &cfg); // SIGHUP-able parts

	// The token secret, and its generation: a new generation after the first
	// means rotate_token_secret() committed, and every stream opened with an
	// older token is closed.
	void set_token_secret(const uint8_t *secret, size_t len, uint64_t gen);
	// Where the event stream starts (the newest event_id when serving began).
	void set_event_cursor(uint64_t event_id) { cursor_ = event_id; }
	uint64_t event_cursor() const { return cursor_; }
	// A commit published events: poll for them in the next run_once().
	void events_changed() { events_dirty_ = true; }

	// Does everything that is ready, without blocking.
	void run_once();
	// Timers: positions, driver boxes, heartbeats, timeouts. Call about
	// every tick_ms().
	void tick();
	int tick_ms() const;
	// Requests waiting for their fixes to commit (the flushers wake us then).
	size_t awaiting_commit() const { return committing_.size(); }
	// True once after fixes were queued for the listener (set its latch).
	bool take_listener_wake() {
		bool w = wake_listener_;
		wake_listener_ = false;
		return w;
	}

	size_t connections() const { return nconns_; }
	size_t streams() const { return nstreams_; }
	size_t watched_orders() const { return channels_.size(); }

	// Internal, for the file's helpers.
	void enqueue(HttpConn *c, std::shared_ptr<const std::string> msg, uint64_t key);
	void ws_message(HttpConn *c, std::string_view text);

private:
	void accept_all(int lfd);
	void on_readable(HttpConn *c);
	void process_input(HttpConn *c);
	void handle_request(HttpConn *c);
	void respond(HttpConn *c, std::string bytes, bool keep_alive);
	void fail(HttpConn *c, int status, const char *message, bool keep_alive);
	void finish_deferred(HttpConn *c, std::string bytes, bool keep_alive);
	void flush_out(HttpConn *c);
	void update_events(HttpConn *c);
	void close_conn(HttpConn *c);
	void reap();
	void start_stream(HttpConn *c, int sndbuf);
	void end_stream(HttpConn *c, const char *event, const std::string &data, uint64_t id);
	void send_to(HttpConn *c, const char *sse_event, uint64_t id, const std::string &json, uint64_t key);
	bool has_unsent(HttpConn *c, uint64_t key) const;

	void ingest(HttpConn *c, bool osmand);
	void push_pending(HttpConn *c);
	void service_commits();
	void service_loads();
	void service_events();
	void fan_out_event(OrderChannel &ch, const EventRow &ev);
	void positions(int64_t now_us, const std::vector<uint32_t> &moved, bool every);
	void index_channel(OrderChannel &ch);
	void unindex_channel(OrderChannel &ch);
	void watch_order(HttpConn *c, uint64_t order_id, const OrderRow &row, bool resume, uint64_t last_event_id,
	                 const std::vector<EventRow> &missed);
	void unwatch_order(HttpConn *c, uint64_t order_id);
	void drivers_stream(HttpConn *c);
	bool add_drivers_sub(HttpConn *c, uint32_t id, const double bbox[4], std::shared_ptr<const Area> area,
	                     int64_t exp_s, std::string &error);
	void drivers_tick(int64_t now_us, const std::vector<uint32_t> &moved, bool lost);
	void map_file(HttpConn *c, const std::string &name, bool keep);
	void housekeeping(int64_t now_us);
	void detach(HttpConn *c);

	HttpBackend &db_;
	Ring<Ping> &ring_;
	Ring<Ping> &ingest_;
	const uint64_t *ingest_mark_;
	LiveTable &live_;
	KeyStore *keys_;
	const MovedFeed *moved_;
	uint64_t moved_pos_ = 0;
	std::vector<uint32_t> held_back_; // moved drivers the interval held back: looked at again next tick
	HttpCounters &hc_;
	Counters &rc_;
	HttpConfig cfg_;
	int epfd_ = -1;
	std::vector<int> listen_;
	std::vector<HttpConn *> conns_;
	std::vector<uint32_t> free_slots_;
	size_t nconns_ = 0, nstreams_ = 0;
	std::vector<uint8_t> secret_;
	uint64_t secret_gen_ = 0;
	bool have_secret_ = false;
	uint64_t cursor_ = 0;
	bool events_dirty_ = true;
	int64_t last_poll_us_ = 0;
	int64_t last_housekeeping_us_ = 0;
	std::unordered_map<uint64_t, std::unique_ptr<OrderChannel>> channels_;
	std::unordered_map<uint32_t, std::vector<uint64_t>> by_entry_; // live-table entry -> orders following it
	std::vector<uint64_t> due_; // orders to look at next tick (held back by the interval, new targets)
	std::vector<LoadReq> loading_;        // orders waiting for load_orders
	std::vector<HttpConn *> committing_;  // waiting for their fixes to commit
	std::vector<DriversSub *> dsubs_;     // every driver box
	std::unordered_set<uint64_t> covered_; // the tiles they cover
	bool covered_dirty_ = false;
	// Per driver: the fix last sent to driver boxes, and when.
	struct Sent {
		int64_t ts_ms;
		int64_t at_us;
	};
	std::unordered_map<uint64_t, Sent> drivers_sent_;
	std::unordered_map<std::string, std::shared_ptr<const std::string>> files_; // the map page, as loaded
	bool wake_listener_ = false;
	std::vector<HttpConn *> graveyard_; // closed this round, freed at its end
};

} // namespace lt
