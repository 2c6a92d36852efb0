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
constexpr uint32_t kMinSlots = 1024;
constexpr double kMaxLoad = 0.7;

// Visiting more cells than this means the neighbourhood is as big as the
// fleet: scan the entries instead.
size_t cell_budget(uint32_t n_live) { return std::max<size_t>(4096, n_live / 16); }

void begin_write(uint32_t &version) {
	store_relaxed(version, load_relaxed(version) + 1);
	fence_release();
}
void end_write(uint32_t &version) { store_release(version, load_relaxed(version) + 1); }

bool passes(const LiveView &v, uint8_t status, int64_t min_ts_ms) {
	return (status == 0 || v.status == status) && v.ts_ms >= min_ts_ms;
}

bool closer(const Neighbor &a, const Neighbor &b) {
	return a.distance_m < b.distance_m || (a.distance_m == b.distance_m && a.v.driver_id < b.v.driver_id);
}

// The cells one search has seen: a bitmap over the 64 x 64 cells around the
// start (about 28 km across), and a hash set for any beyond it.
class CellSet {
public:
	CellSet(uint32_t lat0, uint32_t lon0) : lat0_(lat0), lon0_(lon0) {}
	bool insert(uint32_t lat, uint32_t lon) { // false if already seen
		uint32_t di = lat - lat0_ + kHalf, dj = (lon - lon0_ + kHalf + kLonCells) % kLonCells;
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

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// A cell's newest fix, in the 32-bit seconds the summary keeps.
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

struct Frontier {
	double bound;
	uint32_t lat, lon;
	bool operator>(const Frontier &o) const { return bound > o.bound; }
};

} // namespace

uint32_t GridIndex::slots_for(uint32_t max_drivers) {
	uint32_t n = kMinSlots;
	while (n < 2 * uint64_t(max_drivers))
		n <<= 1;
	return n;
}

// Layout: header | cells | next[] | prev[] | cell[].
size_t GridIndex::bytes_needed(uint32_t slots, uint32_t max_entries) {
	return sizeof(GridHeader) + size_t(slots) * sizeof(GridCell) + 3 * size_t(max_entries) * sizeof(uint32_t);
}

void GridIndex::format(void *mem, uint32_t slots, uint32_t max_entries) {
	std::memset(mem, 0, bytes_needed(slots, max_entries));
	auto *h = static_cast<GridHeader *>(mem);
	h->capacity = slots;
	h->entries = max_entries;
	auto *cell = reinterpret_cast<uint32_t *>(reinterpret_cast<GridCell *>(h + 1) + slots) + 2 * size_t(max_entries);
	for (uint32_t i = 0; i < max_entries; i++)
		cell[i] = kNoEntry;
}

void GridIndex::attach(void *mem) {
	h_ = static_cast<GridHeader *>(mem);
	cells_ = reinterpret_cast<GridCell *>(h_ + 1);
	next_ = reinterpret_cast<uint32_t *>(cells_ + h_->capacity);
	prev_ = next_ + h_->entries;
	cell_ = prev_ + h_->entries;
}

uint32_t GridIndex::cell_of(uint32_t index) const { return load_relaxed(cell_[index]); }

uint32_t GridIndex::used() const { return load_relaxed(h_->used); }
uint64_t GridIndex::rebuilds() const { return load_relaxed(h_->rebuilds); }

uint32_t GridIndex::lat_cell(int32_t lat_e7) {
	int64_t i = (int64_t(lat_e7) + 900000000) * kCellsPerDegree / 10000000;
	return uint32_t(std::min<int64_t>(std::max<int64_t>(i, 0), kLatCells - 1));
}

uint32_t GridIndex::lon_cell(int32_t lon_e7) {
	int64_t i = (int64_t(lon_e7) + 1800000000) * kCellsPerDegree / 10000000;
	return uint32_t(((i % kLonCells) + kLonCells) % kLonCells); // +180 is -180
}

uint64_t GridIndex::key_of(int32_t lat_e7, int32_t lon_e7) {
	return (uint64_t(lat_cell(lat_e7)) << 32 | lon_cell(lon_e7)) + 1;
}

uint32_t GridIndex::find(uint64_t key) const {
	uint32_t mask = h_->capacity - 1;
	for (uint32_t i = uint32_t(mix64(key)) & mask, probes = 0; probes < h_->capacity; i = (i + 1) & mask, probes++) {
		uint64_t k = load_acquire(cells_[i].key);
		if (k == key)
			return i;
		if (k == 0)
			return kNoEntry;
	}
	return kNoEntry;
}

uint32_t GridIndex::insert(uint64_t key) {
	uint32_t mask = h_->capacity - 1;
	for (uint32_t i = uint32_t(mix64(key)) & mask;; i = (i + 1) & mask) {
		uint64_t k = load_relaxed(cells_[i].key);
		if (k == key)
			return i;
		if (k == 0) {
			if (load_relaxed(h_->used) + 1 > uint32_t(h_->capacity * kMaxLoad))
				return kNoEntry;
			store_relaxed(cells_[i].head, kNoEntry);
			store_relaxed(cells_[i].count, 0u);
			store_release(cells_[i].key, key); // publish a ready cell
			store_relaxed(h_->used, load_relaxed(h_->used) + 1);
			return i;
		}
	}
}

void GridIndex::link(LiveEntry *entries, uint32_t index, uint32_t slot) {
	GridCell &c = cells_[slot];
	LiveEntry &e = entries[index];
	begin_write(c.version);
	uint32_t head = load_relaxed(c.head);
	store_relaxed(prev_[index], kNoEntry);
	store_relaxed(next_[index], head);
	if (head != kNoEntry)
		store_relaxed(prev_[head], index);
	store_relaxed(c.head, index);
	store_relaxed(c.count, load_relaxed(c.count) + 1);
	fetch_add_relaxed(c.by_status[e.status & 3], 1u);
	uint32_t secs = fix_seconds(e.ts_ms);
	if (secs > load_relaxed(c.newest_s))
		store_relaxed(c.newest_s, secs);
	store_relaxed(cell_[index], slot);
	end_write(c.version);
}

void GridIndex::unlink(LiveEntry *, uint32_t index, uint32_t slot, uint8_t status) {
	GridCell &c = cells_[slot];
	begin_write(c.version);
	uint32_t prev = load_relaxed(prev_[index]), next = load_relaxed(next_[index]);
	if (prev == kNoEntry)
		store_relaxed(c.head, next);
	else
		store_relaxed(next_[prev], next);
	if (next != kNoEntry)
		store_relaxed(prev_[next], prev);
	store_relaxed(c.count, load_relaxed(c.count) - 1);
	fetch_add_relaxed(c.by_status[status & 3], uint32_t(-1));
	store_relaxed(cell_[index], kNoEntry);
	end_write(c.version);
}

void GridIndex::place(LiveEntry *entries, uint32_t index, uint32_t n, uint8_t old_status) {
	LiveEntry &e = entries[index];
	uint64_t key = key_of(e.lat_e7, e.lon_e7);
	uint32_t cur = cell_[index];
	if (cur != kNoEntry && load_relaxed(cells_[cur].key) == key) {
		// Same cell: no list changes; keep the summary current.
		GridCell &c = cells_[cur];
		if (old_status != e.status) {
			fetch_add_relaxed(c.by_status[old_status & 3], uint32_t(-1));
			fetch_add_relaxed(c.by_status[e.status & 3], 1u);
		}
		uint32_t secs = fix_seconds(e.ts_ms);
		if (secs > load_relaxed(c.newest_s))
			store_relaxed(c.newest_s, secs);
		return;
	}
	uint32_t slot = insert(key);
	if (slot == kNoEntry) {
		rebuild(entries, n, index); // files every entry, this one included
		return;
	}
	if (cur != kNoEntry)
		unlink(entries, index, cur, old_status);
	link(entries, index, slot);
}

void GridIndex::status_changed(uint32_t index, uint8_t old_status, uint8_t new_status) {
	uint32_t cur = load_relaxed(cell_[index]);
	if (cur == kNoEntry || old_status == new_status)
		return;
	fetch_add_relaxed(cells_[cur].by_status[old_status & 3], uint32_t(-1));
	fetch_add_relaxed(cells_[cur].by_status[new_status & 3], 1u);
}

// Refiles every entry into an emptied hash. Every entry lock is taken (the
// caller holds `held`), so no status change can slip between the old cells
// and the new ones; readers see an odd generation and scan entries instead.
void GridIndex::rebuild(LiveEntry *entries, uint32_t n, uint32_t held) {
	for (uint32_t i = 0; i < n; i++)
		if (i != held)
			entry_lock(entries[i]);
	begin_write(h_->gen);
	for (uint32_t i = 0; i < h_->capacity; i++) {
		GridCell &c = cells_[i];
		store_relaxed(c.key, uint64_t(0));
		store_relaxed(c.head, kNoEntry);
		store_relaxed(c.count, 0u);
		store_relaxed(c.newest_s, 0u);
		for (uint32_t &b : c.by_status)
			store_relaxed(b, 0u);
	}
	store_relaxed(h_->used, 0u);
	for (uint32_t i = 0; i < n; i++) {
		// At most one cell per entry and capacity >= 2n, so this always fits.
		uint32_t slot = insert(key_of(entries[i].lat_e7, entries[i].lon_e7));
		store_relaxed(cell_[i], kNoEntry);
		if (slot != kNoEntry)
			link(entries, i, slot);
	}
	store_relaxed(h_->rebuilds, load_relaxed(h_->rebuilds) + 1);
	end_write(h_->gen);
	for (uint32_t i = 0; i < n; i++)
		if (i != held)
			entry_unlock(entries[i]);
}

void GridIndex::clear() {
	begin_write(h_->gen);
	for (uint32_t i = 0; i < h_->capacity; i++)
		store_relaxed(cells_[i].key, uint64_t(0));
	store_relaxed(h_->used, 0u);
	end_write(h_->gen);
}

bool GridIndex::read_cell(const LiveTable &live, uint32_t slot, std::vector<uint32_t> &ids,
                          std::vector<LiveView> &tmp) const {
	const GridCell &c = cells_[slot];
	const uint32_t cap = h_->entries;
	for (int attempt = 0; attempt < 64; attempt++) {
		// Walk the links (compact, cached) under the cell's version...
		uint32_t v1 = load_acquire(c.version);
		if (v1 & 1) {
			cpu_relax();
			continue;
		}
		ids.clear();
		bool torn = false;
		for (uint32_t i = load_relaxed(c.head); i != kNoEntry; i = load_relaxed(next_[i])) {
			if (i >= cap || ids.size() >= cap) { // a list changing under us; the version will say so
				torn = true;
				break;
			}
			ids.push_back(i);
		}
		fence_acquire();
		if (torn || load_relaxed(c.version) != v1)
			continue;
		// ... then fetch the entries all at once: their cache misses overlap.
		const LiveEntry *entries = live.entries();
		for (uint32_t i : ids)
			__builtin_prefetch(&entries[i]);
		tmp.resize(ids.size());
		for (size_t k = 0; k < ids.size(); k++)
			live.read(ids[k], tmp[k]);
		return true;
	}
	return false;
}

void GridIndex::scan_all(const LiveTable &live, std::vector<LiveView> &out) const {
	uint32_t n = live.size();
	out.resize(n);
	for (uint32_t i = 0; i < n; i++)
		live.read(i, out[i]);
}

void GridIndex::nearest(const LiveTable &live, const NearestQuery &q, std::vector<Neighbor> &out) const {
	out.clear();
	if (q.k == 0)
		return;
	// Ranked by geodesic distance, which is the expensive part, so it is
	// computed last and only for drivers that can still make the top k:
	//  - a trig-free lower bound (latitude gap, longitude gap at the cell's
	//    smallest cosine) rejects most drivers outright;
	//  - the sphere distance s of the rest gives s * kSphereLowerRatio <=
	//    geodesic <= s * kSphereUpperRatio; the k smallest upper bounds seen
	//    bound the k-th geodesic from above (`limit`), which prunes both cells
	//    and drivers;
	//  - at the end the survivors (about k + 1 %) get their exact geodesic.
	geo::GeodesicFrom origin(q.lat, q.lon);
	const int64_t min_s = q.min_ts_ms == INT64_MIN ? INT64_MIN : floor_div(q.min_ts_ms, 1000);
	std::vector<std::pair<double, LiveView>> cands; // sphere distance, driver
	std::vector<double> upper;                      // max-heap: the k smallest upper bounds
	auto limit = [&] { return upper.size() < q.k ? q.radius_m : upper.front(); };
	auto consider = [&](const LiveView &v, double cos_min) {
		if (!passes(v, q.status, q.min_ts_ms))
			return;
		double lat = v.lat_e7 / 1e7, lon = v.lon_e7 / 1e7;
		if (cheap_bound_m(q.lat, q.lon, lat, lat, lon, lon, cos_min) > limit())
			return;
		double s = geo::distance_m(q.lat, q.lon, lat, lon);
		if (s * geo::kSphereLowerRatio > limit())
			return;
		cands.emplace_back(s, v);
		double u = s * geo::kSphereUpperRatio * (1 + 1e-9) + 1e-3;
		if (u > q.radius_m) // surely inside the radius only if its upper bound is
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
		for (const auto &c : cands) {
			if (c.first * geo::kSphereLowerRatio > lim)
				continue;
			Neighbor n{origin.to(c.second.lat_e7 / 1e7, c.second.lon_e7 / 1e7), c.second};
			if (n.distance_m <= q.radius_m)
				out.push_back(n);
		}
		size_t k = std::min<size_t>(q.k, out.size());
		std::partial_sort(out.begin(), out.begin() + long(k), out.end(), closer);
		out.resize(k);
	};
	auto brute_force = [&] {
		std::vector<LiveView> all;
		scan_all(live, all);
		cands.clear();
		upper.clear();
		for (const LiveView &v : all)
			consider(v, std::cos(std::fabs(v.lat_e7 / 1e7) * geo::kDegToRad));
		finish();
	};
	// Whether a cell's summary says it may hold a match.
	auto worth_reading = [&](const GridCell &c) {
		if (load_relaxed(c.count) == 0)
			return false;
		if (q.status != 0 && load_relaxed(c.by_status[q.status & 3]) == 0)
			return false;
		return int64_t(load_relaxed(c.newest_s)) >= min_s;
	};

	uint32_t gen = load_acquire(h_->gen);
	if (gen & 1)
		return brute_force();

	size_t budget = cell_budget(live.size());
	std::vector<Frontier> storage;
	storage.reserve(64);
	std::priority_queue<Frontier, std::vector<Frontier>, std::greater<Frontier>> frontier(std::greater<Frontier>(),
	                                                                                      std::move(storage));
	RowCos row_cos;
	std::vector<uint32_t> ids;
	std::vector<LiveView> cell;
	std::vector<std::pair<double, uint32_t>> order; // flat-earth estimate, index in cell
	ids.reserve(64);
	cell.reserve(64);
	order.reserve(64);
	cands.reserve(64);
	upper.reserve(q.k < 64 ? q.k : 64);
	const double cos_q = std::cos(q.lat * geo::kDegToRad);
	int32_t qlat_e7 = int32_t(std::llround(q.lat * 1e7)), qlon_e7 = int32_t(std::llround(q.lon * 1e7));
	uint32_t qi = lat_cell(qlat_e7), qj = lon_cell(qlon_e7);
	CellSet seen(qi, qj);
	frontier.push({0, qi, qj});
	seen.insert(qi, qj);
	while (!frontier.empty()) {
		Frontier f = frontier.top();
		if (f.bound > limit())
			break;
		frontier.pop();
		uint32_t slot = find((uint64_t(f.lat) << 32 | f.lon) + 1);
		if (slot != kNoEntry && worth_reading(cells_[slot])) {
			if (!read_cell(live, slot, ids, cell))
				return brute_force();
			// Nearest first (by a flat-earth estimate), so the top k fills with
			// close drivers and the rest is pruned without a geodesic.
			order.clear();
			for (uint32_t i = 0; i < cell.size(); i++) {
				double dy = cell[i].lat_e7 / 1e7 - q.lat, dx = geo::lon_diff(q.lon, cell[i].lon_e7 / 1e7) * cos_q;
				order.emplace_back(dy * dy + dx * dx, i);
			}
			std::sort(order.begin(), order.end());
			double cos_min = row_cos(f.lat);
			for (const auto &o : order) {
				// A driver that moved rows since the list was read brings its own row.
				const LiveView &v = cell[o.second];
				uint32_t row = lat_cell(v.lat_e7);
				consider(v, row == f.lat ? cos_min : row_cos(row));
			}
		}
		for (int di = -1; di <= 1; di++) {
			for (int dj = -1; dj <= 1; dj++) {
				int64_t ni = int64_t(f.lat) + di;
				if ((di == 0 && dj == 0) || ni < 0 || ni >= kLatCells)
					continue;
				uint32_t nj = uint32_t((int64_t(f.lon) + dj + kLonCells) % kLonCells);
				if (!seen.insert(uint32_t(ni), nj))
					continue;
				double lat0 = -90.0 + double(ni) * kCellDeg, lon0 = -180.0 + double(nj) * kCellDeg;
				double b = cheap_bound_m(q.lat, q.lon, lat0, lat0 + kCellDeg, lon0, lon0 + kCellDeg,
				                         row_cos(uint32_t(ni)));
				if (b <= limit())
					frontier.push({b, uint32_t(ni), nj});
			}
		}
		if (seen.size() > budget)
			return brute_force();
	}
	if (load_acquire(h_->gen) != gen)
		return brute_force(); // the hash was rebuilt under us
	finish();
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
	auto in_box = [&](const LiveView &v) {
		double lat = v.lat_e7 / 1e7, lon = v.lon_e7 / 1e7;
		return v.ts_ms >= min_ts_ms && lat >= lat0 && lat <= lat1 && lon >= lon0 && lon <= lon1;
	};
	auto brute_force = [&] {
		std::vector<LiveView> all;
		scan_all(live, all);
		out.clear();
		for (const LiveView &v : all)
			if (in_box(v))
				out.push_back(v);
	};
	uint32_t i0 = lat_cell(int32_t(std::floor(lat0 * 1e7))), i1 = lat_cell(int32_t(std::ceil(lat1 * 1e7)));
	int64_t j0 = (int64_t(std::floor(lon0 * 1e7)) + 1800000000) * kCellsPerDegree / 10000000;
	int64_t j1 = (int64_t(std::ceil(lon1 * 1e7)) + 1800000000) * kCellsPerDegree / 10000000;
	uint32_t gen = load_acquire(h_->gen);
	if ((gen & 1) || double(i1 - i0 + 1) * double(j1 - j0 + 1) > double(cell_budget(live.size())))
		return brute_force();
	std::vector<uint32_t> ids;
	std::vector<LiveView> cell;
	for (uint32_t i = i0; i <= i1; i++) {
		for (int64_t j = j0; j <= j1; j++) {
			uint32_t slot = find((uint64_t(i) << 32 | uint32_t(j % kLonCells)) + 1);
			if (slot == kNoEntry || load_relaxed(cells_[slot].count) == 0)
				continue;
			if (!read_cell(live, slot, ids, cell))
				return brute_force();
			for (const LiveView &v : cell)
				if (in_box(v))
					out.push_back(v);
		}
	}
	if (load_acquire(h_->gen) != gen)
		brute_force();
}

} // namespace lt
