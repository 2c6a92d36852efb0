#include "listener_engine.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/atomics.hpp"
#include "../core/clock.hpp"
#include "../core/http_ingest.hpp"

namespace lt {
namespace {

constexpr size_t kInBuf = 16384;          // per connection; a frame is at most 2080 bytes
constexpr size_t kMaxLine = kInBuf - 1;   // longer JSON lines are rejected
constexpr size_t kMaxPending = 4096;      // un-ACKed messages before we stop reading
constexpr size_t kMaxOut = 64 * 1024;     // unsent ACK bytes before we stop reading
constexpr size_t kReadBudget = 256 * 1024; // bytes per connection per pass, for fairness
constexpr int kUdpBatch = 64;
constexpr size_t kUdpMax = 65536;
constexpr int kUdpPasses = 16;            // recvmmsg calls per socket per pass
constexpr int64_t kClosingGraceUs = 5 * 1000000;

enum Kind : uint64_t { kUdp = 1, kListen = 2, kConn = 3, kMqtt = 4 };
uint64_t tag(Kind k, uint64_t v) { return uint64_t(k) << 32 | v; }

bool loopback(const sockaddr_storage &a) {
	if (a.ss_family == AF_INET) {
		auto *s = reinterpret_cast<const sockaddr_in *>(&a);
		return (ntohl(s->sin_addr.s_addr) >> 24) == 127;
	}
	if (a.ss_family == AF_INET6) {
		auto *s = reinterpret_cast<const sockaddr_in6 *>(&a);
		if (IN6_IS_ADDR_LOOPBACK(&s->sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&s->sin6_addr) && s->sin6_addr.s6_addr[12] == 127;
	}
	return false;
}

void set_sockopt(int fd, int level, int opt, int v) { (void)setsockopt(fd, level, opt, &v, sizeof v); }

} // namespace

struct Pending {
	uint64_t need;   // committed when ring tail reaches this
	uint64_t n;      // message index (binary) or lines processed (JSON)
	uint32_t accepted;
	uint8_t status;
};

struct Conn {
	int fd = -1;
	uint32_t slot = 0;
	bool loopback = false;
	enum Mode : uint8_t { Unknown, Binary, Json } mode = Unknown;
	bool skipping_line = false; // inside an over-long JSON line
	bool eof = false;           // peer shut down its side
	bool closing = false;       // framing error: close once ACKs are out
	bool paused = false;        // not reading: ring full or ACK backlog
	uint32_t events = 0;        // what epoll watches now
	int64_t last_active_us = 0;
	int64_t closing_since_us = 0;
	uint64_t messages = 0; // binary messages seen
	uint64_t lines = 0;    // JSON lines processed
	size_t in_len = 0;
	uint8_t in[kInBuf];
	std::deque<Pending> pending;
	std::vector<uint8_t> out;
	size_t out_off = 0;
};

ListenerEngine::ListenerEngine(Ring<Ping> &ring, Ring<Ping> &ingest, LiveTable &live, Counters &counters,
                               Histogram *visible_latency)
    : ring_(ring), ingest_(ingest), live_(live), c_(counters), visible_(visible_latency) {}

ListenerEngine::~ListenerEngine() { close_all(); }

void ListenerEngine::set_config(const EngineConfig &cfg) {
	cfg_.max_connections = cfg.max_connections;
	cfg_.idle_timeout_s = cfg.idle_timeout_s;
	cfg_.flush_hint = cfg.flush_hint;
	cfg_.policy = cfg.policy;
	cfg_.mqtt = cfg.mqtt;
	if (mqtt_)
		mqtt_->configure(cfg.mqtt);
}

bool ListenerEngine::open(const EngineConfig &cfg, std::string &err) {
	close_all();
	cfg_ = cfg;
	epfd_ = epoll_create1(EPOLL_CLOEXEC);
	if (epfd_ < 0) {
		err = std::string("epoll_create1: ") + std::strerror(errno);
		return false;
	}
	udp_buf_.resize(size_t(kUdpBatch) * kUdpMax);
	char port[16];
	std::snprintf(port, sizeof port, "%d", cfg.port);
	for (const std::string &a : cfg.addresses) {
		addrinfo hints{}, *res = nullptr;
		hints.ai_family = AF_UNSPEC;
		hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
		const char *host = (a == "*" || a.empty()) ? nullptr : a.c_str();
		for (int socktype : {SOCK_DGRAM, SOCK_STREAM}) {
			hints.ai_socktype = socktype;
			int rc = getaddrinfo(host, port, &hints, &res);
			if (rc != 0) {
				err += "could not resolve \"" + a + "\": " + gai_strerror(rc) + "; ";
				continue;
			}
			for (addrinfo *ai = res; ai; ai = ai->ai_next) {
				int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
				if (fd < 0)
					continue;
				set_sockopt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
				if (ai->ai_family == AF_INET6)
					set_sockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
				if (socktype == SOCK_DGRAM) {
					set_sockopt(fd, SOL_SOCKET, SO_RCVBUF, 32 << 20); // capped by net.core.rmem_max
					set_sockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, 1);      // report kernel drops
					set_sockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, 1);   // receipt = when the kernel got it
				}
				if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
				    (socktype == SOCK_STREAM && listen(fd, 1024) != 0)) {
					err += std::string(socktype == SOCK_DGRAM ? "udp " : "tcp ") + a + ":" + port + ": " +
					       std::strerror(errno) + "; ";
					::close(fd);
					continue;
				}
				epoll_event ev{};
				ev.events = EPOLLIN;
				ev.data.u64 = tag(socktype == SOCK_DGRAM ? kUdp : kListen, uint64_t(fd));
				epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
				(socktype == SOCK_DGRAM ? udp_ : tcp_listen_).push_back(fd);
			}
			freeaddrinfo(res);
		}
	}
	if (is_open()) {
		mqtt_ = new MqttClient(epfd_, tag(kMqtt, 0), c_, [this](std::string_view t, std::string_view p, uint64_t *need) {
			return mqtt_message(t, p, need);
		}, mqtt_latency_);
		mqtt_->configure(cfg.mqtt);
	}
	return is_open();
}

void ListenerEngine::close_all() {
	delete mqtt_; // the broker keeps the session: unacknowledged messages come again
	mqtt_ = nullptr;
	for (Conn *c : conns_)
		if (c)
			close_conn(c);
	conns_.clear();
	for (int fd : udp_)
		::close(fd);
	for (int fd : tcp_listen_)
		::close(fd);
	udp_.clear();
	tcp_listen_.clear();
	udp_drops_seen_.clear();
	if (epfd_ >= 0)
		::close(epfd_);
	epfd_ = -1;
}

bool ListenerEngine::take_flusher_wake() {
	bool w = wake_flusher_;
	wake_flusher_ = false;
	return w;
}

void ListenerEngine::note_ring_growth(uint64_t before) {
	uint64_t after = ring_.size();
	if ((before == 0 && after > 0) || (before < cfg_.flush_hint && after >= cfg_.flush_hint))
		wake_flusher_ = true;
}

void ListenerEngine::count_reject(Reject r, uint64_t n) {
	switch (r) {
	case Reject::Malformed: bump(c_.rejected_malformed, n); break;
	case Reject::Auth: bump(c_.rejected_auth, n); break;
	case Reject::Replay: bump(c_.rejected_replay, n); break;
	case Reject::Range: bump(c_.rejected_range, n); break;
	case Reject::Clock: bump(c_.rejected_clock, n); break;
	case Reject::None: break;
	}
}

// The one way a record enters the system: live state first (so it is visible
// at once), then the ring (so the flusher writes it to history). Callers have
// checked that the ring has room.
void ListenerEngine::accept_fix(const Fix &f, int64_t received_us) {
	Ping p{};
	p.fix = f;
	p.received_us = received_us;
	uint8_t status = 0;
	bool reg = false;
	uint32_t index = kNoEntry;
	switch (live_.apply(f, received_us, &status, &reg, &index)) {
	case Applied::Moved:
		if (moved_)
			moved_->push(index); // for the HTTP workers' driver boxes
		break;
	case Applied::Late:
		p.flags |= kPingLate;
		bump(c_.late_records);
		break;
	case Applied::Full:
		p.flags |= kPingLate; // not in the live state
		reg = f.status != kStatusNoChange;
		bump(c_.live_full);
		break;
	}
	if (reg)
		p.flags |= kPingRegister;
	p.fix.status = status;
	ring_.push(p);
	bump(c_.accepted_records);
}

// An order changed the driver's status (its transaction has committed): the
// live state now, and livetrack.drivers through a flusher, so that a restart
// rebuilds it (also for a driver the full live state does not hold).
void ListenerEngine::apply_status(const Ping &in) {
	(void)live_.set_status(in.fix.driver_id, in.fix.status);
	Ping p = in;
	p.flags = kPingStatusOnly | kPingRegister;
	ring_.push(p);
}

void ListenerEngine::run_once(bool drain) {
	if (epfd_ < 0)
		return;
	uint64_t before = ring_.size();
	if (any_paused_)
		resume_paused();
	epoll_event evs[128];
	int rounds = 0;
	for (;;) {
		int n = epoll_wait(epfd_, evs, 128, 0);
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++) {
			uint64_t kind = evs[i].data.u64 >> 32, v = evs[i].data.u64 & 0xFFFFFFFFu;
			if (kind == kUdp)
				read_udp(int(v), drain);
			else if (kind == kListen)
				accept_all(int(v));
			else if (kind == kMqtt && mqtt_)
				mqtt_->on_event(evs[i].events);
			else if (kind == kConn && v < conns_.size() && conns_[v]) {
				Conn *c = conns_[v];
				// HUP means both directions are gone: nothing can be read or
				// acknowledged any more (a FIN alone shows as RDHUP).
				if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
					close_conn(c);
					continue;
				}
				if (evs[i].events & EPOLLOUT)
					flush_out(c);
				if (conns_[v] && (evs[i].events & (EPOLLIN | EPOLLRDHUP)))
					read_conn(c, drain);
			}
		}
		// Level-triggered: one pass is enough unless we must empty the kernel.
		if (!drain || ++rounds > 64)
			break;
	}
	if (mqtt_)
		mqtt_->tick(mono_us());
	drain_ingest();
	note_ring_growth(before);
	send_acks();
}

void ListenerEngine::accept_all(int lfd) {
	for (int i = 0; i < 256; i++) {
		sockaddr_storage sa{};
		socklen_t len = sizeof sa;
		int fd = accept4(lfd, reinterpret_cast<sockaddr *>(&sa), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; // EAGAIN, or a connection that died in the backlog
		if (nconns_ >= size_t(cfg_.max_connections)) {
			// Refuse loudly (RST) rather than leave the client in the backlog.
			linger lg{1, 0};
			(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
			::close(fd);
			bump(c_.tcp_connections_refused);
			continue;
		}
		set_sockopt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
		// Half-open peers (a phone that lost coverage) are found by keepalive.
		set_sockopt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
		set_sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, 60);
		set_sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, 10);
		set_sockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, 3);
		Conn *c = new Conn;
		c->fd = fd;
		c->loopback = loopback(sa);
		c->last_active_us = mono_us();
		size_t slot = 0;
		while (slot < conns_.size() && conns_[slot])
			slot++;
		if (slot == conns_.size())
			conns_.push_back(nullptr);
		conns_[slot] = c;
		c->slot = uint32_t(slot);
		nconns_++;
		bump(c_.tcp_connections_accepted);
		update_events(c);
	}
}

void ListenerEngine::read_udp(int fd, bool drain) {
	mmsghdr msgs[kUdpBatch];
	iovec iov[kUdpBatch];
	sockaddr_storage addrs[kUdpBatch];
	alignas(cmsghdr) char ctrl[kUdpBatch][CMSG_SPACE(sizeof(uint32_t)) + CMSG_SPACE(sizeof(timespec))];
	int passes = drain ? 4096 : kUdpPasses;
	for (int pass = 0; pass < passes; pass++) {
		for (int i = 0; i < kUdpBatch; i++) {
			iov[i].iov_base = udp_buf_.data() + size_t(i) * kUdpMax;
			iov[i].iov_len = kUdpMax;
			msgs[i].msg_hdr = msghdr{};
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
			msgs[i].msg_hdr.msg_name = &addrs[i];
			msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
			msgs[i].msg_hdr.msg_control = ctrl[i];
			msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i];
		}
		int n = recvmmsg(fd, msgs, kUdpBatch, MSG_DONTWAIT, nullptr);
		if (n <= 0)
			return;
		int64_t now = now_us();
		for (int i = 0; i < n; i++) {
			bump(c_.udp_datagrams);
			int64_t received = read_control(fd, msgs[i].msg_hdr, now);
			if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
				bump(c_.received_messages);
				bump(c_.rejected_malformed);
				continue;
			}
			uint64_t accepted = c_.accepted_records;
			handle_datagram(static_cast<uint8_t *>(iov[i].iov_base), msgs[i].msg_len, loopback(addrs[i]), received);
			if (visible_ && c_.accepted_records > accepted) {
				int64_t lat = now_us() - received;
				visible_->add(uint64_t(lat > 0 ? lat : 0), c_.accepted_records - accepted);
			}
		}
		if (n < kUdpBatch)
			return;
	}
}

// Each datagram comes with the kernel's receive time (the moment of receipt,
// before any queueing in the socket buffer), and with the number of datagrams
// the kernel dropped on a full buffer since the socket was opened. Returns
// the receive time, or fallback_us without one.
int64_t ListenerEngine::read_control(int fd, msghdr &h, int64_t fallback_us) {
	int64_t received = fallback_us;
	for (cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_TIMESTAMPNS) {
			timespec ts;
			std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
			int64_t us = int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
			if (us > 0 && us <= fallback_us)
				received = us;
		} else if (c->cmsg_type == SO_RXQ_OVFL) {
			uint32_t total;
			std::memcpy(&total, CMSG_DATA(c), sizeof total);
			uint32_t &seen = udp_drops_seen_[fd];
			if (total > seen)
				bump(c_.udp_kernel_drops, total - seen);
			seen = total;
		}
	}
	return received;
}

void ListenerEngine::handle_datagram(const uint8_t *p, size_t n, bool lo, int64_t received_us) {
	const int64_t now = received_us / 1000;
	if (is_json(p, n)) {
		size_t off = 0;
		while (off < n) {
			const uint8_t *nl = static_cast<const uint8_t *>(std::memchr(p + off, '\n', n - off));
			size_t end = nl ? size_t(nl - p) : n, len = end - off;
			if (len > 0 && p[off + len - 1] == '\r')
				len--;
			if (len > 0) {
				bump(c_.received_messages);
				Fix f;
				// The same line limit as over TCP, so a line means the same on both.
				Reject r = len > kMaxLine ? Reject::Malformed
				                          : judge_json_line(reinterpret_cast<const char *>(p + off), len, lo,
				                                            cfg_.policy, now, f);
				if (r != Reject::None)
					count_reject(r);
				else if (ring_.free_slots() == 0)
					bump(c_.dropped_ring_full);
				else
					accept_fix(f, received_us);
			}
			off = end + 1;
		}
		return;
	}
	bump(c_.received_messages);
	wire::Header h;
	size_t frame_len = 0;
	// A datagram is exactly one message: any other length rejects all of it.
	if (wire::parse_header(p, n, h, frame_len) != wire::Parse::Ok || frame_len != n) {
		bump(c_.rejected_malformed);
		return;
	}
	MessageVerdict v;
	judge_message(p, h, lo, cfg_.policy, now, v, keys_);
	for (uint16_t i = 0; i < v.count; i++) {
		if (v.record[i] != Reject::None)
			count_reject(v.record[i]);
		else if (ring_.free_slots() == 0)
			bump(c_.dropped_ring_full);
		else
			accept_fix(v.fix[i], received_us);
	}
}

void ListenerEngine::read_conn(Conn *c, bool drain) {
	size_t budget = drain ? SIZE_MAX : kReadBudget;
	while (!c->paused && !c->eof && !c->closing && budget > 0) {
		size_t room = kInBuf - c->in_len;
		if (room == 0)
			break; // process() could not make progress; it paused or will
		ssize_t n = recv(c->fd, c->in + c->in_len, room, MSG_DONTWAIT);
		if (n > 0) {
			c->in_len += size_t(n);
			budget = size_t(n) > budget ? 0 : budget - size_t(n);
			process(c);
			if (conns_[c->slot] != c)
				return;
			continue;
		}
		if (n == 0) {
			c->eof = true; // the peer may still read its ACKs
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
	if ((c->eof || c->closing) && c->pending.empty() && c->out.size() == c->out_off) {
		close_conn(c);
		return;
	}
	update_events(c);
}

void ListenerEngine::process(Conn *c) {
	size_t off = 0;
	while (off < c->in_len && !c->closing) {
		const uint8_t *p = c->in + off;
		size_t avail = c->in_len - off;
		if (c->mode == Conn::Unknown)
			c->mode = is_json(p, avail) ? Conn::Json : Conn::Binary;
		if (c->skipping_line) {
			const void *nl = std::memchr(p, '\n', avail);
			if (!nl) {
				off = c->in_len;
				break;
			}
			off += size_t(static_cast<const uint8_t *>(nl) - p) + 1;
			c->skipping_line = false;
			continue;
		}
		size_t len = 0, consumed = 0;
		Unit u = next_unit(p, avail, c->mode == Conn::Json, kMaxLine, len, consumed);
		if (u == Unit::NeedMore)
			break;
		if (u == Unit::Bad) {
			// Cannot find the next frame boundary: no ACK, close after the
			// earlier messages are acknowledged.
			bump(c_.received_messages);
			bump(c_.rejected_malformed);
			bump(c_.tcp_connections_closed_bad_frame);
			c->closing = true;
			c->closing_since_us = mono_us();
			off = c->in_len;
			break;
		}
		bool done = u == Unit::Frame ? handle_frame(c, p, len) : handle_line(c, p, len, u == Unit::TooLong);
		if (!done) {
			c->paused = true;
			any_paused_ = true;
			break;
		}
		if (u == Unit::TooLong)
			c->skipping_line = true;
		off += consumed;
	}
	if (off > 0) {
		std::memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
}

// False means "no room now": the frame stays in the buffer and is retried.
bool ListenerEngine::handle_frame(Conn *c, const uint8_t *p, size_t len) {
	wire::Header h;
	size_t frame_len;
	wire::parse_header(p, len, h, frame_len);
	if (ring_.free_slots() < h.count || c->pending.size() >= kMaxPending || c->out.size() - c->out_off > kMaxOut)
		return false;
	bump(c_.received_messages);
	MessageVerdict v;
	judge_message(p, h, c->loopback, cfg_.policy, now_ms(), v, keys_);
	int64_t received = now_us();
	for (uint16_t i = 0; i < v.count; i++) {
		if (v.record[i] != Reject::None)
			count_reject(v.record[i]);
		else
			accept_fix(v.fix[i], received);
	}
	c->pending.push_back(Pending{ring_.head(), ++c->messages, v.accepted, v.ack_status()});
	if (v.accepted > 0)
		c->last_active_us = mono_us(); // only accepted input keeps a connection (see housekeeping)
	return true;
}

bool ListenerEngine::handle_line(Conn *c, const uint8_t *p, size_t len, bool too_long) {
	if (len == 0 && !too_long)
		return true; // blank lines are not messages
	if (ring_.free_slots() < 1 || c->pending.size() >= kMaxPending || c->out.size() - c->out_off > kMaxOut)
		return false;
	bump(c_.received_messages);
	if (too_long) {
		bump(c_.rejected_malformed);
	} else {
		Fix f;
		int64_t received = now_us();
		Reject r = judge_json_line(reinterpret_cast<const char *>(p), len, c->loopback, cfg_.policy,
		                           received / 1000, f);
		if (r != Reject::None) {
			count_reject(r);
		} else {
			accept_fix(f, received);
			c->last_active_us = mono_us();
		}
	}
	c->lines++;
	c->pending.push_back(Pending{ring_.head(), c->lines, 0, 0});
	return true;
}

void ListenerEngine::resume_paused() {
	any_paused_ = false;
	if (mqtt_ && ring_.free_slots() > 0)
		mqtt_->resume();
	for (Conn *c : conns_) {
		if (!c || !c->paused)
			continue;
		c->paused = false;
		process(c);
		if (c->paused) {
			any_paused_ = true;
			continue;
		}
		update_events(c);
	}
}

void ListenerEngine::drain_ingest() {
	uint64_t before = ring_.size();
	Ping p;
	uint64_t n = 0;
	while (ring_.free_slots() > 0 && ingest_.peek(n, p)) {
		// Validated by the calling backend already; same path from here on.
		if (p.flags & kPingStatusOnly)
			apply_status(p);
		else {
			if (!(p.flags & kPingCounted))
				bump(c_.received_messages);
			accept_fix(p.fix, p.received_us);
		}
		n++;
		if (n == 1024) {
			release_ingest(n);
			n = 0;
		}
	}
	if (n)
		release_ingest(n);
	note_ring_growth(before);
}

void ListenerEngine::release_ingest(uint64_t n) {
	if (ingest_mark_)
		store_release(*ingest_mark_, ring_.head());
	ingest_.release(n);
}

void ListenerEngine::send_acks() {
	uint64_t committed = ring_.tail();
	if (mqtt_)
		mqtt_->committed(committed);
	for (Conn *c : conns_) {
		if (!c || c->pending.empty() || c->pending.front().need > committed)
			continue;
		if (c->mode == Conn::Json) {
			// "ok N" covers every line up to N: one line per batch is enough.
			uint64_t n = 0;
			while (!c->pending.empty() && c->pending.front().need <= committed) {
				n = c->pending.front().n;
				c->pending.pop_front();
			}
			char line[32];
			int len = std::snprintf(line, sizeof line, "ok %llu\n", static_cast<unsigned long long>(n));
			c->out.insert(c->out.end(), line, line + len);
		} else {
			while (!c->pending.empty() && c->pending.front().need <= committed) {
				const Pending &p = c->pending.front();
				uint8_t ack[wire::kAckSize];
				wire::encode_ack(ack, wire::Ack{p.status, uint32_t(p.n), p.accepted});
				c->out.insert(c->out.end(), ack, ack + sizeof ack);
				c->pending.pop_front();
			}
		}
		flush_out(c);
	}
}

void ListenerEngine::flush_out(Conn *c) {
	while (c->out_off < c->out.size()) {
		ssize_t n = send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			c->out_off += size_t(n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		close_conn(c); // peer gone
		return;
	}
	if (c->out_off == c->out.size()) {
		c->out.clear();
		c->out_off = 0;
	}
	bool drained = c->pending.empty() && c->out.empty();
	if ((c->closing || c->eof) && drained) {
		close_conn(c);
		return;
	}
	update_events(c);
}

void ListenerEngine::update_events(Conn *c) {
	uint32_t want = 0;
	if (!c->paused && !c->eof && !c->closing && c->in_len < kInBuf)
		want |= EPOLLIN | EPOLLRDHUP;
	if (c->out_off < c->out.size())
		want |= EPOLLOUT;
	if (want == c->events && c->events != 0)
		return;
	epoll_event ev{};
	ev.events = want;
	ev.data.u64 = tag(kConn, c->slot);
	epoll_ctl(epfd_, c->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c->fd, &ev);
	// An empty mask still needs the fd registered, so remember "registered".
	c->events = want ? want : EPOLLERR;
}

void ListenerEngine::close_conn(Conn *c) {
	if (epfd_ >= 0)
		epoll_ctl(epfd_, EPOLL_CTL_DEL, c->fd, nullptr);
	::close(c->fd);
	if (c->slot < conns_.size() && conns_[c->slot] == c)
		conns_[c->slot] = nullptr;
	nconns_--;
	delete c;
}

// One PUBLISH from the broker (SPEC 7). Its records are judged as on the
// other paths and put on the ring; its PUBACK waits for the ring's head
// as it is now to be committed. False (kept by the client, offered again
// later) if the ring may not have room for all of its records: a signed
// message may be judged only once (its sequence enters the replay window).
bool ListenerEngine::mqtt_message(std::string_view topic, std::string_view payload, uint64_t *need) {
	uint64_t most = payload.size() / wire::kRecordSize + 1;
	if (ring_.free_slots() < most) {
		any_paused_ = true;
		return false;
	}
	uint64_t before = ring_.size();
	int64_t received = now_us();
	http::IngestResult r;
	http::parse_mqtt(topic, payload, cfg_.policy, received / 1000, keys_, r);
	bump(c_.received_messages, r.messages);
	size_t k = 0;
	for (Reject v : r.verdict) {
		if (v != Reject::None)
			count_reject(v);
		else
			accept_fix(r.fixes[k++], received);
	}
	note_ring_growth(before);
	*need = ring_.head();
	return true;
}

int64_t ListenerEngine::next_timer_us() const { return mqtt_ ? mqtt_->next_timer_us() : INT64_MAX; }

std::vector<std::string> ListenerEngine::take_log() {
	return mqtt_ ? mqtt_->take_log() : std::vector<std::string>();
}

void ListenerEngine::housekeeping() {
	int64_t now = mono_us();
	for (Conn *c : conns_) {
		if (!c)
			continue;
		if (c->closing && now - c->closing_since_us > kClosingGraceUs) {
			close_conn(c);
			continue;
		}
		// Idle: nothing accepted from it for the timeout and no ACK waiting
		// for a commit. Junk, rejected messages, or ACKs it does not read do
		// not count as activity, so a peer cannot hold a slot with them.
		bool quiet = c->pending.empty();
		if (cfg_.idle_timeout_s > 0 && quiet && now - c->last_active_us > int64_t(cfg_.idle_timeout_s) * 1000000) {
			bump(c_.tcp_connections_closed_idle);
			close_conn(c);
		}
	}
}

} // namespace lt
