// Bounded multi-producer / single-consumer ring over a block of shared memory.
//
// Each slot carries a sequence number (Dmitry Vyukov's bounded queue), so
// producers in different processes claim slots with one CAS and never wait on
// each other's copies. The consumer may look at a run of slots, do slow work
// (a transaction), and release them only afterwards: until released they stay
// in the ring, which is what lets the flusher retry a failed transaction
// without losing anything. The released position doubles as the commit
// watermark that TCP ACKs and wait_flushed() wait for.
//
// The ring holds positions, not pointers: it works at any mapping address.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "atomics.hpp"

namespace lt {

struct RingHeader {
	uint64_t capacity; // power of two
	uint64_t mask;
	alignas(64) uint64_t head; // next position a producer claims
	alignas(64) uint64_t tail; // first position not yet released by the consumer
};
static_assert(std::is_trivially_copyable_v<RingHeader>);

template <typename T> struct RingSlot {
	uint64_t seq; // == pos: free for pos; == pos+1: holds pos
	T value;
};

template <typename T> class Ring {
	static_assert(std::is_trivially_copyable_v<T>, "ring values are copied between processes");

public:
	static constexpr uint64_t round_up(uint64_t n) {
		uint64_t c = 1;
		while (c < n)
			c <<= 1;
		return c;
	}
	static size_t bytes_needed(uint64_t capacity) {
		return sizeof(RingHeader) + round_up(capacity) * sizeof(RingSlot<T>);
	}

	// Formats fresh memory. Called once, by whoever creates the segment.
	static void format(void *mem, uint64_t capacity) {
		auto *h = static_cast<RingHeader *>(mem);
		std::memset(h, 0, sizeof *h);
		h->capacity = round_up(capacity);
		h->mask = h->capacity - 1;
		auto *slots = reinterpret_cast<RingSlot<T> *>(h + 1);
		for (uint64_t i = 0; i < h->capacity; i++)
			slots[i].seq = i;
	}

	void attach(void *mem) {
		h_ = static_cast<RingHeader *>(mem);
		slots_ = reinterpret_cast<RingSlot<T> *>(h_ + 1);
	}
	bool attached() const { return h_ != nullptr; }

	uint64_t capacity() const { return h_->capacity; }
	uint64_t head() const { return load_acquire(h_->head); }
	uint64_t tail() const { return load_acquire(h_->tail); }
	uint64_t size() const {
		uint64_t t = tail(), hd = head();
		return hd > t ? hd - t : 0;
	}
	// Free slots as a lone producer can count on them (exact for the listener,
	// a lower bound when other producers race).
	uint64_t free_slots() const { return h_->capacity - size(); }

	// Producer side. Returns false when full; on success *pos_out is the
	// record's position, which is released (committed) once tail() > pos.
	bool push(const T &v, uint64_t *pos_out = nullptr) {
		uint64_t pos = load_relaxed(h_->head);
		for (;;) {
			RingSlot<T> &s = slots_[pos & h_->mask];
			uint64_t seq = load_acquire(s.seq);
			int64_t diff = int64_t(seq) - int64_t(pos);
			if (diff == 0) {
				if (cas(h_->head, pos, pos + 1)) {
					s.value = v;
					store_release(s.seq, pos + 1);
					if (pos_out)
						*pos_out = pos;
					return true;
				}
				// pos was reloaded by the failed CAS
			} else if (diff < 0) {
				return false;
			} else {
				pos = load_relaxed(h_->head);
			}
		}
	}

	// Consumer side. peek(i) reads the i-th unreleased record, counting from
	// tail(); false if that slot is not filled yet (or was never claimed).
	bool peek(uint64_t i, T &out) const { return peek_at(load_relaxed(h_->tail) + i, out); }
	// Number of consecutive filled slots from tail(), at most `limit`.
	uint64_t ready(uint64_t limit) const { return ready_from(load_relaxed(h_->tail), limit); }

	// The same by absolute position, for consumers that each take a share of
	// the records (see consumer_group.hpp). pos must be >= tail().
	bool peek_at(uint64_t pos, T &out) const {
		const RingSlot<T> &s = slots_[pos & h_->mask];
		if (load_acquire(s.seq) != pos + 1)
			return false;
		out = s.value;
		return true;
	}
	uint64_t ready_from(uint64_t pos, uint64_t limit) const {
		uint64_t n = 0;
		while (n < limit && load_acquire(slots_[(pos + n) & h_->mask].seq) == pos + n + 1)
			n++;
		return n;
	}

	// Hands the first n records back to producers and advances the watermark.
	// One releaser at a time (the consumer, or whoever holds the group's lock).
	void release(uint64_t n) {
		uint64_t t = load_relaxed(h_->tail);
		for (uint64_t i = 0; i < n; i++)
			store_release(slots_[(t + i) & h_->mask].seq, t + i + h_->capacity);
		store_release(h_->tail, t + n);
	}

private:
	RingHeader *h_;
	RingSlot<T> *slots_;
};

} // namespace lt
