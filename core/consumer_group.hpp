// Several consumers sharing one ring, each taking its own share of the records.
//
// One flusher process writes history at about 100,000 records/s on this kind
// of machine once the history index no longer fits in the CPU caches, which is
// where a fleet of 100,000 drivers puts it. A second process doubles that, but
// it must not write a record twice or release one before it is durable. So
// every consumer reads the whole ring and takes the records whose key hashes
// to it (a driver always goes to the same consumer, so per-driver work never
// races); it notes how far it has finished, and the ring is released up to
// the slowest consumer's mark. The release watermark keeps its meaning:
// everything before it is committed.
#pragma once

#include <sched.h>

#include <cstdint>
#include <type_traits>

#include "atomics.hpp"
#include "ring.hpp"

namespace lt {

constexpr uint32_t kMaxConsumers = 8;

struct ConsumerGroup {
	uint32_t lock;  // 0 free, 1 held: serialises releases (see finish)
	uint32_t count; // consumers 0..count-1
	// Consumer i has finished every record it owns before done[i].
	uint64_t done[kMaxConsumers];
};
static_assert(std::is_trivially_copyable_v<ConsumerGroup>);

inline void consumer_group_init(ConsumerGroup &g, uint32_t count, uint64_t start) {
	g.lock = 0;
	g.count = count < 1 ? 1 : count > kMaxConsumers ? kMaxConsumers : count;
	for (uint32_t i = 0; i < kMaxConsumers; i++)
		g.done[i] = start;
}

// Which consumer owns a key. A multiplicative hash, so that ids handed out
// with a stride (all even, say) still spread evenly.
inline uint32_t consumer_of(uint64_t key, uint32_t count) {
	if (count <= 1)
		return 0;
	return uint32_t(((key * 0x9E3779B97F4A7C15ull) >> 32) % count);
}

inline uint64_t consumer_done(const ConsumerGroup &g, uint32_t i) { return load_acquire(g.done[i]); }

// Consumer i has finished its records before pos (pos never goes back).
// Releases the ring up to the lowest mark; true if the ring's tail moved.
// Two consumers must not release at once: a late release would overwrite
// slots that a producer has already refilled. Hence the lock, held for the
// few stores of a release and never across anything that can fail.
template <typename T> bool consumer_finish(ConsumerGroup &g, Ring<T> &ring, uint32_t i, uint64_t pos) {
	store_release(g.done[i], pos);
	for (uint32_t spins = 0;; spins++) {
		uint32_t expected = 0;
		if (cas(g.lock, expected, 1u))
			break;
		// The holder may have been preempted mid-release (two cores, busy
		// flushers): give it the CPU instead of spinning out a whole slice.
		if (spins % 64 == 63)
			sched_yield();
		else
			cpu_relax();
	}
	uint64_t low = pos;
	for (uint32_t c = 0; c < g.count; c++) {
		uint64_t d = load_acquire(g.done[c]);
		if (d < low)
			low = d;
	}
	uint64_t tail = ring.tail();
	bool moved = low > tail;
	if (moved)
		ring.release(low - tail);
	store_release(g.lock, 0u);
	return moved;
}

} // namespace lt
