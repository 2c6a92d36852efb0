#include "http_server.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <unordered_set>

#include "../core/atomics.hpp"
#include "../core/clock.hpp"
#include "../core/geo.hpp"
#include "../core/http.hpp"
#include "../core/http_ingest.hpp"
#include "../core/jwt.hpp"
#include "../core/push.hpp"
#include "../core/rj.hpp"
#include "../core/sse.hpp"
#include "../core/websocket.hpp"

namespace lt {
namespace {

constexpr size_t kReadChunk = 16384;
constexpr size_t kMaxBuffered = kReadChunk + http::kMaxHead + http::kMaxBody; // one request and some
constexpr size_t kMaxQueued = 1 << 20;             // unsent bytes of a stream before it is cut off
constexpr size_t kMaxWsMessage = 16 * 1024;        // a client's WebSocket message (1009 above)
constexpr size_t kMaxSubscriptions = 256;          // per WebSocket connection
constexpr int64_t kHeadTimeoutUs = 10 * 1000000;   // a request must arrive within this
constexpr int64_t kIdleTimeoutUs = 60 * 1000000;   // keep-alive connections with nothing to do
constexpr int64_t kHeartbeatUs = 10 * 1000000;     // SSE comment / WebSocket ping after this silence (SPEC: 15 s)
constexpr int64_t kStalledUs = 60 * 1000000;       // a stream that took nothing for this long is cut
constexpr int64_t kCommitTimeoutUs = 30 * 1000000; // HTTP ingest waiting for its commit
constexpr int64_t kEventPollUs = 1000000;          // poll events at least this often (a missed wake-up)
constexpr int64_t kLingerUs = 2 * 1000000;         // reading what a client sends after our last answer
constexpr int64_t kBoxMaxAgeMs = 60000;            // a box's snapshot: drivers with a fix this recent
constexpr int kTickMs = 25;
constexpr int kOrderSndBuf = 32 * 1024;            // the kernel doubles these
constexpr int kBoxSndBuf = 256 * 1024;
constexpr int kEventBatch = 2000;
constexpr uint32_t kRetryMs = 2000;                // EventSource reconnects after this
constexpr double kTilesPerDegree = 32;             // driver boxes are put together from 1/32-degree tiles
constexpr double kMaxBoxDegrees = 10;              // a box is at most this wide and high
constexpr uint64_t kBoxKeyBit = uint64_t(1) << 63; // output-queue keys of box messages

enum Kind : uint64_t { kListen = 1, kConn = 2 };
uint64_t tag(Kind k, uint64_t v) { return uint64_t(k) << 32 | v; }

bool is_loopback(const sockaddr_storage &a) {
	if (a.ss_family == AF_INET)
		return (ntohl(reinterpret_cast<const sockaddr_in *>(&a)->sin_addr.s_addr) >> 24) == 127;
	if (a.ss_family == AF_INET6) {
		auto *s = reinterpret_cast<const sockaddr_in6 *>(&a);
		return IN6_IS_ADDR_LOOPBACK(&s->sin6_addr) ||
		       (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr) && s->sin6_addr.s6_addr[12] == 127);
	}
	return false;
}

void set_opt(int fd, int level, int opt, int v) { (void)setsockopt(fd, level, opt, &v, sizeof v); }

bool final_status(const std::string &s) { return s == "delivered" || s == "cancelled"; }

uint8_t target_of(const std::string &t) {
	return t == "pickup" ? kTargetPickup : t == "dropoff" ? kTargetDropoff : 0;
}

std::shared_ptr<const std::string> shared(std::string s) { return std::make_shared<const std::string>(std::move(s)); }

std::string sse_message(const char *event, uint64_t id, std::string_view data) {
	std::string m;
	sse::append_event(m, event, id, data);
	return m;
}

const char kSseHead[] = "HTTP/1.1 200 OK\r\n"
                        "Content-Type: text/event-stream\r\n"
                        "Cache-Control: no-cache\r\n"
                        "X-Accel-Buffering: no\r\n" // nginx: pass events on at once
                        "Access-Control-Allow-Origin: *\r\n"
                        "Connection: close\r\n\r\n";

// Checks the request's token. Returns 0 and the claims, or the status to
// answer with (401: missing or invalid).
int check_token(const std::string &token, const std::vector<uint8_t> &secret, jwt::Claims &claims, const char **why) {
	if (token.empty()) {
		*why = "a token is required (Authorization: Bearer, Basic password, or ?access_token=)";
		return 401;
	}
	if (secret.empty()) {
		*why = "tokens cannot be checked yet";
		return 503;
	}
	jwt::Verdict v = jwt::verify(token, secret.data(), secret.size(), now_us() / 1000000, claims);
	if (v != jwt::Verdict::Ok) {
		*why = jwt::verdict_text(v);
		return 401;
	}
	return 0;
}

// A 1/32-degree tile of the driver boxes.
uint64_t tile_key(int64_t ty, int64_t tx) { return uint64_t(ty + 100000) << 32 | uint64_t(tx + 100000); }

uint64_t parse_u64(std::string_view s) {
	if (s.empty() || s.size() > 19)
		return 0;
	uint64_t v = 0;
	for (char c : s) {
		if (c < '0' || c > '9')
			return 0;
		v = v * 10 + uint64_t(c - '0');
	}
	return v;
}

// "minlon,minlat,maxlon,maxlat"
bool parse_bbox(std::string_view s, double out[4]) {
	for (int i = 0; i < 4; i++) {
		size_t comma = s.find(',');
		std::string part(s.substr(0, comma));
		char *end = nullptr;
		out[i] = std::strtod(part.c_str(), &end);
		if (part.empty() || *end != '\0' || !std::isfinite(out[i]))
			return false;
		if ((comma == std::string_view::npos) != (i == 3))
			return false;
		if (comma != std::string_view::npos)
			s.remove_prefix(comma + 1);
	}
	return true;
}

std::string json_num(double v, const char *fmt) {
	char b[40];
	std::snprintf(b, sizeof b, fmt, v);
	return b;
}

// One driver as box messages carry it.
std::string driver_json(const LiveView &v) {
	char ts[32];
	format_utc_ms(v.ts_ms, ts);
	const char *st = status_name(v.status);
	std::string s = "{\"driver_id\":" + std::to_string(v.driver_id) + ",\"lat\":" + json_num(v.lat_e7 / 1e7, "%.7f") +
	                ",\"lon\":" + json_num(v.lon_e7 / 1e7, "%.7f") + ",\"ts\":\"" + ts + "\",\"status\":";
	s += st ? std::string("\"") + st + "\"" : std::string("null");
	s += ",\"speed_mps\":" + (v.speed_cms == kUnknown16 ? std::string("null") : json_num(v.speed_cms / 100.0, "%.2f"));
	s += ",\"heading_deg\":" +
	     (v.heading_cd == kUnknown16 ? std::string("null") : json_num(v.heading_cd / 100.0, "%.2f")) + "}";
	return s;
}

} // namespace

struct Chunk {
	std::shared_ptr<const std::string> data;
	size_t off;
	uint64_t key; // != 0: a position that a newer one with the same key replaces while unsent
};

// A driver box: the SSE stream's one, or one of a WebSocket's.
struct DriversSub {
	HttpConn *c = nullptr;
	uint32_t id = 0;  // the WebSocket subscription id (0: SSE)
	uint64_t key = 0; // its output-queue key
	Box box{0, 0, 0, 0};
	std::shared_ptr<const Area> area; // the token's area; nullptr: everywhere
	bool needs_snapshot = true;       // the next message carries every driver in the box
	int64_t exp_s = 0;
};

struct LoadReq {
	HttpConn *c;
	uint64_t order_id;
	uint64_t last_event_id;
	bool resume; // Last-Event-ID given (0: every event of the order)
	bool stream;                      // SSE stream or WebSocket subscription; else GET /v1/orders/{id}
	bool places;                      // GET /v1/orders/{id}/places
	std::shared_ptr<const Area> area; // a dispatch token's area: the pickup must be in it
	int64_t exp_s;
};

struct HttpConn {
	int fd = -1;
	uint32_t slot = 0;
	bool loopback = false;
	// Lingering: the last answer is out and our side shut down; what the
	// client still sends is read and dropped until it closes, so that a
	// 413 or 400 is not lost to a reset (as nginx's lingering close).
	enum State : uint8_t { Reading, Loading, Committing, Streaming, Lingering } state = Reading;
	bool peer_closed = false;       // EOF from the client
	bool close_after_write = false; // the last response is queued
	uint32_t events = 0;
	int64_t last_in_us = 0, last_out_us = 0;
	int64_t request_us = 0; // first byte of the request being read; 0 between requests
	std::unique_ptr<http::Parser> parser;
	std::string in;
	std::vector<Chunk> out;
	size_t out_head = 0, out_bytes = 0;
	int64_t stalled_since_us = 0; // when the socket last refused bytes with data queued
	int64_t linger_since_us = 0;
	bool keep_alive = true;
	// Committing: HTTP ingest, answered once its fixes are committed.
	std::vector<Fix> fixes;
	size_t pushed = 0;
	uint64_t ingest_pos = 0;
	bool have_mark = false;
	uint64_t ring_mark = 0;
	std::string answer;
	int64_t since_us = 0;
	// Streaming: what it watches, and for how long its token holds.
	std::vector<uint64_t> orders; // SSE: one; WebSocket: any number
	std::vector<DriversSub *> boxes;
	uint64_t token_gen = 0;
	int64_t token_exp_s = 0;
	std::unique_ptr<ws::Session> ws; // a WebSocket
	std::string ws_default_token;    // ?access_token= of the upgrade request
	uint32_t ws_next_sub = 1;
};

struct OrderChannel {
	uint64_t order_id = 0;
	uint64_t driver_id = 0;
	std::string status;
	uint8_t target = 0;
	double pickup_lat = 0, pickup_lon = 0, dropoff_lat = 0, dropoff_lon = 0;
	uint32_t live_index = kNoEntry;
	uint64_t live_driver = 0;
	int64_t last_fix_ts = 0; // the newest fix seen (sent or waiting for the interval)
	int64_t sent_fix_ts = 0; // the fix of the last position sent
	int64_t last_sent_us = 0;
	std::vector<HttpConn *> watchers;
};

HttpServer::HttpServer(HttpBackend &db, Ring<Ping> &ring, Ring<Ping> &ingest, const uint64_t *ingest_mark,
                       LiveTable &live, KeyStore *keys, const MovedFeed *moved, HttpCounters &counters,
                       Counters &records)
    : db_(db), ring_(ring), ingest_(ingest), ingest_mark_(ingest_mark), live_(live), keys_(keys), moved_(moved),
      hc_(counters), rc_(records) {
	if (moved_)
		moved_pos_ = moved_->head();
}

HttpServer::~HttpServer() { close_all(); }

void HttpServer::set_config(const HttpConfig &cfg) {
	cfg_.max_connections = cfg.max_connections;
	cfg_.policy = cfg.policy;
	cfg_.notify_interval_us = cfg.notify_interval_us;
	cfg_.map_tiles = cfg.map_tiles;
	files_.clear(); // the page carries the tile setting
}

bool HttpServer::open(const HttpConfig &cfg, std::string &err) {
	close_all();
	cfg_ = cfg;
	epfd_ = epoll_create1(EPOLL_CLOEXEC);
	if (epfd_ < 0) {
		err = std::string("epoll_create1: ") + std::strerror(errno);
		return false;
	}
	char port[16];
	std::snprintf(port, sizeof port, "%d", cfg.port);
	for (const std::string &a : cfg.addresses) {
		addrinfo hints{}, *res = nullptr;
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
		int rc = getaddrinfo(a == "*" || a.empty() ? nullptr : a.c_str(), port, &hints, &res);
		if (rc != 0) {
			err += "could not resolve \"" + a + "\": " + gai_strerror(rc) + "; ";
			continue;
		}
		for (addrinfo *ai = res; ai; ai = ai->ai_next) {
			int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (fd < 0)
				continue;
			set_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
			// Several HTTP workers share the port; the kernel spreads new
			// connections over their listening sockets. Only then: with it, a
			// second server on the same port would share it silently.
			if (cfg.reuse_port)
				set_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
			if (ai->ai_family == AF_INET6)
				set_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
			// The kernel caps the backlog at net.core.somaxconn: a burst of
			// reconnecting clients (a storm) needs it raised (README).
			if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 65535) != 0) {
				err += "http " + a + ":" + port + ": " + std::strerror(errno) + "; ";
				::close(fd);
				continue;
			}
			epoll_event ev{};
			ev.events = EPOLLIN;
			ev.data.u64 = tag(kListen, uint64_t(fd));
			epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
			listen_.push_back(fd);
		}
		freeaddrinfo(res);
	}
	return !listen_.empty();
}

void HttpServer::close_all() {
	for (HttpConn *c : conns_)
		if (c)
			close_conn(c);
	reap();
	conns_.clear();
	free_slots_.clear();
	channels_.clear();
	by_entry_.clear();
	due_.clear();
	loading_.clear();
	committing_.clear();
	dsubs_.clear();
	drivers_sent_.clear();
	for (int fd : listen_)
		::close(fd);
	listen_.clear();
	if (epfd_ >= 0)
		::close(epfd_);
	epfd_ = -1;
}

void HttpServer::set_token_secret(const uint8_t *secret, size_t len, uint64_t gen) {
	bool rotated = have_secret_ && gen != secret_gen_;
	secret_.assign(secret, secret + len);
	secret_gen_ = gen;
	have_secret_ = true;
	if (!rotated)
		return;
	// Every token issued before is refused from now on, and so is every
	// stream opened with one.
	for (HttpConn *c : conns_)
		if (c && c->state == HttpConn::Streaming && c->token_gen != gen)
			end_stream(c, "error", "{\"type\":\"error\",\"error\":\"the token secret was rotated\"}", 0);
}

int HttpServer::tick_ms() const { return kTickMs; }

// ---------------------------------------------------------------- sockets

void HttpServer::run_once() {
	if (epfd_ < 0)
		return;
	epoll_event evs[256];
	int n = epoll_wait(epfd_, evs, 256, 0);
	for (int i = 0; i < n; i++) {
		uint64_t kind = evs[i].data.u64 >> 32, v = evs[i].data.u64 & 0xFFFFFFFFu;
		if (kind == kListen) {
			accept_all(int(v));
			continue;
		}
		if (kind != kConn || v >= conns_.size() || conns_[v] == nullptr)
			continue;
		HttpConn *c = conns_[v];
		if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
			close_conn(c);
			continue;
		}
		if (evs[i].events & EPOLLOUT) {
			flush_out(c);
			if (c->fd < 0)
				continue;
		}
		if (evs[i].events & (EPOLLIN | EPOLLRDHUP))
			on_readable(c);
	}
	if (!committing_.empty())
		service_commits();
	if (!loading_.empty())
		service_loads();
	int64_t now = mono_us();
	if (events_dirty_ || now - last_poll_us_ > kEventPollUs)
		service_events();
	reap();
}

void HttpServer::accept_all(int lfd) {
	for (int i = 0; i < 256; i++) {
		sockaddr_storage sa{};
		socklen_t len = sizeof sa;
		int fd = accept4(lfd, reinterpret_cast<sockaddr *>(&sa), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (nconns_ >= size_t(cfg_.max_connections)) {
			// SPEC 6: 503 past http_max_connections. Best effort: a fresh
			// socket's buffer takes these bytes at once.
			std::string r = http::error_response(503, "too many connections", false, "Retry-After: 1\r\n");
			(void)send(fd, r.data(), r.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
			::close(fd);
			bump(hc_.http_connections_refused);
			continue;
		}
		set_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
		// Half-open peers (a phone that lost coverage) are found by keepalive.
		set_opt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
		set_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE, 60);
		set_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL, 10);
		set_opt(fd, IPPROTO_TCP, TCP_KEEPCNT, 3);
		auto *c = new HttpConn;
		c->fd = fd;
		c->loopback = is_loopback(sa);
		c->last_in_us = c->last_out_us = mono_us();
		if (!free_slots_.empty()) {
			c->slot = free_slots_.back();
			free_slots_.pop_back();
			conns_[c->slot] = c;
		} else {
			c->slot = uint32_t(conns_.size());
			conns_.push_back(c);
		}
		nconns_++;
		bump(hc_.http_connections_accepted);
		update_events(c);
	}
}

void HttpServer::on_readable(HttpConn *c) {
	char buf[kReadChunk];
	for (int round = 0; round < 16 && c->fd >= 0; round++) {
		bool taking = c->state == HttpConn::Streaming || c->state == HttpConn::Lingering;
		if (!taking && c->in.size() >= kMaxBuffered)
			break; // enough buffered: wait until it is used (pipelined requests)
		ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n > 0) {
			c->last_in_us = mono_us();
			if (c->ws) {
				// A WebSocket's frames go to wslay; its messages come back
				// through ws_message(). A protocol error ends the session.
				if (!c->ws->feed(reinterpret_cast<const uint8_t *>(buf), size_t(n))) {
					if (c->ws->close_code_sent() != 0 && c->ws->close_code_sent() != 1000 &&
					    c->ws->close_code_received() == 0)
						bump(hc_.http_ws_protocol_errors);
					detach(c);
					c->ws.reset();
					c->state = HttpConn::Reading;
					c->close_after_write = true;
					flush_out(c);
					return;
				}
			} else if (!taking) {
				// A stream reads nothing more from its client: input is dropped.
				if (c->in.empty() && c->request_us == 0)
					c->request_us = c->last_in_us;
				c->in.append(buf, size_t(n));
			}
			if (size_t(n) < sizeof buf)
				break;
			continue;
		}
		if (n == 0) {
			c->peer_closed = true;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			close_conn(c);
			return;
		}
		break;
	}
	if (c->fd < 0)
		return;
	if (c->state == HttpConn::Reading)
		process_input(c);
	if (c->fd < 0)
		return;
	if (c->peer_closed && (c->state == HttpConn::Streaming || c->state == HttpConn::Reading ||
	                       c->state == HttpConn::Lingering) &&
	    c->out_head == c->out.size()) {
		close_conn(c);
		return;
	}
	update_events(c);
}

// Parses and answers requests one at a time while the connection is free.
void HttpServer::process_input(HttpConn *c) {
	while (c->state == HttpConn::Reading && !c->close_after_write && !c->in.empty()) {
		if (!c->parser)
			c->parser.reset(new http::Parser);
		size_t used = 0;
		http::Parser::Status st = c->parser->feed(c->in.data(), c->in.size(), &used);
		c->in.erase(0, used);
		if (st == http::Parser::Status::NeedMore)
			break;
		if (st == http::Parser::Status::Continue) {
			enqueue(c, shared("HTTP/1.1 100 Continue\r\n\r\n"), 0);
			continue;
		}
		if (st == http::Parser::Status::Error) {
			int status = c->parser->error_status();
			if (status == 413)
				bump(hc_.http_too_large);
			else if (status == 414 || status == 431)
				bump(hc_.http_headers_too_large);
			else
				bump(hc_.http_bad_requests);
			bump(hc_.http_requests);
			// The stream cannot be trusted past a bad request: answer, then close.
			respond(c, http::error_response(status, c->parser->error_text(), false), false);
			c->in.clear();
			break;
		}
		try {
			handle_request(c);
		} catch (const std::exception &e) {
			// A bug that input reached must cost this request, not the
			// worker (and everyone else's streams with it).
			if (c->fd >= 0 && c->state == HttpConn::Reading && !c->close_after_write)
				respond(c, http::error_response(500, e.what(), false), false);
		}
		if (c->fd < 0)
			return;
		if (c->state == HttpConn::Reading && c->parser)
			c->parser->next();
		c->request_us = c->in.empty() ? 0 : mono_us();
	}
	if (c->state == HttpConn::Reading && c->in.empty() && c->parser && c->parser->bytes_seen() == 0)
		c->parser.reset(); // idle keep-alive connections hold no parser
}

void HttpServer::respond(HttpConn *c, std::string bytes, bool keep_alive) {
	c->state = HttpConn::Reading;
	if (!keep_alive)
		c->close_after_write = true;
	enqueue(c, shared(std::move(bytes)), 0);
}

void HttpServer::fail(HttpConn *c, int status, const char *message, bool keep_alive) {
	switch (status) {
	case 401: bump(hc_.http_unauthorized); break;
	case 403: bump(hc_.http_forbidden); break;
	case 404: bump(hc_.http_not_found); break;
	case 413: bump(hc_.http_too_large); break;
	default:
		if (status >= 400 && status < 500)
			bump(hc_.http_bad_requests);
	}
	std::string extra;
	if (status == 401)
		extra = "WWW-Authenticate: Bearer realm=\"livetrack\"\r\n";
	respond(c, http::error_response(status, message, keep_alive, extra), keep_alive);
}

// The answer to a request that waited (a load, a commit); then the requests
// pipelined behind it.
void HttpServer::finish_deferred(HttpConn *c, std::string bytes, bool keep_alive) {
	respond(c, std::move(bytes), keep_alive);
	if (c->fd < 0)
		return;
	if (c->parser)
		c->parser->next();
	c->request_us = c->in.empty() ? 0 : mono_us();
	process_input(c);
	if (c->fd >= 0)
		update_events(c);
}

bool HttpServer::has_unsent(HttpConn *c, uint64_t key) const {
	for (size_t i = c->out_head; i < c->out.size(); i++)
		if (c->out[i].key == key && c->out[i].off == 0)
			return true;
	return false;
}

void HttpServer::enqueue(HttpConn *c, std::shared_ptr<const std::string> msg, uint64_t key) {
	if (c->fd < 0)
		return; // closed in this round
	if (key != 0) {
		// A newer position replaces one that has not started to go out.
		for (size_t i = c->out.size(); i-- > c->out_head;) {
			Chunk &ch = c->out[i];
			if (ch.key == key && ch.off == 0) {
				c->out_bytes -= ch.data->size();
				ch.data = std::move(msg);
				c->out_bytes += ch.data->size();
				bump(hc_.http_positions_skipped);
				return;
			}
		}
	}
	c->out_bytes += msg->size();
	c->out.push_back(Chunk{std::move(msg), 0, key});
	if (c->state == HttpConn::Streaming && c->out_bytes > kMaxQueued) {
		// Too far behind on events: cut it off; it comes back with Last-Event-ID.
		bump(hc_.http_closed_slow);
		close_conn(c);
		return;
	}
	flush_out(c);
}

// One message of a stream, framed for the connection: an SSE event, or a
// WebSocket text frame of the same JSON.
void HttpServer::send_to(HttpConn *c, const char *sse_event, uint64_t id, const std::string &json, uint64_t key) {
	enqueue(c, shared(c->ws ? ws::text_frame(json) : sse_message(sse_event, id, json)), key);
}

void HttpServer::flush_out(HttpConn *c) {
	if (c->fd < 0)
		return;
	while (c->out_head < c->out.size()) {
		iovec iov[64];
		int n = 0;
		for (size_t i = c->out_head; i < c->out.size() && n < 64; i++, n++) {
			iov[n].iov_base = const_cast<char *>(c->out[i].data->data()) + c->out[i].off;
			iov[n].iov_len = c->out[i].data->size() - c->out[i].off;
		}
		msghdr mh{};
		mh.msg_iov = iov;
		mh.msg_iovlen = size_t(n);
		ssize_t w = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (c->stalled_since_us == 0)
					c->stalled_since_us = mono_us();
				break;
			}
			close_conn(c);
			return;
		}
		c->last_out_us = mono_us();
		c->stalled_since_us = 0;
		size_t left = size_t(w);
		while (left > 0 && c->out_head < c->out.size()) {
			Chunk &ch = c->out[c->out_head];
			size_t rest = ch.data->size() - ch.off;
			if (left >= rest) {
				left -= rest;
				c->out_bytes -= ch.data->size();
				ch.data.reset();
				c->out_head++;
			} else {
				ch.off += left;
				left = 0;
			}
		}
	}
	if (c->out_head == c->out.size()) {
		c->out.clear();
		c->out_head = 0;
		if (c->peer_closed && c->state != HttpConn::Committing && c->state != HttpConn::Loading) {
			close_conn(c);
			return;
		}
		if (c->close_after_write && c->state != HttpConn::Lingering) {
			(void)shutdown(c->fd, SHUT_WR);
			c->state = HttpConn::Lingering;
			c->linger_since_us = mono_us();
			c->in.clear();
			c->parser.reset();
		}
	} else if (c->out_head > 64 && c->out_head * 2 > c->out.size()) {
		c->out.erase(c->out.begin(), c->out.begin() + long(c->out_head));
		c->out_head = 0;
	}
	update_events(c);
}

void HttpServer::update_events(HttpConn *c) {
	if (c->fd < 0)
		return;
	uint32_t want = EPOLLRDHUP;
	if (!c->peer_closed && (c->state == HttpConn::Streaming || c->state == HttpConn::Lingering ||
	                        c->in.size() < kMaxBuffered))
		want |= EPOLLIN;
	if (c->out_head < c->out.size())
		want |= EPOLLOUT;
	if (want == c->events)
		return;
	epoll_event ev{};
	ev.events = want;
	ev.data.u64 = tag(kConn, c->slot);
	epoll_ctl(epfd_, c->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c->fd, &ev);
	c->events = want;
}

// Takes a connection out of everything it waits for or watches. Empty
// order channels stay until tick() drops them: callers may be walking them.
void HttpServer::detach(HttpConn *c) {
	if (c->state == HttpConn::Streaming) {
		for (uint64_t o : c->orders) {
			auto it = channels_.find(o);
			if (it != channels_.end()) {
				auto &w = it->second->watchers;
				w.erase(std::remove(w.begin(), w.end(), c), w.end());
			}
		}
		c->orders.clear();
		for (DriversSub *b : c->boxes) {
			dsubs_.erase(std::remove(dsubs_.begin(), dsubs_.end(), b), dsubs_.end());
			delete b;
			covered_dirty_ = true;
		}
		c->boxes.clear();
		nstreams_--;
	}
	loading_.erase(std::remove_if(loading_.begin(), loading_.end(), [c](const LoadReq &r) { return r.c == c; }),
	               loading_.end());
	if (c->state == HttpConn::Committing)
		committing_.erase(std::remove(committing_.begin(), committing_.end(), c), committing_.end());
}

// The socket goes at once; the object at the end of the round (reap()), so
// that loops over watchers never meet freed memory.
void HttpServer::close_conn(HttpConn *c) {
	if (c->fd < 0)
		return;
	detach(c);
	c->state = HttpConn::Reading;
	if (epfd_ >= 0)
		epoll_ctl(epfd_, EPOLL_CTL_DEL, c->fd, nullptr);
	::close(c->fd);
	c->fd = -1;
	if (c->slot < conns_.size() && conns_[c->slot] == c) {
		conns_[c->slot] = nullptr;
		free_slots_.push_back(c->slot);
	}
	nconns_--;
	graveyard_.push_back(c);
}

void HttpServer::reap() {
	for (HttpConn *c : graveyard_)
		delete c;
	graveyard_.clear();
}

// The connection becomes a stream: it answers no more requests, so it keeps
// no parser and no input. A small kernel buffer makes a client that stops
// reading show (EAGAIN) after a few hundred messages; from then on it gets
// only the newest position instead of minutes of stale ones.
void HttpServer::start_stream(HttpConn *c, int sndbuf) {
	if (c->state == HttpConn::Streaming)
		return;
	c->state = HttpConn::Streaming;
	c->keep_alive = false;
	c->parser.reset();
	std::string().swap(c->in);
	nstreams_++;
	set_opt(c->fd, SOL_SOCKET, SO_SNDBUF, sndbuf);
}

// Sends a last event and closes once it is out.
void HttpServer::end_stream(HttpConn *c, const char *event, const std::string &data, uint64_t id) {
	if (c->ws) {
		enqueue(c, shared(ws::text_frame(data)), 0);
		detach(c);
		c->state = HttpConn::Reading;
		c->ws->close(1008, "token no longer valid");
		c->ws.reset();
		c->close_after_write = true;
		flush_out(c);
		return;
	}
	std::string m = sse_message(event, id, data);
	detach(c);
	c->state = HttpConn::Reading;
	c->close_after_write = true;
	enqueue(c, shared(std::move(m)), 0);
}

// --------------------------------------------------------------- requests

void HttpServer::handle_request(HttpConn *c) {
	http::Request &req = c->parser->request();
	bump(hc_.http_requests);
	c->keep_alive = req.keep_alive;
	bool keep = req.keep_alive;
	auto query = http::parse_form(req.query);
	uint64_t id = 0;
	http::Route route = http::route(req.method, req.path, id);
	// Loopback trust never applies to what came through a proxy (SPEC 6).
	bool trusted = c->loopback && !req.forwarded();
	jwt::Claims claims;
	const char *why = "";

	switch (route) {
	case http::Route::Options:
		respond(c,
		        http::response(204, "", "", keep,
		                       "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
		                       "Access-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID\r\n"
		                       "Access-Control-Max-Age: 86400\r\n"),
		        keep);
		return;
	case http::Route::NotFound: fail(c, 404, "not found", keep); return;
	case http::Route::MethodNotAllowed: fail(c, 405, "method not allowed", keep); return;
	case http::Route::Healthz: {
		std::string detail;
		bool ok = false;
		try {
			ok = db_.healthy(detail);
		} catch (const std::exception &e) {
			detail = e.what();
		}
		if (ok)
			respond(c, http::response(200, "text/plain", "ok\n", keep), keep);
		else
			respond(c, http::error_response(503, detail, keep), keep);
		return;
	}
	case http::Route::Metrics: {
		if (!trusted) {
			int st = check_token(http::token_of(req, query), secret_, claims, &why);
			if (st != 0)
				return fail(c, st, why, keep);
			if (claims.scope != jwt::Scope::Dispatch)
				return fail(c, 403, "metrics need a dispatch token (or a request from loopback)", keep);
		}
		std::string body;
		try {
			body = db_.metrics();
		} catch (const std::exception &e) {
			return respond(c, http::error_response(503, e.what(), keep), keep);
		}
		respond(c, http::response(200, "text/plain; version=0.0.4", body, keep), keep);
		return;
	}
	case http::Route::Order:
	case http::Route::OrderPlaces:
	case http::Route::OrderStream: {
		int st = check_token(http::token_of(req, query), secret_, claims, &why);
		if (st != 0)
			return fail(c, st, why, keep);
		if (claims.scope == jwt::Scope::Watch && claims.order_id != id)
			return fail(c, 403, "this token watches another order", keep);
		if (claims.scope == jwt::Scope::Device)
			return fail(c, 403, "a device token cannot watch orders", keep);
		// Last-Event-ID (EventSource sends it when it reconnects), or
		// ?last_event_id= (a page that wants the order's events so far: 0).
		uint64_t last = 0;
		const std::string *h = req.header("last-event-id");
		if (h == nullptr)
			h = http::form_value(query, "last_event_id");
		if (h != nullptr)
			last = parse_u64(*h);
		c->token_exp_s = claims.exp;
		c->token_gen = secret_gen_;
		c->state = HttpConn::Loading;
		loading_.push_back(LoadReq{c, id, last, h != nullptr, route == http::Route::OrderStream,
		                           route == http::Route::OrderPlaces,
		                           claims.scope == jwt::Scope::Dispatch ? claims.area : nullptr, claims.exp});
		return;
	}
	case http::Route::Pings:
	case http::Route::Osmand: ingest(c, route == http::Route::Osmand); return;
	case http::Route::DriversStream: drivers_stream(c); return;
	case http::Route::WebSocket: {
		std::string answer;
		int status = 0;
		if (!ws::handshake(req, answer, status)) {
			bump(hc_.http_bad_requests);
			return respond(c, answer, false);
		}
		if (const std::string *t = http::form_value(query, "access_token"))
			c->ws_default_token = *t;
		else
			c->ws_default_token = http::token_of(req, query);
		c->token_gen = secret_gen_;
		enqueue(c, shared(std::move(answer)), 0);
		// Frames a client sent right behind its request belong to the WebSocket.
		std::string early;
		early.swap(c->in);
		HttpServer *self = this;
		c->ws.reset(new ws::Session(
		    ws::Session::Events{[self, c](std::string_view text) { self->ws_message(c, text); },
		                        [self, c](const uint8_t *p, size_t n) {
			                        self->enqueue(c, shared(std::string(reinterpret_cast<const char *>(p), n)), 0);
		                        }},
		    kMaxWsMessage));
		start_stream(c, kBoxSndBuf);
		bump(hc_.http_ws_connections);
		if (!early.empty() && !c->ws->feed(reinterpret_cast<const uint8_t *>(early.data()), early.size())) {
			bump(hc_.http_ws_protocol_errors);
			detach(c);
			c->ws.reset();
			c->state = HttpConn::Reading;
			c->close_after_write = true;
			flush_out(c);
		}
		return;
	}
	case http::Route::Map: map_file(c, "map.html", keep); return;
	case http::Route::MapAsset: map_file(c, req.path.substr(5), keep); return;
	}
}

void HttpServer::map_file(HttpConn *c, const std::string &name, bool keep) {
	if (name.find("..") != std::string::npos || name.find('\\') != std::string::npos)
		return fail(c, 404, "not found", keep);
	auto it = files_.find(name);
	if (it == files_.end()) {
		std::string body, type;
		bool found = false;
		try {
			found = db_.map_file(name, body, type);
		} catch (const std::exception &e) {
			return respond(c, http::error_response(503, e.what(), keep), keep);
		}
		if (!found)
			return fail(c, 404, "not found", keep);
		if (name == "map.html") {
			// The page learns the tile setting here (livetrack.map_tiles).
			std::string tiles;
			http::json_string(tiles, cfg_.map_tiles);
			size_t at = body.find("\"__TILES__\"");
			if (at != std::string::npos)
				body.replace(at, 11, tiles);
		}
		it = files_.emplace(name, shared(http::response(200, type, body, true, "Cache-Control: max-age=300\r\n"))).first;
	}
	std::string r = *it->second;
	if (!keep) {
		size_t at = r.find("Connection: keep-alive\r\n");
		if (at != std::string::npos)
			r.replace(at, 24, "Connection: close\r\n");
	}
	respond(c, std::move(r), keep);
}

// ------------------------------------------------------------ WebSocket

// {"op":"subscribe","order_id":N,"token":"...","last_event_id":M}
// {"op":"subscribe_drivers","bbox":[minlon,minlat,maxlon,maxlat],"token":"..."}
// {"op":"unsubscribe","order_id":N} / {"op":"unsubscribe","sub":K}
// A bad one gets {"type":"error",...}, never silence.
void HttpServer::ws_message(HttpConn *c, std::string_view text) {
	if (c->fd < 0 || !c->ws)
		return;
	auto error = [&](int status, const std::string &msg, const std::string &op) {
		std::string m = "{\"type\":\"error\",\"status\":" + std::to_string(status) + ",\"error\":";
		http::json_string(m, msg);
		if (!op.empty()) {
			m += ",\"op\":";
			http::json_string(m, op);
		}
		m += "}";
		if (status == 401)
			bump(hc_.http_unauthorized);
		else if (status == 403)
			bump(hc_.http_forbidden);
		else
			bump(hc_.http_bad_requests);
		enqueue(c, shared(ws::text_frame(m)), 0);
	};
	rapidjson::Document d;
	if (!rj::parse(d, text.data(), text.size()) || !d.IsObject() || !d.HasMember("op") || !d["op"].IsString())
		return error(400, "a message is a JSON object with an \"op\"", "");
	std::string op = d["op"].GetString();
	std::string token = c->ws_default_token;
	if (d.HasMember("token") && d["token"].IsString())
		token = d["token"].GetString();
	auto u64 = [&](const char *k) -> uint64_t {
		auto it = d.FindMember(k);
		return it != d.MemberEnd() && it->value.IsUint64() ? it->value.GetUint64() : 0;
	};
	if (op == "unsubscribe") {
		if (uint64_t o = u64("order_id")) {
			unwatch_order(c, o);
		} else if (uint64_t k = u64("sub")) {
			for (DriversSub *b : c->boxes)
				if (b->id == k) {
					dsubs_.erase(std::remove(dsubs_.begin(), dsubs_.end(), b), dsubs_.end());
					c->boxes.erase(std::remove(c->boxes.begin(), c->boxes.end(), b), c->boxes.end());
					delete b;
					covered_dirty_ = true;
					break;
				}
		} else {
			return error(400, "unsubscribe needs an order_id or a sub", op);
		}
		std::string m = "{\"type\":\"unsubscribed\"}";
		return enqueue(c, shared(ws::text_frame(m)), 0);
	}
	if (c->orders.size() + c->boxes.size() >= kMaxSubscriptions)
		return error(400, "too many subscriptions on one connection", op);
	jwt::Claims claims;
	const char *why = "";
	int st = check_token(token, secret_, claims, &why);
	if (op == "subscribe") {
		uint64_t order = u64("order_id");
		if (order == 0 || order >= (uint64_t(1) << 63))
			return error(400, "subscribe needs an order_id", op);
		if (st != 0)
			return error(st, why, op);
		if (claims.scope == jwt::Scope::Watch && claims.order_id != order)
			return error(403, "this token watches another order", op);
		if (claims.scope == jwt::Scope::Device)
			return error(403, "a device token cannot watch orders", op);
		if (std::find(c->orders.begin(), c->orders.end(), order) != c->orders.end())
			return error(400, "already subscribed to this order", op);
		loading_.push_back(LoadReq{c, order, u64("last_event_id"), d.HasMember("last_event_id"), true, false,
		                           claims.scope == jwt::Scope::Dispatch ? claims.area : nullptr, claims.exp});
		return;
	}
	if (op == "subscribe_drivers") {
		if (st != 0)
			return error(st, why, op);
		if (claims.scope != jwt::Scope::Dispatch)
			return error(403, "driver boxes need a dispatch token", op);
		double bbox[4];
		auto it = d.FindMember("bbox");
		bool ok = it != d.MemberEnd() && it->value.IsArray() && it->value.Size() == 4;
		for (unsigned i = 0; ok && i < 4; i++) {
			ok = it->value[i].IsNumber();
			if (ok)
				bbox[i] = it->value[i].GetDouble();
		}
		if (!ok)
			return error(400, "subscribe_drivers needs a bbox [minlon,minlat,maxlon,maxlat]", op);
		std::string err;
		if (!add_drivers_sub(c, c->ws_next_sub, bbox, claims.area, claims.exp, err))
			return error(400, err, op);
		std::string m = "{\"type\":\"subscribed\",\"sub\":" + std::to_string(c->ws_next_sub) + "}";
		c->ws_next_sub++;
		return enqueue(c, shared(ws::text_frame(m)), 0);
	}
	error(400, "unknown op", op);
}

// ------------------------------------------------------------------ ingest

void HttpServer::ingest(HttpConn *c, bool osmand) {
	http::Request &req = c->parser->request();
	bool keep = req.keep_alive;
	auto query = http::parse_form(req.query);
	http::Poster who;
	std::string token = http::token_of(req, query);
	if (!token.empty()) {
		jwt::Claims claims;
		const char *why = "";
		int st = check_token(token, secret_, claims, &why);
		if (st != 0)
			return fail(c, st, why, keep);
		if (claims.scope != jwt::Scope::Device)
			return fail(c, 403, "posting fixes needs a device token", keep);
		who.unsigned_ok = true;
		who.only_driver = claims.driver_id;
	} else {
		bool trusted = c->loopback && !req.forwarded();
		who.unsigned_ok = cfg_.policy.auth == AuthMode::Off ||
		                  (cfg_.policy.auth == AuthMode::LoopbackTrust && trusted);
	}
	int64_t now_ms = now_us() / 1000;
	http::IngestResult res;
	if (osmand) {
		http::parse_osmand(req, query, who, cfg_.policy, now_ms, res);
	} else {
		const std::string *ct = req.header("content-type");
		http::parse_pings(ct ? *ct : std::string(), req.body, who, cfg_.policy, now_ms, keys_, res);
	}
	bump(hc_.http_ingest_requests);
	if (res.bad_body != nullptr) {
		bump(rc_.received_messages);
		bump(rc_.rejected_malformed);
		return fail(c, 400, res.bad_body, keep);
	}
	bump(rc_.received_messages, res.messages);
	bool all_auth = !res.verdict.empty();
	for (Reject r : res.verdict) {
		all_auth = all_auth && r == Reject::Auth;
		switch (r) {
		case Reject::None: break;
		case Reject::Malformed: bump(rc_.rejected_malformed); break;
		case Reject::Auth: bump(rc_.rejected_auth); break;
		case Reject::Replay: bump(rc_.rejected_replay); break;
		case Reject::Range: bump(rc_.rejected_range); break;
		case Reject::Clock: bump(rc_.rejected_clock); break;
		}
	}
	if (token.empty() && !who.unsigned_ok && all_auth)
		return fail(c, 401, "a device token is required (unsigned fixes are trusted from loopback only)", keep);
	std::string answer = http::ingest_answer(res);
	if (res.fixes.empty())
		return respond(c, http::response(200, "application/json", answer, keep), keep);
	// Answered once the fixes are committed, as TCP ACKs are.
	c->fixes = std::move(res.fixes);
	c->pushed = 0;
	c->have_mark = false;
	c->answer = std::move(answer);
	c->since_us = mono_us();
	c->state = HttpConn::Committing;
	committing_.push_back(c);
	push_pending(c);
}

void HttpServer::push_pending(HttpConn *c) {
	int64_t received = now_us();
	while (c->pushed < c->fixes.size()) {
		Ping p{};
		p.fix = c->fixes[c->pushed];
		p.received_us = received;
		p.flags = kPingCounted; // counted here as received messages
		uint64_t pos = 0;
		if (!ingest_.push(p, &pos))
			break; // the listener is behind: the rest goes next round
		c->ingest_pos = pos;
		c->pushed++;
		wake_listener_ = true;
	}
}

void HttpServer::service_commits() {
	int64_t now = mono_us();
	for (size_t i = 0; i < committing_.size();) {
		HttpConn *c = committing_[i];
		if (c->pushed < c->fixes.size())
			push_pending(c);
		bool done = false;
		if (c->pushed == c->fixes.size()) {
			// The listener has moved our last record onto the ring once the
			// ingest queue's tail passes it; the ring head it published then
			// is beyond all of ours, and the commit watermark passing it
			// means they are committed.
			if (!c->have_mark && ingest_.tail() > c->ingest_pos) {
				c->ring_mark = load_acquire(*ingest_mark_);
				c->have_mark = true;
			}
			done = c->have_mark && ring_.tail() >= c->ring_mark;
		}
		if (done || now - c->since_us > kCommitTimeoutUs) {
			committing_.erase(committing_.begin() + long(i));
			c->fixes.clear();
			c->fixes.shrink_to_fit();
			if (done)
				finish_deferred(c, http::response(200, "application/json", c->answer, c->keep_alive), c->keep_alive);
			else
				finish_deferred(c,
				                http::error_response(503, "the fixes were not committed in time; send them again",
				                                     c->keep_alive),
				                c->keep_alive);
			continue;
		}
		i++;
	}
}

// ------------------------------------------------------------------ orders

void HttpServer::service_loads() {
	std::vector<LoadReq> batch;
	batch.swap(loading_);
	std::vector<uint64_t> ids;
	std::vector<std::pair<uint64_t, uint64_t>> resume;
	for (const LoadReq &r : batch) {
		ids.push_back(r.order_id);
		if (r.stream && r.resume)
			resume.emplace_back(r.order_id, r.last_event_id);
	}
	std::sort(ids.begin(), ids.end());
	ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
	std::vector<OrderRow> rows;
	std::vector<EventRow> missed;
	try {
		db_.load_orders(ids, rows);
		if (!resume.empty())
			db_.order_events(resume, cursor_, missed);
	} catch (const std::exception &e) {
		for (const LoadReq &r : batch) {
			if (r.c->fd < 0)
				continue;
			if (r.c->ws) {
				std::string m = "{\"type\":\"error\",\"status\":503,\"op\":\"subscribe\",\"order_id\":" +
				                std::to_string(r.order_id) + "}";
				enqueue(r.c, shared(ws::text_frame(m)), 0);
			} else {
				finish_deferred(r.c, http::error_response(503, e.what(), r.c->keep_alive), r.c->keep_alive);
			}
		}
		return;
	}
	std::unordered_map<uint64_t, const OrderRow *> by_id;
	for (const OrderRow &r : rows)
		by_id[r.order_id] = &r;
	for (const LoadReq &r : batch) {
		HttpConn *c = r.c;
		if (c->fd < 0)
			continue;
		auto it = by_id.find(r.order_id);
		const OrderRow *row = it == by_id.end() ? nullptr : it->second;
		int status = 0;
		const char *why = "";
		if (row == nullptr || !row->found) {
			status = 404;
			why = "no such order";
			bump(hc_.http_not_found);
		} else if (r.area && !r.area->contains(row->pickup_lat, row->pickup_lon)) {
			status = 403;
			why = "the order's pickup is outside this token's area";
			bump(hc_.http_forbidden);
		}
		if (c->ws) {
			if (status != 0) {
				std::string m = "{\"type\":\"error\",\"status\":" + std::to_string(status) + ",\"error\":\"" + why +
				                "\",\"op\":\"subscribe\",\"order_id\":" + std::to_string(r.order_id) + "}";
				enqueue(c, shared(ws::text_frame(m)), 0);
				continue;
			}
			c->token_exp_s = c->token_exp_s == 0 ? r.exp_s : std::min(c->token_exp_s, r.exp_s);
			watch_order(c, r.order_id, *row, r.resume, r.last_event_id, missed);
			continue;
		}
		if (status != 0) {
			finish_deferred(c, http::error_response(status, why, c->keep_alive), c->keep_alive);
			continue;
		}
		if (r.places) {
			std::string p = "{\"order_id\":" + std::to_string(row->order_id) + ",\"pickup\":[" +
			                json_num(row->pickup_lat, "%.7f") + "," + json_num(row->pickup_lon, "%.7f") +
			                "],\"dropoff\":[" + json_num(row->dropoff_lat, "%.7f") + "," +
			                json_num(row->dropoff_lon, "%.7f") + "]}";
			finish_deferred(c, http::response(200, "application/json", p, c->keep_alive), c->keep_alive);
			continue;
		}
		if (!r.stream) {
			finish_deferred(c, http::response(200, "application/json", row->snapshot, c->keep_alive), c->keep_alive);
			continue;
		}
		// A client that has seen the last event of a finished order is told
		// to stop reconnecting (EventSource stops on 204).
		if (final_status(row->status) && r.resume && r.last_event_id >= row->last_event_id) {
			respond(c, http::response(204, "", "", false), false);
			continue;
		}
		std::string head = kSseHead;
		sse::append_retry(head, kRetryMs);
		enqueue(c, shared(std::move(head)), 0);
		start_stream(c, kOrderSndBuf);
		watch_order(c, r.order_id, *row, r.resume, r.last_event_id, missed);
	}
}

// Sends the snapshot and the events missed since last_event_id, then
// follows the order (or ends the stream if the order is finished).
void HttpServer::watch_order(HttpConn *c, uint64_t order_id, const OrderRow &row, bool resume,
                             uint64_t last_event_id, const std::vector<EventRow> &missed) {
	bool websocket = c->ws != nullptr;
	std::string snap = websocket ? "{\"type\":\"snapshot\",\"order_id\":" + std::to_string(order_id) +
	                                   ",\"order\":" + row.snapshot + "}"
	                             : row.snapshot;
	send_to(c, "snapshot", 0, snap, 0);
	for (const EventRow &e : missed)
		if (resume && e.order_id == order_id && e.event_id > last_event_id)
			send_to(c, e.type.c_str(), e.event_id, e.payload, 0);
	if (final_status(row.status)) {
		std::string data = "{\"type\":\"end\",\"order_id\":" + std::to_string(order_id) + ",\"status\":\"" +
		                   row.status + "\",\"event_id\":" + std::to_string(row.last_event_id) + "}";
		if (websocket)
			return send_to(c, "end", row.last_event_id, data, 0);
		end_stream(c, "end", data, row.last_event_id);
		return;
	}
	auto &slot = channels_[order_id];
	if (!slot) {
		slot.reset(new OrderChannel);
		OrderChannel &ch = *slot;
		ch.order_id = row.order_id;
		ch.driver_id = row.driver_id;
		ch.status = row.status;
		ch.target = ch.status == "assigned" ? kTargetPickup : ch.status == "picked_up" ? kTargetDropoff : 0;
		ch.pickup_lat = row.pickup_lat;
		ch.pickup_lon = row.pickup_lon;
		ch.dropoff_lat = row.dropoff_lat;
		ch.dropoff_lon = row.dropoff_lon;
		// The snapshot carried the driver's position as it is now.
		LiveView v;
		if (ch.driver_id != 0 && live_.get(ch.driver_id, v))
			ch.last_fix_ts = ch.sent_fix_ts = v.ts_ms;
		index_channel(ch);
	}
	slot->watchers.push_back(c);
	c->orders.push_back(order_id);
}

void HttpServer::unwatch_order(HttpConn *c, uint64_t order_id) {
	c->orders.erase(std::remove(c->orders.begin(), c->orders.end(), order_id), c->orders.end());
	auto it = channels_.find(order_id);
	if (it != channels_.end()) {
		auto &w = it->second->watchers;
		w.erase(std::remove(w.begin(), w.end(), c), w.end());
	}
}

void HttpServer::service_events() {
	events_dirty_ = false;
	last_poll_us_ = mono_us();
	for (int round = 0; round < 50; round++) {
		std::vector<EventRow> evs;
		try {
			db_.events_after(cursor_, kEventBatch, evs);
		} catch (const std::exception &) {
			events_dirty_ = true; // try again next time round
			return;
		}
		for (const EventRow &e : evs) {
			cursor_ = std::max(cursor_, e.event_id);
			auto it = channels_.find(e.order_id);
			if (it == channels_.end())
				continue;
			fan_out_event(*it->second, e);
		}
		if (evs.size() < size_t(kEventBatch))
			return;
	}
	events_dirty_ = true; // more than we take in one go: go on next round
}

void HttpServer::fan_out_event(OrderChannel &ch, const EventRow &e) {
	if (e.type == "status") {
		ch.status = e.status;
		ch.target = target_of(e.target);
		if (ch.driver_id != e.driver_id) {
			ch.driver_id = e.driver_id;
			index_channel(ch);
		}
		due_.push_back(ch.order_id); // a new target: the next fix may be sent at once
	}
	// Serialised once for each framing, shared by every watcher.
	std::shared_ptr<const std::string> as_sse, as_ws;
	std::vector<HttpConn *> watchers = ch.watchers; // enqueue may close one
	for (HttpConn *c : watchers) {
		auto &m = c->ws ? as_ws : as_sse;
		if (!m)
			m = shared(c->ws ? ws::text_frame(e.payload) : sse_message(e.type.c_str(), e.event_id, e.payload));
		enqueue(c, m, 0);
		bump(hc_.http_stream_messages);
	}
	if (e.type == "status" && final_status(e.status)) {
		// The order is finished: say so, with the id a reconnect would bring.
		std::string data = "{\"type\":\"end\",\"order_id\":" + std::to_string(ch.order_id) + ",\"status\":\"" +
		                   e.status + "\",\"event_id\":" + std::to_string(e.event_id) + "}";
		uint64_t order = ch.order_id;
		for (HttpConn *c : watchers) {
			if (c->fd < 0 || c->state != HttpConn::Streaming)
				continue;
			if (c->ws) {
				send_to(c, "end", e.event_id, data, 0);
				unwatch_order(c, order);
			} else {
				end_stream(c, "end", data, e.event_id);
			}
		}
	}
}

// Files a channel under its driver's live-table entry, so that the moved
// feed finds it; a driver not in the live state yet is looked up again
// every second.
void HttpServer::index_channel(OrderChannel &ch) {
	unindex_channel(ch);
	if (ch.driver_id == 0)
		return;
	ch.live_index = live_.find(ch.driver_id);
	ch.live_driver = ch.driver_id;
	if (ch.live_index == kNoEntry)
		return;
	by_entry_[ch.live_index].push_back(ch.order_id);
	due_.push_back(ch.order_id); // its driver's fix may be news to the channel
}

void HttpServer::unindex_channel(OrderChannel &ch) {
	if (ch.live_index == kNoEntry)
		return;
	auto it = by_entry_.find(ch.live_index);
	if (it != by_entry_.end()) {
		auto &v = it->second;
		v.erase(std::remove(v.begin(), v.end(), ch.order_id), v.end());
		if (v.empty())
			by_entry_.erase(it);
	}
	ch.live_index = kNoEntry;
}

// The position messages of this tick: channels whose driver moved (the
// feed), and those the interval held back before. With every=true (no feed,
// or it ran past us) every channel is looked at.
void HttpServer::positions(int64_t now, const std::vector<uint32_t> &moved, bool every) {
	std::vector<uint64_t> due;
	due.swap(due_);
	if (every) {
		for (auto &kv : channels_)
			due.push_back(kv.first);
	} else {
		for (uint32_t e : moved) {
			auto it = by_entry_.find(e);
			if (it != by_entry_.end())
				due.insert(due.end(), it->second.begin(), it->second.end());
		}
	}
	std::sort(due.begin(), due.end());
	due.erase(std::unique(due.begin(), due.end()), due.end());
	for (uint64_t order : due) {
		auto it = channels_.find(order);
		if (it == channels_.end())
			continue;
		OrderChannel &ch = *it->second;
		if (ch.target == 0 || ch.driver_id == 0 || ch.watchers.empty())
			continue;
		if (ch.live_driver != ch.driver_id || ch.live_index == kNoEntry) {
			index_channel(ch);
			if (ch.live_index == kNoEntry)
				continue;
		}
		LiveView v;
		live_.read(ch.live_index, v);
		if (v.driver_id != ch.driver_id) {
			unindex_channel(ch); // the live state was cleared (DROP EXTENSION)
			continue;
		}
		if (v.ts_ms > ch.last_fix_ts)
			ch.last_fix_ts = v.ts_ms;
		if (ch.last_fix_ts <= ch.sent_fix_ts)
			continue;
		// At most one per notify_interval, of the clock or of the fixes' time;
		// one held back is looked at again next tick.
		if (now - ch.last_sent_us < cfg_.notify_interval_us &&
		    (ch.last_fix_ts - ch.sent_fix_ts) * 1000 < cfg_.notify_interval_us) {
			due_.push_back(order);
			continue;
		}
		OrderWatch w{};
		w.driver_id = ch.driver_id;
		w.order_id = ch.order_id;
		w.target = ch.target;
		w.target_lat = ch.target == kTargetPickup ? ch.pickup_lat : ch.dropoff_lat;
		w.target_lon = ch.target == kTargetPickup ? ch.pickup_lon : ch.dropoff_lon;
		Fix f{};
		f.driver_id = v.driver_id;
		f.ts_ms = v.ts_ms;
		f.lat_e7 = v.lat_e7;
		f.lon_e7 = v.lon_e7;
		f.speed_cms = v.speed_cms;
		PushDecision d{};
		d.distance_m = geo::geodesic_m(f.lat_e7 / 1e7, f.lon_e7 / 1e7, w.target_lat, w.target_lon);
		d.eta_s = eta_s(d.distance_m, f.speed_cms);
		std::string json = format_order_message(position_message(w, f, d));
		std::shared_ptr<const std::string> as_sse, as_ws;
		ch.sent_fix_ts = v.ts_ms;
		ch.last_sent_us = now;
		std::vector<HttpConn *> watchers = ch.watchers;
		for (HttpConn *c : watchers) {
			auto &m = c->ws ? as_ws : as_sse;
			if (!m)
				m = shared(c->ws ? ws::text_frame(json) : sse_message("position", 0, json));
			enqueue(c, m, ch.order_id); // replaces an unsent older position of this order
			bump(hc_.http_stream_messages);
		}
	}
}

// ---------------------------------------------------------- driver boxes

// GET /v1/drivers/stream?bbox=minlon,minlat,maxlon,maxlat (dispatch token);
// without a bbox, the token's area.
void HttpServer::drivers_stream(HttpConn *c) {
	http::Request &req = c->parser->request();
	bool keep = req.keep_alive;
	auto query = http::parse_form(req.query);
	jwt::Claims claims;
	const char *why = "";
	int st = check_token(http::token_of(req, query), secret_, claims, &why);
	if (st != 0)
		return fail(c, st, why, keep);
	if (claims.scope != jwt::Scope::Dispatch)
		return fail(c, 403, "driver streams need a dispatch token", keep);
	double bbox[4];
	const std::string *b = http::form_value(query, "bbox");
	if (b != nullptr) {
		if (!parse_bbox(*b, bbox))
			return fail(c, 400, "bbox is minlon,minlat,maxlon,maxlat", keep);
	} else if (claims.area) {
		const Box &a = claims.area->bounds();
		bbox[0] = a.min_lon, bbox[1] = a.min_lat, bbox[2] = a.max_lon, bbox[3] = a.max_lat;
	} else {
		return fail(c, 400, "a bbox is required (minlon,minlat,maxlon,maxlat)", keep);
	}
	std::string err;
	c->token_exp_s = claims.exp;
	c->token_gen = secret_gen_;
	std::string head = kSseHead;
	sse::append_retry(head, kRetryMs);
	if (!add_drivers_sub(c, 0, bbox, claims.area, claims.exp, err))
		return fail(c, 400, err.c_str(), keep);
	enqueue(c, shared(std::move(head)), 0);
	start_stream(c, kBoxSndBuf);
}

bool HttpServer::add_drivers_sub(HttpConn *c, uint32_t id, const double bbox[4], std::shared_ptr<const Area> area,
                                 int64_t exp_s, std::string &error) {
	Box box{bbox[0], bbox[1], bbox[2], bbox[3]};
	if (!(box.min_lon >= -180 && box.max_lon <= 180 && box.min_lat >= -90 && box.max_lat <= 90 &&
	      box.min_lon <= box.max_lon && box.min_lat <= box.max_lat)) {
		error = "bbox is minlon,minlat,maxlon,maxlat within -180..180 and -90..90";
		return false;
	}
	if (box.max_lon - box.min_lon > kMaxBoxDegrees || box.max_lat - box.min_lat > kMaxBoxDegrees) {
		error = "a bbox is at most 10 degrees wide and high";
		return false;
	}
	auto *s = new DriversSub;
	s->c = c;
	s->id = id;
	s->key = kBoxKeyBit | (uint64_t(c->slot) << 20) | id;
	s->box = box;
	s->area = std::move(area);
	s->exp_s = exp_s;
	c->boxes.push_back(s);
	dsubs_.push_back(s);
	covered_dirty_ = true;
	if (c->token_exp_s == 0 || exp_s < c->token_exp_s)
		c->token_exp_s = exp_s;
	return true;
}

// Every tick: the drivers that moved (the listener's feed of moved
// entries), grouped by 1/32-degree tile, each serialised once, and one
// message per box put together from the tiles it covers, filtered by the
// box and the token's area. A driver goes out at most once per
// notify_interval (of the clock, or of its fixes' own time); one held back
// is looked at again next tick. A box whose last message is still unsent
// gets, once it has room, a snapshot of the whole box from the grid index
// instead of what it missed; so does every box if the feed ran past us.
void HttpServer::drivers_tick(int64_t now, const std::vector<uint32_t> &moved, bool lost) {
	if (dsubs_.empty()) {
		held_back_.clear();
		return;
	}
	int64_t now_ms = now_us() / 1000;
	std::vector<uint32_t> entries;
	entries.swap(held_back_);
	entries.insert(entries.end(), moved.begin(), moved.end());
	if (lost)
		for (DriversSub *s : dsubs_)
			s->needs_snapshot = true;
	std::sort(entries.begin(), entries.end());
	entries.erase(std::unique(entries.begin(), entries.end()), entries.end());

	struct Item {
		double lat, lon;
		std::string json;
	};
	struct Tile {
		std::vector<Item> items;
		std::string all; // every item, comma-separated
		Box bounds;
	};
	std::unordered_map<uint64_t, Tile> tiles;
	if (covered_dirty_) {
		covered_.clear();
		for (DriversSub *s : dsubs_)
			for (int64_t ty = int64_t(std::floor(s->box.min_lat * kTilesPerDegree));
			     ty <= int64_t(std::floor(s->box.max_lat * kTilesPerDegree)); ty++)
				for (int64_t tx = int64_t(std::floor(s->box.min_lon * kTilesPerDegree));
				     tx <= int64_t(std::floor(s->box.max_lon * kTilesPerDegree)); tx++)
					covered_.insert(tile_key(ty, tx));
		covered_dirty_ = false;
	}
	uint32_t live_n = live_.size();
	LiveView v;
	for (uint32_t e : entries) {
		if (e >= live_n)
			continue;
		live_.read(e, v);
		if (v.driver_id == 0)
			continue;
		double lat = v.lat_e7 / 1e7, lon = v.lon_e7 / 1e7;
		int64_t ty = int64_t(std::floor(lat * kTilesPerDegree)), tx = int64_t(std::floor(lon * kTilesPerDegree));
		uint64_t key = tile_key(ty, tx);
		if (!covered_.count(key))
			continue; // none of our boxes is there: not even serialised
		Sent &s = drivers_sent_[v.driver_id];
		if (v.ts_ms <= s.ts_ms)
			continue;
		if (now - s.at_us < cfg_.notify_interval_us && (v.ts_ms - s.ts_ms) * 1000 < cfg_.notify_interval_us) {
			held_back_.push_back(e);
			continue;
		}
		s.ts_ms = v.ts_ms;
		s.at_us = now;
		Tile &t = tiles[key];
		if (t.items.empty())
			t.bounds = Box{tx / kTilesPerDegree, ty / kTilesPerDegree, (tx + 1) / kTilesPerDegree, (ty + 1) / kTilesPerDegree};
		t.items.push_back(Item{lat, lon, driver_json(v)});
	}
	for (auto &kv : tiles)
		for (const Item &i : kv.second.items) {
			if (!kv.second.all.empty())
				kv.second.all += ',';
			kv.second.all += i.json;
		}

	std::vector<LiveView> views;
	std::vector<DriversSub *> subs = dsubs_;
	for (DriversSub *s : subs) {
		HttpConn *c = s->c;
		if (c->fd < 0 || c->state != HttpConn::Streaming)
			continue;
		if (has_unsent(c, s->key)) {
			s->needs_snapshot = true; // it did not take the last one: a snapshot once it can
			continue;
		}
		std::string body;
		size_t count = 0;
		auto add = [&](const std::string &json) {
			if (!body.empty())
				body += ',';
			body += json;
			count++;
		};
		bool snapshot = s->needs_snapshot;
		if (snapshot) {
			// From the grid index: the box's cells, drivers with a fix in the last minute.
			live_.grid().within_box(live_, s->box.min_lat, s->box.max_lat, s->box.min_lon, s->box.max_lon,
			                        now_ms - kBoxMaxAgeMs, views);
			for (const LiveView &x : views)
				if (!s->area || s->area->contains(x.lat_e7 / 1e7, x.lon_e7 / 1e7))
					add(driver_json(x));
		} else {
			for (auto &kv : tiles) {
				const Tile &t = kv.second;
				if (!s->box.intersects(t.bounds))
					continue;
				bool whole = !s->area && s->box.min_lat <= t.bounds.min_lat && s->box.max_lat >= t.bounds.max_lat &&
				             s->box.min_lon <= t.bounds.min_lon && s->box.max_lon >= t.bounds.max_lon;
				if (whole) {
					if (!body.empty())
						body += ',';
					body += t.all;
					count += t.items.size();
					continue;
				}
				for (const Item &i : t.items)
					if (s->box.contains(i.lat, i.lon) && (!s->area || s->area->contains(i.lat, i.lon)))
						add(i.json);
			}
		}
		if (count == 0 && !snapshot)
			continue;
		s->needs_snapshot = false;
		std::string json = "{\"type\":\"drivers\"";
		if (s->id != 0)
			json += ",\"sub\":" + std::to_string(s->id);
		json += snapshot ? ",\"snapshot\":true" : ",\"snapshot\":false";
		json += ",\"drivers\":[" + body + "]}";
		send_to(c, "drivers", 0, json, s->key);
		bump(hc_.http_stream_messages);
		bump(hc_.http_driver_positions, count);
	}
}

// ----------------------------------------------------------------- timers

void HttpServer::tick() {
	if (epfd_ < 0)
		return;
	int64_t now = mono_us();
	// The drivers that moved since the last tick, for orders and boxes alike.
	std::vector<uint32_t> moved;
	bool whole = true;
	if (moved_ && (!channels_.empty() || !dsubs_.empty()))
		whole = moved_->read(moved_pos_, [&](uint32_t e) { moved.push_back(e); });
	else if (moved_)
		moved_pos_ = moved_->head(); // nobody to tell: what came is of no use
	positions(now, moved, moved_ == nullptr || !whole);
	drivers_tick(now, moved, !whole);
	if (!committing_.empty())
		service_commits();
	if (now - last_housekeeping_us_ >= 1000000) {
		last_housekeeping_us_ = now;
		housekeeping(now);
		for (auto it = channels_.begin(); it != channels_.end();) {
			OrderChannel &ch = *it->second;
			if (ch.watchers.empty()) {
				unindex_channel(ch);
				it = channels_.erase(it);
				continue;
			}
			if (ch.live_index == kNoEntry && ch.driver_id != 0)
				index_channel(ch); // its driver may have sent a first fix meanwhile
			++it;
		}
		// Forget drivers not sent for a while (the map only ever grows otherwise).
		if (dsubs_.empty())
			drivers_sent_.clear();
	}
	reap();
}

void HttpServer::housekeeping(int64_t now) {
	int64_t now_s = now_us() / 1000000;
	std::shared_ptr<const std::string> heartbeat, ping;
	for (size_t i = 0; i < conns_.size(); i++) {
		HttpConn *c = conns_[i];
		if (c == nullptr)
			continue;
		switch (c->state) {
		case HttpConn::Reading:
			if (c->out_head < c->out.size())
				break; // answering
			if (c->request_us != 0 && now - c->request_us > kHeadTimeoutUs) {
				// A request that does not arrive (slowloris, a dead peer).
				bump(hc_.http_closed_idle);
				respond(c, http::error_response(408, "request timeout", false), false);
			} else if (c->request_us == 0 && now - c->last_in_us > kIdleTimeoutUs) {
				bump(hc_.http_closed_idle);
				close_conn(c);
			}
			break;
		case HttpConn::Streaming:
			if (c->token_exp_s != 0 && now_s >= c->token_exp_s) {
				end_stream(c, "error", "{\"type\":\"error\",\"error\":\"token expired\"}", 0);
				break;
			}
			if (c->stalled_since_us != 0 && now - c->stalled_since_us > kStalledUs) {
				bump(hc_.http_closed_slow);
				close_conn(c);
				break;
			}
			if (now - c->last_out_us >= kHeartbeatUs && c->out_head == c->out.size()) {
				if (c->ws) {
					c->ws->ping();
				} else {
					if (!heartbeat) {
						std::string h;
						sse::append_comment(h, "heartbeat");
						heartbeat = shared(std::move(h));
					}
					enqueue(c, heartbeat, 0);
				}
			}
			break;
		case HttpConn::Lingering:
			if (now - c->linger_since_us > kLingerUs)
				close_conn(c);
			break;
		case HttpConn::Loading:
		case HttpConn::Committing: break;
		}
	}
}

} // namespace lt
