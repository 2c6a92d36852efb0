// When the flusher commits: a batch starts early enough to be committed by
// the time its oldest record has waited livetrack.flush_interval.
//
// Waiting for a full batch_size batch keeps commits few, but at 100,000
// records/s an 8,192-record batch takes 80 ms to fill and as long again to
// write, so its first record waits 150 ms or more. Instead the flusher keeps
// a running estimate of what a batch costs (a fixed part per transaction and
// a part per record) and starts when the oldest record's wait plus the
// estimated write time reaches the interval. Slow traffic still gets one
// commit per interval; fast traffic gets batches that finish on time; past
// what the flusher can write, batches are full and back to back.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace lt {

// Plain data (no constructor): the flusher keeps one as a global.
struct FlushCost {
	double fixed_us;      // per transaction: start, commit
	double per_record_us; // heap, indexes, WAL records
	double wal_flush_us;  // waiting for the WAL flush that makes a batch durable

	double estimate_us(uint64_t n) const { return fixed_us + wal_flush_us + per_record_us * double(n); }

	// Learns from a batch of n records written and committed in duration_us.
	// Batches of some size tell the per-record cost, small ones the fixed cost.
	void observe(uint64_t n, double duration_us) {
		constexpr double kWeight = 0.2;
		if (n == 0 || !(duration_us >= 0))
			return;
		if (n >= 128) {
			double per = std::max(0.0, duration_us - fixed_us) / double(n);
			per_record_us += kWeight * (std::min(per, 1000.0) - per_record_us);
		} else {
			double fixed = std::max(0.0, duration_us - per_record_us * double(n));
			fixed_us += kWeight * (std::min(fixed, 1e6) - fixed_us);
		}
	}
	void observe_wal_flush(double us) {
		if (us >= 0)
			wal_flush_us += 0.2 * (std::min(us, 1e6) - wal_flush_us);
	}
};
static_assert(std::is_trivial_v<FlushCost>);
constexpr FlushCost kInitialFlushCost{2000, 10, 1000};

struct FlushDecision {
	bool go;          // commit the ready records now
	int64_t sleep_us; // otherwise look again after this long (or when woken)
};

// ready: records waiting on the ring (up to batch); oldest_wait_us: how long
// the first of them has waited; requested: wait_flushed() asked for a flush.
inline FlushDecision plan_flush(uint64_t ready, uint64_t batch, int64_t oldest_wait_us, int64_t interval_us,
                                const FlushCost &cost, bool requested) {
	if (ready == 0)
		return {false, interval_us};
	if (ready >= batch || requested)
		return {true, 0};
	// Batches vary: the same number of records was seen to take from one to
	// three times the estimate (history-index pages missing from the CPU
	// caches, a busy CPU). Plan for three times, so a slow batch still lands
	// inside the interval and leaves no backlog behind it.
	constexpr double kMargin = 3.0;
	double slack = double(interval_us - oldest_wait_us) - kMargin * cost.estimate_us(ready);
	if (slack <= 0)
		return {true, 0};
	// Records keep arriving at about ready / wait per µs, each adding its
	// write cost, so the slack shrinks faster than the clock runs.
	double rate = double(ready) / double(std::max<int64_t>(oldest_wait_us, 1));
	double t = slack / (1 + kMargin * cost.per_record_us * rate);
	return {false, std::max<int64_t>(int64_t(t), 1)};
}

} // namespace lt
