// One driver's slot in the live state, and what readers copy out of it.
// Shared memory: plain data, positions instead of pointers.
#pragma once

#include <cstdint>
#include <type_traits>

#include "atomics.hpp"

namespace lt {

struct LiveEntry {
	uint32_t seq; // seqlock: odd while an update is in progress
	uint8_t status;
	uint8_t pad0[3];
	uint64_t driver_id; // immutable once the entry is published
	int64_t ts_ms;
	int64_t received_us;
	int32_t lat_e7;
	int32_t lon_e7;
	uint16_t speed_cms;
	uint16_t heading_cd;
	uint16_t accuracy_dm;
	uint16_t pad1;
	uint8_t pad2[16]; // keeps entries on one cache line each
};
static_assert(sizeof(LiveEntry) == 64, "one cache line per driver");
static_assert(std::is_trivially_copyable_v<LiveEntry>);

struct LiveHeader {
	uint32_t capacity;  // livetrack.max_drivers
	uint32_t hash_mask; // hash slots - 1
	uint32_t count;     // entries published so far
	uint32_t pad;
};
static_assert(std::is_trivially_copyable_v<LiveHeader>);

// A consistent copy of one entry, as readers see it.
struct LiveView {
	uint64_t driver_id;
	int64_t ts_ms;
	int64_t received_us;
	int32_t lat_e7;
	int32_t lon_e7;
	uint16_t speed_cms;
	uint16_t heading_cd;
	uint16_t accuracy_dm;
	uint8_t status;
};

constexpr uint32_t kNoEntry = 0xFFFFFFFFu;

// The entry's seqlock counter is also its writers' lock: CAS from even to odd.
// Readers never take it; they retry while it is odd or changed.
inline void entry_lock(LiveEntry &e) {
	for (;;) {
		uint32_t s = load_relaxed(e.seq);
		if ((s & 1) == 0 && cas(e.seq, s, s + 1))
			break;
		cpu_relax();
	}
	fence_release();
}
inline void entry_unlock(LiveEntry &e) { store_release(e.seq, load_relaxed(e.seq) + 1); }

inline uint64_t mix64(uint64_t x) {
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

} // namespace lt
