// The live state: one entry per driver with its newest fix, in shared memory.
//
// Writers: the listener applies fixes (it alone inserts drivers and moves
// positions); any backend may change a driver's status. Each entry is a
// seqlock whose counter doubles as the writers' lock (CAS from even to odd),
// so readers never block writers and never take a lock.
//
// Lookup is an open-addressing hash of driver_id -> entry index. Entries are
// never removed while the table is in use, so a published slot stays valid
// and readers need no retry on the hash itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "fix.hpp"

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
	uint32_t cell; // spatial index bookkeeping (see grid_index.hpp)
	uint32_t next;
	uint32_t prev;
	uint32_t pad2;
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

enum class Applied : uint8_t {
	Moved, // the fix is now the driver's live position
	Late,  // not newer than the live position: history only
	Full,  // new driver but livetrack.max_drivers reached: history only
};

constexpr uint32_t kNoEntry = 0xFFFFFFFFu;

// A process-local view of the table; trivially constructible so it can be a
// plain global in the extension.
class LiveTable {
public:
	static size_t bytes_needed(uint32_t capacity);
	static void format(void *mem, uint32_t capacity);
	void attach(void *mem);
	bool attached() const { return h_ != nullptr; }

	uint32_t capacity() const { return h_->capacity; }
	uint32_t size() const;

	// Listener only. *status_out is the driver's status after the fix;
	// *register_out says the driver is new or changed status (persist it).
	Applied apply(const Fix &f, int64_t received_us, uint8_t *status_out, bool *register_out);

	// Any process. False if the driver is unknown.
	bool set_status(uint64_t driver_id, uint8_t status);

	// Any process; lock-free.
	uint32_t find(uint64_t driver_id) const;
	bool get(uint64_t driver_id, LiveView &out) const;
	void read(uint32_t index, LiveView &out) const; // index < size()

	// Listener only, with no readers that matter (the extension was dropped).
	void clear();

	LiveEntry *entries() const { return entries_; }

private:
	void lock(LiveEntry &e);
	void unlock(LiveEntry &e);

	LiveHeader *h_;
	uint32_t *hash_; // entry index + 1; 0 = empty
	LiveEntry *entries_;
};

inline uint64_t mix64(uint64_t x) {
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

} // namespace lt
