// The drivers that moved, in order: the listener appends the live-table
// entry of every fix that moved a driver, and each HTTP worker reads on from
// where it stopped, for its driver boxes (worker/http_server.cpp). One
// writer, any number of readers, no locks: a reader that fell a whole ring
// behind sees that it missed some (and sends its boxes a snapshot instead).
// Shared memory: plain data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "atomics.hpp"

namespace lt {

struct MovedFeedHeader {
	uint64_t capacity; // a power of two
	uint64_t mask;
	alignas(64) uint64_t head; // entries written so far
};
static_assert(std::is_trivially_copyable_v<MovedFeedHeader>);

class MovedFeed {
public:
	static size_t bytes_needed(uint64_t capacity) { return sizeof(MovedFeedHeader) + sizeof(uint32_t) * round_up(capacity); }
	static void format(void *mem, uint64_t capacity) {
		auto *h = static_cast<MovedFeedHeader *>(mem);
		std::memset(h, 0, sizeof *h);
		h->capacity = round_up(capacity);
		h->mask = h->capacity - 1;
	}
	void attach(void *mem) {
		h_ = static_cast<MovedFeedHeader *>(mem);
		slots_ = reinterpret_cast<uint32_t *>(h_ + 1);
	}
	bool attached() const { return h_ != nullptr; }
	uint64_t head() const { return load_acquire(h_->head); }

	// The writer (the listener).
	void push(uint32_t entry) {
		uint64_t hd = load_relaxed(h_->head);
		store_relaxed(slots_[hd & h_->mask], entry);
		store_release(h_->head, hd + 1);
	}

	// Calls fn(entry) for every entry from pos on, and moves pos to the end.
	// False if pos had fallen more than a ring behind (some were lost; pos
	// skips to the present).
	template <typename F> bool read(uint64_t &pos, F &&fn) const {
		uint64_t hd = head();
		bool whole = hd - pos <= h_->capacity;
		if (!whole)
			pos = hd - h_->capacity;
		for (; pos < hd; pos++) {
			uint32_t e = load_relaxed(slots_[pos & h_->mask]);
			// The writer may have lapped us while we read: that entry is lost.
			if (head() - pos > h_->capacity) {
				whole = false;
				pos = head();
				break;
			}
			fn(e);
		}
		return whole;
	}

private:
	static uint64_t round_up(uint64_t n) {
		uint64_t c = 1;
		while (c < n)
			c <<= 1;
		return c;
	}
	MovedFeedHeader *h_;
	uint32_t *slots_;
};
static_assert(std::is_trivially_default_constructible_v<MovedFeed>);

} // namespace lt
