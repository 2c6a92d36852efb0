// When the flusher commits: decisions, the cost estimate, and a simulated
// flusher that must meet flush_interval at any rate it can sustain.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>

#include "core/flush_policy.hpp"

using namespace lt;

namespace {

constexpr int64_t kInterval = 100000; // 100 ms
constexpr uint64_t kBatch = 8192;

TEST(FlushPolicy, NothingReadyMeansSleep) {
	FlushDecision d = plan_flush(0, kBatch, 0, kInterval, kInitialFlushCost, false);
	EXPECT_FALSE(d.go);
	EXPECT_EQ(d.sleep_us, kInterval);
}

TEST(FlushPolicy, FullBatchOrRequestGoesAtOnce) {
	EXPECT_TRUE(plan_flush(kBatch, kBatch, 0, kInterval, kInitialFlushCost, false).go);
	EXPECT_TRUE(plan_flush(1, kBatch, 0, kInterval, kInitialFlushCost, true).go);
}

TEST(FlushPolicy, ATrickleWaitsForTheInterval) {
	// 3 records, the oldest 10 ms old: nowhere near the deadline.
	FlushDecision d = plan_flush(3, kBatch, 10000, kInterval, kInitialFlushCost, false);
	EXPECT_FALSE(d.go);
	EXPECT_GT(d.sleep_us, 80000);
	EXPECT_LT(d.sleep_us, 90000);
	// Once the deadline minus the (padded) estimate has come, it goes.
	EXPECT_TRUE(plan_flush(3, kBatch, 97000, kInterval, kInitialFlushCost, false).go);
}

TEST(FlushPolicy, ABigBatchStartsEarly) {
	FlushCost c{2000, 10};
	// 5,000 records take about 52 ms (156 ms padded): at 30 ms of waiting it is past time.
	EXPECT_TRUE(plan_flush(5000, kBatch, 30000, kInterval, c, false).go);
	EXPECT_FALSE(plan_flush(500, kBatch, 30000, kInterval, c, false).go);
}

TEST(FlushPolicy, CostLearnsPerRecordAndFixedParts) {
	FlushCost c = kInitialFlushCost;
	for (int i = 0; i < 60; i++) {
		c.observe(6000, 3000 + 6000 * 7.0); // big batches: 7 µs a record
		c.observe(20, 3000 + 20 * 7.0);     // small ones: 3 ms a transaction
		c.observe_wal_flush(500);           // and the fsync that makes one durable
	}
	EXPECT_NEAR(c.per_record_us, 7.0, 0.1);
	EXPECT_NEAR(c.fixed_us, 3000, 50);
	EXPECT_NEAR(c.wal_flush_us, 500, 5);
	EXPECT_NEAR(c.estimate_us(1000), 10500, 200);
	// Nonsense is ignored or bounded, never poisons the estimate.
	c.observe(0, 5000);
	c.observe(100, -1);
	c.observe(10000, 1e12);
	c.observe_wal_flush(-3);
	EXPECT_LE(c.per_record_us, 1000);
	EXPECT_GE(c.per_record_us, 0);
	EXPECT_NEAR(c.wal_flush_us, 500, 5);
}

struct SimResult {
	int64_t max_latency_us = 0;
	uint64_t batches = 0, records = 0, full_batches = 0;
};

// A flusher that follows plan_flush against arrivals at `rate` records/s,
// where a batch of n truly costs fixed + per_record * n, and every
// slow_every-th batch slow_factor times that. Time is virtual.
SimResult simulate(double rate, double fixed_us, double per_record_us, int64_t seconds, uint64_t slow_every = 0,
                   double slow_factor = 1) {
	SimResult r;
	FlushCost cost = kInitialFlushCost;
	std::deque<int64_t> ring; // arrival times
	double next_arrival = 0;
	int64_t now = 0, end = seconds * 1000000;
	auto arrive_until = [&](int64_t t) {
		while (next_arrival <= double(t)) {
			ring.push_back(int64_t(next_arrival));
			next_arrival += 1e6 / rate;
		}
	};
	while (now < end) {
		arrive_until(now);
		uint64_t n = std::min<uint64_t>(ring.size(), kBatch);
		FlushDecision d = plan_flush(n, kBatch, n ? now - ring.front() : 0, kInterval, cost, false);
		if (!d.go) {
			// Woken early when a batch fills up, as the listener does.
			int64_t wake = now + d.sleep_us;
			if (ring.size() < kBatch)
				wake = std::min<int64_t>(wake, int64_t(next_arrival + (kBatch - 1 - ring.size()) * 1e6 / rate) + 1);
			now = std::max(wake, now + 1);
			continue;
		}
		bool slow = slow_every != 0 && r.batches % slow_every == slow_every - 1;
		int64_t took = int64_t((fixed_us + per_record_us * double(n)) * (slow ? slow_factor : 1));
		now += took;
		for (uint64_t i = 0; i < n; i++) {
			r.max_latency_us = std::max(r.max_latency_us, now - ring.front());
			ring.pop_front();
		}
		cost.observe(n, double(took));
		r.batches++;
		r.records += n;
		r.full_batches += n == kBatch;
	}
	return r;
}

TEST(FlushPolicy, SimulatedFlusherMeetsTheIntervalAndStillBatches) {
	// 7.5 µs a record: the flusher could write 133,000 records/s.
	for (double rate : {10.0, 1000.0, 25000.0, 100000.0, 120000.0}) {
		SimResult r = simulate(rate, 2500, 7.5, 20);
		SCOPED_TRACE(rate);
		EXPECT_LE(r.max_latency_us, kInterval + 5000) << "commit latency";
		// A few commits per interval (smaller batches near capacity, so one
		// slow batch leaves no backlog), never one per record.
		EXPECT_LE(double(r.batches), 20 * 1e6 / double(kInterval) * 5 + 20);
		EXPECT_GE(double(r.records), rate * 19);
	}
}

TEST(FlushPolicy, ABatchThreeTimesSlowerStillCommitsInTime) {
	// As measured: now and then a batch takes up to three times what batches
	// of its size take (the history index's pages missing from the caches).
	for (double rate : {25000.0, 60000.0, 100000.0}) {
		SimResult r = simulate(rate, 2500, 5, 20, 7, 2.9);
		SCOPED_TRACE(rate);
		EXPECT_LE(r.max_latency_us, kInterval + 5000) << "commit latency";
	}
}

TEST(FlushPolicy, PastCapacityBatchesAreFull) {
	SimResult r = simulate(200000, 2500, 7.5, 10);
	EXPECT_GT(r.full_batches, r.batches * 9 / 10);
}

} // namespace
