// Pushes for open orders, from the flusher (see order_push.hpp).
//
// The flusher keeps the open orders of its own drivers in a hash table
// (driver_id -> lt::OrderWatch; a driver has at most one open order) and
// reloads it whenever a committed order change bumps orders_gen. Per batch
// each followed driver's newest fix may send a position message (at most
// one per livetrack.notify_interval), and the first fix within
// livetrack.near_radius of the target records the near event
// (livetrack._near_event) in the batch's own transaction.
//
// C style like the rest of the flusher: no object with a destructor lives
// in a frame that a Postgres error could longjmp over.
#include "../core/clock.hpp"
#include "../core/push.hpp"
#include "order_push.hpp"

extern "C" {
#include "executor/spi.h"
#include "utils/hsearch.h"
#include "utils/resowner.h"
}

namespace {

MemoryContext watch_ctx;
HTAB *watches; // NULL until loaded
uint64 loaded_gen;
uint64 batch_no;
bool recorded_event; // this batch drafted a near event (it commits synchronously)

HTAB *new_table(void) {
	if (watch_ctx == NULL)
		watch_ctx = AllocSetContextCreate(TopMemoryContext, "livetrack open orders", ALLOCSET_DEFAULT_SIZES);
	HASHCTL ctl;
	memset(&ctl, 0, sizeof ctl);
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(lt::OrderWatch);
	ctl.hcxt = watch_ctx;
	return hash_create("livetrack open orders", 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

double float8_col(HeapTuple row, TupleDesc desc, int col) {
	bool isnull;
	Datum d = SPI_getbinval(row, desc, col, &isnull);
	return isnull ? 0.0 : DatumGetFloat8(d);
}

// The open orders of our drivers, keeping what we knew of those still open.
void reload(uint32 me, uint32 n_flushers) {
	SPI_connect();
	if (SPI_execute("SELECT order_id, driver_id, target = 'pickup', lat, lon, near_sent FROM livetrack._open_orders()",
	                false, 0) != SPI_OK_SELECT)
		elog(ERROR, "livetrack: could not read the open orders");
	HTAB *t = new_table();
	TupleDesc desc = SPI_tuptable->tupdesc;
	for (uint64 i = 0; i < SPI_processed; i++) {
		HeapTuple row = SPI_tuptable->vals[i];
		bool isnull;
		uint64 driver = uint64(DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull)));
		if (lt::consumer_of(driver, n_flushers) != me)
			continue;
		bool found;
		auto *w = static_cast<lt::OrderWatch *>(hash_search(t, &driver, HASH_ENTER, &found));
		w->order_id = uint64(DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull)));
		w->target = DatumGetBool(SPI_getbinval(row, desc, 3, &isnull)) ? lt::kTargetPickup : lt::kTargetDropoff;
		w->target_lat = float8_col(row, desc, 4);
		w->target_lon = float8_col(row, desc, 5);
		w->near_sent = DatumGetBool(SPI_getbinval(row, desc, 6, &isnull));
		w->last_position_us = 0;
		w->batch = 0;
		if (watches != NULL) {
			auto *old = static_cast<lt::OrderWatch *>(hash_search(watches, &driver, HASH_FIND, NULL));
			if (old != NULL && old->order_id == w->order_id) {
				w->last_position_us = old->last_position_us;
				w->batch = old->batch;
			}
		}
	}
	SPI_finish();
	if (watches != NULL)
		hash_destroy(watches);
	watches = t;
}

// Drafts the near event (it gets its id and rings at commit); false if the
// order has moved on meanwhile.
bool near_event(const lt::OrderWatch &w, const lt::Fix &f, const lt::PushDecision &d) {
	Oid types[8] = {INT8OID, INT8OID, TEXTOID, FLOAT8OID, FLOAT8OID, TIMESTAMPTZOID, FLOAT8OID, FLOAT8OID};
	Datum args[8] = {
	    Int64GetDatum(int64(w.order_id)),
	    Int64GetDatum(int64(w.driver_id)),
	    CStringGetTextDatum(lt::target_name(w.target)),
	    Float8GetDatum(f.lat_e7 / 1e7),
	    Float8GetDatum(f.lon_e7 / 1e7),
	    TimestampTzGetDatum(lt_unix_us_to_ts(f.ts_ms * 1000)),
	    Float8GetDatum(d.distance_m),
	    Float8GetDatum(d.eta_s),
	};
	SPI_connect();
	if (SPI_execute_with_args("SELECT livetrack._near_event($1, $2, $3, $4, $5, $6, $7, $8)", 8, types, args, NULL,
	                          false, 1) != SPI_OK_SELECT ||
	    SPI_processed != 1)
		elog(ERROR, "livetrack: could not record a near event");
	bool isnull;
	(void)SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_finish();
	return !isnull;
}

void push(const lt::Ping *pings, int n, uint32 me, uint32 n_flushers, uint64 gen) {
	if (watches == NULL || gen != loaded_gen) {
		reload(me, n_flushers);
		loaded_gen = gen;
	}
	if (hash_get_num_entries(watches) == 0)
		return;
	batch_no++;
	int64 now = lt::now_us(), interval_us = int64(lt_notify_interval_ms) * 1000;
	// Positions are a courtesy: with the notification queue half full (a
	// LISTENer that stopped reading) they are not sent, so the commit never
	// fails on a full queue.
	bool positions = DatumGetFloat8(DirectFunctionCall1(pg_notification_queue_usage, (Datum)0)) < 0.5;
	// Newest first: the first fix of a driver met is the one a position
	// message carries.
	for (int i = n - 1; i >= 0; i--) {
		const lt::Ping &p = pings[i];
		if (p.flags & lt::kPingStatusOnly)
			continue;
		auto *w = static_cast<lt::OrderWatch *>(hash_search(watches, &p.fix.driver_id, HASH_FIND, NULL));
		if (w == NULL)
			continue;
		lt::PushDecision d =
		    lt::watch_fix(*w, p.fix, (p.flags & lt::kPingLate) != 0, batch_no, now, interval_us, lt_near_radius_m);
		if (d.position && positions) {
			char channel[NAMEDATALEN], payload[512];
			snprintf(channel, sizeof channel, "livetrack_order_%llu", (unsigned long long)w->order_id);
			if (lt::format_order_message(payload, sizeof payload, lt::position_message(*w, p.fix, d)))
				lt_notify(channel, payload);
		}
		if (d.near && near_event(*w, p.fix, d)) {
			w->near_sent = true;
			recorded_event = true;
		}
	}
}

} // namespace

void lt_orders_forget(void) {
	watches = NULL;
	if (watch_ctx != NULL)
		MemoryContextReset(watch_ctx); // also what a failed reload had built
}

bool lt_orders_recorded_event(void) { return recorded_event; }

void lt_orders_push(const lt::Ping *pings, int n, uint32 me, uint32 n_flushers) {
	recorded_event = false;
	uint64 gen = lt::load_acquire(lt_ctl->orders_gen);
	if (watches != NULL && gen == loaded_gen && hash_get_num_entries(watches) == 0)
		return; // nothing to follow: the common case costs one load
	// In a subtransaction, so that a failure here (a broken events table, say)
	// costs the messages of this batch and never the history rows.
	MemoryContext ctx = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(ctx);
	PG_TRY();
	{
		push(pings, n, me, n_flushers, gen);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(ctx);
		ErrorData *e = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ereport(WARNING, (errmsg("livetrack flusher: order messages of this batch not sent: %s", e->message)));
		FreeErrorData(e);
		lt_orders_forget(); // what it knew may have been rolled back
		recorded_event = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(ctx);
	CurrentResourceOwner = owner;
}
