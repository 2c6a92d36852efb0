// Wall-clock helpers in the units the protocol uses.
#pragma once

#include <cstdint>
#include <ctime>

namespace lt {

inline int64_t now_us() {
	timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}
inline int64_t now_ms() { return now_us() / 1000; }

inline int64_t mono_us() {
	timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

} // namespace lt
