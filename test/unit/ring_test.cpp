// MPSC ring over a plain heap buffer standing in for shared memory, and the
// consumer group that lets several flushers share it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "core/consumer_group.hpp"
#include "core/fix.hpp"
#include "core/ring.hpp"

using namespace lt;

namespace {

struct Item {
	uint64_t producer;
	uint64_t seq;
	uint64_t check; // producer ^ seq * k: catches torn copies
};

template <typename T> struct HeapRing {
	std::unique_ptr<uint8_t[]> mem;
	Ring<T> ring{};
	explicit HeapRing(uint64_t capacity) {
		size_t n = Ring<T>::bytes_needed(capacity);
		mem.reset(new uint8_t[n + 64]);
		// Garbage first: format() must not rely on zeroed memory.
		std::memset(mem.get(), 0xAB, n + 64);
		void *p = mem.get();
		size_t space = n + 64;
		void *aligned = std::align(64, n, p, space);
		Ring<T>::format(aligned, capacity);
		ring.attach(aligned);
	}
};

Item item(uint64_t p, uint64_t s) { return Item{p, s, p ^ (s * 0x9E3779B97F4A7C15ULL)}; }

} // namespace

TEST(Ring, CapacityRoundsUpToPowerOfTwo) {
	EXPECT_EQ(Ring<uint64_t>::round_up(0), 1u);
	EXPECT_EQ(Ring<uint64_t>::round_up(1), 1u);
	EXPECT_EQ(Ring<uint64_t>::round_up(2), 2u);
	EXPECT_EQ(Ring<uint64_t>::round_up(3), 4u);
	EXPECT_EQ(Ring<uint64_t>::round_up(1000), 1024u);
	EXPECT_EQ(Ring<uint64_t>::round_up(1024), 1024u);
	EXPECT_EQ(Ring<uint64_t>::round_up(1025), 2048u);
	for (uint64_t cap : {1u, 3u, 5u, 8u, 100u}) {
		HeapRing<uint64_t> r(cap);
		uint64_t want = Ring<uint64_t>::round_up(cap);
		EXPECT_EQ(r.ring.capacity(), want);
		EXPECT_GE(Ring<uint64_t>::bytes_needed(cap), sizeof(RingHeader) + want * sizeof(RingSlot<uint64_t>));
		EXPECT_EQ(r.ring.size(), 0u);
		EXPECT_EQ(r.ring.free_slots(), want);
		EXPECT_EQ(r.ring.head(), 0u);
		EXPECT_EQ(r.ring.tail(), 0u);
		EXPECT_EQ(r.ring.ready(1000), 0u);
	}
}

TEST(Ring, PushUntilFullThenReleaseMakesRoom) {
	HeapRing<uint64_t> r(5); // 8 slots
	Ring<uint64_t> &q = r.ring;
	for (uint64_t i = 0; i < 8; i++) {
		uint64_t pos = 999;
		ASSERT_TRUE(q.push(100 + i, &pos)) << i;
		EXPECT_EQ(pos, i);
		EXPECT_EQ(q.size(), i + 1);
		EXPECT_EQ(q.free_slots(), 8 - i - 1);
	}
	uint64_t pos = 999;
	EXPECT_FALSE(q.push(1, &pos));
	EXPECT_EQ(pos, 999u); // untouched on failure
	EXPECT_EQ(q.head(), 8u);
	EXPECT_EQ(q.size(), 8u);
	EXPECT_EQ(q.ready(100), 8u); // never more than capacity
	EXPECT_EQ(q.ready(3), 3u);
	// Peeking does not consume.
	for (int rep = 0; rep < 2; rep++)
		for (uint64_t i = 0; i < 8; i++) {
			uint64_t v = 0;
			ASSERT_TRUE(q.peek(i, v));
			EXPECT_EQ(v, 100 + i);
		}
	uint64_t v;
	EXPECT_FALSE(q.peek(8, v)); // one past the end wraps onto slot 0: not "filled for pos 8"
	EXPECT_EQ(q.tail(), 0u);
	EXPECT_FALSE(q.push(1));
	// Releasing 3 advances the watermark and frees exactly 3 slots.
	q.release(3);
	EXPECT_EQ(q.tail(), 3u);
	EXPECT_EQ(q.size(), 5u);
	EXPECT_EQ(q.free_slots(), 3u);
	ASSERT_TRUE(q.peek(0, v));
	EXPECT_EQ(v, 103u);
	for (uint64_t i = 0; i < 3; i++) {
		ASSERT_TRUE(q.push(200 + i, &pos));
		EXPECT_EQ(pos, 8 + i);
	}
	EXPECT_FALSE(q.push(1));
	EXPECT_EQ(q.ready(100), 8u);
	for (uint64_t i = 0; i < 8; i++) {
		ASSERT_TRUE(q.peek(i, v));
		EXPECT_EQ(v, i < 5 ? 103 + i : 200 + (i - 5));
	}
}

TEST(Ring, RecordsStayUntilReleased) {
	HeapRing<uint64_t> r(4);
	Ring<uint64_t> &q = r.ring;
	ASSERT_TRUE(q.push(1));
	ASSERT_TRUE(q.push(2));
	// A consumer that looked at the records but failed its transaction
	// simply looks again: nothing was lost.
	uint64_t v;
	ASSERT_EQ(q.ready(10), 2u);
	ASSERT_TRUE(q.peek(0, v));
	EXPECT_EQ(v, 1u);
	ASSERT_EQ(q.ready(10), 2u);
	ASSERT_TRUE(q.peek(1, v));
	EXPECT_EQ(v, 2u);
	EXPECT_EQ(q.size(), 2u);
	EXPECT_EQ(q.tail(), 0u);
	q.release(q.ready(10));
	EXPECT_EQ(q.tail(), 2u);
	EXPECT_EQ(q.size(), 0u);
	EXPECT_EQ(q.ready(10), 0u);
	EXPECT_FALSE(q.peek(0, v));
}

TEST(Ring, TailIsTheCommitWatermark) {
	HeapRing<uint64_t> r(16);
	Ring<uint64_t> &q = r.ring;
	std::vector<uint64_t> pos(10);
	for (uint64_t i = 0; i < 10; i++)
		ASSERT_TRUE(q.push(i, &pos[i]));
	q.release(4);
	// A record is committed exactly when tail() > its position.
	for (uint64_t i = 0; i < 10; i++)
		EXPECT_EQ(q.tail() > pos[i], i < 4) << i;
	q.release(6);
	for (uint64_t i = 0; i < 10; i++)
		EXPECT_GT(q.tail(), pos[i]);
	EXPECT_EQ(q.head(), 10u);
}

TEST(Ring, ZeroReleaseIsNoop) {
	HeapRing<uint64_t> r(4);
	ASSERT_TRUE(r.ring.push(7));
	r.ring.release(0);
	EXPECT_EQ(r.ring.tail(), 0u);
	EXPECT_EQ(r.ring.size(), 1u);
}

TEST(Ring, WraparoundManyCycles) {
	HeapRing<Ping> r(8);
	Ring<Ping> &q = r.ring;
	uint64_t next_in = 0, next_out = 0;
	uint32_t rng = 1;
	for (int step = 0; step < 200000; step++) {
		rng = rng * 1103515245u + 12345u;
		uint32_t n_push = (rng >> 16) % 10;
		for (uint32_t k = 0; k < n_push; k++) {
			Ping p{};
			p.fix.driver_id = next_in;
			p.received_us = int64_t(~next_in);
			uint64_t pos;
			bool ok = q.push(p, &pos);
			ASSERT_EQ(ok, next_in - next_out < 8) << step;
			if (!ok)
				break;
			ASSERT_EQ(pos, next_in);
			next_in++;
		}
		uint64_t ready = q.ready((rng >> 8) % 12);
		ASSERT_LE(ready, next_in - next_out);
		for (uint64_t i = 0; i < ready; i++) {
			Ping p;
			ASSERT_TRUE(q.peek(i, p));
			ASSERT_EQ(p.fix.driver_id, next_out + i);
			ASSERT_EQ(p.received_us, int64_t(~(next_out + i)));
		}
		q.release(ready);
		next_out += ready;
		ASSERT_EQ(q.tail(), next_out);
		ASSERT_EQ(q.head(), next_in);
		ASSERT_EQ(q.size(), next_in - next_out);
	}
	EXPECT_GT(next_out, 100000u); // many times around an 8-slot ring
}

TEST(Ring, WorksAtAnyMappingAddress) {
	// Positions, not pointers: copy the bytes elsewhere and attach there.
	const uint64_t cap = 8;
	size_t n = Ring<uint64_t>::bytes_needed(cap);
	size_t alloc = (n + 63) / 64 * 64;
	std::unique_ptr<void, void (*)(void *)> a(std::aligned_alloc(64, alloc), std::free),
	    b(std::aligned_alloc(64, alloc), std::free);
	Ring<uint64_t>::format(a.get(), cap);
	Ring<uint64_t> q{};
	q.attach(a.get());
	for (uint64_t i = 0; i < 5; i++)
		ASSERT_TRUE(q.push(i * 3));
	q.release(2);
	std::memcpy(b.get(), a.get(), n);
	Ring<uint64_t> q2{};
	q2.attach(b.get());
	EXPECT_EQ(q2.size(), 3u);
	uint64_t v;
	ASSERT_TRUE(q2.peek(0, v));
	EXPECT_EQ(v, 6u);
	EXPECT_EQ(q2.ready(10), 3u);
}

TEST(Ring, ConcurrentProducersOneConsumerExactAccounting) {
	constexpr int kProducers = 4;
	constexpr uint64_t kPerProducer = 500000; // 2 million records in all
	HeapRing<Item> r(1024);
	Ring<Item> &q = r.ring;
	std::atomic<bool> go{false};
	std::vector<std::thread> producers;
	std::atomic<uint64_t> full_retries{0};
	for (int p = 0; p < kProducers; p++) {
		producers.emplace_back([&, p] {
			while (!go.load())
				std::this_thread::yield();
			uint64_t retries = 0;
			for (uint64_t s = 0; s < kPerProducer; s++) {
				while (!q.push(item(uint64_t(p), s))) {
					retries++;
					std::this_thread::yield();
				}
			}
			full_retries += retries;
		});
	}
	std::vector<uint64_t> next(kProducers, 0);
	uint64_t total = 0, bad = 0, out_of_order = 0;
	go = true;
	const uint64_t want = kProducers * kPerProducer;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
	while (total < want) {
		uint64_t n = q.ready(256);
		if (n == 0) {
			if (std::chrono::steady_clock::now() > deadline)
				break;
			std::this_thread::yield();
			continue;
		}
		for (uint64_t i = 0; i < n; i++) {
			Item it;
			if (!q.peek(i, it)) {
				bad++;
				continue;
			}
			if (it.producer >= kProducers || it.check != (it.producer ^ (it.seq * 0x9E3779B97F4A7C15ULL))) {
				bad++;
				continue;
			}
			// Per-producer FIFO: exactly the next sequence number, so no loss
			// and no duplicate either.
			if (it.seq != next[it.producer])
				out_of_order++;
			next[it.producer] = it.seq + 1;
		}
		q.release(n);
		total += n;
	}
	for (auto &t : producers)
		t.join();
	EXPECT_EQ(total, want);
	EXPECT_EQ(bad, 0u);
	EXPECT_EQ(out_of_order, 0u);
	for (int p = 0; p < kProducers; p++)
		EXPECT_EQ(next[size_t(p)], kPerProducer) << p;
	EXPECT_EQ(q.size(), 0u);
	EXPECT_EQ(q.head(), want);
	EXPECT_EQ(q.tail(), want);
	EXPECT_EQ(q.ready(10), 0u);
}

TEST(Ring, ConcurrentProducersNeverOverfill) {
	// Producers race for a small ring the consumer never drains: exactly
	// `capacity` pushes succeed, with distinct positions 0..capacity-1.
	constexpr int kProducers = 4;
	HeapRing<uint64_t> r(64);
	Ring<uint64_t> &q = r.ring;
	std::atomic<bool> go{false};
	std::vector<std::vector<uint64_t>> got(kProducers);
	std::vector<std::thread> th;
	for (int p = 0; p < kProducers; p++)
		th.emplace_back([&, p] {
			while (!go.load())
				std::this_thread::yield();
			for (int i = 0; i < 1000; i++) {
				uint64_t pos;
				if (q.push(uint64_t(p) << 32 | uint64_t(i), &pos))
					got[size_t(p)].push_back(pos);
			}
		});
	go = true;
	for (auto &t : th)
		t.join();
	std::vector<int> seen(64, 0);
	size_t n = 0;
	for (auto &g : got)
		for (uint64_t pos : g) {
			ASSERT_LT(pos, 64u);
			seen[pos]++;
			n++;
		}
	EXPECT_EQ(n, 64u);
	for (int s : seen)
		EXPECT_EQ(s, 1);
	EXPECT_EQ(q.ready(1000), 64u);
	// Every value is at the position its producer was told.
	for (int p = 0; p < kProducers; p++)
		for (size_t k = 0; k < got[size_t(p)].size(); k++) {
			uint64_t v;
			ASSERT_TRUE(q.peek(got[size_t(p)][k], v));
			EXPECT_EQ(v >> 32, uint64_t(p));
		}
}

// Consumer groups --------------------------------------------------------------

TEST(ConsumerGroup, OwnerIsStableAndSpreadsStridedIds) {
	EXPECT_EQ(consumer_of(12345, 1), 0u);
	EXPECT_EQ(consumer_of(12345, 0), 0u);
	for (uint64_t stride : {1ull, 2ull, 1000ull, 1ull << 20})
		for (uint32_t n : {2u, 3u, 8u}) {
			std::vector<int> per(n, 0);
			constexpr int kKeys = 100000;
			for (uint64_t k = 0; k < kKeys; k++) {
				uint32_t c = consumer_of(k * stride, n);
				ASSERT_LT(c, n);
				ASSERT_EQ(c, consumer_of(k * stride, n)); // a driver always goes to the same one
				per[c]++;
			}
			for (uint32_t c = 0; c < n; c++)
				EXPECT_NEAR(per[c], kKeys / int(n), kKeys / int(n) / 20) << "stride " << stride << ", " << n;
		}
}

TEST(ConsumerGroup, RingIsReleasedUpToTheSlowestConsumer) {
	HeapRing<uint64_t> r(8);
	Ring<uint64_t> &q = r.ring;
	ConsumerGroup g;
	std::memset(&g, 0xAB, sizeof g);
	consumer_group_init(g, 2, 0);
	for (uint64_t i = 0; i < 8; i++)
		ASSERT_TRUE(q.push(100 + i));
	EXPECT_FALSE(q.push(1));

	EXPECT_FALSE(consumer_finish(g, q, 0, 6)); // consumer 1 has done nothing yet
	EXPECT_EQ(q.tail(), 0u);
	EXPECT_FALSE(q.push(1));
	uint64_t v;
	ASSERT_TRUE(q.peek_at(5, v)); // still there for consumer 1
	EXPECT_EQ(v, 105u);

	EXPECT_TRUE(consumer_finish(g, q, 1, 4));
	EXPECT_EQ(q.tail(), 4u);
	EXPECT_EQ(consumer_done(g, 0), 6u);
	EXPECT_EQ(consumer_done(g, 1), 4u);
	for (uint64_t i = 0; i < 4; i++)
		EXPECT_TRUE(q.push(200 + i)); // positions 8..11 reuse the released slots
	EXPECT_FALSE(q.push(1));
	EXPECT_FALSE(q.peek_at(3, v)); // released
	ASSERT_TRUE(q.peek_at(4, v));
	EXPECT_EQ(v, 104u);
	ASSERT_TRUE(q.peek_at(9, v));
	EXPECT_EQ(v, 201u);
	EXPECT_EQ(q.ready_from(6, 100), 6u); // 6..11
	EXPECT_EQ(q.ready_from(12, 100), 0u);

	EXPECT_TRUE(consumer_finish(g, q, 1, 12));
	EXPECT_EQ(q.tail(), 6u); // consumer 0 is the slowest now
	EXPECT_TRUE(consumer_finish(g, q, 0, 12));
	EXPECT_EQ(q.tail(), 12u);
	EXPECT_EQ(q.size(), 0u);
}

TEST(ConsumerGroup, OneConsumerReleasesAsItGoes) {
	HeapRing<uint64_t> r(4);
	ConsumerGroup g;
	consumer_group_init(g, 1, 0);
	for (uint64_t i = 0; i < 3; i++)
		ASSERT_TRUE(r.ring.push(i));
	EXPECT_TRUE(consumer_finish(g, r.ring, 0, 2));
	EXPECT_EQ(r.ring.tail(), 2u);
	EXPECT_FALSE(consumer_finish(g, r.ring, 0, 2));
}

TEST(ConsumerGroup, ConcurrentConsumersTakeEachRecordOnceAndNeverLoseOne) {
	// A producer streams items into a small ring; three consumer threads each
	// take their share by key, check the item is intact (a slot released too
	// early would have been overwritten by the producer), and finish in
	// uneven chunks. Every item is taken exactly once, by its owner.
	constexpr uint32_t kConsumers = 3;
	constexpr uint64_t kItems = 200000;
	HeapRing<Item> r(256);
	Ring<Item> &q = r.ring;
	ConsumerGroup g;
	consumer_group_init(g, kConsumers, 0);
	std::vector<std::atomic<int>> taken(kItems);
	std::atomic<bool> bad{false};

	std::thread producer([&] {
		for (uint64_t i = 0; i < kItems;) {
			Item it{i % 977, i, (i % 977) ^ (i * 0x9E3779B97F4A7C15ull)};
			if (q.push(it))
				i++;
			else
				std::this_thread::yield();
		}
	});
	std::vector<std::thread> consumers;
	for (uint32_t c = 0; c < kConsumers; c++)
		consumers.emplace_back([&, c] {
			uint64_t pos = 0;
			unsigned chunk = 1 + c * 7;
			while (pos < kItems) {
				uint64_t n = q.ready_from(pos, chunk);
				if (n == 0) {
					std::this_thread::yield();
					continue;
				}
				for (uint64_t k = 0; k < n; k++) {
					Item it;
					if (!q.peek_at(pos + k, it) || it.seq != pos + k ||
					    it.check != (it.producer ^ (it.seq * 0x9E3779B97F4A7C15ull)))
						bad = true;
					else if (consumer_of(it.producer, kConsumers) == c)
						taken[it.seq]++;
				}
				pos += n;
				consumer_finish(g, q, c, pos);
				chunk = chunk % 61 + 1;
			}
		});
	producer.join();
	for (auto &t : consumers)
		t.join();
	EXPECT_FALSE(bad.load());
	for (uint64_t i = 0; i < kItems; i++)
		ASSERT_EQ(taken[i].load(), 1) << i;
	EXPECT_EQ(q.tail(), kItems);
}
