// The flusher background worker: ring -> history, in short transactions.
//
// It looks at a run of records on the ring, writes them in one transaction,
// commits, and only then releases them. A failed transaction therefore loses
// nothing: the records are still on the ring and the next attempt retries
// them. The ring position after a release is the commit watermark that the
// listener's ACKs and wait_flushed() wait for.
//
// Written in C style on purpose: its error recovery longjmps back to the
// main loop, so no frame here holds an object with a destructor.
#include "../core/clock.hpp"
#include "../core/flush_policy.hpp"
#include "history.hpp"
#include "worker_common.hpp"

extern "C" {
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void livetrack_flusher_main(Datum arg);
}

namespace {

constexpr int64 kMaintenanceEveryUs = 60 * 1000000LL;

MemoryContext batch_ctx;
int64 next_maintenance_us;
Oid extension; // the livetrack extension we write for; static: survives the longjmp
lt::FlushCost cost = lt::kInitialFlushCost; // what a batch takes, learnt as we go

void flusher_exit(int, Datum) { lt::store_release(lt_ctl->flusher_procno, int32(-1)); }

void publish(uint64 n, int64 started_us) {
	int64 now = lt::now_us();
	LtControl *ctl = lt_ctl;
	lt::Ping p;
	uint64 max_latency = 0;
	for (uint64 i = 0; i < n; i++) {
		if (!lt_ring.peek(i, p))
			break;
		uint64 lat = now > p.received_us ? uint64(now - p.received_us) : 0;
		ctl->flush_latency_us.add(lat);
		if (lat > max_latency)
			max_latency = lat;
	}
	lt_ring.release(n);
	lt::bump(ctl->counters.flushed_records, n);
	lt::bump(ctl->counters.flush_batches);
	lt::store_relaxed(ctl->last_flush_records, n);
	lt::store_relaxed(ctl->last_flush_max_latency_us, max_latency);
	lt::store_relaxed(ctl->last_flush_duration_us, uint64(now - started_us));
	lt::store_relaxed(ctl->last_flush_us, uint64(now));
	cost.observe(n, double(now - started_us));
	ConditionVariableBroadcast(&ctl->flushed_cv);
	// ACKs can go out now, and paused connections may read again.
	if (Latch *l = lt_latch_of(lt::load_relaxed(ctl->listener_procno)))
		SetLatch(l);
}

// Commits the first n ring records to history. False if the extension is not
// the one we started with (the records were discarded).
bool flush(uint64 n, Oid ext) {
	int64 started = lt::now_us();
	MemoryContext old = MemoryContextSwitchTo(batch_ctx);
	auto *pings = static_cast<lt::Ping *>(palloc(sizeof(lt::Ping) * n));
	uint64 got = 0;
	while (got < n && lt_ring.peek(got, pings[got]))
		got++;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	bool dropped = get_extension_oid("livetrack", true) != ext;
	if (!dropped) {
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "writing history");
		lt_history_insert(pings, int(got));
		lt_registry_upsert(pings, int(got));
		PopActiveSnapshot();
	}
	CommitTransactionCommand();
	// Table and WAL statistics (what autovacuum goes by); at most once a second.
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(old);
	MemoryContextReset(batch_ctx);

	if (dropped) {
		ereport(WARNING, (errmsg("livetrack flusher: extension dropped; discarding %llu records",
		                         (unsigned long long)got)));
		lt_ring.release(got);
		lt_history_forget();
		return false;
	}
	publish(got, started);
	return true;
}

} // namespace

void livetrack_flusher_main(Datum) {
	lt_worker_start();
	lt::store_release(lt_ctl->flusher_procno, int32(MyProc->pgprocno));
	before_shmem_exit(flusher_exit, 0);
	batch_ctx = AllocSetContextCreate(TopMemoryContext, "livetrack flusher batch", ALLOCSET_DEFAULT_SIZES);

	// Error recovery, as the postmaster's own auxiliary processes do it: report,
	// abort the transaction, keep the records on the ring, pause, retry.
	sigjmp_buf local_sigjmp_buf;
	if (sigsetjmp(local_sigjmp_buf, 1) != 0) {
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		MemoryContextReset(batch_ctx);
		lt_history_forget();
		lt::bump(lt_ctl->counters.flush_errors);
		pgstat_report_activity(STATE_IDLE, NULL);
		RESUME_INTERRUPTS();
		lt_worker_sleep(1000);
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;) {
		lt_worker_interrupts();
		if (!OidIsValid(extension)) {
			extension = lt_extension_oid();
			if (!OidIsValid(extension)) {
				lt_worker_sleep(1000);
				continue;
			}
			next_maintenance_us = 0;
		}
		int64 now = lt::mono_us();
		if (now >= next_maintenance_us) {
			next_maintenance_us = now + kMaintenanceEveryUs;
			lt_history_maintain();
		}

		uint64 batch = uint64(lt_batch_size);
		uint64 n = lt_ring.ready(batch);
		if (n == 0) {
			lt_worker_sleep(lt_flush_interval_ms);
			continue;
		}
		// A full batch goes at once; a partial one when it must start to be
		// committed within flush_interval of its oldest record's receipt, or
		// when wait_flushed() asks.
		lt::Ping oldest;
		lt_ring.peek(0, oldest);
		lt::FlushDecision d =
		    lt::plan_flush(n, batch, lt::now_us() - oldest.received_us, int64(lt_flush_interval_ms) * 1000, cost,
		                   lt::load_acquire(lt_ctl->flush_req) > lt_ring.tail());
		if (!d.go) {
			lt_worker_sleep((d.sleep_us + 999) / 1000);
			continue;
		}
		if (!flush(n, extension))
			extension = InvalidOid;
	}
}
