// livetrack-seed: the "seed approach" livetrack is compared with. A client
// buffers pings and writes them with multi-row INSERTs (1,000 rows by default)
// into a plain PostGIS table, each INSERT its own autocommit transaction.
// Pings come from the simulator's movement model (tools/sim/fleet.hpp).
//
// With --mqtt the pings come from an MQTT broker instead, through a QoS 1
// subscriber that acknowledges on receipt (see MqttFeed).
//
// Measures rows/s and the latency from a row entering the buffer to the
// commit of its INSERT (exact p50/p99). With --rate R rows arrive on a
// schedule and wait in the buffer until it is full; by default (max) the
// buffer fills instantly and the latency is the INSERT's own.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "../sim/fleet.hpp"
#include "../sim/util.hpp"
#include "core/http_ingest.hpp"
#include "core/mqtt.hpp"
#include "worker/mqtt_client.hpp"

namespace {

using tool::die;

struct Options {
	std::string dsn;
	uint64_t drivers = 1000;
	double duration = 10;
	int rows = 1000;
	int connections = 1;
	bool setup = false;
	bool summary_json = false;
	double rate = 0; // rows/s in total; 0 = as fast as possible
	// Both statements send binary parameters. Multi-row VALUES is the default:
	// it is the approach livetrack is compared with. unnest of 7 arrays is
	// faster (1000-row INSERTs on the dev machine took p50 10-14 ms against
	// 13-18 ms: parsing and planning a 1000-tuple VALUES list costs more) and
	// is there with --method unnest, as the strongest variant of the idea.
	bool unnest = false;
	// --method copy: binary COPY into seed_copy, a table of the hot log's
	// narrow columns with no index at all. Not a way to keep history: the
	// ceiling of what this cluster can append, for bench/ingest.
	bool copy = false;
	fleet::City city;
	uint64_t id_base = 1;
	uint64_t seed = 1;
	double report = 1;
	std::vector<lt::MqttBroker> mqtt; // empty: generate the pings
	std::string topics = "livetrack/+/+";
};

void usage() {
	std::fputs("usage: livetrack-seed [options]\n"
	           "  --dsn DSN              libpq connection string (default: PG* environment)\n"
	           "  --drivers N            simulated drivers (1000)\n"
	           "  --duration S           seconds to run (10)\n"
	           "  --rows-per-insert K    rows per INSERT (1000)\n"
	           "  --connections C        connections, one thread each (1)\n"
	           "  --rate R|max           rows/s offered in total (max)\n"
	           "  --method values|unnest|copy\n"
	           "                         multi-row VALUES (default), unnest of arrays (faster), or\n"
	           "                         binary COPY into seed_copy (no index: the append ceiling)\n"
	           "  --setup                (re)create table seed_pings and its indexes (copy: seed_copy)\n"
	           "  --city LAT,LON         city centre (12.9716,77.5946)\n"
	           "  --radius-km R          city radius (15)\n"
	           "  --id-base B, --seed X  first driver id (1), random seed (1)\n"
	           "  --report S             status line every S s; 0 = only the summary (1)\n"
	           "  --summary-json         final summary as one JSON object on stdout\n"
	           "  --mqtt URL             take the pings from an MQTT broker (mqtt://host:port),\n"
	           "                         subscribed at QoS 1 and acknowledged on receipt\n"
	           "  --topics F             MQTT topic filter (livetrack/+/+)\n",
	           stderr);
}

Options parse(int argc, char **argv) {
	Options o;
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
		} else if (a == "--dsn") {
			o.dsn = val();
		} else if (a == "--drivers") {
			o.drivers = tool::parse_uint(a, val(), 1, 100000000);
		} else if (a == "--duration") {
			o.duration = tool::parse_double(a, val(), 0.1, 1e7);
		} else if (a == "--rows-per-insert") {
			o.rows = int(tool::parse_uint(a, val(), 1, 1000000)); // checked against the method below
		} else if (a == "--connections") {
			o.connections = int(tool::parse_uint(a, val(), 1, 256));
		} else if (a == "--rate") {
			std::string v = val();
			o.rate = v == "max" ? 0 : tool::parse_double(a, v.c_str(), 0.001, 1e9);
		} else if (a == "--method") {
			std::string v = val();
			if (v != "values" && v != "unnest" && v != "copy")
				die("--method: values, unnest or copy");
			o.unnest = v == "unnest";
			o.copy = v == "copy";
		} else if (a == "--setup") {
			o.setup = true;
		} else if (a == "--summary-json") {
			o.summary_json = true;
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
		} else if (a == "--mqtt") {
			std::string bad;
			if (!lt::parse_mqtt_urls(val(), o.mqtt, bad) || o.mqtt.size() != 1)
				die("--mqtt: one mqtt://host[:port]");
		} else if (a == "--topics") {
			o.topics = val();
		} else if (a == "--report") {
			o.report = tool::parse_double(a, val(), 0, 86400);
		} else {
			die("unknown option %s (see --help)", a.c_str());
		}
	}
	if (o.drivers < uint64_t(o.connections))
		die("--drivers must be at least --connections");
	if (!o.copy && o.rows > 9000)
		die("--rows-per-insert: at most 9000 for values and unnest (7 parameters a row, 65535 at most)");
	if (o.copy && !o.mqtt.empty())
		die("--method copy generates its rows; it does not take --mqtt");
	return o;
}

const char *kSetupSql = "CREATE EXTENSION IF NOT EXISTS postgis;"
                        "DROP TABLE IF EXISTS seed_pings;"
                        "CREATE TABLE seed_pings (driver_id bigint, ts timestamptz, geog geography(Point,4326),"
                        " speed_mps real, heading_deg real, accuracy_m real, received_at timestamptz default now());"
                        "CREATE INDEX seed_pings_geog ON seed_pings USING gist (geog);"
                        "CREATE INDEX seed_pings_driver_ts ON seed_pings (driver_id, ts);";

const char *kCopySetupSql = "DROP TABLE IF EXISTS seed_copy;"
                            "CREATE TABLE seed_copy (driver_id bigint NOT NULL, ts timestamptz NOT NULL,"
                            " lat_e7 integer NOT NULL, lon_e7 integer NOT NULL, speed smallint NOT NULL,"
                            " heading smallint NOT NULL, accuracy smallint NOT NULL, received_at timestamptz NOT NULL)";

constexpr int kCols = 7; // driver_id, ts, lon, lat, speed, heading, accuracy
constexpr Oid kTypes[kCols] = {20, 1184, 701, 701, 700, 700, 700};        // int8 timestamptz float8 float4
constexpr Oid kArrayTypes[kCols] = {1016, 1185, 1022, 1022, 1021, 1021, 1021};
constexpr int kSizes[kCols] = {8, 8, 8, 8, 4, 4, 4};

std::string insert_sql(int rows, bool unnest) {
	std::string s = "INSERT INTO seed_pings (driver_id, ts, geog, speed_mps, heading_deg, accuracy_m) ";
	if (unnest)
		return s + "SELECT d, t, ST_SetSRID(ST_MakePoint(x, y), 4326)::geography, sp, hd, ac "
		           "FROM unnest($1, $2, $3, $4, $5, $6, $7) AS u(d, t, x, y, sp, hd, ac)";
	s += "VALUES ";
	for (int r = 0; r < rows; r++) {
		int p = r * kCols + 1;
		s += (r ? ",($" : "($") + std::to_string(p) + ",$" + std::to_string(p + 1) + ",ST_SetSRID(ST_MakePoint($" +
		     std::to_string(p + 2) + ",$" + std::to_string(p + 3) + "),4326)::geography,$" + std::to_string(p + 4) +
		     ",$" + std::to_string(p + 5) + ",$" + std::to_string(p + 6) + ")";
	}
	return s;
}

// IEEE 754 bit patterns: what binary float4/float8 parameters carry.
uint64_t bits(double d) {
	uint64_t u;
	std::memcpy(&u, &d, 8);
	return u;
}
uint64_t bits(float f) {
	uint32_t u;
	std::memcpy(&u, &f, 4);
	return u;
}

// --mqtt: what the systems livetrack replaces run between the broker and
// Postgres: a subscriber (QoS 1, clean session) that acknowledges each
// message on receipt, as libmosquitto and Paho do, and hands the fixes to
// the INSERT loop through a buffer. A crash loses what is buffered.
class MqttFeed {
public:
	MqttFeed(const Options &o) : o_(o) {}
	void start(int64_t end) {
		thread_ = std::thread([this, end] { run(end); });
	}
	void join() {
		if (thread_.joinable())
			thread_.join();
	}
	// Up to n fixes with their arrival times, waiting until n are there or `end`.
	size_t take(size_t n, int64_t end, std::vector<std::pair<lt::Fix, int64_t>> &out) {
		std::unique_lock<std::mutex> l(mu_);
		while (q_.size() < n && !done_ && lt::mono_us() < end && tool::signals() == 0)
			cv_.wait_for(l, std::chrono::milliseconds(50));
		if (q_.size() < n)
			return 0;
		out.assign(q_.begin(), q_.begin() + long(n));
		q_.erase(q_.begin(), q_.begin() + long(n));
		return n;
	}
	uint64_t received() const { return received_.load(); }
	size_t left() {
		std::lock_guard<std::mutex> l(mu_);
		return q_.size();
	}
	bool failed() const { return failed_.load(); }

private:
	void run(int64_t end) {
		namespace m = lt::mqtt;
		addrinfo hints{}, *res = nullptr;
		hints.ai_socktype = SOCK_STREAM;
		const lt::MqttBroker &b = o_.mqtt[0];
		int fd = -1;
		if (getaddrinfo(b.host.c_str(), std::to_string(b.port).c_str(), &hints, &res) == 0) {
			fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
				close(fd);
				fd = -1;
			}
			freeaddrinfo(res);
		}
		if (fd < 0) {
			std::fprintf(stderr, "seed: cannot connect to the MQTT broker %s:%d\n", b.host.c_str(), b.port);
			return finish(true);
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		m::ConnectOptions co;
		co.version = m::Version::V311;
		co.client_id = "livetrack-seed-" + std::to_string(getpid());
		co.clean_start = true;
		std::string out = m::encode_connect(co) + m::encode_subscribe(co.version, 1, {o_.topics}, 1), in;
		m::Decoder dec(co.version);
		lt::Policy policy{lt::AuthMode::Off, {INT32_MAX, INT32_MAX}};
		while (lt::mono_us() < end && tool::signals() == 0) {
			if (!out.empty()) {
				ssize_t n = send(fd, out.data(), out.size(), MSG_NOSIGNAL);
				if (n < 0)
					break;
				out.erase(0, size_t(n));
			}
			pollfd p{fd, POLLIN, 0};
			if (poll(&p, 1, 100) <= 0)
				continue;
			char buf[65536];
			ssize_t n = recv(fd, buf, sizeof buf, 0);
			if (n <= 0)
				break;
			in.append(buf, size_t(n));
			int64_t arrived = lt::mono_us();
			size_t off = 0;
			std::vector<std::pair<lt::Fix, int64_t>> got;
			for (;;) {
				m::Packet pk;
				size_t used = 0;
				auto st = dec.next(reinterpret_cast<const uint8_t *>(in.data()) + off, in.size() - off, &used, pk);
				if (st != m::Decoder::Status::Packet) {
					if (st == m::Decoder::Status::Error)
						std::fprintf(stderr, "seed: MQTT protocol error: %s\n", dec.error());
					break;
				}
				off += used;
				if (pk.type != m::kPublish)
					continue;
				if (pk.qos == 1)
					out += m::encode_puback(pk.packet_id); // on receipt: the seeds' clients do
				lt::http::IngestResult r;
				lt::http::parse_mqtt(pk.topic, pk.payload, policy, lt::now_us() / 1000, nullptr, r);
				for (const lt::Fix &f : r.fixes)
					got.emplace_back(f, arrived);
				received_.fetch_add(1, std::memory_order_relaxed);
			}
			in.erase(0, off);
			if (!got.empty()) {
				std::lock_guard<std::mutex> l(mu_);
				q_.insert(q_.end(), got.begin(), got.end());
				cv_.notify_all();
			}
		}
		close(fd);
		finish(false);
	}
	void finish(bool failed) {
		std::lock_guard<std::mutex> l(mu_);
		done_ = true;
		failed_ = failed;
		cv_.notify_all();
	}

	const Options &o_;
	std::thread thread_;
	std::mutex mu_;
	std::condition_variable cv_;
	std::deque<std::pair<lt::Fix, int64_t>> q_;
	bool done_ = false;
	std::atomic<bool> failed_{false};
	std::atomic<uint64_t> received_{0};
};

MqttFeed *g_feed = nullptr;

// One connection: generates pings for its drivers, buffers `rows` of them,
// INSERTs, repeats until the end.
struct Worker {
	const Options *o = nullptr;
	int index = 0;
	std::vector<fleet::Driver> drivers;
	size_t next = 0;
	fleet::Rng rng{0};
	double rate = 0;
	std::vector<double> latency_ms, insert_ms; // per row; per INSERT (its own duration)
	std::atomic<uint64_t> rows_done{0}, inserts{0};
	std::atomic<bool> done{false}, failed{false};
	int64_t last_commit = 0;

	void run(int64_t start, int64_t end) {
		std::string err;
		PGconn *c = tool::pg_connect(o->dsn, err);
		if (!c) {
			fail(err);
			return;
		}
		if (o->copy) {
			run_copy(c, start, end);
			PQfinish(c);
			return;
		}
		// A 1000-row insert takes milliseconds; 60 s only catches a stuck server.
		if (!tool::pg_command(c, "SET statement_timeout = '60s'", err)) {
			fail(err);
			PQfinish(c);
			return;
		}
		const int n = o->rows, nparams = o->unnest ? kCols : n * kCols;
		const size_t np = size_t(nparams), nrows = size_t(n);
		std::vector<Oid> types(np);
		for (int i = 0; i < nparams; i++)
			types[size_t(i)] = o->unnest ? kArrayTypes[i] : kTypes[i % kCols];
		PGresult *r = PQprepare(c, "ins", insert_sql(n, o->unnest).c_str(), nparams, types.data());
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fail(std::string("prepare: ") + PQresultErrorMessage(r));
			PQclear(r);
			PQfinish(c);
			return;
		}
		PQclear(r);

		// Binary parameters. VALUES: one buffer, n rows of 7 fields. unnest:
		// 7 one-dimensional arrays (20-byte header, then length + value each).
		std::vector<char> buf(o->unnest ? size_t(kCols) * 20 + size_t(n) * (kCols * 4 + 44) : size_t(n) * 44);
		std::vector<const char *> vals(np);
		std::vector<int> lens(np), formats(np, 1);
		std::vector<int64_t> buffered(nrows);
		size_t col_off[kCols];
		if (o->unnest) {
			size_t off = 0;
			for (int k = 0; k < kCols; k++) {
				col_off[k] = off;
				char *h = buf.data() + off;
				tool::put_be32(h, 1);                 // dimensions
				tool::put_be32(h + 4, 0);             // no NULLs
				tool::put_be32(h + 8, kTypes[k]);     // element type
				tool::put_be32(h + 12, uint32_t(n));  // length
				tool::put_be32(h + 16, 1);            // lower bound
				for (int i = 0; i < n; i++)
					tool::put_be32(h + 20 + size_t(i) * size_t(4 + kSizes[k]), uint32_t(kSizes[k]));
				vals[size_t(k)] = h;
				lens[size_t(k)] = 20 + n * (4 + kSizes[k]);
				off += size_t(lens[size_t(k)]);
			}
		}
		uint64_t generated = 0;
		std::vector<std::pair<lt::Fix, int64_t>> fed;
		while (tool::signals() == 0 && lt::mono_us() < end) {
			int64_t now = lt::mono_us();
			if (g_feed && g_feed->take(nrows, end, fed) == 0)
				break; // the end, or the feed stopped: what is buffered is not written
			if (rate > 0 && !g_feed) {
				// Wait until the last row of this buffer has arrived.
				int64_t full_at = start + int64_t(double(generated + uint64_t(n)) * 1e6 / rate);
				if (full_at > now) {
					tool::sleep_until(std::min(full_at, end));
					continue;
				}
			}
			int64_t wall_minus_mono = lt::now_us() - lt::mono_us();
			for (int i = 0; i < n; i++) {
				lt::Fix f;
				if (g_feed) {
					f = fed[size_t(i)].first;
					buffered[size_t(i)] = fed[size_t(i)].second;
				} else {
					int64_t arrived =
					    rate > 0 ? start + int64_t(double(generated + uint64_t(i)) * 1e6 / rate) : lt::mono_us();
					buffered[size_t(i)] = arrived;
					f = fleet::next_fix(drivers[next], o->city, rng, arrived + wall_minus_mono);
					next = (next + 1) % drivers.size();
				}
				uint64_t v[kCols] = {f.driver_id,
				                     uint64_t(f.ts_ms * 1000 - tool::kPgEpochUnixUs),
				                     bits(f.lon_e7 / 1e7),
				                     bits(f.lat_e7 / 1e7),
				                     bits(float(f.speed_cms / 100.0)),
				                     bits(float(f.heading_cd / 100.0)),
				                     bits(float(f.accuracy_dm / 10.0))};
				for (int k = 0; k < kCols; k++) {
					char *p = o->unnest ? buf.data() + col_off[k] + 20 + size_t(i) * size_t(4 + kSizes[k]) + 4
					                    : buf.data() + size_t(i) * 44 + size_t(k < 4 ? k * 8 : 32 + (k - 4) * 4);
					if (kSizes[k] == 8)
						tool::put_be64(p, v[k]);
					else
						tool::put_be32(p, uint32_t(v[k]));
					if (!o->unnest) {
						vals[size_t(i * kCols + k)] = p;
						lens[size_t(i * kCols + k)] = kSizes[k];
					}
				}
			}
			generated += uint64_t(n);
			int64_t sent = lt::mono_us();
			r = PQexecPrepared(c, "ins", nparams, vals.data(), lens.data(), formats.data(), 0);
			int64_t committed = lt::mono_us();
			if (PQresultStatus(r) != PGRES_COMMAND_OK) {
				fail(std::string("insert: ") + PQresultErrorMessage(r));
				PQclear(r);
				break;
			}
			PQclear(r);
			insert_ms.push_back(double(committed - sent) / 1000.0);
			for (int i = 0; i < n; i++)
				latency_ms.push_back(double(committed - buffered[size_t(i)]) / 1000.0);
			last_commit = committed;
			rows_done.fetch_add(uint64_t(n), std::memory_order_relaxed);
			inserts.fetch_add(1, std::memory_order_relaxed);
		}
		PQfinish(c);
	}
	// One COPY ... FROM STDIN (FORMAT binary) of o->rows rows per transaction,
	// the rows the same as the hot log's (received_at: the client's clock).
	void run_copy(PGconn *c, int64_t start, int64_t end) {
		const size_t n = size_t(o->rows);
		// 19-byte header, then per row a field count and 8 length-prefixed fields.
		constexpr size_t kRow = 2 + (4 + 8) * 3 + (4 + 4) * 2 + (4 + 2) * 3;
		std::vector<char> buf(19 + n * kRow + 2);
		std::memcpy(buf.data(), "PGCOPY\n\377\r\n\0", 11);
		tool::put_be32(buf.data() + 11, 0); // flags
		tool::put_be32(buf.data() + 15, 0); // header extension
		uint64_t generated = 0;
		while (tool::signals() == 0 && lt::mono_us() < end) {
			int64_t now = lt::mono_us();
			if (rate > 0) {
				int64_t full_at = start + int64_t(double(generated + n) * 1e6 / rate);
				if (full_at > now) {
					tool::sleep_until(std::min(full_at, end));
					continue;
				}
			}
			int64_t wall_minus_mono = lt::now_us() - lt::mono_us();
			char *p = buf.data() + 19;
			auto put = [&p](int bytes, uint64_t v) {
				tool::put_be32(p, uint32_t(bytes));
				p += 4;
				if (bytes == 8)
					tool::put_be64(p, v);
				else if (bytes == 4)
					tool::put_be32(p, uint32_t(v));
				else {
					p[0] = char(v >> 8);
					p[1] = char(v);
				}
				p += bytes;
			};
			for (size_t i = 0; i < n; i++) {
				int64_t arrived = rate > 0 ? start + int64_t(double(generated + i) * 1e6 / rate) : lt::mono_us();
				lt::Fix f = fleet::next_fix(drivers[next], o->city, rng, arrived + wall_minus_mono);
				next = (next + 1) % drivers.size();
				p[0] = 0;
				p[1] = 8;
				p += 2;
				put(8, f.driver_id);
				put(8, uint64_t(f.ts_ms * 1000 - tool::kPgEpochUnixUs));
				put(4, uint32_t(f.lat_e7));
				put(4, uint32_t(f.lon_e7));
				put(2, f.speed_cms);
				put(2, f.heading_cd);
				put(2, f.accuracy_dm);
				put(8, uint64_t(lt::now_us() - tool::kPgEpochUnixUs));
			}
			p[0] = char(0xff); // trailer: field count -1
			p[1] = char(0xff);
			p += 2;
			generated += n;
			int64_t sent = lt::mono_us();
			PGresult *r = PQexec(c, "COPY seed_copy FROM STDIN (FORMAT binary)");
			bool ok = PQresultStatus(r) == PGRES_COPY_IN;
			PQclear(r);
			ok = ok && PQputCopyData(c, buf.data(), int(p - buf.data())) == 1 && PQputCopyEnd(c, nullptr) == 1;
			r = PQgetResult(c);
			ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
			if (!ok) {
				fail(std::string("copy: ") + PQerrorMessage(c));
				PQclear(r);
				while ((r = PQgetResult(c)) != nullptr)
					PQclear(r);
				return;
			}
			PQclear(r);
			int64_t committed = lt::mono_us();
			insert_ms.push_back(double(committed - sent) / 1000.0);
			latency_ms.push_back(double(committed - sent) / 1000.0); // per COPY: rows all wait for it
			last_commit = committed;
			rows_done.fetch_add(n, std::memory_order_relaxed);
			inserts.fetch_add(1, std::memory_order_relaxed);
		}
	}
	void fail(const std::string &why) {
		std::fprintf(stderr, "seed[%d]: %s\n", index, why.c_str());
		failed = true;
	}
};

const char *method_name(const Options &o) {
	return o.copy ? "copy" : o.unnest ? "unnest" : "values";
}

} // namespace

int main(int argc, char **argv) {
	Options o = parse(argc, argv);
	tool::install_signals();
	FILE *human = o.summary_json ? stderr : stdout;

	if (o.setup) {
		std::string err;
		PGconn *c = tool::pg_connect(o.dsn, err);
		if (!c)
			die("%s", err.c_str());
		if (!tool::pg_command(c, "SET client_min_messages = warning", err) ||
		    !tool::pg_command(c, o.copy ? kCopySetupSql : kSetupSql, err))
			die("setup: %s", err.c_str());
		PQfinish(c);
	}

	std::vector<Worker> ws(size_t(o.connections));
	fleet::Rng master(o.seed);
	int64_t now_us = lt::now_us();
	for (int i = 0; i < o.connections; i++) {
		ws[size_t(i)].o = &o;
		ws[size_t(i)].index = i;
		ws[size_t(i)].rng = fleet::Rng(o.seed * 0x9E3779B97F4A7C15ull + uint64_t(i) + 1);
		ws[size_t(i)].rate = o.rate / o.connections;
	}
	for (uint64_t i = 0; i < o.drivers; i++) {
		Worker &w = ws[size_t(i % uint64_t(o.connections))];
		w.drivers.emplace_back();
		fleet::init_driver(w.drivers.back(), o.id_base + i, o.city, master, now_us);
	}

	int64_t start = lt::mono_us() + 10000, end = start + int64_t(o.duration * 1e6);
	MqttFeed feed(o);
	if (!o.mqtt.empty()) {
		g_feed = &feed;
		feed.start(end);
	}
	std::vector<std::thread> threads;
	for (Worker &w : ws)
		threads.emplace_back([&w, start, end] {
			tool::sleep_until(start);
			w.run(start, end);
			w.done = true;
		});

	int64_t next_report = start + int64_t(o.report * 1e6), last_t = start;
	uint64_t last_rows = 0;
	for (;;) {
		bool all_done = true;
		uint64_t rows = 0;
		for (const Worker &w : ws) {
			all_done = all_done && w.done.load();
			rows += w.rows_done.load();
		}
		if (all_done)
			break;
		int64_t now = lt::mono_us();
		if (o.report > 0 && now >= next_report) {
			std::fprintf(stderr, "[%7.1fs] rows %llu (%.0f/s)\n", double(now - start) / 1e6, (unsigned long long)rows,
			             double(rows - last_rows) * 1e6 / double(now - last_t));
			last_rows = rows;
			last_t = now;
			next_report += int64_t(o.report * 1e6);
		}
		tool::sleep_until(o.report > 0 ? std::min(next_report, now + 100000) : now + 100000);
	}
	for (std::thread &t : threads)
		t.join();
	feed.join();

	uint64_t rows = 0, inserts = 0;
	int failed = 0;
	int64_t last = start + 1;
	std::vector<double> lat, ins;
	for (Worker &w : ws) {
		rows += w.rows_done.load();
		inserts += w.inserts.load();
		failed += w.failed.load() ? 1 : 0;
		last = std::max(last, w.last_commit);
		lat.insert(lat.end(), w.latency_ms.begin(), w.latency_ms.end());
		ins.insert(ins.end(), w.insert_ms.begin(), w.insert_ms.end());
	}
	std::sort(lat.begin(), lat.end());
	std::sort(ins.begin(), ins.end());
	// Rows over the time until the last commit (an INSERT started before the
	// end is allowed to finish and counts).
	double secs = double(std::max(last, std::min(lt::mono_us(), end)) - start) / 1e6;
	double rate = double(rows) / secs, p50 = tool::percentile(lat, .5), p99 = tool::percentile(lat, .99);
	std::fprintf(human,
	             "livetrack-seed: %.2f s, %llu rows in %llu INSERTs of %d (%s, %d connection%s), %.0f rows/s; "
	             "buffered->committed p50 %.1f ms, p99 %.1f ms; INSERT p50 %.1f ms\n",
	             secs, (unsigned long long)rows, (unsigned long long)inserts, o.rows, method_name(o),
	             o.connections, o.connections == 1 ? "" : "s", rate, p50, p99,
	             tool::percentile(ins, .5));
	if (g_feed) {
		failed += feed.failed() ? 1 : 0;
		std::fprintf(human,
		             "  from MQTT: %llu messages acknowledged to the broker on receipt; %zu fixes still buffered at the "
		             "end (a crash would lose them)\n",
		             (unsigned long long)feed.received(), feed.left());
	}
	if (o.summary_json)
		std::printf("{\"seconds\":%.3f,\"rows\":%llu,\"rate\":%.1f,\"latency_p50_ms\":%s,\"latency_p99_ms\":%s,"
		            "\"insert_p50_ms\":%s,\"insert_p99_ms\":%s,\"inserts\":%llu,\"rows_per_insert\":%d,\"connections\":%d,\"method\":\"%s\",\"failed_connections\":%d,\"mqtt_received\":%llu}\n",
		            secs, (unsigned long long)rows, rate, tool::json_num(p50).c_str(), tool::json_num(p99).c_str(),
		            tool::json_num(tool::percentile(ins, .5)).c_str(), tool::json_num(tool::percentile(ins, .99)).c_str(),
		            (unsigned long long)inserts, o.rows, o.connections, method_name(o), failed,
		            (unsigned long long)feed.received());
	std::fflush(stdout);
	return failed ? 1 : 0;
}
