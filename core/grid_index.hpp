// Spatial index over the live state: a uniform latitude/longitude grid of
// 1/256 degree cells (about 434 m north-south), hashed, each cell holding a
// doubly linked list of live entries. The links live in compact arrays here,
// not in the 64-byte entries, so walking a cell stays in cache and the
// entries it names can be fetched from memory in parallel.
//
// Each cell also keeps a summary: how many of its drivers have each status,
// and the newest fix time seen there, so a query skips cells that cannot
// match (no available driver, nothing fresh) without touching their drivers.
//
// Concurrency: one writer moves drivers (the listener, through
// LiveTable::apply); status changes may come from any process
// (LiveTable::set_status). A driver's cell and status only change while its
// entry lock is held, and the per-status counts are atomic, so they stay
// exact. Every cell has a seqlock version; a reader copies a cell's list and
// retries if the version moved. Entry positions are read through the entry's
// own seqlock. Empty cells stay in the hash; when the hash gets too full the
// writer rebuilds it in place under a generation counter (holding every entry
// lock), and readers that see a rebuild fall back to scanning all entries.
// No reader ever takes a lock.
//
// Queries: nearest() is a best-first search over cells ordered by a lower
// bound of the distance from the query point to each cell rectangle, so it
// stops as soon as no unvisited cell can beat the k-th result; it handles the
// antimeridian (longitude wraps) and the poles (a polar cap is one band of
// cells). Bounds are trigonometry-free where it matters (per entry), and the
// exact geodesic is computed only for drivers that can still make the top k. If a search would touch too many cells (a huge radius over an empty
// map) it scans all entries instead: cost is min(neighbourhood, fleet).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "live_entry.hpp"

namespace lt {

class LiveTable;

#ifndef LT_CELLS_PER_DEGREE
#define LT_CELLS_PER_DEGREE 256
#endif
constexpr int kCellsPerDegree = LT_CELLS_PER_DEGREE;
constexpr uint32_t kLatCells = 180 * kCellsPerDegree;
constexpr uint32_t kLonCells = 360 * kCellsPerDegree;

struct GridCell {
	uint64_t key;         // cell id + 1; 0 = free slot
	uint32_t head;        // first entry, or kNoEntry
	uint32_t count;       // entries in the list
	uint32_t version;     // seqlock over head and the entries' next links
	uint32_t newest_s;    // newest fix seen here, Unix seconds (never lowered: an upper bound)
	uint32_t by_status[4]; // entries per Status value (atomic)
};
static_assert(std::is_trivially_copyable_v<GridCell>);

struct GridHeader {
	uint32_t capacity; // slots, a power of two
	uint32_t entries;  // length of the link arrays (max_drivers)
	uint32_t used;     // slots holding a key (empty cells included)
	uint32_t gen;      // odd while the writer rebuilds
	uint64_t rebuilds;
};
static_assert(std::is_trivially_copyable_v<GridHeader>);

struct NearestQuery {
	double lat, lon;
	uint32_t k;
	double radius_m;   // results farther than this are left out
	uint8_t status;    // 0 = any
	int64_t min_ts_ms; // fixes older than this are left out
};

struct Neighbor {
	double distance_m;
	LiveView v;
};

class GridIndex {
public:
	static uint32_t slots_for(uint32_t max_drivers);
	static size_t bytes_needed(uint32_t slots, uint32_t max_entries);
	static void format(void *mem, uint32_t slots, uint32_t max_entries);
	void attach(void *mem);

	// Writer, with entries[index] locked. Files the entry under the cell of its
	// current position; `old_status` is its status before this update (0 for a
	// new entry); `n` is the number of entries, needed if the hash is rebuilt.
	void place(LiveEntry *entries, uint32_t index, uint32_t n, uint8_t old_status);
	// Any process, with the entry locked: its status changed.
	void status_changed(uint32_t index, uint8_t old_status, uint8_t new_status);
	void clear();

	// Readers. Results are sorted by distance, then driver id.
	void nearest(const LiveTable &live, const NearestQuery &q, std::vector<Neighbor> &out) const;
	// Entries whose position lies in [lat0, lat1] x [lon0, lon1] (lon0 <= lon1).
	void within_box(const LiveTable &live, double lat0, double lat1, double lon0, double lon1, int64_t min_ts_ms,
	                std::vector<LiveView> &out) const;

	uint32_t used() const;
	uint64_t rebuilds() const;
	uint32_t cell_of(uint32_t index) const; // slot, or kNoEntry

	static uint64_t key_of(int32_t lat_e7, int32_t lon_e7);
	static uint32_t lat_cell(int32_t lat_e7);
	static uint32_t lon_cell(int32_t lon_e7);

private:
	uint32_t find(uint64_t key) const; // slot or kNoEntry
	uint32_t insert(uint64_t key);     // writer: slot, or kNoEntry if too full
	void rebuild(LiveEntry *entries, uint32_t n, uint32_t held);
	void link(LiveEntry *entries, uint32_t index, uint32_t slot);
	void unlink(LiveEntry *entries, uint32_t index, uint32_t slot, uint8_t status);
	bool read_cell(const LiveTable &live, uint32_t slot, std::vector<uint32_t> &ids,
	               std::vector<LiveView> &tmp) const;
	void scan_all(const LiveTable &live, std::vector<LiveView> &out) const;

	GridHeader *h_;
	GridCell *cells_;
	uint32_t *next_; // per entry: next in its cell's list
	uint32_t *prev_;
	uint32_t *cell_; // per entry: its cell's slot
};

} // namespace lt
