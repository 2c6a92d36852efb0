// The flusher background worker: ring -> history, in short transactions.
//
// It looks at a run of records on the ring, writes them in one transaction,
// commits, and only once the commit is durable releases them. A failed
// transaction therefore loses nothing: the records are still on the ring and
// the next attempt retries them. The ring position after a release is the
// commit watermark that the listener's ACKs and wait_flushed() wait for.
//
// Commits are pipelined: a batch commits without waiting for its WAL flush
// (SET LOCAL synchronous_commit = off), the flusher goes on with the next
// batch while the WAL writer flushes, and the batch is released when the
// flushed WAL position passes its commit record, or the flusher flushes the
// WAL itself when it has nothing else to do. An ACK still means what a
// synchronous commit means; a slow fsync just no longer stops the inserts.
// With synchronous standbys configured (or synchronous_commit set to wait
// for them) every commit is synchronous, so ACKs wait for the standbys too.
//
// Written in C style on purpose: its error recovery longjmps back to the
// main loop, so no frame here holds an object with a destructor.
#include "../core/clock.hpp"
#include "../core/flush_policy.hpp"
#include "history.hpp"
#include "worker_common.hpp"

extern "C" {
#include "access/xlog.h"
#include "pgstat.h"
#include "replication/syncrep.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void livetrack_flusher_main(Datum arg);
}

namespace {

constexpr int64 kMaintenanceEveryUs = 60 * 1000000LL;

MemoryContext batch_ctx;
int64 next_maintenance_us;
Oid extension; // the livetrack extension we write for; static: survives the longjmp
lt::FlushCost cost = lt::kInitialFlushCost; // what a batch takes, learnt as we go

// Batches committed without waiting for their WAL flush, oldest first; their
// records stay on the ring until the flush passes their commit record.
// Plain statics: they survive the error longjmp (a committed batch stays
// committed when a later one fails).
struct Committed {
	uint64 n;
	XLogRecPtr lsn;
	int64 committed_us;
	uint64 duration_us;
};
constexpr int kMaxInFlight = 8;
Committed in_flight[kMaxInFlight];
int n_in_flight;
uint64 in_flight_records; // ring records (from the tail) held by in_flight

void settle(bool wait);

// On a clean exit (SIGTERM, FATAL) committed batches are released before the
// process goes: a restarted flusher would otherwise write them again.
void flusher_exit(int, Datum) {
	settle(true);
	lt::store_release(lt_ctl->flusher_procno, int32(-1));
}

// Releases the first n ring records, now durable, and tells whoever waits.
void publish(uint64 n, uint64 duration_us) {
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
	lt::store_relaxed(ctl->last_flush_duration_us, duration_us);
	lt::store_relaxed(ctl->last_flush_us, uint64(now));
	ConditionVariableBroadcast(&ctl->flushed_cv);
	// ACKs can go out now, and paused connections may read again.
	if (Latch *l = lt_latch_of(lt::load_relaxed(ctl->listener_procno)))
		SetLatch(l);
}

// Releases the batches whose commit records are flushed. With wait (or when
// the oldest has waited a quarter of flush_interval for the WAL writer),
// flushes the WAL first so that all of them are.
void settle(bool wait) {
	if (n_in_flight == 0)
		return;
	int64 now = lt::now_us();
	if (wait || now - in_flight[0].committed_us > int64(lt_flush_interval_ms) * 250) {
		XLogRecPtr last = in_flight[n_in_flight - 1].lsn;
		if (GetFlushRecPtr(NULL) < last) {
			XLogFlush(last);
			cost.observe_wal_flush(double(lt::now_us() - now)); // the wait an ACK includes
		}
	}
	XLogRecPtr flushed = GetFlushRecPtr(NULL);
	int done = 0;
	while (done < n_in_flight && in_flight[done].lsn <= flushed) {
		publish(in_flight[done].n, in_flight[done].duration_us);
		in_flight_records -= in_flight[done].n;
		done++;
	}
	for (int i = done; i < n_in_flight; i++)
		in_flight[i - done] = in_flight[i];
	n_in_flight -= done;
}

// Whether this server's idea of a commit is a local WAL flush, which the
// flusher can wait for itself (see the file comment).
bool commit_is_local_flush(void) {
	if (synchronous_commit == SYNCHRONOUS_COMMIT_LOCAL_FLUSH)
		return true;
	bool standbys = SyncRepStandbyNames != NULL && SyncRepStandbyNames[0] != '\0';
	return synchronous_commit > SYNCHRONOUS_COMMIT_LOCAL_FLUSH && !standbys;
}

// Commits the n ring records after those in flight to history. False if the
// extension is not the one we started with (the records were discarded).
bool flush(uint64 n, Oid ext) {
	if (n_in_flight == kMaxInFlight)
		settle(true); // room for this batch before it commits
	int64 started = lt::now_us();
	MemoryContext old = MemoryContextSwitchTo(batch_ctx);
	auto *pings = static_cast<lt::Ping *>(palloc(sizeof(lt::Ping) * n));
	uint64 got = 0;
	while (got < n && lt_ring.peek(in_flight_records + got, pings[got]))
		got++;

	bool pipelined = commit_is_local_flush();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	bool dropped = get_extension_oid("livetrack", true) != ext;
	if (!dropped) {
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "writing history");
		lt_history_insert(pings, int(got));
		lt_registry_upsert(pings, int(got));
		PopActiveSnapshot();
		if (pipelined)
			(void)set_config_option("synchronous_commit", "off", PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true,
			                        0, false);
	}
	CommitTransactionCommand();
	if (!dropped) {
		// Nothing that can fail comes between the commit and this: a batch
		// that is committed is always in flight, never written twice.
		int64 now = lt::now_us();
		in_flight[n_in_flight++] = Committed{got, XactLastCommitEnd, now, uint64(now - started)};
		in_flight_records += got;
		cost.observe(got, double(now - started));
	}
	// Table and WAL statistics (what autovacuum goes by); at most once a second.
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(old);
	MemoryContextReset(batch_ctx);

	if (dropped) {
		settle(true); // what was committed before stays committed
		ereport(WARNING, (errmsg("livetrack flusher: extension dropped; discarding %llu records",
		                         (unsigned long long)got)));
		lt_ring.release(got);
		lt_history_forget();
		return false;
	}
	settle(!pipelined); // a synchronous commit is already flushed: release it now
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
		settle(true); // batches committed before the error are done: release them
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
		uint64 n = lt_ring.ready(in_flight_records + batch) - in_flight_records;
		if (n == 0 && n_in_flight > 0) {
			settle(true); // idle: make what is in flight durable now, then look again
			continue;
		}
		if (n == 0) {
			pgstat_report_stat(false);
			lt_worker_sleep(lt_flush_interval_ms); // the listener wakes us when the ring fills
			continue;
		}
		// A full batch goes at once; a partial one when it must start to be
		// durable within flush_interval of its oldest record's receipt, or
		// when wait_flushed() asks.
		lt::Ping oldest;
		lt_ring.peek(in_flight_records, oldest);
		lt::FlushDecision d = lt::plan_flush(n, batch, lt::now_us() - oldest.received_us,
		                                     int64(lt_flush_interval_ms) * 1000, cost,
		                                     lt::load_acquire(lt_ctl->flush_req) > lt_ring.tail() + in_flight_records);
		if (!d.go) {
			if (n_in_flight > 0) {
				settle(true); // time to spare: finish what is in flight, then plan again
				continue;
			}
			lt_worker_sleep((d.sleep_us + 999) / 1000);
			continue;
		}
		if (!flush(n, extension))
			extension = InvalidOid;
	}
}
