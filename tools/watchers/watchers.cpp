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

#include <algorithm>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/json_lines.hpp"
#include "tools/sim/util.hpp"

namespace {

using tool::die;

struct Options {
	int port = 5481;
	std::string orders_file; // lines: order_id token
	uint64_t watchers = 1000;
	double duration = 30;
	double connect_rate = 5000; // new connections per second
	int sources = 1;            // bind to 127.0.0.1 .. 127.0.0.N (28k ports each)
	double storm_at = 0;        // drop every connection at this second, and resume
	std::string dsn;            // for the status driver and the final check
	double status_rate = 0;     // pickup_order() calls per second
	bool relay = false;         // LISTEN per order instead of SSE
	double warmup = 5;          // seconds left out of the latency figures
	bool summary_json = false;
};

void usage() {
	std::fputs(
	    "usage: livetrack-watchers --orders FILE [options]\n"
	    "  --orders FILE        lines of 'order_id token' (the watch tokens)\n"
	    "  --port P             the HTTP worker's port (5481)\n"
	    "  --watchers N         concurrent watchers, spread over the orders (1000)\n"
	    "  --duration S         seconds to hold them (30)\n"
	    "  --connect-rate R     new connections per second (5000)\n"
	    "  --sources K          source addresses 127.0.0.1..K (past ~28k sockets)\n"
	    "  --storm-at S         at S seconds drop every stream and reconnect with Last-Event-ID\n"
	    "  --dsn DSN            database, to move orders on and check for missed events\n"
	    "  --status-rate R      pickup_order() calls per second (needs --dsn)\n"
	    "  --relay              one libpq LISTEN connection per watcher instead (needs --dsn)\n"
	    "  --warmup S           leave latencies of the first S seconds out (5)\n"
	    "  --summary-json       the summary as one JSON object\n",
	    stderr);
}

struct Order {
	uint64_t id;
	std::string token;
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
std::atomic<uint64_t> g_from{0};

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
	Samples position_ms, status_ms;
};

struct Watcher {
	int fd = -1;
	size_t order; // index into orders
	bool head_done = false;
	int status = 0;
	uint64_t last_id = 0;
	std::string buf;
	std::vector<uint64_t> seen; // status and near event ids
	bool ever_connected = false;
};

class Load {
public:
	Load(const Options &o, std::vector<Order> orders) : o_(o), orders_(std::move(orders)) {}

	void run() {
		ep_ = epoll_create1(0);
		w_.resize(o_.watchers);
		for (size_t i = 0; i < w_.size(); i++)
			w_[i].order = i % orders_.size();
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
			// Open connections at the configured rate.
			size_t due = std::min(w_.size(), size_t(double(now - start_ms_) / 1000.0 * o_.connect_rate) + 1);
			while (next < due)
				open(next++);
			if (!g_ready && next == w_.size() && st_.connected + st_.failed >= w_.size())
				g_ready = true;
			if (!stormed && o_.storm_at > 0 && now - start_ms_ >= int64_t(o_.storm_at * 1000)) {
				stormed = true;
				storm();
			}
			int n = epoll_wait(ep_, evs, 1024, 20);
			for (int i = 0; i < n; i++)
				on_event(evs[i].data.u64, evs[i].events);
			if (!o_.summary_json && now - last_report >= 1000) {
				last_report = now;
				std::fprintf(stderr, "%5.0fs connected %llu failed %llu messages %llu positions %llu events %llu\n",
				             double(now - start_ms_) / 1000, (unsigned long long)(st_.connected - st_.closed),
				             (unsigned long long)st_.failed, (unsigned long long)st_.messages,
				             (unsigned long long)st_.positions, (unsigned long long)st_.events);
			}
		}
		held_ = st_.connected - st_.closed;
		measured_s_ = double(now_ms() - start_ms_ - int64_t(o_.warmup * 1000)) / 1000;
	}

	Stats &stats() { return st_; }
	uint64_t held() const { return held_; }
	double measured_s() const { return measured_s_; }
	uint64_t storm_reconnected() const { return storm_reconnected_; }
	const std::vector<Watcher> &watchers() const { return w_; }

private:
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
		src.sin_addr.s_addr = htonl(0x7F000001u + uint32_t(i % size_t(o_.sources)));
		if (o_.sources > 1)
			(void)bind(fd, reinterpret_cast<sockaddr *>(&src), sizeof src);
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
		w.buf.clear();
		const Order &ord = orders_[w.order];
		std::string req = "GET /v1/orders/" + std::to_string(ord.id) + "/stream?access_token=" + ord.token +
		                  " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n";
		if (w.last_id)
			req += "Last-Event-ID: " + std::to_string(w.last_id) + "\r\n";
		req += "\r\n";
		pending_req_[fd] = req;
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
		if (w.head_done && w.status == 200)
			st_.closed++;
	}

	// Every client drops at once, then comes back with its last event id.
	void storm() {
		for (Watcher &w : w_)
			close_w(w);
		uint64_t before = st_.connected;
		for (size_t i = 0; i < w_.size(); i++)
			open(i);
		storm_base_ = before;
		storm_pending_ = true;
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

	void parse(Watcher &w) {
		if (!w.head_done) {
			size_t e = w.buf.find("\r\n\r\n");
			if (e == std::string::npos)
				return;
			w.status = std::atoi(w.buf.c_str() + 9);
			w.head_done = true;
			w.buf.erase(0, e + 4);
			if (w.status == 200) {
				st_.connected++;
				if (storm_pending_ && w.ever_connected)
					storm_reconnected_++;
				w.ever_connected = true;
			} else {
				st_.failed++;
			}
		}
		int64_t now = now_ms();
		bool measure = now - start_ms_ >= int64_t(o_.warmup * 1000);
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
			if (data.empty())
				continue;
			st_.messages++;
			if (id)
				w.last_id = id;
			if (event == "position") {
				st_.positions++;
				int64_t ts = ts_of(data);
				if (measure && ts > 0)
					st_.position_ms.add(double(now - ts));
			} else if (event == "status" || event == "near") {
				st_.events++;
				w.seen.push_back(id);
				if (event == "status" && measure && data.find("\"status\": \"picked_up\"") != std::string::npos) {
					std::lock_guard<std::mutex> g(commit_mu);
					auto it = commit_ms.find(orders_[w.order].id);
					if (it != commit_ms.end())
						st_.status_ms.add(double(now - it->second));
				}
			}
		}
	}

	const Options &o_;
	std::vector<Order> orders_;
	std::vector<Watcher> w_;
	std::unordered_map<int, std::string> pending_req_;
	int ep_ = -1;
	int64_t start_ms_ = 0;
	Stats st_;
	uint64_t held_ = 0;
	double measured_s_ = 0;
	bool storm_pending_ = false;
	uint64_t storm_base_ = 0, storm_reconnected_ = 0;
};

// Moves orders on: pickup_order() at the configured rate, noting when each
// commit returned.
void status_driver(const Options &o, const std::vector<Order> &orders, std::atomic<bool> &stop) {
	if (o.dsn.empty())
		return;
	PGconn *c = connect_or_die(o.dsn);
	while (!stop && !g_ready)
		tool::sleep_until(lt::mono_us() + 10000);
	g_from = newest_event(c);
	if (o.status_rate <= 0) {
		PQfinish(c);
		return;
	}
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
                       uint64_t from, uint64_t &expected) {
	PGconn *c = connect_or_die(o.dsn);
	std::string from_s = std::to_string(from);
	const char *params[1] = {from_s.c_str()};
	PGresult *r = PQexecParams(c, "SELECT order_id, event_id FROM livetrack.events WHERE event_id > $1 ORDER BY 2", 1,
	                           nullptr, params, nullptr, nullptr, 0);
	std::unordered_map<uint64_t, std::vector<uint64_t>> by_order;
	for (int i = 0; i < PQntuples(r); i++)
		by_order[std::strtoull(PQgetvalue(r, i, 0), nullptr, 10)].push_back(std::strtoull(PQgetvalue(r, i, 1), nullptr, 10));
	PQclear(r);
	PQfinish(c);
	uint64_t missed = 0;
	expected = 0;
	for (const Watcher &x : w) {
		if (!x.ever_connected)
			continue;
		auto it = by_order.find(orders[x.order].id);
		if (it == by_order.end())
			continue;
		std::vector<uint64_t> seen = x.seen;
		std::sort(seen.begin(), seen.end());
		for (uint64_t id : it->second) {
			expected++;
			if (!std::binary_search(seen.begin(), seen.end(), id))
				missed++;
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
			o.watchers = tool::parse_uint(a, val(), 1, 10000000);
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
	while (in >> ord.id >> ord.token)
		orders.push_back(ord);
	if (orders.empty())
		die("no orders in %s", o.orders_file.c_str());
	if ((o.relay || o.status_rate > 0) && o.dsn.empty())
		die("--relay and --status-rate need --dsn");
	tool::install_signals();

	std::atomic<bool> stop{false};
	std::thread driver(status_driver, std::cref(o), std::cref(orders), std::ref(stop));
	Stats st;
	uint64_t held = 0, storm_back = 0, missed = 0, expected = 0;
	double seconds = 0;
	Load load(o, orders);
	if (o.relay) {
		relay(o, orders, st, held, seconds);
	} else {
		load.run();
		st = load.stats();
		held = load.held();
		seconds = load.measured_s();
		storm_back = load.storm_reconnected();
	}
	stop = true;
	driver.join();
	if (!o.relay && !o.dsn.empty())
		missed = missed_events(o, orders, load.watchers(), g_from, expected);

	double rate = seconds > 0 ? double(st.messages) / (o.duration > 0 ? o.duration : 1) : 0;
	std::printf(o.summary_json
	                ? "{\"mode\":\"%s\",\"watchers\":%llu,\"held\":%llu,\"failed\":%llu,\"messages\":%llu,"
	                  "\"positions\":%llu,\"events\":%llu,\"messages_per_s\":%.0f,\"position_p50_ms\":%.0f,"
	                  "\"position_p99_ms\":%.0f,\"status_p50_ms\":%.0f,\"status_p99_ms\":%.0f,\"status_samples\":%zu,"
	                  "\"storm_reconnected\":%llu,\"events_expected\":%llu,\"events_missed\":%llu}\n"
	                : "mode %s: %llu watchers, %llu held, %llu failed; %llu messages (%llu positions, %llu events), "
	                  "%.0f/s; receipt->watcher p50 %.0f ms p99 %.0f ms; status commit->watcher p50 %.0f p99 %.0f ms "
	                  "(%zu); storm: %llu back; events expected %llu, missed %llu\n",
	            o.relay ? "relay" : "sse", (unsigned long long)o.watchers, (unsigned long long)held,
	            (unsigned long long)st.failed, (unsigned long long)st.messages, (unsigned long long)st.positions,
	            (unsigned long long)st.events, rate, st.position_ms.pct(0.5), st.position_ms.pct(0.99),
	            st.status_ms.pct(0.5), st.status_ms.pct(0.99), st.status_ms.v.size(), (unsigned long long)storm_back,
	            (unsigned long long)expected, (unsigned long long)missed);
	return 0;
}
