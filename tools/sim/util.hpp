// Small helpers shared by livetrack-sim and livetrack-seed: option values,
// sleeping, exact percentiles, libpq connections, signals.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include <libpq-fe.h>

#include "core/clock.hpp"

namespace tool {

[[noreturn]] inline void die(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	std::fputs("error: ", stderr);
	std::vfprintf(stderr, fmt, ap);
	std::fputc('\n', stderr);
	va_end(ap);
	std::exit(2);
}

inline double parse_double(const std::string &opt, const char *s, double lo, double hi) {
	char *end = nullptr;
	errno = 0;
	double v = std::strtod(s, &end);
	if (errno || end == s || *end || !std::isfinite(v) || v < lo || v > hi)
		die("%s: expected a number in [%g, %g], got '%s'", opt.c_str(), lo, hi, s);
	return v;
}

inline unsigned long long parse_uint(const std::string &opt, const char *s, unsigned long long lo,
                                     unsigned long long hi) {
	char *end = nullptr;
	errno = 0;
	unsigned long long v = std::strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
		die("%s: expected an integer in [%llu, %llu], got '%s'", opt.c_str(), lo, hi, s);
	return v;
}

// Set by SIGINT/SIGTERM: 1 = stop (drain), 2 or more = stop now.
inline std::atomic<int> g_signals{0};
inline void on_signal(int) { g_signals.fetch_add(1, std::memory_order_relaxed); }
inline int signals() { return g_signals.load(std::memory_order_relaxed); }

inline void install_signals() {
	struct sigaction sa;
	std::memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, nullptr) || sigaction(SIGTERM, &sa, nullptr))
		die("sigaction: %s", std::strerror(errno));
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, nullptr))
		die("sigaction: %s", std::strerror(errno));
}

// Sleeps until CLOCK_MONOTONIC reaches t_us, at most max_us, waking early on a signal.
inline void sleep_until(int64_t t_us, int64_t max_us = 100000) {
	t_us = std::min(t_us, lt::mono_us() + max_us);
	timespec ts{time_t(t_us / 1000000), long(t_us % 1000000) * 1000};
	(void)clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr); // EINTR: caller re-checks
}

// Exact nearest-rank percentile of sorted samples; NAN when empty.
inline double percentile(const std::vector<double> &sorted, double q) {
	if (sorted.empty())
		return NAN;
	size_t rank = size_t(std::ceil(q * double(sorted.size())));
	return sorted[std::min(sorted.size(), std::max<size_t>(rank, 1)) - 1];
}

// A JSON number, or null for NAN.
inline std::string json_num(double v, int decimals = 3) {
	if (std::isnan(v))
		return "null";
	char b[64];
	std::snprintf(b, sizeof b, "%.*f", decimals, v);
	return b;
}

// Connects with a 5 s connect timeout (the DSN may override it) and a 10 s
// statement timeout, so no call can hang forever. nullptr and err on failure.
inline PGconn *pg_connect(const std::string &dsn, std::string &err) {
	const char *keys[] = {"connect_timeout", "options", "dbname", nullptr};
	const char *vals[] = {"5", "-c statement_timeout=10000", dsn.c_str(), nullptr};
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (!c) {
		err = "out of memory";
		return nullptr;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		err = PQerrorMessage(c);
		while (!err.empty() && err.back() == '\n')
			err.pop_back();
		PQfinish(c);
		return nullptr;
	}
	return c;
}

// Runs a command that returns no rows; false and err on failure.
inline bool pg_command(PGconn *c, const char *sql, std::string &err) {
	PGresult *r = PQexec(c, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		err = PQresultErrorMessage(r);
	PQclear(r);
	return ok;
}

// Binary-format parameter helpers (network byte order).
inline void put_be64(char *p, uint64_t v) {
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = char(v & 0xFF);
}
inline uint64_t get_be64(const char *p) {
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | uint8_t(p[i]);
	return v;
}
inline void put_be32(char *p, uint32_t v) {
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = char(v & 0xFF);
}

// timestamptz on the wire: microseconds since 2000-01-01 UTC.
constexpr int64_t kPgEpochUnixUs = 946684800LL * 1000000;

} // namespace tool
