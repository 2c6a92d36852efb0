// What the flushers tell LISTENers about an open order as its driver's fixes
// arrive (SPEC 4): a position message at most once per notify_interval, and
// one near message when the driver first comes within near_radius of the
// order's current target. Plain data and pure functions, so the rules are
// unit-tested without a server.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fix.hpp"

namespace lt {

enum Target : uint8_t { kTargetPickup = 1, kTargetDropoff = 2 };
const char *target_name(uint8_t t); // "pickup" / "dropoff"
const char *target_status(uint8_t t); // the order status while heading there: "assigned" / "picked_up"

// A crude ETA: straight-line distance at the reported speed, but never
// slower than 3 m/s (a driver waiting at a light still has one). The SQL
// side (livetrack._eta_s) uses the same rule.
constexpr double kEtaMinSpeedMps = 3.0;
double eta_s(double distance_m, uint16_t speed_cms);

// One open order as a flusher follows it.
struct OrderWatch {
	uint64_t driver_id; // hash key: a driver has at most one open order
	uint64_t order_id;
	double target_lat, target_lon;
	uint8_t target;          // Target
	bool near_sent;          // the near message for this target is committed
	int64_t last_position_us; // when the last position message went out (0: never)
	uint64_t batch;          // the last batch whose newest fix was considered for a position
};

struct PushDecision {
	bool position;
	bool near;
	double distance_m;
	double eta_s;
};

// Looks at a fix of the watched driver. Fixes of one batch are shown newest
// first: only the first one of a batch may send a position (and only once
// per interval), every one may be the first within near_radius. Late fixes
// (not the driver's live position) decide nothing.
PushDecision watch_fix(OrderWatch &w, const Fix &f, bool late, uint64_t batch, int64_t now_us,
                       int64_t interval_us, double near_radius_m);

// "2026-12-03T16:01:12.123Z" (24 characters and a NUL; room for 32) for Unix epoch ms.
void format_utc_ms(int64_t ms, char out[32]);

// The position message's JSON payload; the number of characters written
// (as snprintf: larger than cap means truncated).
int format_position(char *out, size_t cap, const OrderWatch &w, const Fix &f, const PushDecision &d);

} // namespace lt
