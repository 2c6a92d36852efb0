// livetrack-sim: a fleet of simulated drivers sending GPS fixes to livetrack
// over UDP or TCP, binary (SPEC 2.1) or JSON lines (SPEC 2.2), or publishing
// them to an MQTT broker (SPEC 7), with optional latency probes through SQL.
// See usage() for the options.
//
// Threads: one sender per connection (UDP: per socket), each owning the
// drivers i with i % connections == its index and pacing itself on an absolute
// schedule (message m is due at start + m * batch / rate), so the requested
// rate holds over the run whatever the sleep overshoot; a probe thread; the
// main thread reports.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <fcntl.h>
#include <thread>

#include "core/mqtt.hpp"
#include "core/wire.hpp"
#include "fleet.hpp"
#include "mqtt_pub.hpp"
#include "util.hpp"
#include "worker/mqtt_client.hpp"

namespace {

using tool::die;

constexpr uint64_t kWindowMsgs = 8192;       // unacknowledged messages per TCP connection
constexpr size_t kOutCap = 256 * 1024;       // bytes queued in user space per TCP connection
constexpr int64_t kDrainUs = 10 * 1000000;   // after the end, give up when no ACK came for this long
constexpr int64_t kConnectMs = 5000;
constexpr int64_t kProbeEveryUs = 20000;
constexpr int64_t kProbeTimeoutUs = 10 * 1000000;
constexpr int kMaxJsonBatch = 256;           // ~150 B a line: a datagram stays under 64 KB

struct Options {
	std::string host = "127.0.0.1";
	int port = 5480;
	uint64_t drivers = 1000;
	double interval = 1;
	double spread = 1; // a driver's period is 1..spread times the shortest
	bool tcp = false, json = false;
	int batch = 1;
	int connections = 1;
	double duration = 10;
	double rate = 0; // records/s in total; 0 = as fast as possible
	fleet::City city;
	uint64_t id_base = 1;
	uint64_t seed = 1;
	double report = 1;
	bool summary_json = false;
	std::string probe_dsn;
	double probe_warmup = 0; // seconds of probes left out of the figures
	std::vector<lt::MqttBroker> mqtt; // empty: UDP/TCP to --host/--port
	std::string topic = "livetrack/sim";
	sim::MqttPayload payload = sim::MqttPayload::Binary;
	uint32_t window = 1000; // unacknowledged QoS 1 messages per MQTT connection (and the broker's Receive Maximum)
	std::string acked_log;
	int mqtt_version = 0; // 0: 5, or 3.1.1 if the broker asks; 4 or 5
	int serve_mqtt = 0;   // play the broker on this port (livetrack's listener connects)
};

void usage() {
	std::fputs(
	    "usage: livetrack-sim [options]\n"
	    "  --host H             device host (127.0.0.1)\n"
	    "  --port P             device port (5480)\n"
	    "  --drivers N          simulated drivers (1000)\n"
	    "  --interval S         seconds between two pings of one driver (1)\n"
	    "  --proto udp|tcp      transport (udp)\n"
	    "  --format binary|json wire format (binary)\n"
	    "  --batch K            records per message, datagram or write (1; binary <= 64)\n"
	    "  --connections C      TCP connections / UDP sockets, one thread each (1)\n"
	    "  --duration S         seconds to run; 0 = until SIGINT/SIGTERM (10)\n"
	    "  --rate R|max         total records/s (drivers/interval); a driver then pings\n"
	    "                       every drivers/R s; max = as fast as the server takes it\n"
	    "  --spread F           drivers ping at different rates: each one's period is\n"
	    "                       drawn once from 1..F times the shortest; the total\n"
	    "                       rate stays --rate (1: all drivers alike)\n"
	    "  --city LAT,LON       city centre (12.9716,77.5946)\n"
	    "  --radius-km R        city radius (15)\n"
	    "  --id-base B          first driver id (1)\n"
	    "  --seed X             random seed (1)\n"
	    "  --report S           status line every S s; 0 = only the summary (1)\n"
	    "  --summary-json       final summary as one JSON object on stdout\n"
	    "  --probe-dsn DSN      measure receipt->visible and receipt->committed latency\n"
	    "  --probe-warmup S     leave probes of the first S s out of the figures (0)\n"
	    "  --mqtt URL[,URL...]  publish to an MQTT broker (mqtt://host:port) at QoS 1\n"
	    "                       instead; on a lost connection the next URL is tried\n"
	    "  --topic PREFIX       MQTT topic prefix; each fix goes to PREFIX/<driver_id>\n"
	    "                       (livetrack/sim)\n"
	    "  --format owntracks   (MQTT) OwnTracks location objects; binary and json\n"
	    "                       publish one record or one JSON object per message\n"
	    "  --window N           (MQTT) unacknowledged messages per connection (1000),\n"
	    "                       and never more than the broker's Receive Maximum\n"
	    "  --mqtt-version 4|5   (MQTT) protocol level; default 5, falling back to 3.1.1\n"
	    "  --acked-log FILE     (MQTT) write \"driver_id ts_ms\" per acknowledged fix\n"
	    "  --serve-mqtt PORT    play the MQTT broker on 127.0.0.1:PORT instead: livetrack's\n"
	    "                       listener connects (livetrack.mqtt_broker), and the fixes\n"
	    "                       go to it as QoS 1 PUBLISHes; PUBACKs are counted\n",
	    stderr);
}

Options parse(int argc, char **argv) {
	Options o;
	bool rate_given = false, rate_max = false;
	for (int i = 1; i < argc; i++) {
		std::string a = argv[i], inline_v;
		bool has_v = false;
		if (a.rfind("--", 0) != 0)
			die("unexpected argument '%s' (see --help)", a.c_str());
		size_t eq = a.find('=');
		if (eq != std::string::npos) {
			inline_v = a.substr(eq + 1);
			a.resize(eq);
			has_v = true;
		}
		auto val = [&]() -> const char * {
			if (has_v)
				return inline_v.c_str();
			if (i + 1 >= argc)
				die("%s needs a value", a.c_str());
			return argv[++i];
		};
		if (a == "--help") {
			usage();
			std::exit(0);
		} else if (a == "--host") {
			o.host = val();
		} else if (a == "--port") {
			o.port = int(tool::parse_uint(a, val(), 1, 65535));
		} else if (a == "--drivers") {
			o.drivers = tool::parse_uint(a, val(), 1, 100000000);
		} else if (a == "--interval") {
			o.interval = tool::parse_double(a, val(), 0.001, 86400);
		} else if (a == "--spread") {
			o.spread = tool::parse_double(a, val(), 1, 100);
		} else if (a == "--proto") {
			std::string v = val();
			if (v != "udp" && v != "tcp")
				die("--proto: udp or tcp");
			o.tcp = v == "tcp";
		} else if (a == "--format") {
			std::string v = val();
			if (v != "binary" && v != "json" && v != "owntracks")
				die("--format: binary, json or owntracks");
			o.json = v == "json";
			o.payload = v == "json" ? sim::MqttPayload::Json
			            : v == "owntracks" ? sim::MqttPayload::OwnTracks : sim::MqttPayload::Binary;
		} else if (a == "--batch") {
			o.batch = int(tool::parse_uint(a, val(), 1, kMaxJsonBatch));
		} else if (a == "--connections") {
			o.connections = int(tool::parse_uint(a, val(), 1, 1024));
		} else if (a == "--duration") {
			o.duration = tool::parse_double(a, val(), 0, 1e7);
		} else if (a == "--rate") {
			std::string v = val();
			rate_given = true;
			rate_max = v == "max";
			if (!rate_max)
				o.rate = tool::parse_double(a, v.c_str(), 0.001, 1e9);
		} else if (a == "--city") {
			std::string v = val();
			size_t c = v.find(',');
			if (c == std::string::npos)
				die("--city: LAT,LON");
			o.city.lat0 = tool::parse_double(a, v.substr(0, c).c_str(), -85, 85);
			o.city.lon0 = tool::parse_double(a, v.substr(c + 1).c_str(), -179, 179);
		} else if (a == "--radius-km") {
			o.city.radius_m = tool::parse_double(a, val(), 1, 500) * 1000;
		} else if (a == "--id-base") {
			o.id_base = tool::parse_uint(a, val(), 1, (1ull << 62));
		} else if (a == "--seed") {
			o.seed = tool::parse_uint(a, val(), 0, ~0ull);
		} else if (a == "--report") {
			o.report = tool::parse_double(a, val(), 0, 86400);
		} else if (a == "--summary-json") {
			o.summary_json = true;
		} else if (a == "--probe-dsn") {
			o.probe_dsn = val();
		} else if (a == "--probe-warmup") {
			o.probe_warmup = tool::parse_double(a, val(), 0, 86400);
		} else if (a == "--mqtt") {
			std::string bad;
			if (!lt::parse_mqtt_urls(val(), o.mqtt, bad))
				die("--mqtt: '%s' is not mqtt://host[:port]", bad.c_str());
		} else if (a == "--topic") {
			o.topic = val();
			while (!o.topic.empty() && o.topic.back() == '/')
				o.topic.pop_back();
			if (o.topic.empty() || o.topic.find_first_of("+#") != std::string::npos)
				die("--topic: a topic prefix without wildcards");
		} else if (a == "--window") {
			o.window = uint32_t(tool::parse_uint(a, val(), 1, 65535));
		} else if (a == "--mqtt-version") {
			o.mqtt_version = int(tool::parse_uint(a, val(), 4, 5));
		} else if (a == "--serve-mqtt") {
			o.serve_mqtt = int(tool::parse_uint(a, val(), 1, 65535));
		} else if (a == "--acked-log") {
			o.acked_log = val();
		} else {
			die("unknown option %s (see --help)", a.c_str());
		}
	}
	if (o.serve_mqtt && (!o.mqtt.empty() || o.connections != 1 || o.batch != 1 || !o.probe_dsn.empty()))
		die("--serve-mqtt: one connection, one fix per message, without --mqtt or --probe-dsn");
	if (o.payload == sim::MqttPayload::OwnTracks && o.mqtt.empty() && !o.serve_mqtt)
		die("--format owntracks: only with --mqtt");
	if (!o.mqtt.empty() && (o.tcp || o.batch != 1 || !o.probe_dsn.empty()))
		die("--mqtt: one fix per message, without --proto, --batch or --probe-dsn");
	if (!o.json && o.batch > int(lt::wire::kMaxCount))
		die("--batch: a binary message holds at most %d records", int(lt::wire::kMaxCount));
	if (o.drivers < uint64_t(o.connections))
		die("--drivers must be at least --connections");
	if (o.id_base + o.drivers + 1 >= (1ull << 63))
		die("--id-base + --drivers out of range");
	if (!rate_given)
		o.rate = double(o.drivers) / o.interval;
	return o;
}

struct Addr {
	sockaddr_storage ss;
	socklen_t len = 0;
	int family = AF_INET;
};

Addr resolve(const std::string &host, int port) {
	addrinfo hints{}, *res = nullptr;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_flags = AI_NUMERICSERV;
	int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
	if (rc != 0)
		die("cannot resolve %s: %s", host.c_str(), gai_strerror(rc));
	Addr a;
	std::memcpy(&a.ss, res->ai_addr, res->ai_addrlen);
	a.len = socklen_t(res->ai_addrlen);
	a.family = res->ai_family;
	freeaddrinfo(res);
	return a;
}

// A connected UDP socket; sends give up after 1 s instead of blocking forever.
int udp_socket(const Addr &a) {
	int fd = socket(a.family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", std::strerror(errno));
	timeval tv{1, 0};
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
		die("setsockopt(SO_SNDTIMEO): %s", std::strerror(errno));
	if (connect(fd, reinterpret_cast<const sockaddr *>(&a.ss), a.len) < 0)
		die("connect (udp): %s", std::strerror(errno));
	return fd;
}

// A non-blocking TCP connection, or -1 with err set after kConnectMs.
int tcp_connect(const Addr &a, std::string &err) {
	int fd = socket(a.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = std::string("socket: ") + std::strerror(errno);
		return -1;
	}
	int one = 1; // our own buffering batches writes; Nagle would only add delay
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
		err = std::string("setsockopt(TCP_NODELAY): ") + std::strerror(errno);
		close(fd);
		return -1;
	}
	if (connect(fd, reinterpret_cast<const sockaddr *>(&a.ss), a.len) < 0 && errno != EINPROGRESS) {
		err = std::string("connect: ") + std::strerror(errno);
		close(fd);
		return -1;
	}
	pollfd p{fd, POLLOUT, 0};
	int rc;
	do
		rc = poll(&p, 1, int(kConnectMs));
	while (rc < 0 && errno == EINTR && tool::signals() == 0);
	int soerr = 0;
	socklen_t sl = sizeof soerr;
	if (rc <= 0) {
		err = rc == 0 ? "connect: timed out" : std::string("poll: ") + std::strerror(errno);
	} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
		err = std::string("getsockopt: ") + std::strerror(errno);
	} else if (soerr != 0) {
		err = std::string("connect: ") + std::strerror(soerr);
	} else {
		return fd;
	}
	close(fd);
	return -1;
}

// One JSON line (SPEC 2.2) carrying exactly what the binary record would.
size_t json_line(char *out, size_t cap, const lt::Fix &f) {
	const char *st = lt::status_name(f.status); // nullptr: no change, field omitted
	int n = std::snprintf(out, cap,
	                      "{\"driver_id\":%llu,\"lat\":%.7f,\"lon\":%.7f,\"ts\":%lld,\"speed\":%.2f,"
	                      "\"heading\":%.2f,\"accuracy\":%.1f%s%s%s}\n",
	                      (unsigned long long)f.driver_id, f.lat_e7 / 1e7, f.lon_e7 / 1e7, (long long)f.ts_ms,
	                      f.speed_cms / 100.0, f.heading_cd / 100.0, f.accuracy_dm / 10.0,
	                      st ? ",\"status\":\"" : "", st ? st : "", st ? "\"" : "");
	return n > 0 && size_t(n) < cap ? size_t(n) : 0;
}

struct alignas(64) Stats {
	std::atomic<uint64_t> records{0}, messages{0}, acked_records{0}, accepted{0}, partial{0}, rejected{0},
	    send_errors{0}, ack_order_errors{0};
	std::atomic<uint64_t> reconnects{0}; // MQTT: sessions after the first
	std::atomic<int64_t> last_ack_us{0}; // monotonic time of the newest ACK
	std::atomic<bool> done{false}, failed{false};
};

struct Worker {
	const Options *o = nullptr;
	int index = 0;
	std::vector<fleet::Driver> drivers;
	std::vector<float> keep; // --spread: chance a driver pings when its turn comes
	size_t next = 0;
	int batch = 1;   // records per message: min(--batch, own drivers)
	double rate = 0; // own records/s; 0 = max
	fleet::Rng rng{0};
	std::vector<uint8_t> msg;
	Stats st;

	// The next driver round-robin; with --spread a driver lets its turn pass
	// with a fixed chance of its own, which makes its period longer.
	fleet::Driver &pick() {
		for (;;) {
			size_t i = next;
			next = (next + 1) % drivers.size();
			if (keep.empty() || rng.uniform() < keep[i])
				return drivers[i];
		}
	}

	// The next message: the next `batch` drivers round-robin, so each driver's
	// pings are spread evenly over time.
	void build() {
		int64_t now = lt::now_us();
		msg.clear();
		if (!o->json) {
			msg.resize(lt::wire::kHeaderSize + size_t(batch) * lt::wire::kRecordSize);
			lt::wire::Header h{lt::wire::kVersion, 0, uint16_t(batch), 0, 0, 0};
			lt::wire::encode_header(msg.data(), h);
			for (int i = 0; i < batch; i++) {
				lt::Fix f = fleet::next_fix(pick(), o->city, rng, now);
				lt::wire::encode_record(msg.data() + lt::wire::kHeaderSize + size_t(i) * lt::wire::kRecordSize, f);
			}
			return;
		}
		char line[512];
		for (int i = 0; i < batch; i++) {
			lt::Fix f = fleet::next_fix(pick(), o->city, rng, now);
			size_t n = json_line(line, sizeof line, f);
			msg.insert(msg.end(), line, line + n);
		}
	}
	// When the message after the first `scheduled` records is due.
	int64_t due(int64_t start, uint64_t scheduled) const {
		return start + int64_t(double(scheduled) * 1e6 / rate);
	}
};

bool sending(int64_t end) { return tool::signals() == 0 && (end == 0 || lt::mono_us() < end); }

// UDP: everything due within the next millisecond goes out in one sendmmsg()
// call, each message still its own datagram. The server sees the same
// traffic as from separate devices; the simulator spends far less CPU (it
// shares the machine with the server in the benchmarks).
void run_udp(Worker &w, const Addr &addr, int64_t start, int64_t end) {
	constexpr int kBurst = 64;
	constexpr int64_t kWindowUs = 1000;
	int fd = udp_socket(addr);
	uint64_t scheduled = 0;
	bool warned = false;
	std::vector<std::vector<uint8_t>> bufs(kBurst);
	mmsghdr msgs[kBurst];
	iovec iov[kBurst];
	while (sending(end)) {
		int64_t now = lt::mono_us();
		if (w.rate > 0) {
			int64_t due = w.due(start, scheduled);
			if (due > now + kWindowUs) {
				tool::sleep_until(end ? std::min(due, end) : due);
				continue;
			}
		}
		int n = 0;
		while (n < kBurst && (w.rate <= 0 || w.due(start, scheduled) <= now + kWindowUs)) {
			w.build();
			bufs[n] = w.msg;
			iov[n] = {bufs[n].data(), bufs[n].size()};
			msgs[n] = mmsghdr{};
			msgs[n].msg_hdr.msg_iov = &iov[n];
			msgs[n].msg_hdr.msg_iovlen = 1;
			// The schedule advances even when a send fails, so a server that
			// comes back does not get the missed records as a burst.
			scheduled += uint64_t(w.batch);
			n++;
		}
		int sent = sendmmsg(fd, msgs, unsigned(n), 0);
		if (sent > 0) {
			w.st.records.fetch_add(uint64_t(sent) * uint64_t(w.batch), std::memory_order_relaxed);
			w.st.messages.fetch_add(uint64_t(sent), std::memory_order_relaxed);
		}
		if (sent == n)
			continue;
		w.st.send_errors.fetch_add(uint64_t(n - (sent > 0 ? sent : 0)), std::memory_order_relaxed);
		if (!warned) {
			warned = true; // ECONNREFUSED: nobody listens (yet); keep going
			std::fprintf(stderr, "sim[%d]: udp send: %s (counting further errors silently)\n", w.index,
			             sent < 0 ? std::strerror(errno) : "short send");
		}
	}
	close(fd);
}

// TCP: queue messages while the schedule, the ACK window and the user-space
// buffer allow; write what the socket takes; read ACKs; after the end, wait
// for the remaining ACKs while they keep coming (at most kDrainUs apart).
void run_tcp(Worker &w, const Addr &addr, int64_t start, int64_t end) {
	std::string err;
	int fd = tcp_connect(addr, err);
	if (fd < 0) {
		std::fprintf(stderr, "sim[%d]: %s\n", w.index, err.c_str());
		w.st.failed = true;
		return;
	}
	const bool json = w.o->json;
	std::vector<uint8_t> out;
	size_t out_off = 0;
	uint8_t in[8192];
	size_t in_len = 0;
	uint64_t queued_msgs = 0, acked_msgs = 0, scheduled = 0;
	int64_t drain_deadline = 0; // pushed back by every ACK after the end
	bool warned_order = false;

	auto fail = [&](const std::string &why) {
		std::fprintf(stderr, "sim[%d]: %s\n", w.index, why.c_str());
		w.st.failed = true;
	};
	// Binary: 12-byte ACKs, n = 1, 2, 3...; JSON: "ok N" with N = lines so far.
	auto parse_acks = [&]() -> bool {
		size_t off = 0;
		if (!json) {
			for (; in_len - off >= lt::wire::kAckSize; off += lt::wire::kAckSize) {
				lt::wire::Ack a;
				if (!lt::wire::decode_ack(in + off, a))
					return fail("not an ACK from the server"), false;
				if (a.n != acked_msgs + 1) {
					w.st.ack_order_errors.fetch_add(1, std::memory_order_relaxed);
					if (!warned_order)
						std::fprintf(stderr, "sim[%d]: ACK n=%u, expected %llu\n", w.index, a.n,
						             (unsigned long long)(acked_msgs + 1));
					warned_order = true;
				}
				acked_msgs++;
				w.st.acked_records.fetch_add(uint64_t(w.batch), std::memory_order_relaxed);
				w.st.accepted.fetch_add(a.accepted, std::memory_order_relaxed);
				if (a.status == lt::wire::kAckSome)
					w.st.partial.fetch_add(1, std::memory_order_relaxed);
				else if (a.status == lt::wire::kAckRejected)
					w.st.rejected.fetch_add(1, std::memory_order_relaxed);
			}
		} else {
			for (;;) {
				auto *nl = static_cast<uint8_t *>(std::memchr(in + off, '\n', in_len - off));
				if (!nl)
					break;
				std::string line(reinterpret_cast<char *>(in + off), reinterpret_cast<char *>(nl));
				off = size_t(nl - in) + 1;
				unsigned long long lines = 0;
				if (std::sscanf(line.c_str(), "ok %llu", &lines) != 1)
					return fail("unexpected reply: " + line), false;
				uint64_t done = w.st.acked_records.load(std::memory_order_relaxed);
				if (lines < done) {
					w.st.ack_order_errors.fetch_add(1, std::memory_order_relaxed);
					continue;
				}
				// "ok N" does not say how many lines were rejected: count all as accepted.
				w.st.acked_records.store(lines, std::memory_order_relaxed);
				w.st.accepted.fetch_add(lines - done, std::memory_order_relaxed);
				acked_msgs = lines / uint64_t(w.batch);
			}
			if (off == 0 && in_len == sizeof in)
				return fail("reply line too long"), false;
		}
		std::memmove(in, in + off, in_len - off);
		in_len -= off;
		return true;
	};

	for (;;) {
		int64_t now = lt::mono_us();
		bool send_more = sending(end);
		if (!send_more && drain_deadline == 0)
			drain_deadline = now + kDrainUs;
		uint64_t acked_before = acked_msgs;
		bool room = true;
		int64_t wait_until = now + 100000;
		while (send_more) {
			room = out.size() - out_off < kOutCap && queued_msgs - acked_msgs < kWindowMsgs;
			if (!room)
				break;
			if (w.rate > 0) {
				int64_t due = w.due(start, scheduled);
				if (due > now) {
					wait_until = std::min(wait_until, due);
					break;
				}
			}
			w.build();
			out.insert(out.end(), w.msg.begin(), w.msg.end());
			queued_msgs++;
			scheduled += uint64_t(w.batch);
			w.st.records.fetch_add(uint64_t(w.batch), std::memory_order_relaxed);
			w.st.messages.fetch_add(1, std::memory_order_relaxed);
		}
		if (out_off < out.size()) {
			ssize_t n = send(fd, out.data() + out_off, out.size() - out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0) {
				out_off += size_t(n);
				if (out_off == out.size() || out_off > kOutCap) {
					out.erase(out.begin(), out.begin() + long(out_off));
					out_off = 0;
				}
			} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				fail(std::string("send: ") + std::strerror(errno));
				break;
			}
		}
		bool ok = true;
		for (;;) {
			ssize_t n = recv(fd, in + in_len, sizeof in - in_len, MSG_DONTWAIT);
			if (n > 0) {
				in_len += size_t(n);
				if (!(ok = parse_acks()))
					break;
				continue;
			}
			if (n == 0) {
				ok = false;
				if (send_more || queued_msgs != acked_msgs || out_off < out.size())
					fail("server closed the connection");
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				ok = false;
				fail(std::string("recv: ") + std::strerror(errno));
			}
			break;
		}
		if (!ok)
			break;
		if (acked_msgs != acked_before) {
			w.st.last_ack_us.store(lt::mono_us(), std::memory_order_relaxed);
			if (drain_deadline)
				drain_deadline = now + kDrainUs;
		}
		bool pending = out_off < out.size();
		room = out.size() - out_off < kOutCap && queued_msgs - acked_msgs < kWindowMsgs;
		uint64_t unacked = json ? uint64_t(w.st.records.load() - w.st.acked_records.load()) : queued_msgs - acked_msgs;
		if (!send_more) {
			if (!pending && unacked == 0)
				break;
			if (now >= drain_deadline || tool::signals() >= 2) {
				std::fprintf(stderr, "sim[%d]: gave up waiting for %llu unacknowledged %s\n", w.index,
				             (unsigned long long)unacked, json ? "lines" : "messages");
				break;
			}
		} else if (room && w.rate == 0 && !pending) {
			continue; // as fast as possible: nothing to wait for
		}
		pollfd p{fd, short(POLLIN | (pending ? POLLOUT : 0)), 0};
		if (send_more && end)
			wait_until = std::min(wait_until, end);
		int64_t wait_us = std::max<int64_t>(0, wait_until - now);
		timespec ts{time_t(wait_us / 1000000), long(wait_us % 1000000) * 1000};
		if (ppoll(&p, 1, &ts, nullptr) < 0 && errno != EINTR) {
			fail(std::string("poll: ") + std::strerror(errno));
			break;
		}
	}
	close(fd);
}

FILE *g_acked_log = nullptr; // --acked-log: "driver_id ts_ms" per acknowledged fix (stdio locks it)

// MQTT: one client per thread publishing its drivers' fixes at QoS 1 on the
// same schedule as UDP/TCP, at most min(--window, Receive Maximum)
// unacknowledged. On a lost connection, the next broker of --mqtt is tried
// after 200 ms with a new session; what was in flight counts as lost (the
// broker may or may not have taken it), never as acknowledged.
void run_mqtt(Worker &w, int64_t start, int64_t end) {
	const Options &o = *w.o;
	namespace m = lt::mqtt;
	struct Flight {
		uint64_t driver;
		int64_t ts;
	};
	std::vector<Flight> flight(65536);
	std::deque<uint16_t> order; // packet ids in flight, oldest first
	uint16_t next_id = 1;
	uint64_t scheduled = 0;
	size_t target = size_t(w.index) % o.mqtt.size();
	int version = o.mqtt_version ? o.mqtt_version : 5;
	bool ever_up = false;
	int64_t drain_deadline = 0;
	while (tool::signals() < 2) {
		// Connect (again).
		const lt::MqttBroker &t = o.mqtt[target];
		std::string err;
		Addr a = resolve(t.host, t.port);
		int fd = tcp_connect(a, err);
		if (fd < 0) {
			if (!sending(end))
				break;
			std::fprintf(stderr, "sim[%d]: mqtt %s:%d: %s\n", w.index, t.host.c_str(), t.port, err.c_str());
			target = (target + 1) % o.mqtt.size();
			tool::sleep_until(lt::mono_us() + 200000);
			continue;
		}
		m::ConnectOptions co;
		co.version = version == 4 ? m::Version::V311 : m::Version::V5;
		co.client_id = "livetrack-sim-" + std::to_string(getpid()) + "-" + std::to_string(w.index);
		co.keepalive_s = 60;
		co.clean_start = true;
		std::string out = m::encode_connect(co), in;
		size_t out_off = 0;
		m::Decoder dec(co.version);
		bool up = false, broken = false, retry_now = false;
		uint32_t window = o.window;
		int64_t last_sent = lt::mono_us();
		while (!broken && tool::signals() < 2) {
			int64_t now = lt::mono_us();
			bool more = sending(end);
			if (!more && drain_deadline == 0)
				drain_deadline = now + kDrainUs;
			if (!more && (order.empty() || now >= drain_deadline))
				break;
			int64_t wait_until = now + 100000;
			while (up && more && order.size() < window && out.size() - out_off < kOutCap) {
				if (w.rate > 0) {
					int64_t due = w.due(start, scheduled);
					if (due > now) {
						wait_until = std::min(wait_until, due);
						break;
					}
				}
				fleet::Driver &d = w.pick();
				lt::Fix f = fleet::next_fix(d, o.city, w.rng, lt::now_us());
				fleet::unique_ts(d, f); // the acked log's (driver, ts) then names one fix
				std::string topic = o.topic + "/" + std::to_string(f.driver_id);
				while (flight[next_id].driver != 0 || next_id == 0)
					next_id++;
				out += m::encode_publish(co.version, topic, sim::mqtt_payload(f, o.payload), 1, next_id);
				flight[next_id] = Flight{f.driver_id, f.ts_ms};
				order.push_back(next_id++);
				scheduled++;
				w.st.records.fetch_add(1, std::memory_order_relaxed);
				w.st.messages.fetch_add(1, std::memory_order_relaxed);
			}
			if (up && now - last_sent > 30000000 && out_off == out.size())
				out += m::encode_pingreq();
			if (out_off < out.size()) {
				ssize_t n = send(fd, out.data() + out_off, out.size() - out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
				if (n > 0) {
					out_off += size_t(n);
					last_sent = now;
					if (out_off == out.size()) {
						out.clear();
						out_off = 0;
					}
				} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
					broken = true;
					break;
				}
			}
			char buf[65536];
			for (;;) {
				ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
				if (n > 0) {
					in.append(buf, size_t(n));
					continue;
				}
				if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
					broken = true;
				break;
			}
			size_t off = 0;
			for (;;) {
				m::Packet p;
				size_t used = 0;
				auto st = dec.next(reinterpret_cast<const uint8_t *>(in.data()) + off, in.size() - off, &used, p);
				if (st == m::Decoder::Status::NeedMore)
					break;
				if (st == m::Decoder::Status::Error) {
					std::fprintf(stderr, "sim[%d]: mqtt protocol error: %s\n", w.index, dec.error());
					broken = true;
					break;
				}
				off += used;
				if (p.type == m::kConnack) {
					if (p.short_connack && co.version == m::Version::V5 && o.mqtt_version == 0) {
						version = 4; // a 3.1.1 broker (nats-server): again at once, in its version
						retry_now = broken = true;
						break;
					}
					if (p.reason != 0) {
						std::fprintf(stderr, "sim[%d]: mqtt broker refused the connection (0x%02x)\n", w.index, p.reason);
						broken = true;
						break;
					}
					up = true;
					window = std::min<uint32_t>(o.window, p.receive_maximum);
					if (ever_up)
						w.st.reconnects.fetch_add(1, std::memory_order_relaxed);
					ever_up = true;
				} else if (p.type == m::kPuback) {
					Flight &fl = flight[p.packet_id];
					if (fl.driver == 0)
						continue; // not ours (any more)
					if (p.reason >= 0x80)
						w.st.rejected.fetch_add(1, std::memory_order_relaxed);
					else {
						w.st.acked_records.fetch_add(1, std::memory_order_relaxed);
						if (g_acked_log)
							std::fprintf(g_acked_log, "%llu %lld\n", (unsigned long long)fl.driver, (long long)fl.ts);
					}
					fl.driver = 0;
					// Brokers acknowledge in order; drop ids acknowledged (or skipped) from the front.
					while (!order.empty() && flight[order.front()].driver == 0)
						order.pop_front();
					w.st.last_ack_us.store(lt::mono_us(), std::memory_order_relaxed);
					if (drain_deadline)
						drain_deadline = lt::mono_us() + kDrainUs;
				} else if (p.type == m::kDisconnect) {
					broken = true;
					break;
				}
			}
			in.erase(0, off);
			if (broken)
				break;
			bool can_send = up && more && order.size() < window;
			if (can_send && w.rate == 0 && out_off == out.size())
				continue;
			pollfd pf{fd, short(POLLIN | (out_off < out.size() ? POLLOUT : 0)), 0};
			if (more && end)
				wait_until = std::min(wait_until, end);
			int64_t wait_us = std::max<int64_t>(0, wait_until - lt::mono_us());
			timespec ts{time_t(wait_us / 1000000), long(wait_us % 1000000) * 1000};
			if (ppoll(&pf, 1, &ts, nullptr) < 0 && errno != EINTR)
				broken = true;
		}
		close(fd);
		// In flight at the break: the broker may have it or not; not ours to count.
		for (uint16_t id : order)
			if (flight[id].driver != 0) {
				flight[id].driver = 0;
				w.st.send_errors.fetch_add(1, std::memory_order_relaxed);
			}
		order.clear();
		if (!broken || !sending(end))
			break;
		if (!retry_now) {
			if (up)
				std::fprintf(stderr, "sim[%d]: lost the connection to %s:%d; trying the next broker\n", w.index,
				             t.host.c_str(), t.port);
			target = (target + 1) % o.mqtt.size();
			tool::sleep_until(lt::mono_us() + 200000);
		}
	}
}

// --serve-mqtt: the simulator plays the broker. It takes one connection
// (livetrack's listener, with livetrack.mqtt_broker pointing here), answers
// CONNECT and SUBSCRIBE, then pushes its drivers' fixes as QoS 1 PUBLISHes,
// at most --window unacknowledged, and counts the PUBACKs, which livetrack
// sends only after each commit: livetrack's own MQTT ingest rate, with no
// broker to wait for (a real broker's figures are bounded by the broker).
// Waits for livetrack's listener to connect to --serve-mqtt's port.
int accept_listener(const Options &o) {
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(uint16_t(o.serve_mqtt));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || listen(lfd, 4) != 0)
		die("--serve-mqtt %d: %s", o.serve_mqtt, std::strerror(errno));
	std::fprintf(stderr, "sim: serving as an MQTT broker on 127.0.0.1:%d; waiting for livetrack's listener\n",
	             o.serve_mqtt);
	pollfd lp{lfd, POLLIN, 0};
	while (tool::signals() == 0 && poll(&lp, 1, 200) == 0) {
	}
	int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
	close(lfd);
	if (fd < 0)
		die("--serve-mqtt: no connection");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

void run_standin(Worker &w, int fd, int64_t start, int64_t end, std::vector<double> &ack_ms) {
	const Options &o = *w.o;
	namespace m = lt::mqtt;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	std::vector<int64_t> sent_at(65536, 0);
	std::deque<uint16_t> order;
	uint16_t next_id = 1;
	m::Version v = m::Version::V5;
	bool subscribed = false;
	std::string in, out;
	size_t out_off = 0;
	uint64_t scheduled = 0;
	int64_t drain_deadline = 0;
	// The client's packets: fixed header, then the body.
	auto take = [&](uint8_t &type, std::string &body) -> bool {
		size_t len = 0, mul = 1, i = 1;
		for (;; i++) {
			if (i >= in.size() || i > 4)
				return false;
			len += size_t(uint8_t(in[i]) & 0x7F) * mul;
			mul *= 128;
			if (!(uint8_t(in[i]) & 0x80))
				break;
		}
		if (in.size() < i + 1 + len)
			return false;
		type = uint8_t(in[0]) >> 4;
		body = in.substr(i + 1, len);
		in.erase(0, i + 1 + len);
		return true;
	};
	while (tool::signals() < 2) {
		int64_t now = lt::mono_us();
		bool more = sending(end);
		if (!more && drain_deadline == 0)
			drain_deadline = now + kDrainUs;
		if (!more && (order.empty() || now >= drain_deadline))
			break;
		int64_t wait_until = now + 100000;
		while (subscribed && more && order.size() < o.window && out.size() - out_off < kOutCap) {
			if (w.rate > 0) {
				int64_t due = w.due(start, scheduled);
				if (due > now) {
					wait_until = std::min(wait_until, due);
					break;
				}
			}
			fleet::Driver &d = w.pick();
			lt::Fix f = fleet::next_fix(d, o.city, w.rng, lt::now_us());
			fleet::unique_ts(d, f);
			while (sent_at[next_id] != 0 || next_id == 0)
				next_id++;
			out += m::encode_publish(v, o.topic + "/" + std::to_string(f.driver_id), sim::mqtt_payload(f, o.payload), 1,
			                         next_id);
			sent_at[next_id] = now;
			order.push_back(next_id++);
			scheduled++;
			w.st.records.fetch_add(1, std::memory_order_relaxed);
			w.st.messages.fetch_add(1, std::memory_order_relaxed);
		}
		if (out_off < out.size()) {
			ssize_t n = send(fd, out.data() + out_off, out.size() - out_off, MSG_NOSIGNAL);
			if (n > 0) {
				out_off += size_t(n);
				if (out_off == out.size()) {
					out.clear();
					out_off = 0;
				}
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				w.st.failed = true;
				break;
			}
		}
		char buf[65536];
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			std::fprintf(stderr, "sim: livetrack closed the connection\n");
			w.st.failed = !order.empty() || more;
			break;
		}
		if (n > 0)
			in.append(buf, size_t(n));
		uint8_t type;
		std::string body;
		while (take(type, body)) {
			if (type == m::kConnect) {
				v = body.size() > 6 && body[6] == 5 ? m::Version::V5 : m::Version::V311;
				out += v == m::Version::V5 ? std::string("\x20\x03\x00\x00\x00", 5) : std::string("\x20\x02\x00\x00", 4);
			} else if (type == m::kSubscribe && body.size() >= 2) {
				out += std::string("\x90", 1) + char(v == m::Version::V5 ? 4 : 3) + body.substr(0, 2) +
				       (v == m::Version::V5 ? std::string(1, '\0') : std::string()) + std::string(1, '\1');
				subscribed = true;
			} else if (type == m::kPingreq) {
				out += std::string("\xD0\x00", 2);
			} else if (type == m::kPuback && body.size() >= 2) {
				uint16_t id = uint16_t(uint8_t(body[0]) << 8 | uint8_t(body[1]));
				if (sent_at[id] == 0)
					continue;
				ack_ms.push_back(double(lt::mono_us() - sent_at[id]) / 1000.0);
				sent_at[id] = 0;
				w.st.acked_records.fetch_add(1, std::memory_order_relaxed);
				while (!order.empty() && sent_at[order.front()] == 0)
					order.pop_front();
				w.st.last_ack_us.store(lt::mono_us(), std::memory_order_relaxed);
				if (drain_deadline)
					drain_deadline = lt::mono_us() + kDrainUs;
			}
		}
		if (subscribed && more && order.size() < o.window && w.rate == 0 && out_off == out.size())
			continue;
		pollfd pf{fd, short(POLLIN | (out_off < out.size() ? POLLOUT : 0)), 0};
		int64_t wait_us = std::max<int64_t>(0, std::min(wait_until, end ? end : wait_until) - lt::mono_us());
		timespec ts{time_t(wait_us / 1000000), long(wait_us % 1000000) * 1000};
		ppoll(&pf, 1, &ts, nullptr);
	}
	close(fd);
}

struct Probe {
	std::vector<double> visible_ms, committed_ms;
	std::vector<double> poll_ms; // each poll's own round trip: part of every visible figure
	std::atomic<uint64_t> sent{0}, timed_out{0};
	bool failed = false; // could not connect, prepare or query
};

// Runs a prepared statement (binary parameters and results); nullptr after
// printing the error.
PGresult *exec_prepared(PGconn *c, const char *stmt, int n, const char *const *vals, const int *lens) {
	const int formats[2] = {1, 1};
	PGresult *r = PQexecPrepared(c, stmt, n, vals, lens, formats, 1);
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		return r;
	std::fprintf(stderr, "sim probe: %s", PQresultErrorMessage(r));
	PQclear(r);
	return nullptr;
}

// Every ~20 ms one fix for the probe driver (id-base + drivers, ts strictly
// increasing) on a TCP connection of its own, without waiting for earlier
// probes, so the sampling rate does not depend on the latency.
//  - receipt->visible: driver_position() is polled every 200 µs, and only
//    while the newest probe is not visible yet (one query answers for every
//    earlier probe: same driver, increasing ts);
//  - receipt->committed: the probe's ACK, which the server sends only after
//    the commit (an upper bound: it includes the ACK's trip back).
// Polling gently matters: the probes share the machine with the server they
// measure, and a busy loop of queries would slow the very flushes it times.
void run_probe(const Options &o, const Addr &addr, Probe &p, int64_t start, int64_t end) {
	constexpr int64_t kPollUs = 200;
	std::string err;
	PGconn *c = tool::pg_connect(o.probe_dsn, err);
	int fd = c ? tcp_connect(addr, err) : -1;
	if (fd < 0) {
		std::fprintf(stderr, "sim probe: %s\n", err.c_str());
		if (c)
			PQfinish(c);
		p.failed = true;
		return;
	}
	const Oid pos_types[1] = {20}; // int8
	PGresult *r1 = PQprepare(c, "pos", "SELECT ts FROM livetrack.driver_position($1)", 1, pos_types);
	bool ok = PQresultStatus(r1) == PGRES_COMMAND_OK;
	if (!ok)
		std::fprintf(stderr, "sim probe: prepare: %s", PQresultErrorMessage(r1));
	PQclear(r1);
	fleet::Rng rng(o.seed ^ 0x50524F4245ull);
	fleet::Driver d;
	fleet::init_driver(d, o.id_base + o.drivers, o.city, rng, lt::now_us());
	char id[8];
	tool::put_be64(id, d.id);
	const int id_len = 8;

	struct Pending {
		uint64_t n;       // message number on the connection (what its ACK says)
		int64_t t0;       // monotonic send time
		int64_t ts_pg;    // the fix's ts as a timestamptz
		bool visible;
		bool counted;     // sent after the warm-up
	};
	std::deque<Pending> q; // sent, not acknowledged yet, in order
	const int64_t counted_from = start + int64_t(o.probe_warmup * 1e6);
	uint64_t sent_msgs = 0;
	int64_t last_ts = 0, next_send = lt::mono_us();
	uint8_t msg[lt::wire::kHeaderSize + lt::wire::kRecordSize];
	uint8_t in[1024];
	size_t in_len = 0;
	auto poll_visible = [&]() -> bool {
		const char *vals[1] = {id};
		int64_t issued = lt::mono_us();
		PGresult *r = exec_prepared(c, "pos", 1, vals, &id_len);
		if (!r)
			return false;
		int64_t now = lt::mono_us();
		if (issued >= counted_from)
			p.poll_ms.push_back(double(now - issued) / 1000.0);
		if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) && PQgetlength(r, 0, 0) == 8) {
			int64_t live = int64_t(tool::get_be64(PQgetvalue(r, 0, 0)));
			for (Pending &x : q)
				if (!x.visible && live >= x.ts_pg) {
					x.visible = true;
					if (x.counted)
						p.visible_ms.push_back(double(now - x.t0) / 1000.0);
				}
		}
		PQclear(r);
		return true;
	};
	// Each ACK commits its probe (in order; ones that timed out are skipped).
	auto read_acks = [&]() -> bool {
		ssize_t got = recv(fd, in + in_len, sizeof in - in_len, MSG_DONTWAIT);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			return true;
		if (got <= 0) {
			std::fprintf(stderr, "sim probe: the server closed the connection\n");
			return false;
		}
		in_len += size_t(got);
		int64_t at = lt::mono_us();
		size_t off = 0;
		for (; in_len - off >= lt::wire::kAckSize; off += lt::wire::kAckSize) {
			lt::wire::Ack a;
			if (!lt::wire::decode_ack(in + off, a) || a.status != lt::wire::kAckAll) {
				std::fprintf(stderr, "sim probe: unexpected reply to a probe\n");
				return false;
			}
			while (!q.empty() && q.front().n < a.n)
				q.pop_front();
			if (q.empty() || q.front().n != a.n)
				continue;
			if (!q.front().visible && !poll_visible()) // committed, so certainly live
				return false;
			if (q.front().counted)
				p.committed_ms.push_back(double(at - q.front().t0) / 1000.0);
			q.pop_front();
		}
		std::memmove(in, in + off, in_len - off);
		in_len -= off;
		return true;
	};
	while (ok && tool::signals() < 2) {
		int64_t now = lt::mono_us();
		bool more = sending(end);
		if (!more && q.empty())
			break;
		if (more && now >= next_send) {
			next_send = std::max(next_send + kProbeEveryUs, now);
			lt::Fix f = fleet::next_fix(d, o.city, rng, lt::now_us());
			f.ts_ms = std::max(f.ts_ms, last_ts + 1);
			last_ts = f.ts_ms;
			lt::wire::encode_header(msg, lt::wire::Header{lt::wire::kVersion, 0, 1, 0, 0, 0});
			lt::wire::encode_record(msg + lt::wire::kHeaderSize, f);
			int64_t t0 = lt::mono_us();
			if (send(fd, msg, sizeof msg, MSG_NOSIGNAL) != ssize_t(sizeof msg)) {
				std::fprintf(stderr, "sim probe: send: %s\n", std::strerror(errno));
				ok = false;
				break;
			}
			q.push_back(Pending{++sent_msgs, t0, f.ts_ms * 1000 - tool::kPgEpochUnixUs, false, t0 >= counted_from});
			if (t0 >= counted_from)
				p.sent.fetch_add(1, std::memory_order_relaxed);
		}
		bool looking = !q.empty() && !q.back().visible;
		if (looking && !(ok = poll_visible()))
			break;
		looking = !q.empty() && !q.back().visible;
		int64_t wait_us = looking ? kPollUs : std::max<int64_t>(0, (more ? next_send : now + 100000) - lt::mono_us());
		pollfd pf{fd, POLLIN, 0};
		timespec ts{time_t(wait_us / 1000000), long(wait_us % 1000000) * 1000};
		if (ppoll(&pf, 1, &ts, nullptr) > 0 && !(ok = read_acks()))
			break;
		now = lt::mono_us();
		while (!q.empty() && now - q.front().t0 > kProbeTimeoutUs) {
			if (q.front().counted)
				p.timed_out.fetch_add(1, std::memory_order_relaxed);
			q.pop_front();
		}
	}
	p.failed = !ok;
	close(fd);
	PQfinish(c);
}

struct Totals {
	uint64_t records = 0, messages = 0, acked = 0, accepted = 0, partial = 0, rejected = 0, send_errors = 0,
	         order_errors = 0, reconnects = 0;
	int64_t last_ack_us = 0;
	int failed = 0;
};

Totals totals(const std::vector<Worker> &ws) {
	Totals t;
	for (const Worker &w : ws) {
		t.records += w.st.records.load();
		t.messages += w.st.messages.load();
		t.acked += w.st.acked_records.load();
		t.accepted += w.st.accepted.load();
		t.partial += w.st.partial.load();
		t.rejected += w.st.rejected.load();
		t.send_errors += w.st.send_errors.load();
		t.order_errors += w.st.ack_order_errors.load();
		t.reconnects += w.st.reconnects.load();
		t.failed += w.st.failed.load() ? 1 : 0;
		t.last_ack_us = std::max(t.last_ack_us, w.st.last_ack_us.load());
	}
	return t;
}

} // namespace

int main(int argc, char **argv) {
	Options o = parse(argc, argv);
	tool::install_signals();
	Addr addr = resolve(o.host, o.port);
	if (!o.acked_log.empty() && !(g_acked_log = std::fopen(o.acked_log.c_str(), "w")))
		die("--acked-log %s: %s", o.acked_log.c_str(), std::strerror(errno));
	FILE *human = o.summary_json ? stderr : stdout;

	// Drivers are made from one generator so the fleet does not depend on --connections.
	std::vector<Worker> ws(size_t(o.connections));
	fleet::Rng master(o.seed);
	int64_t now_us = lt::now_us();
	for (int i = 0; i < o.connections; i++) {
		Worker &w = ws[size_t(i)];
		w.o = &o;
		w.index = i;
		w.rng = fleet::Rng(o.seed * 0x9E3779B97F4A7C15ull + uint64_t(i) + 1);
		w.drivers.reserve(size_t(o.drivers / uint64_t(o.connections) + 1));
		w.rate = o.rate / o.connections;
	}
	for (uint64_t i = 0; i < o.drivers; i++) {
		Worker &w = ws[size_t(i % uint64_t(o.connections))];
		w.drivers.emplace_back();
		fleet::init_driver(w.drivers.back(), o.id_base + i, o.city, master, now_us);
		if (o.spread > 1) // period 1..spread times the shortest, uniformly
			w.keep.push_back(float(1 / master.range(1, o.spread)));
	}
	for (Worker &w : ws)
		w.batch = int(std::min<size_t>(size_t(o.batch), w.drivers.size()));

	int standin_fd = o.serve_mqtt ? accept_listener(o) : -1;
	std::vector<double> standin_ack_ms;
	int64_t start = lt::mono_us() + 10000;
	int64_t end = o.duration > 0 ? start + int64_t(o.duration * 1e6) : 0;
	std::vector<std::thread> threads;
	for (Worker &w : ws)
		threads.emplace_back([&w, &addr, start, end, standin_fd, &standin_ack_ms] {
			tool::sleep_until(start);
			if (standin_fd >= 0)
				run_standin(w, standin_fd, start, end, standin_ack_ms);
			else if (!w.o->mqtt.empty())
				run_mqtt(w, start, end);
			else if (w.o->tcp)
				run_tcp(w, addr, start, end);
			else
				run_udp(w, addr, start, end);
			w.st.done = true;
		});
	Probe probe;
	if (!o.probe_dsn.empty())
		threads.emplace_back([&] { run_probe(o, addr, probe, start, end); });

	// Report until every sender is done; note when sending stopped.
	int64_t stopped = 0, next_report = start + int64_t(o.report * 1e6);
	Totals last;
	int64_t last_t = start;
	for (;;) {
		bool all_done = true;
		for (const Worker &w : ws)
			all_done = all_done && w.st.done.load();
		int64_t now = lt::mono_us();
		if (!stopped && (all_done || !sending(end)))
			stopped = std::max(end && now >= end ? end : now, start + 1);
		if (all_done)
			break;
		if (o.report > 0 && now >= next_report) {
			Totals t = totals(ws);
			double dt = double(now - last_t) / 1e6;
			std::fprintf(stderr, "[%7.1fs] sent %llu (%.0f/s)", double(now - start) / 1e6,
			             (unsigned long long)t.records, double(t.records - last.records) / dt);
			if (o.tcp || !o.mqtt.empty())
				std::fprintf(stderr, "  acked %llu (%.0f/s)", (unsigned long long)t.acked,
				             double(t.acked - last.acked) / dt);
			if (!o.probe_dsn.empty())
				std::fprintf(stderr, "  probes %llu", (unsigned long long)probe.sent.load());
			std::fputc('\n', stderr);
			last = t;
			last_t = now;
			next_report += int64_t(o.report * 1e6);
		}
		int64_t wake = o.report > 0 ? std::min(next_report, now + 100000) : now + 100000;
		tool::sleep_until(end && now < end ? std::min(wake, end) : wake);
	}
	for (std::thread &t : threads)
		t.join();

	Totals t = totals(ws);
	double secs = double(stopped - start) / 1e6;
	std::sort(probe.visible_ms.begin(), probe.visible_ms.end());
	std::sort(probe.committed_ms.begin(), probe.committed_ms.end());
	std::sort(probe.poll_ms.begin(), probe.poll_ms.end());
	const auto &pv = probe.visible_ms, &pc = probe.committed_ms, &pp = probe.poll_ms;
	double rate = secs > 0 ? double(t.records) / secs : 0;
	// ACKs keep coming after sending stops: their rate is over start -> last ACK.
	double ack_secs = t.last_ack_us > start ? double(t.last_ack_us - start) / 1e6 : NAN;

	const bool mqtt = !o.mqtt.empty() || o.serve_mqtt;
	std::sort(standin_ack_ms.begin(), standin_ack_ms.end());
	static const char *const payloads[] = {"binary", "json", "owntracks"};
	std::fprintf(human, "livetrack-sim: %.2f s, %llu records in %llu messages, %.0f records/s (%s %s, batch %d)\n",
	             secs, (unsigned long long)t.records, (unsigned long long)t.messages, rate,
	             mqtt ? "mqtt qos 1" : o.tcp ? "tcp" : "udp", mqtt ? payloads[int(o.payload)] : o.json ? "json" : "binary",
	             o.batch);
	if (o.serve_mqtt)
		std::fprintf(human,
		             "  livetrack acknowledged %llu (%.0f/s until the last PUBACK); PUBLISH -> PUBACK p50 %.1f ms, p99 %.1f ms\n",
		             (unsigned long long)t.acked, double(t.acked) / ack_secs, tool::percentile(standin_ack_ms, .5),
		             tool::percentile(standin_ack_ms, .99));
	else if (mqtt)
		std::fprintf(human,
		             "  the broker acknowledged %llu (%.0f/s until the last PUBACK), refused %llu; in flight when a "
		             "connection broke: %llu; reconnects: %llu\n",
		             (unsigned long long)t.acked, double(t.acked) / ack_secs, (unsigned long long)t.rejected,
		             (unsigned long long)t.send_errors, (unsigned long long)t.reconnects);
	else if (t.send_errors)
		std::fprintf(human, "  send errors: %llu\n", (unsigned long long)t.send_errors);
	if (o.tcp)
		std::fprintf(human,
		             "  acknowledged %llu records (%.0f/s until the last ACK), accepted %llu; "
		             "messages with status 1: %llu, status 2: %llu%s\n",
		             (unsigned long long)t.acked, double(t.acked) / ack_secs, (unsigned long long)t.accepted, (unsigned long long)t.partial,
		             (unsigned long long)t.rejected, t.order_errors ? "; ACKS OUT OF ORDER" : "");
	if (!o.probe_dsn.empty())
		std::fprintf(human,
		             "  probes: %llu after %g s of warm-up (%llu timed out); receipt->visible p50 %.2f p99 %.2f max %.2f ms; "
		             "receipt->committed (ACK) p50 %.2f p99 %.2f max %.2f ms; SQL poll round trip p50 %.2f p99 %.2f ms\n",
		             (unsigned long long)probe.sent.load(), o.probe_warmup, (unsigned long long)probe.timed_out.load(),
		             tool::percentile(pv, .5), tool::percentile(pv, .99), tool::percentile(pv, 1),
		             tool::percentile(pc, .5), tool::percentile(pc, .99), tool::percentile(pc, 1),
		             tool::percentile(pp, .5), tool::percentile(pp, .99));
	if (o.summary_json) {
		auto tcp_num = [&](uint64_t v) { return o.tcp || mqtt ? std::to_string(v) : std::string("null"); };
		std::printf("{\"seconds\":%.3f,\"records_sent\":%llu,\"messages_sent\":%llu,\"rate\":%.1f,"
		            "\"acked_records\":%s,\"acked_seconds\":%s,\"accepted_records\":%s,\"partial_messages\":%s,\"rejected_messages\":%s,"
		            "\"ack_order_errors\":%s,\"send_errors\":%llu,\"failed_connections\":%d,"
		            "\"probe_visible_p50_ms\":%s,\"probe_visible_p99_ms\":%s,\"probe_visible_max_ms\":%s,"
		            "\"probe_committed_p50_ms\":%s,\"probe_committed_p99_ms\":%s,\"probe_committed_max_ms\":%s,"
		            "\"probe_poll_p50_ms\":%s,\"probe_poll_p99_ms\":%s,"
		            "\"probes\":%llu,\"probes_timed_out\":%llu,\"reconnects\":%llu,\"puback_p50_ms\":%s,\"puback_p99_ms\":%s}\n",
		            secs, (unsigned long long)t.records, (unsigned long long)t.messages, rate,
		            tcp_num(t.acked).c_str(), tool::json_num(ack_secs).c_str(), o.tcp ? tcp_num(t.accepted).c_str() : "null", tcp_num(t.partial).c_str(),
		            tcp_num(t.rejected).c_str(), tcp_num(t.order_errors).c_str(), (unsigned long long)t.send_errors,
		            t.failed, tool::json_num(tool::percentile(pv, .5)).c_str(),
		            tool::json_num(tool::percentile(pv, .99)).c_str(), tool::json_num(tool::percentile(pv, 1)).c_str(),
		            tool::json_num(tool::percentile(pc, .5)).c_str(), tool::json_num(tool::percentile(pc, .99)).c_str(),
		            tool::json_num(tool::percentile(pc, 1)).c_str(), tool::json_num(tool::percentile(pp, .5)).c_str(),
		            tool::json_num(tool::percentile(pp, .99)).c_str(), (unsigned long long)probe.sent.load(),
		            (unsigned long long)probe.timed_out.load(), (unsigned long long)t.reconnects,
		            tool::json_num(tool::percentile(standin_ack_ms, .5)).c_str(),
		            tool::json_num(tool::percentile(standin_ack_ms, .99)).c_str());
	}
	std::fflush(stdout);
	if (g_acked_log)
		std::fclose(g_acked_log);
	return t.failed == int(ws.size()) || t.order_errors || probe.failed ? 1 : 0;
}
