// Spatial index over the live state: a uniform latitude/longitude grid of
// 1/256 degree cells (about 434 m north-south), hashed.
//
// Each cell keeps its drivers as a contiguous array of 16-byte records
// (entry index, position, status, fix time) in a shared pool, so a query
// reads a cell in a few sequential cache lines and rejects most drivers
// without touching their 64-byte entries; only the final contenders' entries
// are fetched, all at once. A cell also keeps a summary, drivers per status
// and the newest fix seen there, so cells that cannot match (no available
// driver, nothing fresh) are skipped unread.
//
// Concurrency: one writer moves drivers (the listener, through
// LiveTable::apply); status changes may come from any process
// (LiveTable::set_status). A driver's cell and status only change while its
// entry lock is held; a cell is changed only while its version is odd, which
// doubles as the cell's writers' lock (taken after the entry lock). Readers
// copy a cell's records and retry if the version moved; they never lock.
// A driver changing cells joins the new one before it leaves the old one,
// and each cell counts its arrivals: a search that finds a cell it looked
// at has had an arrival since (or a cell made where it found none) runs
// again, so a moving driver is never missed.
// Array storage comes from a pool in power-of-two size classes, managed by
// the listener alone. When the cell hash gets too full, or the pool runs
// out, the listener rebuilds both in place (every entry lock held, a
// generation counter odd) and readers that see it scan all entries instead.
//
// Queries: nearest() first tries the cells around the point in growing
// square rings, measuring on the local plane (geo::LocalFrom, no
// trigonometry), and stops when no point outside the rings can beat the k-th
// result; that answers a dense city in one or two rings. Otherwise (sparse
// fleets, big radii, near the poles) it runs a best-first search over cells
// ordered by a lower bound of their distance from the query point, stopping
// as soon as no unvisited cell can beat the k-th result. Areas that never
// held a cell enter the queue whole, so empty country costs one step per
// 8 x 8 cells.
// Longitude wraps, so the antimeridian needs nothing special; a polar cap is
// one row of cells, all neighbours of each other. If a search would touch
// too many cells (a huge radius over an empty map) it scans all entries
// instead: cost is min(neighbourhood, fleet).
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
// Areas of 8 x 8 cells (3.5 km north-south) with one bit each: set once a
// cell there has held a driver. A search through empty country checks a
// bit in a few cache lines instead of probing the cell hash for every cell.
constexpr int kAreaShift = 3;
constexpr uint32_t kLatAreas = kLatCells >> kAreaShift;
constexpr uint32_t kLonAreas = kLonCells >> kAreaShift;
constexpr size_t kAreaWords = size_t(kLatAreas) * kLonAreas / 64;
static_assert(kLonAreas % 64 == 0, "a row of areas is whole words");
// The cell hash's buckets: one area's cells (see GridIndex::probe).
constexpr uint32_t kBucketSlots = 1u << (2 * kAreaShift);

struct GridCell {
	uint64_t key;          // cell id + 1; 0 = free slot
	uint32_t block;        // first record in the pool, or kNoEntry
	uint32_t count;        // records in use
	uint32_t version;      // seqlock, and the cell's writers' lock while odd
	uint32_t newest_s;     // newest fix seen here, Unix seconds (never lowered: an upper bound)
	uint32_t by_status[4]; // drivers per Status value
	uint8_t size_class;    // the block holds 4 << size_class records
	uint8_t pad[3];
	uint32_t arrivals;     // drivers added so far: a search checks that none came in behind it
};
static_assert(sizeof(GridCell) == 48);
static_assert(std::is_trivially_copyable_v<GridCell>);

// One driver as its cell keeps it.
struct GridRecord {
	uint32_t index; // entry index (in a free block: the next free block)
	int32_t lat_e7;
	int32_t lon_e7;
	uint32_t meta; // status << 30 | fix time in seconds since 2020 (saturating)
};
static_assert(sizeof(GridRecord) == 16);

constexpr int kSizeClasses = 28;

struct GridHeader {
	uint32_t capacity;  // cell slots, a power of two
	uint32_t entries;   // max_drivers: length of the per-entry arrays
	uint32_t used;      // slots holding a key (empty cells included)
	uint32_t gen;       // odd while the writer rebuilds
	uint32_t pool_size; // records
	uint32_t pool_top;  // records handed out so far (bump allocation)
	uint32_t free_head[kSizeClasses]; // freed blocks by size class
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

// What one nearest() call read: cells whose records it went through, those
// records, and the entries it ranked by exact geodesic. The cost of a query
// in units that do not depend on the machine (tests, bench/grid).
struct SearchWork {
	uint32_t cells;
	uint32_t records;
	uint32_t ranked;
};

// How nearest() found its answer.
enum class Search : uint8_t {
	Local, // the few cells around the point, on the local plane
	Cells, // best-first over cells and empty areas
	Scan,  // every entry (a huge neighbourhood, or the index was being rebuilt)
};

class GridIndex {
public:
	static uint32_t slots_for(uint32_t max_drivers);
	static size_t bytes_needed(uint32_t slots, uint32_t max_entries);
	static void format(void *mem, uint32_t slots, uint32_t max_entries);
	void attach(void *mem);

	// Writer, with entries[index] locked. Files the entry under the cell of its
	// current position (with its status and time); `n` is the number of
	// entries, needed if the index is rebuilt.
	void place(LiveEntry *entries, uint32_t index, uint32_t n);
	// Any process, with the entry locked: its status changed.
	void status_changed(uint32_t index, uint8_t new_status);
	void clear();

	// Readers. Results are sorted by distance, then driver id.
	Search nearest(const LiveTable &live, const NearestQuery &q, std::vector<Neighbor> &out,
	               SearchWork *work = nullptr) const;
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
	static uint64_t cell_key(uint32_t lat_cell, uint32_t lon_cell) { return (uint64_t(lat_cell) << 32 | lon_cell) + 1; }
	// The hash keeps each area's 64 cells together: an area hashes to a bucket
	// of 64 slots and a cell starts probing at its own place in it, so the few
	// cells around a point share a page or two (TLB misses, not cache misses,
	// were the cost of a search). The p-th probe is slot p past the home one
	// within the bucket, then bucket by bucket: every slot in the end.
	uint32_t probe(uint64_t key, uint32_t p) const {
		uint32_t lat = uint32_t((key - 1) >> 32), lon = uint32_t(key - 1);
		uint64_t area = uint64_t(lat >> kAreaShift) << 32 | (lon >> kAreaShift);
		uint32_t bucket = (uint32_t(mix64(area)) + p / kBucketSlots) & (h_->capacity / kBucketSlots - 1);
		uint32_t place = ((lat & ((1u << kAreaShift) - 1)) << kAreaShift | (lon & ((1u << kAreaShift) - 1))) + p;
		return bucket * kBucketSlots + (place & (kBucketSlots - 1));
	}
	void prefetch_cell(uint64_t key) const { __builtin_prefetch(&cells_[probe(key, 0)]); }
	// Slot or kNoEntry; gap: the empty slot the probe stopped at (where an
	// insert of the key would go), or kNoEntry.
	uint32_t find(uint64_t key, uint32_t &gap) const;
	uint32_t insert(uint64_t key);     // writer: slot, or kNoEntry if too full
	uint32_t alloc(uint8_t size_class);
	void release(uint32_t block, uint8_t size_class);
	bool add(uint32_t slot, uint32_t index, const GridRecord &r); // false: the pool is full
	void remove(uint32_t slot, uint32_t pos);
	// What a search saw that a driver moving into its way would change: a
	// cell's arrivals, an empty slot that ended a probe (where that cell would
	// be made), an area with no cell at all.
	struct Looked {
		enum Kind : uint8_t { Cell, Gap, Area } kind;
		uint32_t where; // slot, or the area's bit
		uint32_t arrivals;
	};
	Looked looked_cell(uint32_t slot) const { return {Looked::Cell, slot, load_acquire(cells_[slot].arrivals)}; }
	static Looked looked_gap(uint32_t slot) { return {Looked::Gap, slot, 0}; }
	static Looked looked_area(uint32_t lat_cell, uint32_t lon_cell) {
		return {Looked::Area, uint32_t(size_t(lat_cell >> kAreaShift) * kLonAreas + (lon_cell >> kAreaShift)), 0};
	}
	// Nothing of that changed: no driver came into a cell the search had
	// looked at, so one that moved while it ran was seen at one place or the other.
	bool none_arrived(const Looked *looked, size_t n) const;
	void rebuild(LiveEntry *entries, uint32_t n, uint32_t held);
	void begin_rebuild();
	void end_rebuild();
	bool read_cell(uint32_t slot, std::vector<GridRecord> &out) const;
	bool nearest_local(const LiveTable &live, const NearestQuery &q, std::vector<Neighbor> &out,
	                   SearchWork &work) const;
	bool area_used(uint32_t lat_cell, uint32_t lon_cell) const;

	GridHeader *h_;
	GridCell *cells_;
	GridRecord *pool_;
	uint32_t *cell_; // per entry: its cell's slot
	uint32_t *pos_;  // per entry: its record's place in that cell's block
	uint64_t *areas_; // kAreaWords: bit set = some cell of the area exists
};

} // namespace lt
