// Live state table: first sight, updates, late fixes, status, capacity, and
// lock-free readers racing a writer.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "core/live_table.hpp"
#include "test_helpers.hpp"

using namespace lt;
using lt_test::make_fix;

namespace {

// Shared memory segments are at least cache-line aligned; so is this.
struct HeapTable {
	std::unique_ptr<uint8_t, void (*)(void *)> mem{nullptr, std::free};
	LiveTable t{};
	explicit HeapTable(uint32_t capacity) {
		size_t n = LiveTable::bytes_needed(capacity);
		mem.reset(static_cast<uint8_t *>(std::aligned_alloc(64, (n + 63) / 64 * 64)));
		std::memset(mem.get(), 0x5A, n); // format() must not rely on zeroed memory
		LiveTable::format(mem.get(), capacity);
		t.attach(mem.get());
	}
};

struct Result {
	Applied a;
	uint8_t status;
	bool reg;
};

Result apply(LiveTable &t, const Fix &f, int64_t received_us = 1) {
	Result r{};
	r.status = 0xEE;
	r.reg = false;
	r.a = t.apply(f, received_us, &r.status, &r.reg);
	return r;
}

Fix fix(uint64_t id, int64_t ts, uint8_t status = kStatusNoChange, int32_t lat = 100, int32_t lon = 200) {
	Fix f = make_fix(id, ts, lat, lon);
	f.status = status;
	return f;
}

} // namespace

TEST(LiveTable, FormatAndAttach) {
	HeapTable h(100);
	EXPECT_TRUE(h.t.attached());
	EXPECT_EQ(h.t.capacity(), 100u);
	EXPECT_EQ(h.t.size(), 0u);
	EXPECT_EQ(reinterpret_cast<uintptr_t>(h.t.entries()) % 64, 0u); // one cache line per entry
	LiveView v;
	EXPECT_FALSE(h.t.get(1, v));
	EXPECT_EQ(h.t.find(1), kNoEntry);
	// The entries fit in what bytes_needed() asked for.
	auto end = reinterpret_cast<uint8_t *>(h.t.entries() + 100);
	EXPECT_LE(end, h.mem.get() + LiveTable::bytes_needed(100));
}

TEST(LiveTable, FirstFixOfADriver) {
	HeapTable h(16);
	Fix f = fix(42, 1000, kStatusNoChange, -338688000, 1512093000);
	f.speed_cms = 830;
	f.heading_cd = 9000;
	f.accuracy_dm = 50;
	Result r = apply(h.t, f, 123456);
	EXPECT_EQ(r.a, Applied::Moved);
	EXPECT_EQ(r.status, kStatusAvailable); // a driver first seen is available
	EXPECT_TRUE(r.reg);                    // new driver: persist its status
	EXPECT_EQ(h.t.size(), 1u);
	LiveView v{};
	ASSERT_TRUE(h.t.get(42, v));
	EXPECT_EQ(v.driver_id, 42u);
	EXPECT_EQ(v.ts_ms, 1000);
	EXPECT_EQ(v.received_us, 123456);
	EXPECT_EQ(v.lat_e7, -338688000);
	EXPECT_EQ(v.lon_e7, 1512093000);
	EXPECT_EQ(v.speed_cms, 830);
	EXPECT_EQ(v.heading_cd, 9000);
	EXPECT_EQ(v.accuracy_dm, 50);
	EXPECT_EQ(v.status, kStatusAvailable);
	EXPECT_EQ(h.t.find(42), 0u);
	LiveView w{};
	h.t.read(0, w);
	EXPECT_EQ(w.driver_id, v.driver_id);
	EXPECT_EQ(w.ts_ms, v.ts_ms);
	EXPECT_EQ(w.received_us, v.received_us);
	EXPECT_EQ(w.lat_e7, v.lat_e7);
	EXPECT_EQ(w.lon_e7, v.lon_e7);
	EXPECT_EQ(w.speed_cms, v.speed_cms);
	EXPECT_EQ(w.heading_cd, v.heading_cd);
	EXPECT_EQ(w.accuracy_dm, v.accuracy_dm);
	EXPECT_EQ(w.status, v.status);
}

TEST(LiveTable, FirstFixWithExplicitStatus) {
	for (uint8_t s : {uint8_t(kStatusOffline), uint8_t(kStatusAvailable), uint8_t(kStatusBusy)}) {
		HeapTable h(4);
		Result r = apply(h.t, fix(7, 1000, s));
		EXPECT_EQ(r.a, Applied::Moved);
		EXPECT_EQ(r.status, s);
		EXPECT_TRUE(r.reg);
		LiveView v;
		ASSERT_TRUE(h.t.get(7, v));
		EXPECT_EQ(v.status, s);
	}
}

TEST(LiveTable, NewerFixMovesPosition) {
	HeapTable h(4);
	apply(h.t, fix(7, 1000, kStatusNoChange, 1, 2));
	Fix f = fix(7, 1001, kStatusNoChange, 3, 4);
	f.speed_cms = 0xFFFF;
	Result r = apply(h.t, f, 99);
	EXPECT_EQ(r.a, Applied::Moved);
	EXPECT_EQ(r.status, kStatusAvailable); // unchanged
	EXPECT_FALSE(r.reg);                   // nothing to persist
	LiveView v;
	ASSERT_TRUE(h.t.get(7, v));
	EXPECT_EQ(v.ts_ms, 1001);
	EXPECT_EQ(v.lat_e7, 3);
	EXPECT_EQ(v.lon_e7, 4);
	EXPECT_EQ(v.speed_cms, 0xFFFF);
	EXPECT_EQ(v.received_us, 99);
	EXPECT_EQ(v.status, kStatusAvailable);
	EXPECT_EQ(h.t.size(), 1u);
}

TEST(LiveTable, LateFixesDoNotMove) {
	HeapTable h(4);
	apply(h.t, fix(7, 1000, kStatusBusy, 1, 2), 10);
	for (int64_t ts : {int64_t(1000), int64_t(999), int64_t(0), int64_t(-5), INT64_MIN}) {
		Result r = apply(h.t, fix(7, ts, kStatusNoChange, 50, 60), 20);
		EXPECT_EQ(r.a, Applied::Late) << ts;
		EXPECT_EQ(r.status, kStatusBusy) << ts; // the driver's status, for the history row
		EXPECT_FALSE(r.reg) << ts;
		LiveView v;
		ASSERT_TRUE(h.t.get(7, v));
		EXPECT_EQ(v.ts_ms, 1000);
		EXPECT_EQ(v.lat_e7, 1);
		EXPECT_EQ(v.lon_e7, 2);
		EXPECT_EQ(v.received_us, 10);
	}
	// One millisecond newer moves it.
	EXPECT_EQ(apply(h.t, fix(7, 1001, kStatusNoChange, 50, 60)).a, Applied::Moved);
	LiveView v;
	ASSERT_TRUE(h.t.get(7, v));
	EXPECT_EQ(v.lat_e7, 50);
}

TEST(LiveTable, StatusChangesAndRegisterFlag) {
	HeapTable h(4);
	Result r = apply(h.t, fix(7, 1));
	EXPECT_TRUE(r.reg);
	EXPECT_EQ(r.status, kStatusAvailable);
	// Same status said explicitly: no change to persist.
	r = apply(h.t, fix(7, 2, kStatusAvailable));
	EXPECT_EQ(r.status, kStatusAvailable);
	EXPECT_FALSE(r.reg);
	// A change.
	r = apply(h.t, fix(7, 3, kStatusBusy));
	EXPECT_EQ(r.a, Applied::Moved);
	EXPECT_EQ(r.status, kStatusBusy);
	EXPECT_TRUE(r.reg);
	// "No change" keeps busy.
	r = apply(h.t, fix(7, 4));
	EXPECT_EQ(r.status, kStatusBusy);
	EXPECT_FALSE(r.reg);
	r = apply(h.t, fix(7, 5, kStatusOffline));
	EXPECT_EQ(r.status, kStatusOffline);
	EXPECT_TRUE(r.reg);
	LiveView v;
	ASSERT_TRUE(h.t.get(7, v));
	EXPECT_EQ(v.status, kStatusOffline);
	EXPECT_EQ(v.ts_ms, 5);
}

TEST(LiveTable, CapacityFull) {
	HeapTable h(3);
	for (uint64_t id = 1; id <= 3; id++)
		EXPECT_EQ(apply(h.t, fix(id, 10)).a, Applied::Moved);
	EXPECT_EQ(h.t.size(), 3u);
	Result r = apply(h.t, fix(4, 10, kStatusBusy));
	EXPECT_EQ(r.a, Applied::Full);
	EXPECT_EQ(r.status, kStatusBusy); // the status the history row carries
	EXPECT_EQ(h.t.size(), 3u);
	LiveView v;
	EXPECT_FALSE(h.t.get(4, v));
	EXPECT_EQ(h.t.find(4), kNoEntry);
	// Still full the next time; known drivers keep updating.
	EXPECT_EQ(apply(h.t, fix(4, 11)).a, Applied::Full);
	EXPECT_EQ(apply(h.t, fix(2, 11, kStatusNoChange, 9, 9)).a, Applied::Moved);
	ASSERT_TRUE(h.t.get(2, v));
	EXPECT_EQ(v.lat_e7, 9);
	EXPECT_EQ(v.ts_ms, 11);
}

TEST(LiveTable, ZeroCapacityIsAlwaysFull) {
	HeapTable h(0);
	EXPECT_EQ(apply(h.t, fix(1, 10)).a, Applied::Full);
	EXPECT_EQ(h.t.size(), 0u);
	LiveView v;
	EXPECT_FALSE(h.t.get(1, v));
}

TEST(LiveTable, SetStatus) {
	HeapTable h(4);
	EXPECT_FALSE(h.t.set_status(7, kStatusBusy)); // unknown
	LiveView v;
	EXPECT_FALSE(h.t.get(7, v));
	apply(h.t, fix(7, 1000, kStatusNoChange, 5, 6));
	EXPECT_TRUE(h.t.set_status(7, kStatusBusy));
	ASSERT_TRUE(h.t.get(7, v));
	EXPECT_EQ(v.status, kStatusBusy);
	EXPECT_EQ(v.ts_ms, 1000); // nothing else changes
	EXPECT_EQ(v.lat_e7, 5);
	// A later fix with "no change" keeps the status set from SQL.
	Result r = apply(h.t, fix(7, 1001));
	EXPECT_EQ(r.status, kStatusBusy);
	EXPECT_FALSE(r.reg);
	// A fix that says what SQL already set is not a change either.
	r = apply(h.t, fix(7, 1002, kStatusBusy));
	EXPECT_FALSE(r.reg);
	r = apply(h.t, fix(7, 1003, kStatusAvailable));
	EXPECT_TRUE(r.reg);
	EXPECT_FALSE(h.t.set_status(8, kStatusBusy));
}

TEST(LiveTable, ManyDriversAllFindable) {
	const uint32_t cap = 20000;
	HeapTable h(cap);
	std::vector<uint64_t> ids;
	for (uint32_t i = 0; i < cap; i++) {
		// Sequential, strided and huge ids: whatever the hash does with them.
		uint64_t id = i % 3 == 0 ? i + 1 : (i % 3 == 1 ? (uint64_t(i) << 32) : (uint64_t{1} << 63) - 1 - i);
		ids.push_back(id);
		ASSERT_EQ(apply(h.t, fix(id, i + 1, kStatusNoChange, int32_t(i), -int32_t(i))).a, Applied::Moved) << i;
	}
	EXPECT_EQ(h.t.size(), cap);
	for (uint32_t i = 0; i < cap; i++) {
		LiveView v;
		ASSERT_TRUE(h.t.get(ids[i], v)) << i;
		EXPECT_EQ(v.driver_id, ids[i]);
		EXPECT_EQ(v.lat_e7, int32_t(i));
		EXPECT_EQ(h.t.find(ids[i]), i); // entries are in order of first sight
		LiveView w;
		h.t.read(i, w);
		EXPECT_EQ(w.driver_id, ids[i]);
	}
	// Unknown ids are not found, even when the table is full.
	LiveView v;
	for (uint64_t id : {uint64_t(0), uint64_t(cap + 5), uint64_t{1} << 62, ~uint64_t{0}})
		EXPECT_FALSE(h.t.get(id, v)) << id;
	EXPECT_EQ(apply(h.t, fix(999999999, 1)).a, Applied::Full);
}

TEST(LiveTable, Clear) {
	HeapTable h(4);
	apply(h.t, fix(1, 10));
	apply(h.t, fix(2, 10));
	h.t.clear();
	EXPECT_EQ(h.t.size(), 0u);
	LiveView v;
	EXPECT_FALSE(h.t.get(1, v));
	EXPECT_FALSE(h.t.get(2, v));
	Result r = apply(h.t, fix(2, 5)); // an older ts is fine: the driver is new again
	EXPECT_EQ(r.a, Applied::Moved);
	EXPECT_TRUE(r.reg);
	ASSERT_TRUE(h.t.get(2, v));
	EXPECT_EQ(v.ts_ms, 5);
	// The spatial index forgot the old drivers and files the new one.
	std::vector<Neighbor> near;
	h.t.grid().nearest(h.t, NearestQuery{0, 0, 5, INFINITY, 0, INT64_MIN}, near);
	ASSERT_EQ(near.size(), 1u);
	EXPECT_EQ(near[0].v.driver_id, 2u);
}

// One writer (the listener) moves drivers and adds new ones; another thread
// (a backend) changes statuses; readers must only ever see consistent
// entries. Every version the writer publishes satisfies
//   lat_e7 == -lon_e7 == ts_ms % 1000000, received_us == ts_ms * 1000,
//   speed == ts % 60000, heading == ts % 36000, accuracy == (ts / 7) % 60000
// so a torn read (fields from two versions) breaks it.
TEST(LiveTable, ConcurrentReadersNeverSeeTornEntries) {
	const uint32_t kDrivers = 64;
	HeapTable h(kDrivers);
	LiveTable &t = h.t;
	auto version = [](uint64_t id, int64_t ts) {
		Fix f = make_fix(id, ts, int32_t(ts % 1000000), -int32_t(ts % 1000000));
		f.speed_cms = uint16_t(ts % 60000);
		f.heading_cd = uint16_t(ts % 36000);
		f.accuracy_dm = uint16_t((ts / 7) % 60000);
		return f;
	};
	auto consistent = [](const LiveView &v) {
		int64_t m = v.ts_ms % 1000000;
		return v.driver_id >= 1 && v.driver_id <= kDrivers && v.lat_e7 == m && v.lon_e7 == -m &&
		       v.received_us == v.ts_ms * 1000 && v.speed_cms == v.ts_ms % 60000 &&
		       v.heading_cd == v.ts_ms % 36000 && v.accuracy_dm == (v.ts_ms / 7) % 60000 &&
		       (v.status >= kStatusOffline && v.status <= kStatusBusy);
	};
	std::atomic<bool> stop{false};
	std::atomic<uint64_t> torn{0}, reads{0}, backwards{0};
	std::vector<std::thread> readers;
	for (int r = 0; r < 2; r++) {
		readers.emplace_back([&, r] {
			std::vector<int64_t> last(kDrivers + 1, INT64_MIN);
			uint64_t n = 0;
			while (!stop.load(std::memory_order_relaxed)) {
				uint32_t size = t.size();
				for (uint32_t i = 0; i < size; i++) {
					LiveView v;
					if (r == 0)
						t.read(i, v);
					else if (!t.get(i + 1, v)) // driver i+1 is entry i
						continue;
					n++;
					if (!consistent(v)) {
						torn++;
						continue;
					}
					if (v.ts_ms < last[v.driver_id])
						backwards++;
					last[v.driver_id] = v.ts_ms;
				}
			}
			reads += n;
		});
	}
	std::thread statuser([&] {
		uint8_t s = kStatusOffline;
		while (!stop.load(std::memory_order_relaxed)) {
			for (uint64_t id = 1; id <= kDrivers; id++)
				t.set_status(id, s);
			s = s == kStatusBusy ? uint8_t(kStatusOffline) : uint8_t(s + 1);
		}
	});
	// The writer: drivers appear one by one while readers are running, then
	// keep moving.
	const int64_t kRounds = 25000;
	for (int64_t round = 1; round <= kRounds; round++) {
		for (uint64_t id = 1; id <= kDrivers; id++) {
			if (round == 1 && id > 1)
				std::this_thread::yield();
			uint8_t st = 0;
			bool reg = false;
			Applied a = t.apply(version(id, round * 1000 + int64_t(id)), (round * 1000 + int64_t(id)) * 1000, &st, &reg);
			ASSERT_EQ(a, Applied::Moved);
		}
	}
	stop = true;
	statuser.join();
	for (auto &th : readers)
		th.join();
	EXPECT_EQ(torn.load(), 0u);
	EXPECT_EQ(backwards.load(), 0u); // a reader never sees a driver go back in time
	EXPECT_GT(reads.load(), 1000u);
	for (uint64_t id = 1; id <= kDrivers; id++) {
		LiveView v;
		ASSERT_TRUE(t.get(id, v));
		EXPECT_EQ(v.ts_ms, kRounds * 1000 + int64_t(id));
		EXPECT_TRUE(consistent(v));
	}
}
