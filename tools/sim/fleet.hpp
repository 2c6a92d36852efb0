// Fleet movement model shared by livetrack-sim and livetrack-seed.
//
// Every driver drives on one city-wide street grid (blocks of kBlockM metres,
// streets north-south and east-west through the city centre), at 5-15 m/s,
// turning at an intersection after 1-3 blocks (100-300 m), and never leaves
// the city disc. Positions are metres east (x) and north (y) of the centre on
// a local tangent plane; at city scale (tens of km) that is accurate to well
// under a metre.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/fix.hpp"

namespace fleet {

constexpr double kBlockM = 100.0;
constexpr double kMinSpeed = 5.0, kMaxSpeed = 15.0;           // m/s
constexpr double kMinAccuracy = 3.0, kMaxAccuracy = 15.0;     // m
constexpr double kStatusSwitchP = 1.0 / 5000;                 // per fix
constexpr double kEarthRadiusM = 6371008.8;
constexpr double kPi = 3.14159265358979323846;

// xoshiro256** seeded with splitmix64: fast, good enough, reproducible.
struct Rng {
	uint64_t s[4];
	explicit Rng(uint64_t seed) {
		for (auto &w : s) {
			seed += 0x9E3779B97F4A7C15ull;
			uint64_t z = seed;
			z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
			z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
			w = z ^ (z >> 31);
		}
	}
	static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
	uint64_t next() {
		uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
		s[2] ^= s[0];
		s[3] ^= s[1];
		s[1] ^= s[2];
		s[0] ^= s[3];
		s[2] ^= t;
		s[3] = rotl(s[3], 45);
		return r;
	}
	double uniform() { return double(next() >> 11) * 0x1.0p-53; } // [0,1)
	double range(double a, double b) { return a + (b - a) * uniform(); }
	int below(int n) { return int(uniform() * n); }
};

struct City {
	double lat0 = 12.9716, lon0 = 77.5946, radius_m = 15000;
	double m_per_deg_lat() const { return kEarthRadiusM * kPi / 180; }
	double m_per_deg_lon() const { return m_per_deg_lat() * std::cos(lat0 * kPi / 180); }
	bool inside(double x, double y) const { return x * x + y * y <= radius_m * radius_m; }
};

// Directions in heading order: 0 north, 1 east, 2 south, 3 west.
constexpr double kDx[4] = {0, 1, 0, -1}, kDy[4] = {1, 0, -1, 0};

struct Driver {
	uint64_t id = 0;
	double x = 0, y = 0;  // metres from the city centre
	int dir = 0;          // current street direction
	double speed = 0;     // m/s on the current segment
	double to_turn = 0;   // metres left to the next turn (an intersection)
	int64_t last_us = 0;  // wall clock of the last advance
	uint8_t status = lt::kStatusAvailable;
	bool announced = false; // first fix sent (it carries status 2)
	int64_t last_ts_ms = 0;  // see unique_ts()
};

// At an intersection: picks the next direction, segment length and speed.
// Prefers a left or right turn, then straight on, then a U-turn; the first
// whose segment ends inside the disc wins (the disc is convex, so the whole
// segment is inside). If none fits, heads back toward the centre along the
// larger coordinate, which always shrinks the distance to the centre.
inline void choose_segment(Driver &d, const City &c, Rng &r) {
	int blocks = 1 + r.below(3);
	int left = (d.dir + 3) % 4, right = (d.dir + 1) % 4;
	int order[4] = {left, right, d.dir, (d.dir + 2) % 4};
	if (r.below(2))
		std::swap(order[0], order[1]);
	d.speed = r.range(kMinSpeed, kMaxSpeed);
	for (int dir : order) {
		double len = blocks * kBlockM;
		if (c.inside(d.x + kDx[dir] * len, d.y + kDy[dir] * len)) {
			d.dir = dir;
			d.to_turn = len;
			return;
		}
	}
	bool along_x = std::fabs(d.x) >= std::fabs(d.y);
	double coord = along_x ? d.x : d.y;
	d.dir = along_x ? (coord > 0 ? 3 : 1) : (coord > 0 ? 2 : 0);
	d.to_turn = std::max(1.0, std::min(double(blocks), std::round(std::fabs(coord) / kBlockM))) * kBlockM;
}

// Moves the driver along the grid for dt seconds.
inline void advance(Driver &d, const City &c, Rng &r, double dt) {
	dt = std::min(dt, 600.0); // bounds the loop after a long pause
	while (dt > 0) {
		double need = d.to_turn / d.speed;
		if (need > dt) {
			double m = d.speed * dt;
			d.x += kDx[d.dir] * m;
			d.y += kDy[d.dir] * m;
			d.to_turn -= m;
			return;
		}
		d.x += kDx[d.dir] * d.to_turn;
		d.y += kDy[d.dir] * d.to_turn;
		dt -= need;
		// Snap to the intersection so rounding never drifts off the grid.
		d.x = std::round(d.x / kBlockM) * kBlockM;
		d.y = std::round(d.y / kBlockM) * kBlockM;
		choose_segment(d, c, r);
	}
}

// A driver at a random intersection in the disc, some way into its first block.
inline void init_driver(Driver &d, uint64_t id, const City &c, Rng &r, int64_t now_us) {
	d = Driver{};
	d.id = id;
	double lim = std::max(0.0, c.radius_m - 2 * kBlockM);
	do {
		double rad = lim * std::sqrt(r.uniform()), ang = r.range(0, 2 * kPi);
		d.x = std::round(rad * std::cos(ang) / kBlockM) * kBlockM;
		d.y = std::round(rad * std::sin(ang) / kBlockM) * kBlockM;
	} while (!c.inside(d.x, d.y));
	d.dir = r.below(4);
	choose_segment(d, c, r);
	double m = r.uniform() * d.to_turn;
	d.x += kDx[d.dir] * m;
	d.y += kDy[d.dir] * m;
	d.to_turn -= m;
	d.last_us = now_us;
}

// The driver's fix at wall-clock time now_us (ts = now_us in ms).
inline lt::Fix next_fix(Driver &d, const City &c, Rng &r, int64_t now_us) {
	if (now_us > d.last_us) {
		advance(d, c, r, double(now_us - d.last_us) / 1e6);
		d.last_us = now_us;
	}
	lt::Fix f{};
	f.driver_id = d.id;
	f.ts_ms = now_us / 1000;
	f.lat_e7 = int32_t(std::llround((c.lat0 + d.y / c.m_per_deg_lat()) * 1e7));
	f.lon_e7 = int32_t(std::llround((c.lon0 + d.x / c.m_per_deg_lon()) * 1e7));
	f.speed_cms = uint16_t(std::lround(d.speed * 100));
	f.heading_cd = uint16_t(d.dir * 9000);
	f.accuracy_dm = uint16_t(std::lround(r.range(kMinAccuracy, kMaxAccuracy) * 10));
	if (!d.announced) {
		d.announced = true;
		d.status = lt::kStatusAvailable;
		f.status = lt::kStatusAvailable;
	} else if (r.uniform() < kStatusSwitchP) {
		d.status = d.status == lt::kStatusBusy ? lt::kStatusAvailable : lt::kStatusBusy;
		f.status = d.status;
	} else {
		f.status = lt::kStatusNoChange;
	}
	return f;
}

// Keeps a driver's fixes in strictly increasing ts, as a device's are. Only
// a burst (catching up on a schedule, hundreds of messages in one
// millisecond) can pick a driver twice within a millisecond.
inline void unique_ts(Driver &d, lt::Fix &f) {
	if (f.ts_ms <= d.last_ts_ms)
		f.ts_ms = d.last_ts_ms + 1;
	d.last_ts_ms = f.ts_ms;
}

} // namespace fleet
