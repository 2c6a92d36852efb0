#include "live_table.hpp"

#include <cstring>

#include "atomics.hpp"

namespace lt {
namespace {

uint32_t hash_slots(uint32_t capacity) {
	uint32_t n = 1;
	while (n < 2 * uint64_t(capacity))
		n <<= 1;
	return n;
}

// Layout: header | hash slots | (64-byte aligned) entries | grid.
size_t entries_offset(uint32_t capacity) {
	return (sizeof(LiveHeader) + size_t(hash_slots(capacity)) * sizeof(uint32_t) + 63) & ~size_t(63);
}

size_t grid_offset(uint32_t capacity) { return entries_offset(capacity) + size_t(capacity) * sizeof(LiveEntry); }

} // namespace

size_t LiveTable::bytes_needed(uint32_t capacity) {
	return grid_offset(capacity) + GridIndex::bytes_needed(GridIndex::slots_for(capacity), capacity);
}

void LiveTable::format(void *mem, uint32_t capacity) {
	std::memset(mem, 0, bytes_needed(capacity));
	auto *h = static_cast<LiveHeader *>(mem);
	h->capacity = capacity;
	h->hash_mask = hash_slots(capacity) - 1;
	GridIndex::format(static_cast<char *>(mem) + grid_offset(capacity), GridIndex::slots_for(capacity), capacity);
}

void LiveTable::attach(void *mem) {
	h_ = static_cast<LiveHeader *>(mem);
	hash_ = reinterpret_cast<uint32_t *>(h_ + 1);
	entries_ = reinterpret_cast<LiveEntry *>(static_cast<char *>(mem) + entries_offset(h_->capacity));
	grid_.attach(static_cast<char *>(mem) + grid_offset(h_->capacity));
}

uint32_t LiveTable::size() const { return load_acquire(h_->count); }

uint32_t LiveTable::find(uint64_t driver_id) const {
	for (uint32_t i = uint32_t(mix64(driver_id)) & h_->hash_mask;; i = (i + 1) & h_->hash_mask) {
		uint32_t v = load_acquire(hash_[i]);
		if (v == 0)
			return kNoEntry;
		if (load_relaxed(entries_[v - 1].driver_id) == driver_id)
			return v - 1;
	}
}

Applied LiveTable::apply(const Fix &f, int64_t received_us, uint8_t *status_out, bool *register_out,
                         uint32_t *index_out) {
	uint32_t slot = uint32_t(mix64(f.driver_id)) & h_->hash_mask;
	for (;; slot = (slot + 1) & h_->hash_mask) {
		uint32_t v = load_relaxed(hash_[slot]);
		if (v == 0)
			break;
		LiveEntry &e = entries_[v - 1];
		if (load_relaxed(e.driver_id) != f.driver_id)
			continue;
		// Only the listener writes ts, so reading it unlocked is exact.
		if (f.ts_ms <= load_relaxed(e.ts_ms)) {
			*status_out = load_relaxed(e.status);
			*register_out = false;
			if (index_out)
				*index_out = v - 1;
			return Applied::Late;
		}
		// The grid is updated under the entry's lock, so a driver's cell and
		// status change together for set_status() running elsewhere.
		entry_lock(e);
		uint8_t old = load_relaxed(e.status);
		store_relaxed(e.ts_ms, f.ts_ms);
		store_relaxed(e.received_us, received_us);
		store_relaxed(e.lat_e7, f.lat_e7);
		store_relaxed(e.lon_e7, f.lon_e7);
		store_relaxed(e.speed_cms, f.speed_cms);
		store_relaxed(e.heading_cd, f.heading_cd);
		store_relaxed(e.accuracy_dm, f.accuracy_dm);
		if (f.status != kStatusNoChange)
			store_relaxed(e.status, f.status);
		grid_.place(entries_, v - 1, load_relaxed(h_->count));
		entry_unlock(e);
		*status_out = f.status != kStatusNoChange ? f.status : old;
		*register_out = f.status != kStatusNoChange && f.status != old;
		if (index_out)
			*index_out = v - 1;
		return Applied::Moved;
	}

	// A driver seen for the first time starts available unless it says otherwise.
	*status_out = f.status != kStatusNoChange ? f.status : uint8_t(kStatusAvailable);
	*register_out = true;
	uint32_t n = load_relaxed(h_->count);
	if (index_out)
		*index_out = kNoEntry;
	if (n >= h_->capacity)
		return Applied::Full;
	LiveEntry &e = entries_[n];
	e = LiveEntry{};
	e.seq = 1; // locked until it is in the grid
	e.status = *status_out;
	e.driver_id = f.driver_id;
	e.ts_ms = f.ts_ms;
	e.received_us = received_us;
	e.lat_e7 = f.lat_e7;
	e.lon_e7 = f.lon_e7;
	e.speed_cms = f.speed_cms;
	e.heading_cd = f.heading_cd;
	e.accuracy_dm = f.accuracy_dm;
	// Publish the entry before the hash slot that leads to it.
	store_release(h_->count, n + 1);
	store_release(hash_[slot], n + 1);
	grid_.place(entries_, n, n + 1);
	entry_unlock(e);
	if (index_out)
		*index_out = n;
	return Applied::Moved;
}

bool LiveTable::set_status(uint64_t driver_id, uint8_t status) {
	uint32_t i = find(driver_id);
	if (i == kNoEntry)
		return false;
	LiveEntry &e = entries_[i];
	entry_lock(e);
	store_relaxed(e.status, status);
	grid_.status_changed(i, status);
	entry_unlock(e);
	return true;
}

void LiveTable::read(uint32_t index, LiveView &out) const {
	const LiveEntry &e = entries_[index];
	for (;;) {
		uint32_t s1 = load_acquire(e.seq);
		if (s1 & 1) {
			cpu_relax();
			continue;
		}
		out.driver_id = load_relaxed(e.driver_id);
		out.ts_ms = load_relaxed(e.ts_ms);
		out.received_us = load_relaxed(e.received_us);
		out.lat_e7 = load_relaxed(e.lat_e7);
		out.lon_e7 = load_relaxed(e.lon_e7);
		out.speed_cms = load_relaxed(e.speed_cms);
		out.heading_cd = load_relaxed(e.heading_cd);
		out.accuracy_dm = load_relaxed(e.accuracy_dm);
		out.status = load_relaxed(e.status);
		fence_acquire();
		if (load_relaxed(e.seq) == s1)
			return;
	}
}

bool LiveTable::get(uint64_t driver_id, LiveView &out) const {
	uint32_t i = find(driver_id);
	if (i == kNoEntry)
		return false;
	read(i, out);
	return true;
}

void LiveTable::clear() {
	uint32_t n = load_relaxed(h_->count);
	store_release(h_->count, 0u);
	for (uint32_t i = 0; i <= h_->hash_mask; i++)
		store_relaxed(hash_[i], 0u);
	std::memset(static_cast<void *>(entries_), 0, size_t(n) * sizeof(LiveEntry));
	grid_.clear();
}

} // namespace lt
