// livetrack-watchers: many customers following their orders at once, the
// load generator of bench/stream. One epoll thread holds every connection
// (Server-Sent Events to the HTTP worker, or, with --relay, one libpq
// connection per order LISTENing the way teams do it without livetrack's
// HTTP edge), a second thread moves orders on (pickup_order) and notes when
// each change committed. It reports connections held, messages per second,
// fix receipt -> watcher and status commit -> watcher latencies, and, after
// a reconnect storm (--storm-at), how many status and near events any
// watcher missed.
//
// The simulator stamps each fix with its send time (ts, in ms), and on
// loopback receipt follows within microseconds: arrival - ts is receipt ->
// watcher to the millisecond.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/json_lines.hpp"
#include "tools/sim/fleet.hpp"
#include "tools/sim/util.hpp"

namespace {

using tool::die;

struct Options {
	int port = 5481;
	std::string orders_file; // lines: order_id token pickup_lat pickup_lon
	uint64_t watchers = 1000;
	double ws_share = 0;     // this share of the order watchers use WebSocket, the rest SSE
	uint64_t boxes = 0;      // dispatch boxes (half SSE, half WebSocket)
	double box_km = 5;       // their side
	std::string box_token;   // a dispatch token for them
	double duration = 30;
	double connect_rate = 5000; // new connections per second
	int sources = 1;            // bind to 127.0.0.1 .. 127.0.0.N (28k ports each)
	double storm_at = 0;        // drop every connection at this second, and resume
	std::string dsn;            // for the status driver and the final check
	double status_rate = 0;     // pickup_order() calls per second
	bool relay = false;         // LISTEN per order instead of SSE
	double warmup = 5;          // seconds left out of the latency figures
	int procs = 1;              // processes holding the watchers
	bool summary_json = false;
};

void usage() {
	std::fputs(
	    "usage: livetrack-watchers --orders FILE [options]\n"
	    "  --orders FILE        lines of 'order_id token pickup_lat pickup_lon'\n"
	    "  --port P             the HTTP worker's port (5481)\n"
	    "  --watchers N         concurrent order watchers, spread over the orders (1000)\n"
	    "  --ws-share F         share of them on WebSocket, the rest on SSE (0)\n"
	    "  --boxes N            dispatch boxes as well, half SSE and half WebSocket (0)\n"
	    "  --box-km K           their side in km, around random orders' pickups (5)\n"
	    "  --box-token T        the dispatch token for them\n"
	    "  --duration S         seconds to hold them (30)\n"
	    "  --connect-rate R     new connections per second (5000)\n"
	    "  --sources K          source addresses 127.0.0.1..K (past ~28k sockets)\n"
	    "  --storm-at S         at S seconds drop every connection, reconnect with the last event id\n"
	    "  --dsn DSN            database, to move orders on and check for missed events\n"
	    "  --status-rate R      pickup_order() calls per second (needs --dsn)\n"
	    "  --relay              one libpq LISTEN connection per watcher instead (needs --dsn)\n"
	    "  --warmup S           leave latencies of the first S seconds out (5)\n"
	    "  --procs K            spread the watchers over K processes (open-files limits) (1)\n"
	    "  --summary-json       the summary as one JSON object\n",
	    stderr);
}

struct Order {
	uint64_t id;
	std::string token;
	double lat, lon;
};

// Latencies in ms, kept whole for exact percentiles.
struct Samples {
	std::vector<double> v;
	void add(double x) { v.push_back(x < 0 ? 0 : x); }
	double pct(double p) {
		if (v.empty())
			return -1;
		std::sort(v.begin(), v.end());
		return v[std::min(v.size() - 1, size_t(p * double(v.size())))];
	}
};

// Set once the watchers are connected: the status driver starts then, and
// notes the newest event id: every event after it must reach every watcher
// of its order (an event of the connecting phase may come before a
// watcher's subscription, and is not missed).
std::atomic<bool> g_ready{false};

uint64_t newest_event(PGconn *c) {
	PGresult *r = PQexec(c, "SELECT coalesce(max(event_id), 0) FROM livetrack.events");
	uint64_t v = PQresultStatus(r) == PGRES_TUPLES_OK ? std::strtoull(PQgetvalue(r, 0, 0), nullptr, 10) : 0;
	PQclear(r);
	return v;
}

// When each order's pickup committed, as the status driver saw it return.
std::mutex commit_mu;
std::unordered_map<uint64_t, int64_t> commit_ms;

int64_t now_ms() { return lt::now_us() / 1000; }

PGconn *connect_or_die(const std::string &dsn) {
	std::string err;
	PGconn *c = tool::pg_connect(dsn, err);
	if (!c)
		die("%s", err.c_str());
	return c;
}

// "2026-12-07T20:19:46.573Z" in a message -> epoch ms; -1 if absent.
int64_t ts_of(const std::string &data) {
	size_t p = data.find("\"ts\": \"");
	int64_t ms = -1;
	if (p != std::string::npos && lt::json::parse_iso8601_ms(data.data() + p + 7, 24, ms))
		return ms;
	return -1;
}

std::string type_of(const std::string &data) {
	size_t p = data.find("\"type\": \"");
	if (p == std::string::npos)
		return {};
	size_t e = data.find('"', p + 9);
	return data.substr(p + 9, e - p - 9);
}

struct Stats {
	uint64_t connected = 0, failed = 0, closed = 0, messages = 0, positions = 0, events = 0, heartbeats = 0;
	uint64_t box_messages = 0, box_positions = 0;
	Samples position_ms, status_ms, box_ms;
};

// Every driver's fix time in a box message ("ts":"...", compact JSON).
template <typename F> void each_box_ts(const std::string &data, F &&fn) {
	size_t p = 0;
	while ((p = data.find("\"ts\":\"", p)) != std::string::npos) {
		int64_t ms;
		if (lt::json::parse_iso8601_ms(data.data() + p + 6, 24, ms))
			fn(ms);
		p += 6;
	}
}

uint64_t event_id_of(const std::string &data) {
	size_t p = data.find("\"event_id\": ");
	return p == std::string::npos ? 0 : std::strtoull(data.c_str() + p + 12, nullptr, 10);
}

// A client WebSocket frame: masked (RFC 6455 5.3).
std::string ws_frame(uint8_t opcode, const std::string &payload) {
	std::string f(1, char(0x80 | opcode));
	size_t n = payload.size();
	if (n < 126) {
		f += char(0x80 | n);
	} else {
		f += char(0x80 | 126);
		f += char(n >> 8);
		f += char(n & 0xFF);
	}
	const char key[4] = {0x12, 0x34, 0x56, 0x78};
	f.append(key, 4);
	for (size_t i = 0; i < n; i++)
		f += char(payload[i] ^ key[i % 4]);
	return f;
}

struct Watcher {
	enum Kind : uint8_t { SseOrder, WsOrder, SseBox, WsBox } kind = SseOrder;
	int fd = -1;
	size_t order = 0;   // index into orders
	double box[4] = {}; // boxes: minlon, minlat, maxlon, maxlat
	bool head_done = false;
	int status = 0;
	uint64_t last_id = 0;
	std::string buf;
	std::vector<uint64_t> seen; // status and near event ids
	bool ever_connected = false;
	bool subscribed = false; // WebSocket: its subscription has answered
	bool live = false;       // counted as connected
	uint32_t opens = 0;      // connections made so far (which source port)
	// Every status and near event of its order after this id must reach it:
	// set when all watchers are connected (the newest event then), or when
	// it resumes after the storm (the last id it had). None: not checked.
	bool checked = false;
	uint64_t check_from = 0;
	bool ws() const { return kind == WsOrder || kind == WsBox; }
	bool is_box() const { return kind == SseBox || kind == WsBox; }
};

class Load {
public:
	// This process holds the watchers i with i % shards == shard; ready()
	// is called once they are all connected (or failed).
	Load(const Options &o, std::vector<Order> orders, int shard, int shards, std::function<uint64_t()> ready)
	    : o_(o), orders_(std::move(orders)), shard_(shard), shards_(shards), ready_(std::move(ready)) {}

	void run() {
		ep_ = epoll_create1(0);
		uint64_t ws_n = uint64_t(double(o_.watchers) * o_.ws_share);
		for (size_t i = size_t(shard_); i < o_.watchers + o_.boxes; i += size_t(shards_)) {
			w_.emplace_back();
			Watcher &w = w_.back();
			fleet::Rng rng(42 + i);
			if (i < o_.watchers) {
				w.order = i % orders_.size();
				w.kind = i % o_.watchers < ws_n ? Watcher::WsOrder : Watcher::SseOrder;
			} else {
				// Boxes around random orders' pickups (they sit among the drivers).
				w.kind = (i - o_.watchers) % 2 ? Watcher::WsBox : Watcher::SseBox;
				size_t k = rng.next() % orders_.size();
				double lat = orders_[k].lat, lon = orders_[k].lon;
				double dlat = o_.box_km / 111.0 / 2, dlon = dlat / std::cos(lat * M_PI / 180);
				double b[4] = {lon - dlon, lat - dlat, lon + dlon, lat + dlat};
				std::copy(b, b + 4, w.box);
			}
		}
		fleet::Rng rng(7 + uint64_t(shard_));
		// Interleave kinds in the connection order.
		order_.resize(w_.size());
		for (size_t i = 0; i < order_.size(); i++)
			order_[i] = i;
		for (size_t i = order_.size(); i > 1; i--)
			std::swap(order_[i - 1], order_[rng.next() % i]);
		rate_ = o_.connect_rate / shards_;
		start_ms_ = now_ms();
		int64_t end_ms = start_ms_ + int64_t(o_.duration * 1000);
		size_t next = 0;
		bool stormed = false;
		int64_t last_report = start_ms_;
		epoll_event evs[1024];
		while (tool::signals() == 0) {
			int64_t now = now_ms();
			if (now >= end_ms)
				break;
			// Events after this one may still be on their way when we stop:
			// they are not counted as missed.
			if (until_ == 0 && now >= end_ms - 2000 && !o_.dsn.empty()) {
				PGconn *c = connect_or_die(o_.dsn);
				until_ = newest_event(c);
				PQfinish(c);
			}
			// Open connections at the configured rate.
			size_t due = std::min(w_.size(), size_t(double(now - start_ms_) / 1000.0 * rate_) + 1);
			while (next < due)
				open(order_[next++]);
			if (!ready_called_ && next == w_.size() && st_.connected + st_.failed >= w_.size()) {
				ready_called_ = true;
				uint64_t from = ready_();
				for (Watcher &w : w_)
					if (w.live) {
						w.checked = true;
						w.check_from = from;
					}
			}
			if (!stormed && o_.storm_at > 0 && now - start_ms_ >= int64_t(o_.storm_at * 1000)) {
				stormed = true;
				storm();
			}
			if (storm_open_ < storm_list_.size()) {
				size_t want = std::min(storm_list_.size(), size_t(double(now - storm_ms_) / 1000.0 * rate_) + 1);
				while (storm_open_ < want)
					open(storm_list_[storm_open_++]);
			}
			int n = epoll_wait(ep_, evs, 1024, 20);
			for (int i = 0; i < n; i++)
				on_event(evs[i].data.u64, evs[i].events);
			if (!o_.summary_json && now - last_report >= 1000) {
				last_report = now;
				std::fprintf(stderr,
				             "%5.0fs connected %llu failed %llu messages %llu positions %llu events %llu box positions %llu\n",
				             double(now - start_ms_) / 1000, (unsigned long long)(st_.connected - st_.closed),
				             (unsigned long long)st_.failed, (unsigned long long)st_.messages,
				             (unsigned long long)st_.positions, (unsigned long long)st_.events,
				             (unsigned long long)st_.box_positions);
			}
		}
		held_ = st_.connected - st_.closed;
	}

	Stats &stats() { return st_; }
	uint64_t held() const { return held_; }
	uint64_t storm_reconnected() const { return storm_reconnected_; }
	double storm_seconds() const { return storm_done_ms_ ? double(storm_done_ms_ - storm_ms_) / 1000 : -1; }
	const std::vector<Watcher> &watchers() const { return w_; }
	const std::vector<std::pair<uint64_t, int64_t>> &arrivals() const { return arrivals_; }
	int64_t storm_start_ms() const { return storm_ms_; }
	uint64_t until_event() const { return until_; }
	int64_t storm_done_ms() const { return storm_done_ms_; }

private:
	std::string request(const Watcher &w) const {
		std::string req;
		if (w.ws()) {
			req = "GET /v1/ws?access_token=" + (w.is_box() ? o_.box_token : orders_[w.order].token) +
			      " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
		} else if (w.is_box()) {
			char b[160];
			std::snprintf(b, sizeof b, "%.5f,%.5f,%.5f,%.5f", w.box[0], w.box[1], w.box[2], w.box[3]);
			req = std::string("GET /v1/drivers/stream?bbox=") + b + "&access_token=" + o_.box_token +
			      " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
		} else {
			const Order &ord = orders_[w.order];
			req = "GET /v1/orders/" + std::to_string(ord.id) + "/stream?access_token=" + ord.token +
			      " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n";
			if (w.ever_connected)
				req += "Last-Event-ID: " + std::to_string(w.last_id) + "\r\n";
			req += "\r\n";
		}
		return req;
	}

	// The WebSocket's subscription, sent once the upgrade is answered.
	std::string subscription(const Watcher &w) const {
		std::string m;
		if (w.is_box()) {
			char b[200];
			std::snprintf(b, sizeof b, "{\"op\":\"subscribe_drivers\",\"bbox\":[%.5f,%.5f,%.5f,%.5f]}", w.box[0],
			              w.box[1], w.box[2], w.box[3]);
			m = b;
		} else {
			m = "{\"op\":\"subscribe\",\"order_id\":" + std::to_string(orders_[w.order].id);
			if (w.ever_connected)
				m += ",\"last_event_id\":" + std::to_string(w.last_id);
			m += "}";
		}
		return ws_frame(1, m);
	}

	void open(size_t i) {
		Watcher &w = w_[i];
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			st_.failed++;
			return;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		sockaddr_in src{};
		src.sin_family = AF_INET;
		if (o_.sources > 1) {
			// Each watcher gets its own source port, chosen here: left to the
			// kernel, every bind() or connect() searched the ports in use for
			// a free one, and at 100,000 sockets that search took half of both
			// cores (perf, 2026-12-08). Even ports for one connection of a
			// watcher, odd for the next (the last one's may be in TIME_WAIT).
			size_t g = size_t(shard_) + i * size_t(shards_); // unique over all processes
			src.sin_addr.s_addr = htonl(0x7F000001u + uint32_t(g % size_t(o_.sources)));
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
			w_[i].opens++;
			bool bound = false;
			for (size_t k = 0; k < 8 && !bound; k++) { // a port someone else holds: the next one
				size_t slot = g / size_t(o_.sources) + k * 4001;
				src.sin_port = htons(uint16_t(1024 + (slot * 2 + (w_[i].opens & 1)) % 64000));
				bound = bind(fd, reinterpret_cast<sockaddr *>(&src), sizeof src) == 0;
			}
			if (!bound) { // the kernel's choice, then
				src.sin_port = 0;
				setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
				(void)bind(fd, reinterpret_cast<sockaddr *>(&src), sizeof src);
			}
		}
		sockaddr_in dst{};
		dst.sin_family = AF_INET;
		dst.sin_port = htons(uint16_t(o_.port));
		dst.sin_addr.s_addr = htonl(0x7F000001u);
		if (connect(fd, reinterpret_cast<sockaddr *>(&dst), sizeof dst) != 0 && errno != EINPROGRESS) {
			::close(fd);
			st_.failed++;
			return;
		}
		w.fd = fd;
		w.head_done = false;
		w.subscribed = false;
		w.buf.clear();
		pending_req_[fd] = request(w);
		epoll_event ev{};
		ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
		ev.data.u64 = i;
		epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
	}

	void close_w(Watcher &w) {
		if (w.fd < 0)
			return;
		epoll_ctl(ep_, EPOLL_CTL_DEL, w.fd, nullptr);
		::close(w.fd);
		pending_req_.erase(w.fd);
		w.fd = -1;
		if (w.live)
			st_.closed++;
		w.live = false;
	}

	// Every client drops at once, then comes back (at the connect rate) with
	// its last event id.
	void storm() {
		storm_list_.clear();
		for (size_t i = 0; i < w_.size(); i++) {
			Watcher &w = w_[i];
			if (w.fd >= 0 || w.ever_connected)
				storm_list_.push_back(i);
			// It resumes from its last id: everything after must come.
			if (w.ever_connected) {
				w.check_from = w.checked ? std::min(w.check_from, w.last_id) : w.last_id;
				w.checked = true;
			}
			close_w(w);
		}
		storm_ms_ = now_ms();
		storm_open_ = 0;
		storm_pending_ = true;
	}

	void send_bytes(Watcher &w, const std::string &b) {
		if (w.fd >= 0)
			(void)send(w.fd, b.data(), b.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
	}

	void on_event(uint64_t i, uint32_t events) {
		Watcher &w = w_[i];
		if (w.fd < 0)
			return;
		if (events & EPOLLOUT) {
			auto it = pending_req_.find(w.fd);
			if (it != pending_req_.end()) {
				ssize_t n = send(w.fd, it->second.data(), it->second.size(), MSG_NOSIGNAL);
				if (n < 0) {
					st_.failed++;
					close_w(w);
					return;
				}
				pending_req_.erase(it);
				epoll_event ev{};
				ev.events = EPOLLIN | EPOLLRDHUP;
				ev.data.u64 = i;
				epoll_ctl(ep_, EPOLL_CTL_MOD, w.fd, &ev);
			}
		}
		if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
			char buf[65536];
			for (;;) {
				ssize_t n = recv(w.fd, buf, sizeof buf, MSG_DONTWAIT);
				if (n > 0) {
					w.buf.append(buf, size_t(n));
					if (size_t(n) < sizeof buf)
						break;
					continue;
				}
				if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
					parse(w);
					if (!w.head_done)
						st_.failed++;
					close_w(w);
					return;
				}
				break;
			}
			parse(w);
		}
	}

	void connected(Watcher &w) {
		st_.connected++;
		w.live = true;
		if (storm_pending_ && w.ever_connected && ++storm_reconnected_ == storm_list_.size())
			storm_done_ms_ = now_ms();
		w.ever_connected = true;
	}

	void message(Watcher &w, const std::string &event, uint64_t id, const std::string &data) {
		if (w.ws() && !w.subscribed) {
			w.subscribed = true; // the server follows it for us from now on
			connected(w);
		}
		int64_t now = now_ms();
		bool measure = now - start_ms_ >= int64_t(o_.warmup * 1000);
		st_.messages++;
		if (w.is_box()) {
			if (data.find("\"drivers\":[") == std::string::npos)
				return;
			st_.box_messages++;
			bool snapshot = data.find("\"snapshot\":true") != std::string::npos;
			each_box_ts(data, [&](int64_t ts) {
				st_.box_positions++;
				if (measure && !snapshot)
					st_.box_ms.add(double(now - ts));
			});
			return;
		}
		if (id)
			w.last_id = std::max(w.last_id, id);
		if (event == "position") {
			st_.positions++;
			int64_t ts = ts_of(data);
			if (measure && ts > 0)
				st_.position_ms.add(double(now - ts));
		} else if (event == "status" || event == "near") {
			st_.events++;
			w.seen.push_back(id);
			// Matched with the commit times by the parent (status_driver).
			if (event == "status" && measure && data.find("\"status\": \"picked_up\"") != std::string::npos)
				arrivals_.emplace_back(orders_[w.order].id, now);
		}
	}

	void parse(Watcher &w) {
		if (!w.head_done) {
			size_t e = w.buf.find("\r\n\r\n");
			if (e == std::string::npos)
				return;
			w.status = std::atoi(w.buf.c_str() + 9);
			w.head_done = true;
			w.buf.erase(0, e + 4);
			if (w.status == 200)
				connected(w); // an SSE stream's head comes once it is registered
			else if (w.status == 101)
				send_bytes(w, subscription(w)); // connected once its first message comes
			else
				st_.failed++;
		}
		if (w.ws())
			parse_frames(w);
		else
			parse_sse(w);
	}

	void parse_frames(Watcher &w) {
		size_t off = 0;
		while (w.buf.size() - off >= 2) {
			uint8_t b0 = uint8_t(w.buf[off]), b1 = uint8_t(w.buf[off + 1]);
			size_t len = b1 & 0x7F, h = 2;
			if (len == 126) {
				if (w.buf.size() - off < 4)
					break;
				len = size_t(uint8_t(w.buf[off + 2])) << 8 | uint8_t(w.buf[off + 3]);
				h = 4;
			} else if (len == 127) {
				if (w.buf.size() - off < 10)
					break;
				len = 0;
				for (int k = 0; k < 8; k++)
					len = len << 8 | uint8_t(w.buf[off + 2 + size_t(k)]);
				h = 10;
			}
			if (w.buf.size() - off < h + len)
				break;
			std::string payload = w.buf.substr(off + h, len);
			off += h + len;
			uint8_t op = b0 & 0x0F;
			if (op == 9) {
				send_bytes(w, ws_frame(10, payload));
				st_.heartbeats++;
			} else if (op == 1) {
				std::string type = type_of(payload);
				if (type.empty()) {
					size_t p = payload.find("\"type\":\"");
					if (p != std::string::npos)
						type = payload.substr(p + 8, payload.find('"', p + 8) - p - 8);
				}
				message(w, type, event_id_of(payload), payload);
			}
		}
		w.buf.erase(0, off);
	}

	void parse_sse(Watcher &w) {
		size_t pos;
		while ((pos = w.buf.find("\n\n")) != std::string::npos) {
			std::string block = w.buf.substr(0, pos);
			w.buf.erase(0, pos + 2);
			if (block[0] == ':') {
				st_.heartbeats++;
				continue;
			}
			std::string event, data;
			uint64_t id = 0;
			size_t s = 0;
			while (s < block.size()) {
				size_t nl = block.find('\n', s);
				std::string line = block.substr(s, nl == std::string::npos ? std::string::npos : nl - s);
				s = nl == std::string::npos ? block.size() : nl + 1;
				if (line.compare(0, 7, "event: ") == 0)
					event = line.substr(7);
				else if (line.compare(0, 6, "data: ") == 0)
					data = line.substr(6);
				else if (line.compare(0, 4, "id: ") == 0)
					id = std::strtoull(line.c_str() + 4, nullptr, 10);
			}
			if (!data.empty())
				message(w, event, id, data);
		}
	}

	const Options &o_;
	std::vector<Order> orders_;
	int shard_, shards_;
	std::function<uint64_t()> ready_;
	bool ready_called_ = false;
	double rate_ = 1;
	uint64_t until_ = 0;
	std::vector<std::pair<uint64_t, int64_t>> arrivals_; // (order, when its picked_up arrived)
	std::vector<Watcher> w_;
	std::vector<size_t> order_;
	std::unordered_map<int, std::string> pending_req_;
	int ep_ = -1;
	int64_t start_ms_ = 0;
	Stats st_;
	uint64_t held_ = 0;
	bool storm_pending_ = false;
	std::vector<size_t> storm_list_;
	size_t storm_open_ = 0;
	int64_t storm_ms_ = 0, storm_done_ms_ = 0;
	uint64_t storm_reconnected_ = 0;
};

// Moves orders on: pickup_order() at the configured rate, noting when each
// commit returned.
void status_driver(const Options &o, const std::vector<Order> &orders, std::atomic<bool> &stop) {
	if (o.dsn.empty())
		return;
	if (o.status_rate <= 0)
		return;
	PGconn *c = connect_or_die(o.dsn);
	while (!stop && !g_ready)
		tool::sleep_until(lt::mono_us() + 10000);
	int64_t start = lt::now_us();
	size_t i = 0;
	while (!stop && i < orders.size()) {
		int64_t due = start + int64_t(double(i) * 1e6 / o.status_rate) + int64_t(o.warmup * 1e6);
		if (due > lt::now_us()) {
			tool::sleep_until(lt::mono_us() + (due - lt::now_us()));
			continue;
		}
		std::string id = std::to_string(orders[i].id);
		const char *params[1] = {id.c_str()};
		PGresult *r = PQexecParams(c, "SELECT livetrack.pickup_order($1::bigint)", 1, nullptr, params, nullptr,
		                           nullptr, 0);
		int64_t done = now_ms();
		if (PQresultStatus(r) == PGRES_TUPLES_OK) {
			std::lock_guard<std::mutex> g(commit_mu);
			commit_ms[orders[i].id] = done;
		}
		PQclear(r);
		i++;
	}
	PQfinish(c);
}

// One libpq connection per watcher, LISTENing on its order's channel: how
// far that goes, and how fast.
void relay(const Options &o, const std::vector<Order> &orders, Stats &st, uint64_t &held, double &measured_s) {
	std::vector<PGconn *> conns;
	// Connecting gets half the run at most: with every LISTENer woken for
	// every NOTIFY of the database, each new one comes slower.
	int64_t connect_until = now_ms() + int64_t(o.duration * 500);
	for (uint64_t i = 0; i < o.watchers && now_ms() < connect_until; i++) {
		PGconn *c = PQconnectdb(o.dsn.c_str());
		if (PQstatus(c) != CONNECTION_OK) {
			if (st.failed++ == 0)
				std::fprintf(stderr, "relay: connection %llu failed: %s", (unsigned long long)i, PQerrorMessage(c));
			PQfinish(c);
			break;
		}
		std::string q = "LISTEN livetrack_order_" + std::to_string(orders[i % orders.size()].id);
		PQclear(PQexec(c, q.c_str()));
		PQsetnonblocking(c, 1);
		conns.push_back(c);
		st.connected++;
	}
	held = conns.size();
	std::fprintf(stderr, "relay: %zu LISTEN connections\n", conns.size());
	g_ready = true;
	int64_t start = now_ms();
	int ep = epoll_create1(0);
	for (size_t i = 0; i < conns.size(); i++) {
		epoll_event ev{};
		ev.events = EPOLLIN;
		ev.data.u64 = i;
		epoll_ctl(ep, EPOLL_CTL_ADD, PQsocket(conns[i]), &ev);
	}
	int64_t end = start + int64_t(o.duration * 1000);
	epoll_event evs[512];
	while (tool::signals() == 0 && now_ms() < end) {
		int n = epoll_wait(ep, evs, 512, 50);
		int64_t now = now_ms();
		bool measure = now - start >= int64_t(o.warmup * 1000);
		for (int k = 0; k < n; k++) {
			PGconn *c = conns[evs[k].data.u64];
			PQconsumeInput(c);
			while (PGnotify *nt = PQnotifies(c)) {
				std::string data = nt->extra;
				st.messages++;
				std::string type = type_of(data);
				if (type == "position") {
					st.positions++;
					int64_t ts = ts_of(data);
					if (measure && ts > 0)
						st.position_ms.add(double(now - ts));
				} else {
					st.events++;
					if (type == "status" && measure && data.find("\"status\": \"picked_up\"") != std::string::npos) {
						std::lock_guard<std::mutex> g(commit_mu);
						auto it = commit_ms.find(orders[evs[k].data.u64 % orders.size()].id);
						if (it != commit_ms.end())
							st.status_ms.add(double(now - it->second));
					}
				}
				PQfreemem(nt);
			}
		}
	}
	measured_s = double(now_ms() - start - int64_t(o.warmup * 1000)) / 1000;
	for (PGconn *c : conns)
		PQfinish(c);
}

// Status and near events each watcher should have seen (all of its order's
// events after `from`) but did not.
uint64_t missed_events(const Options &o, const std::vector<Order> &orders, const std::vector<Watcher> &w,
                       uint64_t until, uint64_t &expected) {
	uint64_t from = UINT64_MAX;
	for (const Watcher &x : w)
		if (x.checked)
			from = std::min(from, x.check_from);
	if (from == UINT64_MAX)
		return 0;
	PGconn *c = connect_or_die(o.dsn);
	std::string from_s = std::to_string(from);
	const char *params[1] = {from_s.c_str()};
	std::string until_s = std::to_string(until ? until : UINT64_MAX >> 1);
	const char *params2[2] = {from_s.c_str(), until_s.c_str()};
	(void)params;
	PGresult *r = PQexecParams(c,
	                           "SELECT order_id, event_id FROM livetrack.events WHERE event_id > $1 AND event_id <= $2 "
	                           "ORDER BY 2",
	                           2, nullptr, params2, nullptr, nullptr, 0);
	std::unordered_map<uint64_t, std::vector<uint64_t>> by_order;
	for (int i = 0; i < PQntuples(r); i++)
		by_order[std::strtoull(PQgetvalue(r, i, 0), nullptr, 10)].push_back(std::strtoull(PQgetvalue(r, i, 1), nullptr, 10));
	PQclear(r);
	PQfinish(c);
	uint64_t missed = 0;
	expected = 0;
	for (const Watcher &x : w) {
		if (!x.checked || x.is_box())
			continue;
		auto it = by_order.find(orders[x.order].id);
		if (it == by_order.end())
			continue;
		std::vector<uint64_t> seen = x.seen;
		std::sort(seen.begin(), seen.end());
		for (uint64_t id : it->second) {
			if (id <= x.check_from)
				continue;
			expected++;
			if (!std::binary_search(seen.begin(), seen.end(), id) && missed++ < 5)
				std::fprintf(stderr, "missed: event %llu of order %llu by a %s watcher (last id %llu, saw %zu events)\n",
				             (unsigned long long)id, (unsigned long long)orders[x.order].id, x.ws() ? "WebSocket" : "SSE",
				             (unsigned long long)x.last_id, x.seen.size());
		}
	}
	return missed;
}

} // namespace

int main(int argc, char **argv) {
	Options o;
	for (int i = 1; i < argc; i++) {
		std::string a = argv[i];
		auto val = [&]() -> const char * {
			if (i + 1 >= argc)
				die("%s needs a value", a.c_str());
			return argv[++i];
		};
		if (a == "--orders")
			o.orders_file = val();
		else if (a == "--port")
			o.port = int(tool::parse_uint(a, val(), 1, 65535));
		else if (a == "--watchers")
			o.watchers = tool::parse_uint(a, val(), 0, 10000000);
		else if (a == "--ws-share")
			o.ws_share = tool::parse_double(a, val(), 0, 1);
		else if (a == "--boxes")
			o.boxes = tool::parse_uint(a, val(), 0, 1000000);
		else if (a == "--box-km")
			o.box_km = tool::parse_double(a, val(), 0.01, 1000);
		else if (a == "--box-token")
			o.box_token = val();
		else if (a == "--duration")
			o.duration = tool::parse_double(a, val(), 1, 1e6);
		else if (a == "--connect-rate")
			o.connect_rate = tool::parse_double(a, val(), 1, 1e7);
		else if (a == "--sources")
			o.sources = int(tool::parse_uint(a, val(), 1, 250));
		else if (a == "--storm-at")
			o.storm_at = tool::parse_double(a, val(), 0, 1e6);
		else if (a == "--dsn")
			o.dsn = val();
		else if (a == "--status-rate")
			o.status_rate = tool::parse_double(a, val(), 0, 1e6);
		else if (a == "--relay")
			o.relay = true;
		else if (a == "--procs")
			o.procs = int(tool::parse_uint(a, val(), 1, 64));
		else if (a == "--warmup")
			o.warmup = tool::parse_double(a, val(), 0, 1e6);
		else if (a == "--summary-json")
			o.summary_json = true;
		else {
			usage();
			return 2;
		}
	}
	if (o.orders_file.empty()) {
		usage();
		return 2;
	}
	std::vector<Order> orders;
	std::ifstream in(o.orders_file);
	Order ord;
	while (in >> ord.id >> ord.token >> ord.lat >> ord.lon)
		orders.push_back(ord);
	if (orders.empty())
		die("no orders in %s", o.orders_file.c_str());
	if ((o.relay || o.status_rate > 0) && o.dsn.empty())
		die("--relay and --status-rate need --dsn");
	if (o.boxes > 0 && o.box_token.empty())
		die("--boxes needs --box-token");
	tool::install_signals();

	Stats st;
	uint64_t held = 0, storm_back = 0, missed = 0, expected = 0;
	double seconds = o.duration, storm_s = -1;
	std::atomic<bool> stop{false};
	if (o.relay) {
		std::thread driver(status_driver, std::cref(o), std::cref(orders), std::ref(stop));
		relay(o, orders, st, held, seconds);
		stop = true;
		driver.join();
	} else {
		// The watchers are spread over --procs processes (one process may
		// hold only as many sockets as its open-files limit); each writes
		// its figures to a file, this one adds them up.
		int ready[2];
		if (pipe(ready) != 0)
			die("pipe: %s", std::strerror(errno));
		char tmpl[] = "/tmp/livetrack-watchers-XXXXXX";
		if (!mkdtemp(tmpl))
			die("mkdtemp: %s", std::strerror(errno));
		std::string dir = tmpl;
		std::vector<pid_t> kids;
		for (int k = 0; k < o.procs; k++) {
			pid_t pid = fork();
			if (pid < 0)
				die("fork: %s", std::strerror(errno));
			if (pid == 0) {
				close(ready[0]);
				Load load(o, orders, k, o.procs, [&]() -> uint64_t {
					// Every event after this must reach each of our watchers.
					uint64_t from = 0;
					if (!o.dsn.empty()) {
						PGconn *c = connect_or_die(o.dsn);
						from = newest_event(c);
						PQfinish(c);
					}
					char b = 1;
					(void)!write(ready[1], &b, 1);
					return from;
				});
				load.run();
				uint64_t exp = 0, mis = 0;
				if (!o.dsn.empty())
					mis = missed_events(o, orders, load.watchers(), load.until_event(), exp);
				std::string path = dir + "/" + std::to_string(k);
				FILE *f = std::fopen(path.c_str(), "w");
				Stats &x = load.stats();
				std::fprintf(f, "C %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %lld %lld %llu %llu\n",
				             (unsigned long long)x.connected, (unsigned long long)x.failed, (unsigned long long)x.closed,
				             (unsigned long long)x.messages, (unsigned long long)x.positions,
				             (unsigned long long)x.events, (unsigned long long)x.box_messages,
				             (unsigned long long)x.box_positions, (unsigned long long)load.held(),
				             (unsigned long long)load.storm_reconnected(), (unsigned long long)x.heartbeats,
				             (long long)load.storm_start_ms(), (long long)load.storm_done_ms(), (unsigned long long)exp,
				             (unsigned long long)mis);
				for (double v : x.position_ms.v)
					std::fprintf(f, "P %.0f\n", v);
				for (double v : x.box_ms.v)
					std::fprintf(f, "B %.0f\n", v);
				for (const auto &a : load.arrivals())
					std::fprintf(f, "S %llu %lld\n", (unsigned long long)a.first, (long long)a.second);
				std::fclose(f);
				_exit(0);
			}
			kids.push_back(pid);
		}
		close(ready[1]);
		std::thread driver(status_driver, std::cref(o), std::cref(orders), std::ref(stop));
		std::thread waiter([&] {
			char b;
			int n = 0;
			while (n < o.procs && read(ready[0], &b, 1) == 1)
				n++;
			g_ready = true;
		});
		for (pid_t pid : kids)
			waitpid(pid, nullptr, 0);
		stop = true;
		g_ready = true;
		driver.join();
		close(ready[0]);
		waiter.join();
		int64_t storm_start = 0, storm_done = 0;
		bool storm_complete = true;
		for (int k = 0; k < o.procs; k++) {
			std::string path = dir + "/" + std::to_string(k);
			std::ifstream f(path);
			std::string tag;
			while (f >> tag) {
				if (tag == "C") {
					uint64_t v[15];
					for (int i = 0; i < 11; i++)
						f >> v[i];
					long long ss, sd;
					f >> ss >> sd >> v[13] >> v[14];
					st.connected += v[0];
					st.failed += v[1];
					st.closed += v[2];
					st.messages += v[3];
					st.positions += v[4];
					st.events += v[5];
					st.box_messages += v[6];
					st.box_positions += v[7];
					held += v[8];
					storm_back += v[9];
					st.heartbeats += v[10];
					storm_start = storm_start == 0 ? ss : std::min<int64_t>(storm_start, ss);
					storm_complete = storm_complete && (ss == 0 || sd != 0);
					storm_done = std::max<int64_t>(storm_done, sd);
					expected += v[13];
					missed += v[14];
				} else if (tag == "P" || tag == "B") {
					double x;
					f >> x;
					(tag == "P" ? st.position_ms : st.box_ms).add(x);
				} else if (tag == "S") {
					unsigned long long order;
					long long at;
					f >> order >> at;
					std::lock_guard<std::mutex> g(commit_mu);
					auto it = commit_ms.find(order);
					if (it != commit_ms.end())
						st.status_ms.add(double(at - it->second));
				}
			}
			std::remove(path.c_str());
		}
		std::remove(dir.c_str());
		if (storm_start != 0 && storm_complete)
			storm_s = double(storm_done - storm_start) / 1000;
	}

	double per_s = seconds > 0 ? 1 / seconds : 0;
	std::printf(o.summary_json
	                ? "{\"mode\":\"%s\",\"watchers\":%llu,\"boxes\":%llu,\"held\":%llu,\"failed\":%llu,"
	                  "\"messages\":%llu,\"messages_per_s\":%.0f,\"positions_per_s\":%.0f,\"events\":%llu,"
	                  "\"box_positions_per_s\":%.0f,\"delivered_per_s\":%.0f,"
	                  "\"position_p50_ms\":%.0f,\"position_p99_ms\":%.0f,\"box_p50_ms\":%.0f,\"box_p99_ms\":%.0f,"
	                  "\"status_p50_ms\":%.0f,\"status_p99_ms\":%.0f,\"status_samples\":%zu,"
	                  "\"storm_reconnected\":%llu,\"storm_s\":%.1f,\"events_expected\":%llu,\"events_missed\":%llu}\n"
	                : "mode %s: %llu watchers + %llu boxes, %llu held, %llu failed; %llu messages, %.0f/s "
	                  "(positions %.0f/s, events %llu, box positions %.0f/s; delivered %.0f/s); receipt->watcher "
	                  "p50 %.0f p99 %.0f ms, boxes p50 %.0f p99 %.0f ms; status commit->watcher p50 %.0f p99 %.0f ms "
	                  "(%zu); storm: %llu back in %.1f s; events expected %llu, missed %llu\n",
	            o.relay ? "relay" : "http", (unsigned long long)o.watchers, (unsigned long long)o.boxes,
	            (unsigned long long)held, (unsigned long long)st.failed, (unsigned long long)st.messages,
	            double(st.messages) * per_s, double(st.positions) * per_s, (unsigned long long)st.events,
	            double(st.box_positions) * per_s, double(st.positions + st.events + st.box_positions) * per_s,
	            st.position_ms.pct(0.5), st.position_ms.pct(0.99), st.box_ms.pct(0.5), st.box_ms.pct(0.99),
	            st.status_ms.pct(0.5), st.status_ms.pct(0.99), st.status_ms.v.size(), (unsigned long long)storm_back,
	            storm_s, (unsigned long long)expected, (unsigned long long)missed);
	return 0;
}
