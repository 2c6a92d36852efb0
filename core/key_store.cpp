#include "key_store.hpp"

#include <cstring>

#include "atomics.hpp"

namespace lt {
namespace {

uint32_t hash_size_for(uint32_t capacity) {
	uint32_t n = 16;
	while (n < 2 * uint64_t(capacity))
		n *= 2;
	return n;
}

uint32_t slot_of(uint32_t key_id, uint32_t mask) { return uint32_t((uint64_t(key_id) * 0x9E3779B97F4A7C15ull) >> 40) & mask; }

constexpr size_t kHeaderBytes = 64;

} // namespace

size_t KeyStore::bytes_needed(uint32_t capacity) {
	return kHeaderBytes + sizeof(KeyEntry) * size_t(capacity) + sizeof(uint32_t) * size_t(hash_size_for(capacity));
}

void KeyStore::format(void *mem, uint32_t capacity) {
	std::memset(mem, 0, bytes_needed(capacity));
	auto *h = static_cast<Header *>(mem);
	h->capacity = capacity;
	h->hash_size = hash_size_for(capacity);
}

void KeyStore::attach(void *mem) {
	h_ = static_cast<Header *>(mem);
	entries_ = reinterpret_cast<KeyEntry *>(static_cast<char *>(mem) + kHeaderBytes);
	slots_ = reinterpret_cast<uint32_t *>(entries_ + h_->capacity);
}

uint32_t KeyStore::capacity() const { return h_->capacity; }
uint32_t KeyStore::size() const { return load_acquire(h_->count); }

KeyEntry *KeyStore::find(uint32_t key_id) const {
	uint32_t mask = h_->hash_size - 1;
	for (uint32_t s = slot_of(key_id, mask);; s = (s + 1) & mask) {
		uint32_t v = load_acquire(slots_[s]);
		if (v == 0)
			return nullptr;
		if (entries_[v - 1].key_id == key_id)
			return &entries_[v - 1];
	}
}

KeyStore::Install KeyStore::install(uint32_t key_id, uint64_t driver_id, const uint8_t secret[kSecretBytes]) {
	uint32_t unlocked = 0;
	while (!cas(h_->lock, unlocked, uint32_t(1))) {
		unlocked = 0;
		cpu_relax();
	}
	Install r = Install::Ok;
	uint32_t mask = h_->hash_size - 1, s = slot_of(key_id, mask);
	for (;; s = (s + 1) & mask) {
		uint32_t v = slots_[s];
		if (v == 0)
			break;
		if (entries_[v - 1].key_id == key_id) {
			r = Install::Exists;
			break;
		}
	}
	if (r == Install::Ok && h_->count == h_->capacity)
		r = Install::Full;
	if (r == Install::Ok) {
		uint32_t n = h_->count;
		KeyEntry &e = entries_[n];
		std::memset(&e, 0, sizeof e);
		e.key_id = key_id;
		e.driver_id = driver_id;
		std::memcpy(e.secret, secret, kSecretBytes);
		// The entry is complete before the slot that leads to it is published.
		store_release(h_->count, n + 1);
		store_release(slots_[s], n + 1);
	}
	store_release(h_->lock, uint32_t(0));
	return r;
}

bool KeyStore::revoke(uint32_t key_id) {
	KeyEntry *e = find(key_id);
	if (e == nullptr)
		return false;
	store_release(e->revoked, uint32_t(1));
	return true;
}

void KeyStore::clear() {
	uint32_t unlocked = 0;
	while (!cas(h_->lock, unlocked, uint32_t(1))) {
		unlocked = 0;
		cpu_relax();
	}
	std::memset(slots_, 0, sizeof(uint32_t) * h_->hash_size);
	store_release(h_->count, uint32_t(0));
	store_release(h_->lock, uint32_t(0));
}

bool KeyStore::accept_seq(KeyEntry &e, uint32_t seq) {
	uint32_t unlocked = 0;
	while (!cas(h_->window_lock, unlocked, uint32_t(1))) {
		unlocked = 0;
		cpu_relax();
	}
	bool ok = replay_accept(e, seq);
	store_release(h_->window_lock, uint32_t(0));
	return ok;
}

bool replay_accept(KeyEntry &e, uint32_t seq) {
	if (!e.seen) {
		e.seen = 1;
		e.high_seq = seq;
		e.window = 1;
		return true;
	}
	if (seq > e.high_seq) {
		uint32_t shift = seq - e.high_seq;
		e.window = shift >= 64 ? 1 : (e.window << shift) | 1;
		e.high_seq = seq;
		return true;
	}
	uint32_t behind = e.high_seq - seq;
	if (behind >= 64)
		return false;
	uint64_t bit = uint64_t(1) << behind;
	if (e.window & bit)
		return false;
	e.window |= bit;
	return true;
}

void replay_resume(KeyEntry &e, uint32_t saved_high) {
	e.seen = 1;
	e.high_seq = saved_high;
	e.window = ~uint64_t(0);
}

} // namespace lt
