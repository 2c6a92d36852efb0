// Log-linear latency histogram: quantile error bounds against exact quantiles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/histogram.hpp"

using namespace lt;

namespace {

// 16 sub-buckets per power of two: a bucket is at most 1/16 of its lower
// edge wide, so reporting the upper edge over-states by less than 6.25 %.
constexpr double kBound = 1.0 / 16;

Histogram empty() {
	Histogram h;
	std::memset(&h, 0, sizeof h);
	return h;
}

// The histogram's answer for quantile q must lie between the exact sample at
// the nearest lower rank and the exact sample at the nearest higher rank
// (plus the bucket error), whatever rank convention is used.
void check_quantiles(const std::vector<uint64_t> &samples, const char *what) {
	Histogram h = empty();
	for (uint64_t v : samples)
		h.add(v);
	std::vector<uint64_t> s = samples;
	std::sort(s.begin(), s.end());
	const size_t n = s.size();
	ASSERT_EQ(h.total(), n);
	for (double q : {0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0}) {
		double r = q * double(n);
		size_t lo = r < 2 ? 0 : size_t(std::floor(r)) - 2;
		size_t hi = std::min(n - 1, size_t(std::ceil(r)) + 1);
		uint64_t got = h.quantile(q);
		// Never below the true value (it reports the bucket's upper edge) ...
		EXPECT_GE(got, s[lo]) << what << " q=" << q;
		// ... and never more than the bucket error above it.
		EXPECT_LE(double(got), double(s[hi]) * (1 + kBound)) << what << " q=" << q;
	}
}

} // namespace

TEST(Histogram, EmptyIsZero) {
	Histogram h = empty();
	EXPECT_EQ(h.total(), 0u);
	for (double q : {0.0, 0.5, 0.99, 1.0})
		EXPECT_EQ(h.quantile(q), 0u);
}

TEST(Histogram, SmallValuesAreExact) {
	for (uint64_t v = 0; v < 16; v++) {
		Histogram h = empty();
		h.add(v);
		EXPECT_EQ(h.quantile(0.5), v);
		EXPECT_EQ(h.quantile(1.0), v);
	}
}

TEST(Histogram, SingleValueWithinBound) {
	std::mt19937_64 rng(7);
	std::vector<uint64_t> vals = {16, 17, 31, 32, 33, 1000, 1023, 1024, 1025, 65535, 65536, 1000000, (uint64_t{1} << 39) + 12345};
	for (int i = 0; i < 2000; i++)
		vals.push_back(rng() >> (24 + rng() % 40));
	for (uint64_t v : vals) {
		if (v >= (uint64_t{1} << 40))
			continue;
		Histogram h = empty();
		h.add(v);
		uint64_t got = h.quantile(0.5);
		EXPECT_GE(got, v) << v;
		EXPECT_LE(double(got), double(v) * (1 + kBound)) << v;
		EXPECT_EQ(Histogram::upper(Histogram::bucket(v)), got);
	}
}

TEST(Histogram, BucketsAreOrderedAndContiguous) {
	// Every bucket's upper edge is the value just below the next bucket.
	for (int b = 0; b + 1 < Histogram::kBuckets; b++) {
		uint64_t u = Histogram::upper(b);
		EXPECT_EQ(Histogram::bucket(u), b) << b;
		EXPECT_EQ(Histogram::bucket(u + 1), b + 1) << b;
	}
	EXPECT_EQ(Histogram::bucket(0), 0);
	EXPECT_LT(Histogram::bucket(~uint64_t{0}), Histogram::kBuckets);
	EXPECT_GE(Histogram::bucket(~uint64_t{0}), 0);
}

TEST(Histogram, HugeValuesSaturate) {
	Histogram h = empty();
	h.add(~uint64_t{0});
	h.add(uint64_t{1} << 50);
	EXPECT_EQ(h.total(), 2u);
	EXPECT_GE(h.quantile(1.0), (uint64_t{1} << 40) - 1); // top bucket, no crash, no wrap
}

TEST(Histogram, AddWithCount) {
	Histogram h = empty();
	h.add(100, 99);
	h.add(5000, 1);
	EXPECT_EQ(h.total(), 100u);
	EXPECT_LE(h.quantile(0.5), 106u);
	EXPECT_GE(h.quantile(0.5), 100u);
	EXPECT_GE(h.quantile(1.0), 5000u);
	EXPECT_LE(h.quantile(1.0), 5313u);
}

TEST(Histogram, QuantilesOfRandomSamples) {
	std::mt19937_64 rng(2024);
	{
		std::vector<uint64_t> v;
		std::uniform_int_distribution<uint64_t> d(0, 1000000);
		for (int i = 0; i < 100000; i++)
			v.push_back(d(rng));
		check_quantiles(v, "uniform");
	}
	{
		std::vector<uint64_t> v;
		std::lognormal_distribution<double> d(8.0, 2.0); // latencies in us: heavy tail
		for (int i = 0; i < 100000; i++)
			v.push_back(uint64_t(std::min(d(rng), 1e11)));
		check_quantiles(v, "lognormal");
	}
	{
		std::vector<uint64_t> v;
		std::exponential_distribution<double> d(1.0 / 5000);
		for (int i = 0; i < 50000; i++)
			v.push_back(uint64_t(d(rng)));
		check_quantiles(v, "exponential");
	}
	{
		// Few distinct values: many ties.
		std::vector<uint64_t> v;
		for (int i = 0; i < 10000; i++)
			v.push_back(uint64_t(1) << (i % 20));
		check_quantiles(v, "powers of two");
	}
	for (size_t n : {1u, 2u, 3u, 10u}) {
		std::vector<uint64_t> v;
		for (size_t i = 0; i < n; i++)
			v.push_back(rng() % 100000);
		check_quantiles(v, "tiny");
	}
}

// A quantile is its bucket's upper edge: at a power of two that is the worst
// case, just under 6.25 % high (as histogram.hpp says).
TEST(Histogram, WorstCaseIsUnderSixAndAQuarterPercent) {
	Histogram h = empty();
	h.add(uint64_t{1} << 20);
	EXPECT_LT(double(h.quantile(0.5)), double(uint64_t{1} << 20) * 1.0625);
	EXPECT_GT(double(h.quantile(0.5)), double(uint64_t{1} << 20) * 1.06) << "the bound is tight";
}

// A copy taken earlier turns the histogram into "since then": what
// livetrack.reset_stats() does without writing to the live histogram.
TEST(Histogram, QuantileSinceACopy) {
	Histogram h{}, base{};
	for (int i = 0; i < 1000; i++)
		h.add(5000); // an old slow period
	h.copy_to(base);
	EXPECT_EQ(h.total(&base), 0u);
	EXPECT_EQ(h.quantile(0.99, &base), 0u);
	for (int i = 0; i < 100; i++)
		h.add(100);
	EXPECT_EQ(h.total(&base), 100u);
	EXPECT_GE(h.quantile(0.99, &base), 100u);
	EXPECT_LT(h.quantile(0.99, &base), 107u);
	EXPECT_GE(h.quantile(0.99), 5000u); // without the copy the old period shows
	EXPECT_EQ(h.total(), 1100u);
}
