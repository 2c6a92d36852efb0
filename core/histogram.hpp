// Log-linear latency histogram (16 sub-buckets per power of two: a quantile is
// reported as its bucket's upper edge, less than 6.25 % above the true value).
// Trivially copyable; one writer, any number of readers via relaxed loads.
#pragma once

#include <cstdint>
#include <type_traits>

#include "atomics.hpp"

namespace lt {

struct Histogram {
	static constexpr int kSub = 4; // log2 of sub-buckets per octave
	static constexpr int kBuckets = (1 << kSub) + (40 - kSub) * (1 << kSub);
	uint64_t counts[kBuckets];

	static int bucket(uint64_t v) {
		if (v < (1u << kSub))
			return int(v);
		int msb = 63 - __builtin_clzll(v);
		if (msb >= 40)
			return kBuckets - 1;
		int sub = int((v >> (msb - kSub)) & ((1u << kSub) - 1));
		return (1 << kSub) + (msb - kSub) * (1 << kSub) + sub;
	}
	// Upper edge of a bucket: what a percentile reports.
	static uint64_t upper(int b) {
		if (b < (1 << kSub))
			return uint64_t(b);
		int octave = (b - (1 << kSub)) >> kSub, sub = (b - (1 << kSub)) & ((1 << kSub) - 1);
		int msb = octave + kSub;
		return (uint64_t(1) << msb) + (uint64_t(sub + 1) << (msb - kSub)) - 1;
	}

	void add(uint64_t v, uint64_t n = 1) { bump(counts[bucket(v)], n); }
	// For a histogram that several processes add to.
	void add_shared(uint64_t v, uint64_t n = 1) { fetch_add_relaxed(counts[bucket(v)], n); }

	// What bucket i gained since `since` (a copy taken earlier), or all of it.
	uint64_t count(int i, const Histogram *since = nullptr) const {
		uint64_t now = load_relaxed(counts[i]), then = since ? load_relaxed(since->counts[i]) : 0;
		return now > then ? now - then : 0;
	}
	uint64_t total(const Histogram *since = nullptr) const {
		uint64_t t = 0;
		for (int i = 0; i < kBuckets; i++)
			t += count(i, since);
		return t;
	}
	// q in [0,1], over what was added since `since` (or ever); 0 when empty.
	uint64_t quantile(double q, const Histogram *since = nullptr) const {
		uint64_t t = total(since);
		if (t == 0)
			return 0;
		uint64_t want = uint64_t(q * double(t) + 0.5), seen = 0;
		if (want < 1)
			want = 1;
		for (int i = 0; i < kBuckets; i++) {
			seen += count(i, since);
			if (seen >= want)
				return upper(i);
		}
		return upper(kBuckets - 1);
	}
	// Copies the counts into `to`, which a reader can then pass as `since`.
	// Only `to` is written, so this never races with the histogram's writer.
	void copy_to(Histogram &to) const {
		for (int i = 0; i < kBuckets; i++)
			store_relaxed(to.counts[i], load_relaxed(counts[i]));
	}
};
static_assert(std::is_trivially_copyable_v<Histogram>);

} // namespace lt
