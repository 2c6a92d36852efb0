// What must wait for the transaction's commit: order effects and signing keys.
//
// assign_order() makes its driver busy and deliver_order() makes it
// available again, but only if the transaction commits: the status changes
// are noted here and handed to the listener (the only process that moves
// drivers) once it has. A commit that changed an open order bumps
// orders_gen so the flushers reload the orders they follow, and NOTIFYs are
// counted once they are sent. The status changes are handed over after the
// commit record is written, so a transaction that fails at its very end
// (a serialization failure, a full NOTIFY queue) changes no driver.
// create_key() installs its key in shared memory at commit (a store with no
// room fails the transaction before), revoke_key() revokes it at commit:
// both take effect at once, and a rolled-back key never works.
#include <algorithm>

#include "../core/clock.hpp"
#include "shared.hpp"

extern "C" {
#include "commands/async.h"
#include "pgstat.h"
#include "port.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
}

namespace {

enum PendingKind : uint8 { kStatus, kOrdersChanged, kNotify, kInstallKey, kRevokeKey, kEventPublished, kTokensChanged };

// Noted per subtransaction level, so that a rolled-back subtransaction takes
// its part with it. Lives in TopTransactionContext; plain data.
struct Pending {
	PendingKind kind;
	uint8 status;
	uint32 key_id;
	uint64 driver_id;
	int level;
	uint8 secret[lt::kSecretBytes];
};
Pending *pending;
int n_pending, cap_pending;

void add(const Pending &p) {
	if (n_pending == cap_pending) {
		int cap = std::max(16, cap_pending * 2);
		pending = static_cast<Pending *>(pending == NULL ? MemoryContextAlloc(TopTransactionContext, sizeof(Pending) * cap)
		                                                 : repalloc(pending, sizeof(Pending) * cap));
		cap_pending = cap;
	}
	pending[n_pending] = p;
	pending[n_pending++].level = GetCurrentTransactionNestLevel();
}

void forget(void) {
	pending = NULL; // freed with TopTransactionContext
	n_pending = cap_pending = 0;
}

// Before commit, where an error still aborts the transaction cleanly: a key
// that will not fit fails its transaction. (Another one committing at the
// same moment can still take the last slot; after_commit() then warns.)
void before_commit(void) {
	uint32 installs = 0;
	for (int i = 0; i < n_pending; i++)
		installs += pending[i].kind == kInstallKey;
	if (installs > 0 && lt_keys.size() + installs > lt_keys.capacity())
		ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
		                errmsg("livetrack has no room for another signing key"),
		                errhint("Raise livetrack.max_keys (%u) and restart the server.", lt_keys.capacity())));
}

// Where this session's last status change sits in the ingest queue.
uint64 own_status_pos;

// After the commit record, so a status change never outlives a transaction
// that failed; nothing here may raise an error. A full ingest queue means the
// listener is behind: wait for it, but not forever (it may be down), and
// not long: this runs with interrupts held and the transaction's locks
// still taken. One budget for the whole transaction; `waited_ms` carries it.
constexpr int kStatusWaitMs = 1000;

void push_status(const Pending &q, int &waited_ms) {
	lt::Ping p{};
	p.fix.driver_id = q.driver_id;
	p.fix.status = q.status;
	p.received_us = lt::now_us();
	p.fix.ts_ms = p.received_us / 1000;
	p.flags = lt::kPingStatusOnly;
	while (!lt_ingest.push(p)) {
		if (waited_ms >= kStatusWaitMs || !PostmasterIsAlive()) {
			waited_ms = kStatusWaitMs;
			elog(WARNING, "livetrack: the listener is not taking status changes; driver %llu stays as it was",
			     (unsigned long long)q.driver_id);
			return;
		}
		if (Latch *l = lt_latch_of(lt::load_relaxed(lt_ctl->listener_procno)))
			SetLatch(l);
		pg_usleep(1000);
		waited_ms++;
	}
	own_status_pos = lt_ingest.head();
}

// After commit: nothing here may fail.
void after_commit(void) {
	bool changed = false, status = false, events = false, tokens = false;
	uint64 notifies = 0;
	int waited_ms = 0;
	for (int i = 0; i < n_pending; i++) {
		changed |= pending[i].kind == kOrdersChanged;
		events |= pending[i].kind == kEventPublished;
		tokens |= pending[i].kind == kTokensChanged;
		notifies += pending[i].kind == kNotify;
		if (pending[i].kind == kRevokeKey)
			(void)lt_keys.revoke(pending[i].key_id);
		if (pending[i].kind == kInstallKey &&
		    lt_keys.install(pending[i].key_id, pending[i].driver_id, pending[i].secret) ==
		        lt::KeyStore::Install::Full)
			elog(WARNING, "livetrack: no room for signing key %u (livetrack.max_keys); it works after a restart",
			     pending[i].key_id);
		if (pending[i].kind == kStatus) {
			push_status(pending[i], waited_ms);
			status = true;
		}
	}
	if (status)
		if (Latch *l = lt_latch_of(lt::load_relaxed(lt_ctl->listener_procno)))
			SetLatch(l);
	if (changed) {
		lt::fetch_add(lt_ctl->orders_gen, uint64(1));
		lt_wake_flushers();
	}
	if (notifies)
		lt::fetch_add_relaxed(lt_ctl->counters.notifications, notifies);
	// The HTTP worker streams events and checks tokens: it looks again.
	if (events)
		lt::fetch_add(lt_ctl->events_gen, uint64(1));
	if (tokens)
		lt::fetch_add(lt_ctl->tokens_gen, uint64(1));
	if (events || tokens)
		lt_wake_http();
}

void on_xact(XactEvent event, void *) {
	if (pending == NULL)
		return;
	switch (event) {
	case XACT_EVENT_PRE_COMMIT:
		before_commit();
		break;
	case XACT_EVENT_PRE_PREPARE:
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
		                errmsg("cannot PREPARE a transaction that changed livetrack orders or keys")));
		break;
	case XACT_EVENT_COMMIT:
		after_commit();
		forget();
		break;
	case XACT_EVENT_ABORT:
	case XACT_EVENT_PARALLEL_ABORT:
		forget();
		break;
	default:
		break;
	}
}

void on_subxact(SubXactEvent event, SubTransactionId, SubTransactionId, void *) {
	int level = GetCurrentTransactionNestLevel();
	if (event == SUBXACT_EVENT_ABORT_SUB) {
		while (n_pending > 0 && pending[n_pending - 1].level >= level)
			n_pending--;
	} else if (event == SUBXACT_EVENT_COMMIT_SUB) {
		for (int i = 0; i < n_pending; i++)
			if (pending[i].level >= level)
				pending[i].level = level - 1;
	}
}

} // namespace

void lt_at_commit_init(void) {
	RegisterXactCallback(on_xact, NULL);
	RegisterSubXactCallback(on_subxact, NULL);
}

void lt_notify(const char *channel, const char *payload) {
	Async_Notify(channel, payload);
	add(Pending{kNotify});
}

// livetrack._notify(channel, payload): pg_notify(), counted.
LT_FUNCTION(livetrack_notify) {
	lt_require_shared();
	lt_notify(text_to_cstring(PG_GETARG_TEXT_PP(0)), text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_VOID();
}

// livetrack._set_driver_status(driver_id, status): at commit. Also marks the
// transaction as one that changed an open order.
LT_FUNCTION(livetrack_set_driver_status) {
	lt_require_database();
	int64 driver_id = PG_GETARG_INT64(0);
	text *t = PG_GETARG_TEXT_PP(1);
	uint8 status = lt::status_from_name(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	if (driver_id <= 0 || status == lt::kStatusNoChange)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid driver status change")));
	Pending p{kStatus};
	p.status = status;
	p.driver_id = uint64(driver_id);
	add(p);
	add(Pending{kOrdersChanged});
	PG_RETURN_VOID();
}

// livetrack._await_own_status(): read-your-writes for the status changes
// this session committed, which the listener applies a moment later.
LT_FUNCTION(livetrack_await_own_status) {
	lt_require_shared();
	for (int i = 0; i < 1000 && lt_ingest.tail() < own_status_pos; i++) {
		(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_VOID();
}

// livetrack._order_changed(): an open order's target or driver changed.
LT_FUNCTION(livetrack_order_changed) {
	lt_require_database();
	add(Pending{kOrdersChanged});
	PG_RETURN_VOID();
}

// livetrack._event_published(): the transaction published an order event.
LT_FUNCTION(livetrack_event_published) {
	lt_require_shared();
	add(Pending{kEventPublished});
	PG_RETURN_VOID();
}

// livetrack._tokens_changed(): the token secret was rotated.
LT_FUNCTION(livetrack_tokens_changed) {
	lt_require_shared();
	add(Pending{kTokensChanged});
	PG_RETURN_VOID();
}

// livetrack._random_secret(): 32 bytes from the operating system's CSPRNG.
LT_FUNCTION(livetrack_random_secret) {
	bytea *b = static_cast<bytea *>(palloc(VARHDRSZ + lt::kSecretBytes));
	SET_VARSIZE(b, VARHDRSZ + lt::kSecretBytes);
	if (!pg_strong_random(VARDATA(b), lt::kSecretBytes))
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not generate a random secret")));
	PG_RETURN_BYTEA_P(b);
}

// livetrack._install_key(key_id, driver_id, secret): usable once committed.
LT_FUNCTION(livetrack_install_key) {
	lt_require_database();
	bytea *s = PG_ARGISNULL(0) || PG_ARGISNULL(2) ? NULL : PG_GETARG_BYTEA_PP(2);
	if (s == NULL || VARSIZE_ANY_EXHDR(s) != lt::kSecretBytes)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("a signing key needs an id and 32 bytes")));
	Pending p{kInstallKey};
	p.key_id = uint32(PG_GETARG_INT32(0));
	p.driver_id = PG_ARGISNULL(1) ? 0 : uint64(PG_GETARG_INT64(1));
	memcpy(p.secret, VARDATA_ANY(s), lt::kSecretBytes);
	add(p);
	PG_RETURN_VOID();
}

// livetrack._revoke_key(key_id): at commit.
LT_FUNCTION(livetrack_revoke_key) {
	lt_require_database();
	Pending p{kRevokeKey};
	p.key_id = uint32(PG_GETARG_INT32(0));
	add(p);
	PG_RETURN_VOID();
}
