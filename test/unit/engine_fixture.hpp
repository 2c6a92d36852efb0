// The listener engine's test fixture: shared memory in the heap, the
// engine on a free port of 127.0.0.1, clients on real sockets, and the test
// thread playing the flusher (engine_test.cpp, mqtt_test.cpp).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <ifaddrs.h>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include "core/clock.hpp"
#include "core/counters.hpp"
#include "core/wire.hpp"
#include "test_helpers.hpp"
#include "worker/listener_engine.hpp"

namespace lt_test {

using namespace lt;


using Clock = std::chrono::steady_clock;

struct AlignedBuf {
	void *p = nullptr;
	explicit AlignedBuf(size_t n) {
		size_t sz = (n + 63) / 64 * 64;
		p = std::aligned_alloc(64, sz);
		std::memset(p, 0x77, sz); // format() must not rely on zeroed memory
	}
	~AlignedBuf() { std::free(p); }
	AlignedBuf(const AlignedBuf &) = delete;
	AlignedBuf &operator=(const AlignedBuf &) = delete;
};

inline int udp_socket() { return socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); }

inline sockaddr_in addr_of(const char *ip, int port) {
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(uint16_t(port));
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

// A non-loopback IPv4 address of this machine, if there is one.
inline std::string non_loopback_ipv4() {
	ifaddrs *ifa = nullptr;
	if (getifaddrs(&ifa) != 0)
		return "";
	std::string out;
	for (ifaddrs *i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
			continue;
		auto *s = reinterpret_cast<sockaddr_in *>(i->ifa_addr);
		if ((ntohl(s->sin_addr.s_addr) >> 24) == 127)
			continue;
		char buf[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &s->sin_addr, buf, sizeof buf);
		out = buf;
		break;
	}
	freeifaddrs(ifa);
	return out;
}

class EngineTest : public ::testing::Test {
protected:
	std::unique_ptr<AlignedBuf> ring_mem, ingest_mem, live_mem;
	Ring<Ping> ring{}, ingest{};
	LiveTable live{};
	Counters ctr{};
	Histogram visible{};
	std::unique_ptr<ListenerEngine> eng;
	EngineConfig cfg;
	int port = 0;
	std::vector<int> fds; // client sockets, closed in TearDown
	std::vector<Ping> flushed;

	void TearDown() override {
		for (int fd : fds)
			::close(fd);
		eng.reset();
	}

	// Sets up shared memory and opens the engine on a free port.
	void start(uint64_t ring_cap = 1024, uint32_t drivers = 1000, std::vector<std::string> extra_addrs = {},
	           bool ipv4_loopback = true) {
		ring_mem = std::make_unique<AlignedBuf>(Ring<Ping>::bytes_needed(ring_cap));
		ingest_mem = std::make_unique<AlignedBuf>(Ring<Ping>::bytes_needed(1024));
		live_mem = std::make_unique<AlignedBuf>(LiveTable::bytes_needed(drivers));
		Ring<Ping>::format(ring_mem->p, ring_cap);
		ring.attach(ring_mem->p);
		Ring<Ping>::format(ingest_mem->p, 1024);
		ingest.attach(ingest_mem->p);
		LiveTable::format(live_mem->p, drivers);
		live.attach(live_mem->p);
		std::memset(&ctr, 0, sizeof ctr);
		std::memset(&visible, 0, sizeof visible);
		eng = std::make_unique<ListenerEngine>(ring, ingest, live, ctr, &visible);
		cfg.addresses.clear();
		if (ipv4_loopback)
			cfg.addresses.push_back("127.0.0.1");
		for (auto &a : extra_addrs)
			cfg.addresses.push_back(a);
		for (int attempt = 0; attempt < 50; attempt++) {
			// Ask the kernel for a free TCP port, then hope UDP is free there too.
			int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			sockaddr_in a = addr_of("127.0.0.1", 0);
			ASSERT_EQ(bind(s, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
			socklen_t len = sizeof a;
			getsockname(s, reinterpret_cast<sockaddr *>(&a), &len);
			::close(s);
			cfg.port = ntohs(a.sin_port);
			std::string err;
			if (eng->open(cfg, err) && err.empty()) {
				port = cfg.port;
				ASSERT_GE(eng->epoll_fd(), 0);
				ASSERT_TRUE(eng->is_open());
				return;
			}
			eng->close_all();
		}
		FAIL() << "no free port";
	}

	// ---- driving ----

	// Runs the engine until pred() holds or the timeout passes.
	bool pump_until(const std::function<bool()> &pred, int timeout_ms = 2000) {
		auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
		for (;;) {
			eng->run_once(false);
			if (pred())
				return true;
			if (Clock::now() > deadline)
				return false;
			pollfd p{eng->epoll_fd(), POLLIN, 0};
			poll(&p, 1, 1);
		}
	}
	// Runs the engine for a short while (to show that something does NOT happen).
	void pump_for(int ms) {
		pump_until([] { return false; }, ms);
	}

	// The flusher: commits everything on the ring, then ACKs go out.
	uint64_t flush(uint64_t limit = UINT64_MAX) {
		uint64_t n = ring.ready(limit);
		for (uint64_t i = 0; i < n; i++) {
			Ping p;
			EXPECT_TRUE(ring.peek(i, p));
			flushed.push_back(p);
		}
		ring.release(n);
		eng->send_acks();
		return n;
	}

	std::vector<Ping> ring_contents() {
		std::vector<Ping> out;
		uint64_t n = ring.ready(UINT64_MAX);
		for (uint64_t i = 0; i < n; i++) {
			Ping p;
			EXPECT_TRUE(ring.peek(i, p));
			out.push_back(p);
		}
		return out;
	}

	// ---- clients ----

	void udp_send(const std::vector<uint8_t> &b, const char *ip = "127.0.0.1", const char *from = nullptr) {
		int fd = udp_socket();
		fds.push_back(fd);
		if (from) {
			sockaddr_in s = addr_of(from, 0);
			ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr *>(&s), sizeof s), 0);
		}
		sockaddr_in a = addr_of(ip, port);
		ASSERT_EQ(sendto(fd, b.data(), b.size(), 0, reinterpret_cast<sockaddr *>(&a), sizeof a), ssize_t(b.size()))
		    << std::strerror(errno);
	}
	void udp_send(const std::string &s, const char *ip = "127.0.0.1") {
		udp_send(std::vector<uint8_t>(s.begin(), s.end()), ip);
	}

	int tcp_connect() {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		sockaddr_in a = addr_of("127.0.0.1", port);
		// The kernel completes the handshake from the backlog; accept comes later.
		if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
			ADD_FAILURE() << "connect: " << std::strerror(errno);
			::close(fd);
			return -1;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		fds.push_back(fd);
		return fd;
	}
	void tcp_send(int fd, const void *p, size_t n) {
		const uint8_t *b = static_cast<const uint8_t *>(p);
		auto deadline = Clock::now() + std::chrono::seconds(2);
		while (n > 0) {
			ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
			if (k > 0) {
				b += k;
				n -= size_t(k);
				continue;
			}
			ASSERT_TRUE(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) << std::strerror(errno);
			ASSERT_LT(Clock::now(), deadline) << "send stalled";
			eng->run_once(false); // let the server read
		}
	}
	void tcp_send(int fd, const std::vector<uint8_t> &b) { tcp_send(fd, b.data(), b.size()); }
	void tcp_send(int fd, const std::string &s) { tcp_send(fd, s.data(), s.size()); }

	// What a client socket has to say.
	struct Rx {
		std::string data;
		bool eof = false;   // orderly close
		bool reset = false; // ECONNRESET
	};
	// Reads what is there now (non-blocking) into rx.
	void drain(int fd, Rx &rx) {
		char buf[4096];
		for (;;) {
			ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
			if (k > 0) {
				rx.data.append(buf, size_t(k));
				continue;
			}
			if (k == 0)
				rx.eof = true;
			else if (errno == ECONNRESET)
				rx.reset = true;
			return;
		}
	}
	// Pumps the engine until `n` bytes (or a close) arrived on fd.
	Rx read_n(int fd, size_t n, int timeout_ms = 2000) {
		Rx rx;
		pump_until(
		    [&] {
			    drain(fd, rx);
			    return rx.data.size() >= n || rx.eof || rx.reset;
		    },
		    timeout_ms);
		return rx;
	}
	// Pumps the engine until the server closed fd (after reading everything).
	Rx read_to_close(int fd, int timeout_ms = 2000) {
		Rx rx;
		pump_until(
		    [&] {
			    drain(fd, rx);
			    return rx.eof || rx.reset;
		    },
		    timeout_ms);
		return rx;
	}
	// Pumps for a short while and returns whatever arrived meanwhile.
	Rx quiet(int fd, int ms = 100) {
		Rx rx;
		pump_until(
		    [&] {
			    drain(fd, rx);
			    return false;
		    },
		    ms);
		return rx;
	}

	static std::vector<wire::Ack> acks(const std::string &s) {
		std::vector<wire::Ack> out;
		EXPECT_EQ(s.size() % wire::kAckSize, 0u) << "partial ACK";
		for (size_t off = 0; off + wire::kAckSize <= s.size(); off += wire::kAckSize) {
			wire::Ack a{};
			EXPECT_TRUE(wire::decode_ack(reinterpret_cast<const uint8_t *>(s.data()) + off, a));
			out.push_back(a);
		}
		return out;
	}
	static void expect_ack(const wire::Ack &a, uint8_t status, uint32_t n, uint32_t accepted) {
		EXPECT_EQ(a.status, status) << "ACK n=" << a.n;
		EXPECT_EQ(a.n, n);
		EXPECT_EQ(a.accepted, accepted) << "ACK n=" << a.n;
	}

	// ---- data ----

	static std::vector<Fix> fixes(uint64_t first_id, int n, int64_t ts) {
		std::vector<Fix> v;
		for (int i = 0; i < n; i++)
			v.push_back(make_fix(first_id + uint64_t(i), ts, 100000000 + i, -200000000 - i));
		return v;
	}
	static std::string json_line(uint64_t id, double lat, double lon, const std::string &extra = "") {
		char buf[256];
		std::snprintf(buf, sizeof buf, R"({"driver_id":%llu,"lat":%.7f,"lon":%.7f%s})", (unsigned long long)id, lat,
		              lon, extra.c_str());
		return buf;
	}
};

} // namespace lt_test
