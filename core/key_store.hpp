// Signing keys in shared memory (SPEC 2.3), and their anti-replay windows.
//
// Backends install a key when the transaction that created it commits and
// flag it revoked when the revoking one does; the listener alone looks keys
// up and keeps each key's replay window. Entries are appended and never
// removed while the extension exists (a revoked key keeps its slot), so a
// published hash slot stays valid and lookups never retry. Installers
// serialise on a small spinlock: keys change rarely.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace lt {

constexpr size_t kSecretBytes = 32;

struct KeyEntry {
	uint32_t key_id;
	uint32_t revoked; // any process: store_release(1)
	uint64_t driver_id; // 0: a gateway key, may sign for any driver
	uint8_t secret[kSecretBytes];
	// RFC 4303's sliding window, changed only under the store's window lock
	// (KeyStore::accept_seq): the listener and the HTTP worker both verify. Bit i of `window` says
	// high_seq - i was seen; `seen` is 0 until the first message.
	uint32_t high_seq;
	uint32_t seen;
	uint64_t window;
};
static_assert(sizeof(KeyEntry) == 64 && std::is_trivially_copyable_v<KeyEntry>);

class KeyStore {
public:
	static size_t bytes_needed(uint32_t capacity);
	static void format(void *mem, uint32_t capacity);
	void attach(void *mem);
	bool attached() const { return h_ != nullptr; }
	uint32_t capacity() const;
	uint32_t size() const;

	enum class Install : uint8_t { Ok, Exists, Full };
	// Any process. A key id that is already there is left as it is.
	Install install(uint32_t key_id, uint64_t driver_id, const uint8_t secret[kSecretBytes]);
	// Any process. False if the key is unknown.
	bool revoke(uint32_t key_id);
	// Lock-free; nullptr if unknown. The secret and driver are immutable once found.
	KeyEntry *find(uint32_t key_id) const;
	// Entry i < size(), in installation order (for saving the windows).
	KeyEntry &at(uint32_t i) const { return entries_[i]; }
	// Any process that verifies messages: replay_accept() under the store's
	// window lock (uncontended but for HTTP ingest of signed messages).
	bool accept_seq(KeyEntry &e, uint32_t seq);
	// Listener only, when the extension was dropped.
	void clear();

private:
	struct Header {
		uint32_t capacity;
		uint32_t count;
		uint32_t lock;
		uint32_t hash_size; // a power of two >= 2 x capacity
		uint32_t window_lock;
		uint32_t pad;
	};
	Header *h_;
	uint32_t *slots_; // entry index + 1; 0 = empty
	KeyEntry *entries_;
};
static_assert(std::is_trivially_default_constructible_v<KeyStore>);

// True, and the sequence number recorded, if `seq` has not been seen and is
// less than 64 below the highest one seen. The caller serialises (accept_seq).
bool replay_accept(KeyEntry &e, uint32_t seq);

// Listener only, before it serves: the window of a key whose highest
// sequence number was saved before a restart. Everything up to it counts as
// seen (what came below it out of order is lost with the old window).
void replay_resume(KeyEntry &e, uint32_t saved_high);

} // namespace lt
