#include "fix.hpp"

#include <cstring>

namespace lt {

const char *reject_name(Reject r) {
	switch (r) {
	case Reject::None: return "none";
	case Reject::Malformed: return "malformed";
	case Reject::Auth: return "auth";
	case Reject::Replay: return "replay";
	case Reject::Range: return "range";
	case Reject::Clock: return "clock";
	}
	return "unknown";
}

Reject validate_fix(const Fix &f, int64_t now_ms, const ClockLimits &lim) {
	// Reserved bits are a framing error, not a bad value: report them first.
	if (f.reserved != 0)
		return Reject::Malformed;
	if (f.driver_id == 0 || f.driver_id >= (uint64_t{1} << 63))
		return Reject::Range;
	if (f.lat_e7 < -kMaxLatE7 || f.lat_e7 > kMaxLatE7 || f.lon_e7 < -kMaxLonE7 || f.lon_e7 > kMaxLonE7)
		return Reject::Range;
	if (f.heading_cd > kMaxHeadingCd && f.heading_cd != kUnknown16)
		return Reject::Range;
	if (f.status > kStatusBusy)
		return Reject::Range;
	if (f.ts_ms > now_ms + lim.max_future_ms || f.ts_ms < now_ms - lim.max_late_ms)
		return Reject::Clock;
	return Reject::None;
}

uint8_t status_from_name(const char *s, size_t n) {
	auto is = [&](const char *name) { return n == std::strlen(name) && std::memcmp(s, name, n) == 0; };
	if (is("offline"))
		return kStatusOffline;
	if (is("available"))
		return kStatusAvailable;
	if (is("busy"))
		return kStatusBusy;
	return 0;
}

const char *status_name(uint8_t s) {
	switch (s) {
	case kStatusOffline: return "offline";
	case kStatusAvailable: return "available";
	case kStatusBusy: return "busy";
	default: return nullptr;
	}
}

} // namespace lt
