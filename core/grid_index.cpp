#include "grid_index.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <queue>

#include "atomics.hpp"
#include "geo.hpp"
#include "live_table.hpp"

namespace lt {
namespace {

constexpr double kCellDeg = 1.0 / kCellsPerDegree;
constexpr double kAreaDeg = kCellDeg * (1 << kAreaShift);
constexpr uint32_t kMinSlots = 1024;
static_assert(kMinSlots % kBucketSlots == 0, "whole buckets");
constexpr double kMaxLoad = 0.7;

// Visiting more cells than this means the neighbourhood is as big as the
// fleet: scan the entries instead.
size_t cell_budget(uint32_t n_live) { return std::max<size_t>(4096, n_live / 16); }

// A cell's version is its writers' lock while odd (taken after the entry lock).
void cell_lock(GridCell &c) {
	for (;;) {
		uint32_t v = load_relaxed(c.version);
		if ((v & 1) == 0 && cas(c.version, v, v + 1))
			break;
		cpu_relax();
	}
	fence_release();
}
void cell_unlock(GridCell &c) { store_release(c.version, load_relaxed(c.version) + 1); }

// Record metadata: status in the top 2 bits, fix time in seconds since
// 2020-01-01 in the rest (saturating; good until 2054).
constexpr int64_t kEpoch2020 = 1577836800;
constexpr uint32_t kTimeMask = (1u << 30) - 1;
uint32_t meta_of(uint8_t status, int64_t ts_ms) {
	int64_t s = (ts_ms >= 0 ? ts_ms / 1000 : -((-ts_ms + 999) / 1000)) - kEpoch2020;
	uint32_t t = s < 0 ? 0 : s > int64_t(kTimeMask) ? kTimeMask : uint32_t(s);
	return uint32_t(status & 3) << 30 | t;
}
uint8_t meta_status(uint32_t meta) { return uint8_t(meta >> 30); }
// A record's fix is fresh beyond doubt: records keep whole seconds, so one in
// the boundary second is decided on the entry.
bool surely_fresh(uint32_t meta, int64_t min_s, uint32_t min_meta_time) {
	return min_s == INT64_MIN || (meta & kTimeMask) > min_meta_time;
}

GridRecord record_of(uint32_t index, const LiveEntry &e) {
	return GridRecord{index, e.lat_e7, e.lon_e7, meta_of(e.status, e.ts_ms)};
}
GridRecord record_of(uint32_t index, const LiveView &v) {
	return GridRecord{index, v.lat_e7, v.lon_e7, meta_of(v.status, v.ts_ms)};
}
void store_record(GridRecord &to, const GridRecord &r) {
	store_relaxed(to.index, r.index);
	store_relaxed(to.lat_e7, r.lat_e7);
	store_relaxed(to.lon_e7, r.lon_e7);
	store_relaxed(to.meta, r.meta);
}
// Once per record a search reads: GCC left it out of line in the big lambdas.
[[gnu::always_inline]] inline GridRecord load_record(const GridRecord &from) {
	return GridRecord{load_relaxed(from.index), load_relaxed(from.lat_e7), load_relaxed(from.lon_e7),
	                  load_relaxed(from.meta)};
}

bool passes(const LiveView &v, uint8_t status, int64_t min_ts_ms) {
	return (status == 0 || v.status == status) && v.ts_ms >= min_ts_ms;
}

bool closer(const Neighbor &a, const Neighbor &b) {
	return a.distance_m < b.distance_m || (a.distance_m == b.distance_m && a.v.driver_id < b.v.driver_id);
}

// The grid squares (cells, or areas of 8 x 8 cells) one search has seen: a
// bitmap over the 64 x 64 squares around the start, and a hash set for any
// beyond it. `Columns` squares make one row (longitude wraps).
template <uint32_t Columns> class SquareSet {
public:
	SquareSet(uint32_t lat0, uint32_t lon0) : lat0_(lat0), lon0_(lon0) {}
	bool insert(uint32_t lat, uint32_t lon) { // false if already seen
		uint32_t di = lat - lat0_ + kHalf, dj = (lon - lon0_ + kHalf + Columns) % Columns;
		if (di < kSide && dj < kSide) {
			uint64_t &word = bits_[di * (kSide / 64) + dj / 64], bit = uint64_t(1) << (dj % 64);
			if (word & bit)
				return false;
			word |= bit;
			n_++;
			return true;
		}
		return insert_far((uint64_t(lat) << 32 | lon) + 1);
	}
	size_t size() const { return n_; }

private:
	static constexpr uint32_t kSide = 64, kHalf = kSide / 2;
	bool insert_far(uint64_t key) {
		if ((far_n_ + 1) * 2 > far_.size())
			grow();
		size_t mask = far_.size() - 1;
		for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
			if (far_[i] == key)
				return false;
			if (far_[i] == 0) {
				far_[i] = key;
				far_n_++;
				n_++;
				return true;
			}
		}
	}
	void grow() {
		std::vector<uint64_t> old(far_.empty() ? 256 : far_.size() * 2, 0);
		old.swap(far_);
		far_n_ = 0;
		for (uint64_t k : old)
			if (k) {
				size_t mask = far_.size() - 1;
				size_t i = mix64(k) & mask;
				while (far_[i])
					i = (i + 1) & mask;
				far_[i] = k;
				far_n_++;
			}
	}
	uint32_t lat0_, lon0_;
	uint64_t bits_[kSide * kSide / 64] = {};
	std::vector<uint64_t> far_;
	size_t far_n_ = 0, n_ = 0;
};
using CellSet = SquareSet<kLonCells>;
using AreaSet = SquareSet<kLonAreas>;

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// A column of cells, unwrapped (any integer), as the column it is on the map.
uint32_t wrap_lon(int64_t j) { return uint32_t(((j % kLonCells) + kLonCells) % kLonCells); }

// A cell's newest fix, in the 32-bit Unix seconds the summary keeps.
uint32_t fix_seconds(int64_t ts_ms) {
	int64_t s = floor_div(ts_ms, 1000);
	return s < 0 ? 0 : s > int64_t(UINT32_MAX) ? UINT32_MAX : uint32_t(s);
}

// Smallest cosine of latitude over a row of cells: scales longitude gaps.
double row_cos_min(uint32_t lat_index) {
	double lat0 = -90.0 + double(lat_index) * kCellDeg, lat1 = lat0 + kCellDeg;
	double far = std::max(std::fabs(lat0), std::fabs(lat1));
	return std::cos(std::min(far, 90.0) * geo::kDegToRad) * (1 - 1e-9);
}

// A lower bound, without trigonometry, on the geodesic distance from q to any
// point of [lat0, lat1] x [lon0, lon1] (a point when lat0 == lat1, lon0 ==
// lon1). Two facts on the sphere: a path cannot change latitude faster than
// 1 rad per R, so d >= R |dlat|; and the distance to the great circle of q's
// meridian is asin(cos(lat) |sin(dlon)|), so d >= R cos_min |sin(dlon)|, with
// sin(y) >= y - y^3/6. The geodesic is at least kSphereLowerRatio times that.
double cheap_bound_m(double qlat, double qlon, double lat0, double lat1, double lon0, double lon1, double cos_min) {
	double dlat = qlat < lat0 ? lat0 - qlat : qlat > lat1 ? qlat - lat1 : 0;
	double dlon = 0;
	double a = lon0 - qlon, b = lon1 - qlon;
	if (a > 180)
		a -= 360, b -= 360;
	else if (b < -180)
		a += 360, b += 360;
	if (!(a <= 0 && b >= 0)) {
		double da = std::fabs(a) > 180 ? 360 - std::fabs(a) : std::fabs(a);
		double db = std::fabs(b) > 180 ? 360 - std::fabs(b) : std::fabs(b);
		dlon = std::min(da, db);
	}
	double y = std::min(dlon, 180 - dlon) * geo::kDegToRad; // |sin(dlon)| = sin(y)
	double across = cos_min * (y - y * y * y / 6);
	double along = dlat * geo::kDegToRad;
	double bound = geo::kEarthRadiusM * (along > across ? along : across) * geo::kSphereLowerRatio;
	return bound * (1 - 1e-9) - 1e-3; // never prune over rounding
}

// cheap_bound_m() for a point: the bound every candidate driver gets.
inline double point_bound_m(double qlat, double qlon, double lat, double lon, double cos_min) {
	double dlon = std::fabs(lon - qlon);
	if (dlon > 180)
		dlon = 360 - dlon;
	double y = std::min(dlon, 180 - dlon) * geo::kDegToRad;
	double across = cos_min * (y - y * y * y / 6);
	double along = std::fabs(lat - qlat) * geo::kDegToRad;
	double bound = geo::kEarthRadiusM * (along > across ? along : across) * geo::kSphereLowerRatio;
	return bound * (1 - 1e-9) - 1e-3;
}

// row_cos_min() for the few rows one search touches, computed once each.
class RowCos {
public:
	double operator()(uint32_t row) {
		Slot &s = slots_[row & 31];
		if (s.row != row) {
			s.row = row;
			s.cos = row_cos_min(row);
		}
		return s.cos;
	}

private:
	struct Slot {
		uint32_t row = UINT32_MAX;
		double cos = 0;
	} slots_[32];
};

constexpr uint32_t kAreaFlag = 0x80000000u;

struct Frontier {
	double bound;
	uint32_t lat, lon; // a cell, or with kAreaFlag in lat an area that holds no cell

	bool operator>(const Frontier &o) const { return bound > o.bound; }
};

} // namespace

uint32_t GridIndex::slots_for(uint32_t max_drivers) {
	uint32_t n = kMinSlots;
	while (n < 2 * uint64_t(max_drivers))
		n <<= 1;
	return n;
}

// Pool: a fresh layout needs at most 4 records per driver (a cell's block
// holds at most twice its drivers, and at least 4); the slack absorbs churn
// until a rebuild compacts it.
static uint32_t pool_for(uint32_t max_entries) { return 4 * max_entries + 4096; }

// Layout: header | cells | pool | cell[] | pos[] | (8-aligned) areas.
static size_t areas_offset(uint32_t slots, uint32_t max_entries) {
	size_t off = sizeof(GridHeader) + size_t(slots) * sizeof(GridCell) +
	             size_t(pool_for(max_entries)) * sizeof(GridRecord) + 2 * size_t(max_entries) * sizeof(uint32_t);
	return (off + 7) & ~size_t(7);
}

size_t GridIndex::bytes_needed(uint32_t slots, uint32_t max_entries) {
	return areas_offset(slots, max_entries) + kAreaWords * sizeof(uint64_t);
}

void GridIndex::format(void *mem, uint32_t slots, uint32_t max_entries) {
	std::memset(mem, 0, bytes_needed(slots, max_entries));
	auto *h = static_cast<GridHeader *>(mem);
	h->capacity = slots;
	h->entries = max_entries;
	h->pool_size = pool_for(max_entries);
	for (uint32_t &f : h->free_head)
		f = kNoEntry;
	GridIndex g{};
	g.attach(mem);
	for (uint32_t i = 0; i < slots; i++)
		g.cells_[i].block = kNoEntry;
	for (uint32_t i = 0; i < max_entries; i++)
		g.cell_[i] = kNoEntry;
}

void GridIndex::attach(void *mem) {
	h_ = static_cast<GridHeader *>(mem);
	cells_ = reinterpret_cast<GridCell *>(h_ + 1);
	pool_ = reinterpret_cast<GridRecord *>(cells_ + h_->capacity);
	cell_ = reinterpret_cast<uint32_t *>(pool_ + h_->pool_size);
	pos_ = cell_ + h_->entries;
	areas_ = reinterpret_cast<uint64_t *>(static_cast<char *>(mem) + areas_offset(h_->capacity, h_->entries));
}

bool GridIndex::area_used(uint32_t lat_cell, uint32_t lon_cell) const {
	size_t bit = size_t(lat_cell >> kAreaShift) * kLonAreas + (lon_cell >> kAreaShift);
	return (load_relaxed(areas_[bit / 64]) >> (bit % 64)) & 1;
}

uint32_t GridIndex::used() const { return load_relaxed(h_->used); }
uint64_t GridIndex::rebuilds() const { return load_relaxed(h_->rebuilds); }
uint32_t GridIndex::cell_of(uint32_t index) const { return load_relaxed(cell_[index]); }

uint32_t GridIndex::lat_cell(int32_t lat_e7) {
	int64_t i = (int64_t(lat_e7) + 900000000) * kCellsPerDegree / 10000000;
	return uint32_t(std::min<int64_t>(std::max<int64_t>(i, 0), kLatCells - 1));
}

uint32_t GridIndex::lon_cell(int32_t lon_e7) {
	int64_t i = (int64_t(lon_e7) + 1800000000) * kCellsPerDegree / 10000000;
	return wrap_lon(i); // +180 is -180
}

uint64_t GridIndex::key_of(int32_t lat_e7, int32_t lon_e7) {
	return cell_key(lat_cell(lat_e7), lon_cell(lon_e7));
}

uint32_t GridIndex::find(uint64_t key, uint32_t &gap) const {
	gap = kNoEntry;
	for (uint32_t p = 0; p < h_->capacity; p++) {
		uint32_t i = probe(key, p);
		uint64_t k = load_acquire(cells_[i].key);
		if (k == key)
			return i;
		if (k == 0) {
			gap = i; // an insert of this key would take this slot
			return kNoEntry;
		}
	}
	return kNoEntry;
}

uint32_t GridIndex::insert(uint64_t key) {
	for (uint32_t p = 0; p < h_->capacity; p++) {
		uint32_t i = probe(key, p);
		uint64_t k = load_relaxed(cells_[i].key);
		if (k == key)
			return i;
		if (k == 0) {
			if (load_relaxed(h_->used) + 1 > uint32_t(h_->capacity * kMaxLoad))
				return kNoEntry;
			GridCell &c = cells_[i];
			store_relaxed(c.block, kNoEntry);
			store_relaxed(c.count, 0u);
			store_relaxed(c.newest_s, 0u);
			for (uint32_t &b : c.by_status)
				store_relaxed(b, 0u);
			c.size_class = 0;
			// The area's bit goes up before any reader can find the cell.
			uint32_t lat = uint32_t((key - 1) >> 32), lon = uint32_t(key - 1);
			size_t bit = size_t(lat >> kAreaShift) * kLonAreas + (lon >> kAreaShift);
			uint64_t &word = areas_[bit / 64];
			store_relaxed(word, load_relaxed(word) | uint64_t(1) << (bit % 64));
			store_release(c.key, key); // publish a ready cell
			store_release(h_->used, load_relaxed(h_->used) + 1);
			return i;
		}
	}
	return kNoEntry; // not reached: the load limit keeps slots free
}

// Pool blocks of 4 << size_class records; freed blocks are chained through
// their first record. Listener only.
uint32_t GridIndex::alloc(uint8_t size_class) {
	uint32_t b = h_->free_head[size_class];
	if (b != kNoEntry) {
		h_->free_head[size_class] = load_relaxed(pool_[b].index);
		return b;
	}
	uint32_t size = 4u << size_class;
	if (h_->pool_top + uint64_t(size) > h_->pool_size)
		return kNoEntry;
	b = h_->pool_top;
	h_->pool_top += size;
	return b;
}

void GridIndex::release(uint32_t block, uint8_t size_class) {
	store_relaxed(pool_[block].index, h_->free_head[size_class]);
	h_->free_head[size_class] = block;
}

bool GridIndex::add(uint32_t slot, uint32_t index, const GridRecord &r) {
	GridCell &c = cells_[slot];
	cell_lock(c);
	uint32_t n = c.count;
	if (c.block == kNoEntry || n == 4u << c.size_class) { // full: move to a block twice the size
		uint8_t cls = c.block == kNoEntry ? 0 : uint8_t(c.size_class + 1);
		uint32_t nb = cls < kSizeClasses ? alloc(cls) : kNoEntry;
		if (nb == kNoEntry) {
			cell_unlock(c);
			return false;
		}
		for (uint32_t k = 0; k < n; k++)
			store_record(pool_[nb + k], pool_[c.block + k]);
		if (c.block != kNoEntry)
			release(c.block, c.size_class);
		store_relaxed(c.block, nb);
		c.size_class = cls;
	}
	store_record(pool_[c.block + n], r);
	pos_[index] = n;
	store_relaxed(c.count, n + 1);
	fetch_add_relaxed(c.by_status[meta_status(r.meta)], 1u);
	uint32_t secs = fix_seconds((int64_t(r.meta & kTimeMask) + kEpoch2020) * 1000);
	if (secs > load_relaxed(c.newest_s))
		store_relaxed(c.newest_s, secs);
	store_relaxed(cell_[index], slot);
	store_release(c.arrivals, load_relaxed(c.arrivals) + 1); // last: a reader that sees it sees the record
	cell_unlock(c);
	return true;
}

// Takes out the record at `p` (its driver has been added elsewhere already).
void GridIndex::remove(uint32_t slot, uint32_t p) {
	GridCell &c = cells_[slot];
	cell_lock(c);
	uint32_t last = c.count - 1;
	uint8_t status = meta_status(load_relaxed(pool_[c.block + p].meta));
	if (p != last) { // the last record fills the hole
		GridRecord m = pool_[c.block + last];
		store_record(pool_[c.block + p], m);
		pos_[m.index] = p;
	}
	store_relaxed(c.count, last);
	fetch_add_relaxed(c.by_status[status], uint32_t(-1));
	if (last == 0) {
		release(c.block, c.size_class);
		store_relaxed(c.block, kNoEntry);
	}
	cell_unlock(c);
}

void GridIndex::place(LiveEntry *entries, uint32_t index, uint32_t n) {
	const LiveEntry &e = entries[index];
	GridRecord r = record_of(index, e);
	uint64_t key = key_of(e.lat_e7, e.lon_e7);
	uint32_t cur = cell_[index];
	if (cur != kNoEntry && load_relaxed(cells_[cur].key) == key) {
		// Same cell: refresh the record and the summary.
		GridCell &c = cells_[cur];
		cell_lock(c);
		GridRecord &slot_rec = pool_[c.block + pos_[index]];
		uint8_t old = meta_status(slot_rec.meta), now = meta_status(r.meta);
		store_record(slot_rec, r);
		if (old != now) {
			fetch_add_relaxed(c.by_status[old], uint32_t(-1));
			fetch_add_relaxed(c.by_status[now], 1u);
		}
		uint32_t secs = fix_seconds(e.ts_ms);
		if (secs > load_relaxed(c.newest_s))
			store_relaxed(c.newest_s, secs);
		cell_unlock(c);
		return;
	}
	uint32_t slot = insert(key);
	if (slot == kNoEntry) {
		rebuild(entries, n, index); // files every entry, this one included
		return;
	}
	// Into the new cell before out of the old one: at every moment the driver
	// is in one of them, so a search that checks arrivals cannot miss it.
	uint32_t old_pos = cur != kNoEntry ? pos_[index] : 0;
	if (!add(slot, index, r)) {
		rebuild(entries, n, index); // the pool is fragmented: compact it
		return;
	}
	if (cur != kNoEntry)
		remove(cur, old_pos);
}

bool GridIndex::none_arrived(const Looked *looked, size_t n) const {
	fence_acquire(); // order the search's relaxed reads before these
	for (size_t i = 0; i < n; i++) {
		const Looked &l = looked[i];
		switch (l.kind) {
		case Looked::Cell:
			if (load_relaxed(cells_[l.where].arrivals) != l.arrivals)
				return false;
			break;
		case Looked::Gap:
			if (load_relaxed(cells_[l.where].key) != 0)
				return false;
			break;
		case Looked::Area:
			if ((load_relaxed(areas_[l.where / 64]) >> (l.where % 64)) & 1)
				return false;
			break;
		}
	}
	return true;
}

void GridIndex::status_changed(uint32_t index, uint8_t new_status) {
	uint32_t slot = load_relaxed(cell_[index]); // stable: we hold the entry lock
	if (slot == kNoEntry)
		return;
	GridCell &c = cells_[slot];
	cell_lock(c);
	if (c.block == kNoEntry || pos_[index] >= c.count) { // emptied under us (DROP EXTENSION)
		cell_unlock(c);
		return;
	}
	GridRecord &r = pool_[c.block + pos_[index]];
	uint8_t old = meta_status(r.meta);
	if (old != new_status) {
		store_relaxed(r.meta, uint32_t(new_status & 3) << 30 | (r.meta & kTimeMask));
		fetch_add_relaxed(c.by_status[old], uint32_t(-1));
		fetch_add_relaxed(c.by_status[new_status & 3], 1u);
	}
	cell_unlock(c);
}

// Refiles every entry into an emptied hash and pool. Every entry lock is
// taken (the caller holds `held`), so no status change can slip between the
// old cells and the new ones; readers see an odd generation and scan entries.
void GridIndex::rebuild(LiveEntry *entries, uint32_t n, uint32_t held) {
	for (uint32_t i = 0; i < n; i++)
		if (i != held)
			entry_lock(entries[i]);
	begin_rebuild();
	for (uint32_t i = 0; i < h_->capacity; i++) {
		store_relaxed(cells_[i].key, uint64_t(0));
		store_relaxed(cells_[i].block, kNoEntry);
		store_relaxed(cells_[i].count, 0u);
	}
	store_relaxed(h_->used, 0u);
	h_->pool_top = 0;
	for (uint32_t &f : h_->free_head)
		f = kNoEntry;
	for (size_t w = 0; w < kAreaWords; w++)
		store_relaxed(areas_[w], uint64_t(0));
	for (uint32_t i = 0; i < n; i++) {
		store_relaxed(cell_[i], kNoEntry);
		// At most one cell per entry, 2 slots and 4 records per entry: it fits.
		uint32_t slot = insert(key_of(entries[i].lat_e7, entries[i].lon_e7));
		if (slot != kNoEntry)
			add(slot, i, record_of(i, entries[i]));
	}
	store_relaxed(h_->rebuilds, load_relaxed(h_->rebuilds) + 1);
	end_rebuild();
	for (uint32_t i = 0; i < n; i++)
		if (i != held)
			entry_unlock(entries[i]);
}

void GridIndex::begin_rebuild() {
	store_relaxed(h_->gen, load_relaxed(h_->gen) + 1);
	fence_release();
}
void GridIndex::end_rebuild() { store_release(h_->gen, load_relaxed(h_->gen) + 1); }

void GridIndex::clear() {
	begin_rebuild();
	for (uint32_t i = 0; i < h_->capacity; i++) {
		store_relaxed(cells_[i].key, uint64_t(0));
		store_relaxed(cells_[i].block, kNoEntry);
		store_relaxed(cells_[i].count, 0u);
	}
	for (uint32_t i = 0; i < h_->entries; i++)
		store_relaxed(cell_[i], kNoEntry);
	for (size_t w = 0; w < kAreaWords; w++)
		store_relaxed(areas_[w], uint64_t(0));
	store_relaxed(h_->used, 0u);
	h_->pool_top = 0;
	for (uint32_t &f : h_->free_head)
		f = kNoEntry;
	end_rebuild();
}

// Calls each(record) for a consistent copy of a cell's records: the cell's
// version is even and the same before and after. start() runs before every
// attempt, so the caller can drop what a torn attempt gave it.
template <typename Start, typename Each>
static bool scan_cell(const GridCell &c, const GridRecord *pool, uint32_t pool_size, Start &&start, Each &&each) {
	for (int attempt = 0; attempt < 64; attempt++) {
		uint32_t v1 = load_acquire(c.version);
		if (v1 & 1) {
			cpu_relax();
			continue;
		}
		uint32_t n = load_relaxed(c.count), b = load_relaxed(c.block);
		if (n > 0 && (b == kNoEntry || uint64_t(b) + n > pool_size))
			continue; // changing under us; the version will say so
		if (!start(n))
			return false;
		for (uint32_t k = 0; k < n; k++)
			each(load_record(pool[b + k]));
		fence_acquire();
		if (load_relaxed(c.version) == v1)
			return true;
	}
	return false;
}

bool GridIndex::read_cell(uint32_t slot, std::vector<GridRecord> &out) const {
	return scan_cell(
	    cells_[slot], pool_, h_->pool_size,
	    [&](uint32_t n) {
		    out.clear();
		    out.reserve(n);
		    return true;
	    },
	    [&](const GridRecord &r) { out.push_back(r); });
}

// Reads the entries behind some records, all cache misses at once.
static void read_entries(const LiveTable &live, const uint32_t *ids, size_t n, std::vector<LiveView> &out) {
	const LiveEntry *entries = live.entries();
	uint32_t size = live.size();
	for (size_t k = 0; k < n; k++)
		if (ids[k] < size)
			__builtin_prefetch(&entries[ids[k]]);
	out.resize(n);
	for (size_t k = 0; k < n; k++)
		if (ids[k] < size)
			live.read(ids[k], out[k]);
		else
			out[k] = LiveView{}; // driver_id 0: never matches
}

// The k nearest of some contenders by exact geodesic, after checking them
// again. `limit` is what the search pruned with: with k drivers sure to
// qualify within it (k_sure), everything farther was left out. If those k
// are not all there any more (one of them was seen twice, moved away, or
// changed status while the search ran), the pruning was wrong: false, and
// the caller searches again another way.
static bool rank_views(const std::vector<LiveView> &views, const NearestQuery &q, const geo::GeodesicFrom &origin,
                       bool k_sure, double limit, std::vector<Neighbor> &out) {
	out.reserve(out.size() + views.size()); // one allocation, not one per doubling
	for (const LiveView &v : views) {
		if (v.driver_id == 0 || !passes(v, q.status, q.min_ts_ms))
			continue; // changed since its record was read
		Neighbor n{origin.to(v.lat_e7 / 1e7, v.lon_e7 / 1e7), v};
		if (n.distance_m <= q.radius_m)
			out.push_back(n);
	}
	size_t k = std::min<size_t>(q.k, out.size());
	// A lambda, not the function: std::sort inlines it. Usually a few more
	// contenders than k, so insertion-sorting them all beats a heap of k.
	auto by_distance = [](const Neighbor &a, const Neighbor &b) { return closer(a, b); };
	if (out.size() <= 2 * k + 8)
		std::sort(out.begin(), out.end(), by_distance);
	else
		std::partial_sort(out.begin(), out.begin() + long(k), out.end(), by_distance);
	out.resize(k);
	return !k_sure || (k == q.k && out.back().distance_m <= limit);
}

// rank_views() for contenders found in cells, by entry: each is read now, and
// kept once (a driver that moved while the search read cells may have been
// seen in two of them).
static bool rank(const LiveTable &live, std::vector<uint32_t> &ids, const NearestQuery &q,
                 const geo::GeodesicFrom &origin, bool k_sure, double limit, std::vector<Neighbor> &out) {
	std::sort(ids.begin(), ids.end());
	ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
	std::vector<LiveView> views;
	read_entries(live, ids.data(), ids.size(), views);
	return rank_views(views, q, origin, k_sure, limit, out);
}

// The k nearest from the cells around the query point, in square rings of
// growing radius, measured on the local plane: a dense city is answered in
// one or two rings at a few nanoseconds per driver. Every plane distance e
// brackets the geodesic g: e (1 - kError) - kSlackM <= g <= e (1 + kError) +
// kSlackM (geo::LocalFrom, for points within kMaxOffsetDeg). The search ends
// once the ring's edge is farther, by that lower bound, than the k-th
// smallest upper bound seen (any farther point is reached across the edge);
// the drivers that can still make the top k then get their exact geodesic.
// False when it cannot decide within kMaxRing rings (the caller runs the
// general search).
bool GridIndex::nearest_local(const LiveTable &live, const NearestQuery &q, std::vector<Neighbor> &out,
                              SearchWork &work) const {
	// Cells up to 6 away, inside LocalFrom::kMaxOffsetDeg. Five rings reach
	// 2.1 km north and south, and east and west within 23 degrees of the
	// equator (1.4 km at 50): a 2 km query in a sparse suburb or an empty
	// field beside the city is answered here rather than by the general search.
	constexpr int kMaxRing = 5;
	constexpr uint32_t kMaxK = 64, kMaxCands = 1024;
	static_assert((kMaxRing + 1) * kCellDeg <= geo::LocalFrom::kMaxOffsetDeg, "rings stay on the local plane");
	constexpr uint32_t kRingCells = (2 * kMaxRing + 1) * (2 * kMaxRing + 1);
	if (q.k > kMaxK || !(std::fabs(q.lat) <= geo::LocalFrom::kMaxLat))
		return false;
	uint32_t gen = load_acquire(h_->gen);
	if (gen & 1)
		return false;
	Looked looked[kRingCells]; // one per cell of the rings
	uint32_t n_looked = 0;
	constexpr double kLow = 1 - geo::LocalFrom::kError, kHigh = 1 + geo::LocalFrom::kError;
	constexpr double kSlack = geo::LocalFrom::kSlackM;
	const geo::LocalFrom plane(q.lat, q.lon);
	const int64_t min_s = q.min_ts_ms == INT64_MIN ? INT64_MIN : floor_div(q.min_ts_ms, 1000);
	const uint32_t min_meta_time = min_s == INT64_MIN ? 0 : meta_of(0, min_s * 1000) & kTimeMask;

	// Drivers that pass the filters and whose lower bound is within `limit`,
	// and among them the k smallest plane distances of those sure to qualify
	// (a max-heap, squared): inside the radius by the upper bound, and fresh
	// beyond doubt.
	struct Cand {
		double e2;
		uint32_t index;
		uint32_t fresh;
	} cands[kMaxCands];
	uint32_t n_cands = 0;
	double sure[kMaxK];
	uint32_t n_sure = 0;
	const double sure_radius = (q.radius_m - kSlack) / kHigh;
	const double sure2 = sure_radius >= 0 ? sure_radius * sure_radius : -1;
	double limit = q.radius_m; // the k-th result's geodesic is at most this
	double reach2 = 0;         // plane distance^2 beyond which the lower bound exceeds limit
	auto set_limit = [&](double l) {
		limit = l;
		double r = (l + kSlack) / kLow;
		reach2 = r * r;
	};
	set_limit(q.radius_m);
	auto take = [&](const Cand &c) {
		if (!c.fresh || c.e2 > sure2)
			return;
		if (n_sure < q.k) {
			sure[n_sure++] = c.e2;
			std::push_heap(sure, sure + n_sure);
		} else if (c.e2 < sure[0]) {
			std::pop_heap(sure, sure + n_sure);
			sure[n_sure - 1] = c.e2;
			std::push_heap(sure, sure + n_sure);
		} else {
			return;
		}
		if (n_sure == q.k)
			set_limit(std::sqrt(sure[0]) * kHigh + kSlack);
	};

	// Cell (i, j) spans [i, i + 1) x [j, j + 1) cells from (-90, -180); offsets
	// from the query point, in 1e-7 degree, unwrapped around it.
	constexpr double kCell7 = 1e7 / kCellsPerDegree;
	auto lat_edge7 = [&](int64_t i) { return double(i) * kCell7 - 9e8 - plane.lat7(); };
	auto lon_edge7 = [&](int64_t j) { return double(j) * kCell7 - 1.8e9 - plane.lon7(); };
	const int32_t qlat_e7 = int32_t(std::llround(q.lat * 1e7)), qlon_e7 = int32_t(std::llround(q.lon * 1e7));
	const int64_t qi = lat_cell(qlat_e7), qj = lon_cell(qlon_e7);
	// lon_cell() reads +180 as -180: unwrap so that the query point lies in its cell.
	const int64_t qj_near = lon_edge7(qj) < -1e9 ? qj + kLonCells : qj;
	const bool any_status = q.status == 0;

	// Plane distance^2 to a cell's nearest point: beyond reach2, it cannot hold
	// a result.
	auto gap2 = [&](int64_t i, int64_t j) {
		double a = lat_edge7(i), b = lat_edge7(i + 1), c = lon_edge7(j), d = lon_edge7(j + 1);
		double gap_lat = a > 0 ? a : b < 0 ? -b : 0, gap_lon = c > 0 ? c : d < 0 ? -d : 0;
		return plane.min_dist2(gap_lat, gap_lon, std::max(std::fabs(a), std::fabs(b)));
	};
	// First pass over a ring: the cells that may hold a match, every cache
	// line of their records prefetched, so the ring's misses overlap.
	struct Todo {
		double gap2;
		uint32_t slot;
	} todo[8 * kMaxRing];
	uint32_t n_todo = 0;
	auto consider = [&](int64_t i, int64_t j) {
		if (i < 0 || i >= int64_t(kLatCells))
			return true;
		double near2 = gap2(i, j);
		if (near2 > reach2)
			return true;
		uint32_t ci = uint32_t(i), cj = wrap_lon(j);
		if (!area_used(ci, cj)) {
			looked[n_looked++] = looked_area(ci, cj);
			return true;
		}
		uint32_t gap, slot = find(cell_key(ci, cj), gap);
		if (slot == kNoEntry) {
			if (gap != kNoEntry)
				looked[n_looked++] = looked_gap(gap);
			return true;
		}
		const GridCell &gc = cells_[slot];
		looked[n_looked++] = looked_cell(slot);
		uint32_t n = load_relaxed(gc.count), b = load_relaxed(gc.block);
		if (n == 0 || (!any_status && load_relaxed(gc.by_status[q.status & 3]) == 0) ||
		    int64_t(load_relaxed(gc.newest_s)) < min_s)
			return true;
		if (b != kNoEntry && uint64_t(b) + n <= h_->pool_size) {
			// Every line of the block (a city cell's 20-30 records span 6-8;
			// the listener keeps rewriting them, so they are rarely cached),
			// up to 32 lines; blocks need not start on a cache line.
			constexpr uint32_t kPerLine = 64 / sizeof(GridRecord);
			uint32_t last = b + n - 1, stop = std::min(last, b + 32 * kPerLine);
			for (uint32_t k = b; k <= stop; k += kPerLine)
				__builtin_prefetch(&pool_[k]);
			__builtin_prefetch(&pool_[last]);
		}
		todo[n_todo++] = {near2, slot};
		return true;
	};
	// Second pass: each cell's records, measured and appended; only those that
	// pass stay (no branch per driver to mispredict).
	auto visit = [&](const Todo &t) {
		if (t.gap2 > reach2) // the limit may have shrunk since the first pass
			return true;
		uint32_t first = n_cands, end = n_cands, records = 0;
		bool read = scan_cell(
		    cells_[t.slot], pool_, h_->pool_size,
		    [&](uint32_t n) {
			    end = first;
			    records = n;
			    return first + n <= kMaxCands;
		    },
		    [&](const GridRecord &r) {
			    double e2 = plane.dist2(plane.dlat7(r.lat_e7), plane.dlon7(r.lon_e7));
			    uint32_t t = r.meta & kTimeMask;
			    bool ok = (any_status | (meta_status(r.meta) == q.status)) & (t >= min_meta_time) & (e2 <= reach2);
			    cands[end] = {e2, r.index, uint32_t(surely_fresh(r.meta, min_s, min_meta_time))};
			    end += ok;
		    });
		if (!read)
			return false;
		work.cells++;
		work.records += records;
		n_cands = end;
		for (uint32_t c = first; c < end; c++)
			take(cands[c]);
		return true;
	};

	bool done = false;
	// Calls f(i, j) for the cells of ring r (whole top and bottom rows, both
	// ends of the rows between) until it returns false.
	auto each_in_ring = [&](int r, auto &&f) {
		for (int64_t di = -r; di <= r; di++) {
			int64_t step = (di == -r || di == r) ? 1 : 2 * r;
			for (int64_t dj = -r; dj <= r; dj += step)
				if (!f(qi + di, qj_near + dj))
					return false;
		}
		return true;
	};
	for (int r = 0; r <= kMaxRing && !done; r++) {
		// The ring's hash slots are likely cache misses: start loading them all.
		each_in_ring(r, [&](int64_t i, int64_t j) {
			prefetch_cell(cell_key(uint32_t(i), wrap_lon(j)));
			return true;
		});
		n_todo = 0;
		each_in_ring(r, consider);
		// Nearest cells first: the limit they set may leave the others unread.
		std::sort(todo, todo + n_todo, [](const Todo &a, const Todo &b) { return a.gap2 < b.gap2; });
		for (uint32_t t = 0; t < n_todo; t++)
			if (!visit(todo[t]))
				return false;
		// Nearest point outside the (2r + 1)^2 block: across one of its edges.
		// (Rounded to 1e-7 degree the point may sit a hair outside its cell.)
		double n = std::max(0.0, lat_edge7(qi + r + 1)), s = std::max(0.0, -lat_edge7(qi - r));
		double e = std::max(0.0, lon_edge7(qj_near + r + 1)), w = std::max(0.0, -lon_edge7(qj_near - r));
		double edge2 = std::min(plane.min_dist2(std::min(n, s), 0, 0), plane.min_dist2(0, std::min(e, w), std::max(n, s)));
		done = std::sqrt(edge2) * kLow - kSlack > limit;
	}
	if (!done)
		return false;

	std::vector<uint32_t> ids;
	ids.reserve(2 * q.k);
	fence_acquire(); // order the relaxed reads above (area bits, cells) before the check
	if (load_acquire(h_->gen) != gen)
		return false; // the index was rebuilt under us
	if (!none_arrived(looked, n_looked))
		return false; // a driver may have come into a cell after it was read
	for (uint32_t c = 0; c < n_cands; c++)
		if (cands[c].e2 <= reach2)
			ids.push_back(cands[c].index);
	work.ranked += uint32_t(ids.size());
	if (rank(live, ids, q, geo::GeodesicFrom(q.lat, q.lon), n_sure == q.k, limit, out))
		return true;
	out.clear();
	return false;
}

Search GridIndex::nearest(const LiveTable &live, const NearestQuery &q, std::vector<Neighbor> &out,
                          SearchWork *work_out) const {
	out.clear();
	SearchWork scratch;
	SearchWork &work = work_out ? *work_out : scratch;
	work = SearchWork{0, 0, 0};
	if (q.k == 0)
		return Search::Local;
	if (nearest_local(live, q, out, work))
		return Search::Local;
	// Ranked by geodesic distance, which is the expensive part, so it is
	// computed last and only for drivers that can still make the top k:
	//  - the cell's records give status, time and position: a trig-free lower
	//    bound (latitude gap, longitude gap at the cell's smallest cosine)
	//    rejects most drivers outright;
	//  - the sphere distance s of the rest gives s * kSphereLowerRatio <=
	//    geodesic <= s * kSphereUpperRatio; the k smallest upper bounds seen
	//    bound the k-th geodesic from above (`limit`), which prunes both cells
	//    and drivers;
	//  - at the end the survivors (about k + 1 %) are read from their entries
	//    and get their exact geodesic.
	geo::GeodesicFrom origin(q.lat, q.lon);
	geo::SphereFrom sphere(q.lat, q.lon);
	const int64_t min_s = q.min_ts_ms == INT64_MIN ? INT64_MIN : floor_div(q.min_ts_ms, 1000);
	const uint32_t min_meta_time = min_s == INT64_MIN ? 0 : meta_of(0, min_s * 1000) & kTimeMask;
	std::vector<std::pair<double, uint32_t>> cands; // sphere distance, entry index
	std::vector<double> upper;                      // max-heap: the k smallest upper bounds
	cands.reserve(64);
	upper.reserve(q.k < 64 ? q.k : 64);
	auto limit = [&] { return upper.size() < q.k ? q.radius_m : upper.front(); };
	auto consider = [&](const GridRecord &r, double cos_min) {
		if ((q.status != 0 && meta_status(r.meta) != q.status) || (r.meta & kTimeMask) < min_meta_time)
			return;
		double lat = r.lat_e7 / 1e7, lon = r.lon_e7 / 1e7;
		if (point_bound_m(q.lat, q.lon, lat, lon, cos_min) > limit())
			return;
		double s = sphere.to(lat, lon);
		if (s * geo::kSphereLowerRatio > limit())
			return;
		cands.emplace_back(s, r.index);
		// Only a driver sure to qualify may tighten the limit: inside the
		// radius by its upper bound, and fresh beyond doubt.
		double u = s * geo::kSphereUpperRatio * (1 + 1e-9) + 1e-3;
		if (u > q.radius_m || !surely_fresh(r.meta, min_s, min_meta_time))
			return;
		if (upper.size() < q.k) {
			upper.push_back(u);
			std::push_heap(upper.begin(), upper.end());
		} else if (u < upper.front()) {
			std::pop_heap(upper.begin(), upper.end());
			upper.back() = u;
			std::push_heap(upper.begin(), upper.end());
		}
	};
	auto finish = [&] {
		double lim = limit();
		std::vector<uint32_t> ids;
		for (const auto &c : cands)
			if (c.first * geo::kSphereLowerRatio <= lim)
				ids.push_back(c.second);
		work.ranked += uint32_t(ids.size());
		return rank(live, ids, q, origin, upper.size() == q.k, lim, out);
	};
	// Every entry, read once and ranked as read: the answer of one pass over
	// the table, whatever moves meanwhile.
	auto brute_force = [&] {
		out.clear();
		cands.clear();
		upper.clear();
		std::vector<LiveView> seen; // beside cands
		uint32_t n = live.size();
		work.records += n;
		LiveView v;
		for (uint32_t i = 0; i < n; i++) {
			live.read(i, v);
			size_t before = cands.size();
			consider(record_of(i, v), std::cos(std::fabs(v.lat_e7 / 1e7) * geo::kDegToRad));
			if (cands.size() > before)
				seen.push_back(v);
		}
		double lim = limit();
		std::vector<LiveView> views;
		for (size_t c = 0; c < cands.size(); c++)
			if (cands[c].first * geo::kSphereLowerRatio <= lim)
				views.push_back(seen[c]);
		work.ranked += uint32_t(views.size());
		rank_views(views, q, origin, false, lim, out);
		return Search::Scan;
	};
	// Whether a cell's summary says it may hold a match.
	auto worth_reading = [&](const GridCell &c) {
		if (load_relaxed(c.count) == 0)
			return false;
		if (q.status != 0 && load_relaxed(c.by_status[q.status & 3]) == 0)
			return false;
		return int64_t(load_relaxed(c.newest_s)) >= min_s;
	};

	// One best-first pass: Again if drivers moved in a way it may have missed.
	enum class Pass { Done, Again, Scan };
	auto best_first = [&]() -> Pass {
		out.clear();
		cands.clear();
		upper.clear();
		uint32_t gen = load_acquire(h_->gen);
		if (gen & 1)
			return Pass::Scan;
		std::vector<Looked> looked;

		size_t budget = cell_budget(live.size());
		std::vector<Frontier> storage;
		storage.reserve(64);
		std::priority_queue<Frontier, std::vector<Frontier>, std::greater<Frontier>> frontier(std::greater<Frontier>(),
		                                                                                      std::move(storage));
		RowCos row_cos;
		std::vector<GridRecord> cell;
		std::vector<std::pair<double, uint32_t>> order; // flat-earth estimate, place in cell
		cell.reserve(64);
		order.reserve(64);
		const double cos_q = std::cos(q.lat * geo::kDegToRad);
		int32_t qlat_e7 = int32_t(std::llround(q.lat * 1e7)), qlon_e7 = int32_t(std::llround(q.lon * 1e7));
		uint32_t qi = lat_cell(qlat_e7), qj = lon_cell(qlon_e7);
		CellSet seen(qi, qj);
		AreaSet seen_areas(qi >> kAreaShift, qj >> kAreaShift);
		// Queues a square next to one just visited, unless seen before or too far.
		// A cell in an area that never held a driver is queued as that whole area:
		// empty country is crossed 64 cells at a time.
		auto reach = [&](int64_t ni, int64_t nj_any) {
			if (ni < 0 || ni >= kLatCells)
				return;
			uint32_t i = uint32_t(ni), j = wrap_lon(nj_any);
			if (!area_used(i, j)) {
				uint32_t ai = i >> kAreaShift, aj = j >> kAreaShift;
				if (!seen_areas.insert(ai, aj))
					return;
				uint32_t r0 = ai << kAreaShift, r1 = r0 + (1u << kAreaShift) - 1;
				double lat0 = -90.0 + double(r0) * kCellDeg, lon0 = -180.0 + double(aj << kAreaShift) * kCellDeg;
				double b = cheap_bound_m(q.lat, q.lon, lat0, lat0 + kAreaDeg, lon0, lon0 + kAreaDeg,
				                         std::min(row_cos(r0), row_cos(r1)));
				if (b <= limit()) {
					frontier.push({b, ai | kAreaFlag, aj});
					looked.push_back(looked_area(i, j)); // crossed unread: no cell may appear in it
				}
				return;
			}
			if (!seen.insert(i, j))
				return;
			double lat0 = -90.0 + double(i) * kCellDeg, lon0 = -180.0 + double(j) * kCellDeg;
			double b = cheap_bound_m(q.lat, q.lon, lat0, lat0 + kCellDeg, lon0, lon0 + kCellDeg, row_cos(i));
			if (b > limit())
				return;
			frontier.push({b, i, j});
			// Its hash slot is likely a cache miss: start loading it now.
			prefetch_cell(cell_key(i, j));
		};
		frontier.push({0, qi, qj});
		seen.insert(qi, qj);
		while (!frontier.empty()) {
			Frontier f = frontier.top();
			if (f.bound > limit())
				break;
			frontier.pop();
			if (f.lat & kAreaFlag) {
				// Nothing inside: go on to the ring of cells around it.
				int64_t i0 = int64_t(f.lat & ~kAreaFlag) << kAreaShift, j0 = int64_t(f.lon) << kAreaShift;
				int64_t side = int64_t(1) << kAreaShift;
				for (int64_t d = -1; d <= side; d++) {
					reach(i0 - 1, j0 + d);
					reach(i0 + side, j0 + d);
				}
				for (int64_t d = 0; d < side; d++) {
					reach(i0 + d, j0 - 1);
					reach(i0 + d, j0 + side);
				}
				// An area's ring costs about what four cells' neighbours do.
				if (seen.size() + 4 * seen_areas.size() > budget)
					return Pass::Scan;
				continue;
			}
			uint32_t gap = kNoEntry, slot = kNoEntry;
			if (!area_used(f.lat, f.lon))
				looked.push_back(looked_area(f.lat, f.lon));
			else if ((slot = find(cell_key(f.lat, f.lon), gap)) == kNoEntry && gap != kNoEntry)
				looked.push_back(looked_gap(gap));
			if (slot != kNoEntry)
				looked.push_back(looked_cell(slot));
			if (slot != kNoEntry && worth_reading(cells_[slot])) {
				if (!read_cell(slot, cell))
					return Pass::Scan;
				work.cells++;
				work.records += uint32_t(cell.size());
				double cos_min = row_cos(f.lat);
				if (upper.size() < q.k) {
					// While fewer than k drivers are sure, the limit is loose: try
					// this cell's nearest first (by a flat-earth estimate), so the
					// top k fills with close drivers and the rest is pruned early.
					order.clear();
					for (uint32_t i = 0; i < cell.size(); i++) {
						double dy = cell[i].lat_e7 / 1e7 - q.lat, dx = cell[i].lon_e7 / 1e7 - q.lon;
						if (dx > 180)
							dx -= 360;
						else if (dx < -180)
							dx += 360;
						dx *= cos_q;
						order.emplace_back(dy * dy + dx * dx, i);
					}
					std::sort(order.begin(), order.end());
					for (const auto &o : order)
						consider(cell[o.second], cos_min);
				} else {
					for (const GridRecord &r : cell)
						consider(r, cos_min);
				}
			}
			for (int di = -1; di <= 1; di++)
				for (int dj = -1; dj <= 1; dj++)
					if (di != 0 || dj != 0)
						reach(int64_t(f.lat) + di, int64_t(f.lon) + dj);
			if (seen.size() + 4 * seen_areas.size() > budget)
				return Pass::Scan;
		}
		fence_acquire(); // order the relaxed reads above (area bits, cells) before the check
		if (load_acquire(h_->gen) != gen)
			return Pass::Scan; // the index was rebuilt under us
		if (!none_arrived(looked.data(), looked.size()))
			return Pass::Again; // a driver may have come into a cell after it was read
		if (!finish())
			return Pass::Again; // drivers moved under us
		return Pass::Done;
	};
	for (int pass = 0; pass < 3; pass++) {
		Pass p = best_first();
		if (p == Pass::Done)
			return Search::Cells;
		if (p == Pass::Scan)
			break;
	}
	return brute_force();
}

void GridIndex::within_box(const LiveTable &live, double lat0, double lat1, double lon0, double lon1,
                           int64_t min_ts_ms, std::vector<LiveView> &out) const {
	out.clear();
	lat0 = std::max(lat0, -90.0);
	lat1 = std::min(lat1, 90.0);
	lon0 = std::max(lon0, -180.0);
	lon1 = std::min(lon1, 180.0);
	if (!(lat0 <= lat1 && lon0 <= lon1))
		return;
	auto in_box = [&](int32_t lat_e7, int32_t lon_e7) {
		double lat = lat_e7 / 1e7, lon = lon_e7 / 1e7;
		return lat >= lat0 && lat <= lat1 && lon >= lon0 && lon <= lon1;
	};
	auto keep = [&](std::vector<uint32_t> &ids) {
		// A driver that moved while the cells were read may be in two of them.
		std::sort(ids.begin(), ids.end());
		ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
		std::vector<LiveView> views;
		read_entries(live, ids.data(), ids.size(), views);
		for (const LiveView &v : views)
			if (v.driver_id != 0 && v.ts_ms >= min_ts_ms && in_box(v.lat_e7, v.lon_e7))
				out.push_back(v);
	};
	auto brute_force = [&] {
		out.clear();
		uint32_t n = live.size();
		LiveView v;
		for (uint32_t i = 0; i < n; i++) {
			live.read(i, v);
			if (v.ts_ms >= min_ts_ms && in_box(v.lat_e7, v.lon_e7))
				out.push_back(v);
		}
	};
	uint32_t i0 = lat_cell(int32_t(std::floor(lat0 * 1e7))), i1 = lat_cell(int32_t(std::ceil(lat1 * 1e7)));
	int64_t j0 = (int64_t(std::floor(lon0 * 1e7)) + 1800000000) * kCellsPerDegree / 10000000;
	int64_t j1 = (int64_t(std::ceil(lon1 * 1e7)) + 1800000000) * kCellsPerDegree / 10000000;
	if (double(i1 - i0 + 1) * double(j1 - j0 + 1) > double(cell_budget(live.size())))
		return brute_force();
	const int64_t min_s = min_ts_ms == INT64_MIN ? INT64_MIN : floor_div(min_ts_ms, 1000);
	const uint32_t min_meta_time = min_s == INT64_MIN ? 0 : meta_of(0, min_s * 1000) & kTimeMask;
	std::vector<GridRecord> cell;
	std::vector<uint32_t> ids;
	std::vector<Looked> looked;
	// One pass over the box's cells: false if the index was rebuilt or a
	// driver may have come into a cell after it was read.
	auto cells_pass = [&] {
		ids.clear();
		looked.clear();
		uint32_t gen = load_acquire(h_->gen);
		if (gen & 1)
			return false;
		for (uint32_t i = i0; i <= i1; i++) {
			for (int64_t j = j0; j <= j1; j++) {
				uint32_t jj = uint32_t(j % kLonCells);
				if (!area_used(i, jj)) {
					looked.push_back(looked_area(i, jj));
					continue;
				}
				uint32_t gap, slot = find(cell_key(i, jj), gap);
				if (slot == kNoEntry) {
					if (gap != kNoEntry)
						looked.push_back(looked_gap(gap));
					continue;
				}
				looked.push_back(looked_cell(slot));
				if (load_relaxed(cells_[slot].count) == 0 || int64_t(load_relaxed(cells_[slot].newest_s)) < min_s)
					continue;
				if (!read_cell(slot, cell))
					return false;
				for (const GridRecord &r : cell)
					if ((r.meta & kTimeMask) >= min_meta_time && in_box(r.lat_e7, r.lon_e7))
						ids.push_back(r.index);
			}
		}
		fence_acquire(); // order the relaxed reads above (area bits, cells) before the check
		return load_acquire(h_->gen) == gen && none_arrived(looked.data(), looked.size());
	};
	for (int pass = 0; pass < 3; pass++)
		if (cells_pass()) {
			keep(ids);
			return;
		}
	brute_force();
}

} // namespace lt
