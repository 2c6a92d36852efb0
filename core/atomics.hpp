// Atomic access to plain fields that live in shared memory.
//
// Shared-memory structs must stay trivially copyable, so they hold plain
// integers rather than std::atomic<T>; every concurrent access goes through
// these helpers instead.
#pragma once

#include <cstdint>

namespace lt {

template <typename T> inline T load_relaxed(const T &v) { return __atomic_load_n(&v, __ATOMIC_RELAXED); }
template <typename T> inline T load_acquire(const T &v) { return __atomic_load_n(&v, __ATOMIC_ACQUIRE); }
template <typename T> inline void store_relaxed(T &v, T x) { __atomic_store_n(&v, x, __ATOMIC_RELAXED); }
template <typename T> inline void store_release(T &v, T x) { __atomic_store_n(&v, x, __ATOMIC_RELEASE); }
template <typename T> inline T fetch_add(T &v, T x) { return __atomic_fetch_add(&v, x, __ATOMIC_ACQ_REL); }
template <typename T> inline T fetch_add_relaxed(T &v, T x) { return __atomic_fetch_add(&v, x, __ATOMIC_RELAXED); }
template <typename T> inline T fetch_sub_relaxed(T &v, T x) { return __atomic_fetch_sub(&v, x, __ATOMIC_RELAXED); }
template <typename T> inline bool cas(T &v, T &expected, T desired) {
	return __atomic_compare_exchange_n(&v, &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
inline void fence_acquire() { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
inline void fence_release() { __atomic_thread_fence(__ATOMIC_RELEASE); }

// Monotonic counter with a single writer: cheaper than fetch_add, and readers
// in other processes still see whole values.
inline void bump(uint64_t &counter, uint64_t n = 1) { store_relaxed(counter, load_relaxed(counter) + n); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

} // namespace lt
