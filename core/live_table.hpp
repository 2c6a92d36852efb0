// The live state: one entry per driver with its newest fix, in shared memory.
//
// Writers: the listener applies fixes (it alone inserts drivers and moves
// positions); any backend may change a driver's status. Each entry is a
// seqlock whose counter doubles as the writers' lock (CAS from even to odd),
// so readers never block writers and never take a lock.
//
// A grid over the entries (grid_index.hpp) answers spatial queries.
//
// Lookup is an open-addressing hash of driver_id -> entry index. Entries are
// never removed while the table is in use, so a published slot stays valid
// and readers need no retry on the hash itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "fix.hpp"
#include "grid_index.hpp"
#include "live_entry.hpp"

namespace lt {

enum class Applied : uint8_t {
	Moved, // the fix is now the driver's live position
	Late,  // not newer than the live position: history only
	Full,  // new driver but livetrack.max_drivers reached: history only
};

// A process-local view of the table; trivially constructible so it can be a
// plain global in the extension.
class LiveTable {
public:
	static size_t bytes_needed(uint32_t capacity);
	// `mem` must be 64-byte aligned (entries are laid out on cache lines).
	static void format(void *mem, uint32_t capacity);
	void attach(void *mem);
	bool attached() const { return h_ != nullptr; }

	uint32_t capacity() const { return h_->capacity; }
	uint32_t size() const;

	// Listener only. *status_out is the driver's status after the fix;
	// *register_out says the driver is new or changed status (persist it).
	// The spatial index follows every move. *index_out (if given) is the entry.
	Applied apply(const Fix &f, int64_t received_us, uint8_t *status_out, bool *register_out,
	              uint32_t *index_out = nullptr);

	// Any process. False if the driver is unknown.
	bool set_status(uint64_t driver_id, uint8_t status);

	// Any process; lock-free.
	uint32_t find(uint64_t driver_id) const;
	bool get(uint64_t driver_id, LiveView &out) const;
	void read(uint32_t index, LiveView &out) const; // index < size()

	// Listener only, with no readers that matter (the extension was dropped).
	void clear();

	LiveEntry *entries() const { return entries_; }
	const GridIndex &grid() const { return grid_; }

private:
	LiveHeader *h_;
	uint32_t *hash_; // entry index + 1; 0 = empty
	LiveEntry *entries_;
	GridIndex grid_;
};

} // namespace lt
