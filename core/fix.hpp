// A GPS fix as livetrack carries it end to end, and the rules that make one valid.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lt {

// Driver status as on the wire (SPEC 2.1). 0 means "no change".
enum Status : uint8_t { kStatusNoChange = 0, kStatusOffline = 1, kStatusAvailable = 2, kStatusBusy = 3 };

constexpr uint16_t kUnknown16 = 0xFFFF;
constexpr int32_t kMaxLatE7 = 900000000;
constexpr int32_t kMaxLonE7 = 1800000000;
constexpr uint16_t kMaxHeadingCd = 35999;

// One fix, in wire units. 32 bytes, trivially copyable.
struct Fix {
	uint64_t driver_id;
	int64_t ts_ms;        // Unix epoch milliseconds of the GPS fix
	int32_t lat_e7;       // degrees x 1e7
	int32_t lon_e7;
	uint16_t speed_cms;   // cm/s, 0xFFFF unknown
	uint16_t heading_cd;  // centidegrees, 0xFFFF unknown
	uint16_t accuracy_dm; // decimetres, 0xFFFF unknown
	uint8_t status;       // Status
	uint8_t reserved;     // must be 0
};
static_assert(sizeof(Fix) == 32, "Fix is the wire record size");

// A fix on its way from the listener to the flusher (the ring's payload).
struct Ping {
	Fix fix;             // status holds the driver's effective status after the fix
	int64_t received_us; // server clock at receipt, Unix epoch microseconds
	uint8_t flags;       // kPing*
	uint8_t pad[7];
};
static_assert(sizeof(Ping) == 48, "keep ring slots compact");

enum : uint8_t {
	kPingLate = 1,     // not newer than the live position: history only
	kPingRegister = 2, // first sight of the driver, or a status change: persist status
	kPingStatusOnly = 4, // a status change from an order (no fix): live status and livetrack.drivers only
	kPingCounted = 8,    // its producer counted the message it came in (HTTP ingest): the listener does not
};

// Why something was rejected. The names match the livetrack.stats metrics.
enum class Reject : uint8_t { None = 0, Malformed, Auth, Replay, Range, Clock };
const char *reject_name(Reject r);

struct ClockLimits {
	int64_t max_future_ms; // livetrack.max_future
	int64_t max_late_ms;   // livetrack.max_late
};

// Field checks of SPEC 2.4 that need no state: ranges, reserved bits, clock window.
Reject validate_fix(const Fix &f, int64_t now_ms, const ClockLimits &lim);

// "offline" / "available" / "busy" -> Status; 0 on anything else.
uint8_t status_from_name(const char *s, size_t n);
const char *status_name(uint8_t s); // nullptr for kStatusNoChange or bad values

} // namespace lt
