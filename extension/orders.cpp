// The C side of orders: changes that must wait for the transaction's commit.
//
// assign_order() makes its driver busy and deliver_order() makes it
// available again, but only if the transaction commits: the status changes
// are queued here and handed to the listener (the only process that moves
// drivers) just before commit. Likewise a commit that changed an open order
// bumps orders_gen, so the flushers reload the orders they follow, and the
// NOTIFYs sent are counted only once they are.
#include <algorithm>

#include "../core/clock.hpp"
#include "shared.hpp"

extern "C" {
#include "commands/async.h"
#include "pgstat.h"
#include "storage/latch.h"
}

namespace {

// What this transaction will do at commit, by subtransaction level, so that
// a rolled-back subtransaction takes its part with it. Lives in
// TopTransactionContext; plain data.
struct Pending {
	uint64 driver_id; // 0: not a status change
	uint8 status;
	bool orders_changed;
	bool notify;
	int level;
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
	pending[n_pending++] = p;
}

void forget(void) {
	pending = NULL; // freed with TopTransactionContext
	n_pending = cap_pending = 0;
}

// Before commit, where an error still aborts the transaction cleanly: the
// status changes go to the listener's ingest queue.
void push_status_changes(void) {
	for (int i = 0; i < n_pending; i++) {
		if (pending[i].driver_id == 0)
			continue;
		lt::Ping p{};
		p.fix.driver_id = pending[i].driver_id;
		p.fix.status = pending[i].status;
		p.received_us = lt::now_us();
		p.fix.ts_ms = p.received_us / 1000;
		p.flags = lt::kPingStatusOnly;
		while (!lt_ingest.push(p)) {
			SetLatch(lt_latch_of(lt_ctl->listener_procno) ?: MyLatch);
			(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	if (Latch *l = lt_latch_of(lt::load_relaxed(lt_ctl->listener_procno)))
		SetLatch(l);
}

// After commit: nothing here may fail.
void published(void) {
	bool changed = false;
	uint64 notifies = 0;
	for (int i = 0; i < n_pending; i++) {
		changed |= pending[i].orders_changed;
		notifies += pending[i].notify;
	}
	if (changed) {
		lt::fetch_add(lt_ctl->orders_gen, uint64(1));
		lt_wake_flushers();
	}
	if (notifies)
		lt::fetch_add_relaxed(lt_ctl->counters.notifications, notifies);
}

void on_xact(XactEvent event, void *) {
	if (pending == NULL)
		return;
	switch (event) {
	case XACT_EVENT_PRE_COMMIT:
		push_status_changes();
		break;
	case XACT_EVENT_PRE_PREPARE:
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
		                errmsg("cannot PREPARE a transaction that changed livetrack orders")));
		break;
	case XACT_EVENT_COMMIT:
		published();
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

void lt_orders_init(void) {
	RegisterXactCallback(on_xact, NULL);
	RegisterSubXactCallback(on_subxact, NULL);
}

void lt_notify(const char *channel, const char *payload) {
	Async_Notify(channel, payload);
	add(Pending{0, 0, false, true, GetCurrentTransactionNestLevel()});
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
	add(Pending{uint64(driver_id), status, true, false, GetCurrentTransactionNestLevel()});
	PG_RETURN_VOID();
}

// livetrack._order_changed(): an open order's target or driver changed.
LT_FUNCTION(livetrack_order_changed) {
	lt_require_database();
	add(Pending{0, 0, true, false, GetCurrentTransactionNestLevel()});
	PG_RETURN_VOID();
}
