// What the flushers tell LISTENers about an open order as its driver's fixes
// arrive (SPEC 4): a position message at most once per notify_interval, and
// one near message when the driver first comes within near_radius of the
// order's current target. Plain data and pure functions, so the rules are
// unit-tested without a server.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

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

// Every message of an order (SPEC 4 and 6: position, status, near) in one
// shape, wherever it goes: NOTIFY, livetrack.events.payload, SSE and
// WebSocket. The payload column is jsonb, which keeps its keys sorted by
// length, then bytes, and prints them as {"k": v, "k": v}; this writes
// exactly that text, so a message formatted here, stored as jsonb and read
// back as text is the same string. Numbers: lat/lon to 1e-7 degrees (what
// the wire carries), distance_m and eta_s to 0.1.
struct OrderMessage {
	const char *type = "position"; // "position" | "status" | "near"
	uint64_t event_id = 0;         // 0: no event_id key (positions, drafts)
	uint64_t order_id = 0;
	uint64_t driver_id = 0;        // 0: null (an order without a driver)
	const char *status = "";       // the order's status
	bool has_position = false;     // false: lat and lon are null
	double lat = 0, lon = 0;
	int64_t ts_ms = 0;
	const char *target = nullptr;  // nullptr: null
	bool has_distance = false;     // false: distance_m and eta_s are null
	double distance_m = 0, eta_s = 0;
};
std::string format_order_message(const OrderMessage &m);
// The same into a buffer (for callers that must not hold a std::string
// across Postgres calls); false if it does not fit.
bool format_order_message(char *out, size_t cap, const OrderMessage &m);

// The position message of a watched order's driver at fix f.
OrderMessage position_message(const OrderWatch &w, const Fix &f, const PushDecision &d);

} // namespace lt
