// A flusher background worker: ring -> history, in short transactions.
//
// livetrack.flushers of them share the ring (core/consumer_group.hpp): each
// reads every record and writes those of the drivers that hash to it. A
// flusher looks at a run of records, writes its share in one transaction,
// commits, and only once the commit is durable marks the run finished; the
// ring is released up to the slowest flusher's mark. A failed transaction
// therefore loses nothing: the records are still on the ring and the next
// attempt retries them. The ring's release position is the commit watermark
// that the listener's ACKs and wait_flushed() wait for.
//
// Commits are pipelined: a batch commits without waiting for its WAL flush
// (SET LOCAL synchronous_commit = off), the flusher goes on with the next
// batch while the WAL writer flushes, and the batch is finished when the
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
#include "key_windows.hpp"
#include "order_push.hpp"
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
constexpr int64 kSaveWindowsEveryUs = 5 * 1000000LL; // replays possible after a crash: up to this much
constexpr int64 kSummarizeEveryUs = 1000000LL; // BRIN ranges of the open minutes (lt_history_summarize)

MemoryContext batch_ctx;
int64 next_maintenance_us;
int64 next_summarize_us;
int64 next_windows_us;
Oid extension; // the livetrack extension we write for; static: survives the longjmp
lt::FlushCost cost = lt::kInitialFlushCost; // what a batch takes, learnt as we go
uint32 me;                                  // this flusher's share: drivers with consumer_of() == me
uint32 n_flushers;

// Runs of the ring this flusher is done with except for the WAL flush of
// their commit, oldest first. Plain statics: they survive the error longjmp
// (a committed batch stays committed when a later one fails).
struct Committed {
	uint64 end;     // ring position after the run
	uint64 n;       // history rows of ours in it (0: none, e.g. a run of other flushers' records)
	XLogRecPtr lsn; // commit record to wait for; 0 when there is none
	int64 committed_us;
	uint64 duration_us;
};
constexpr int kMaxInFlight = 8;
Committed in_flight[kMaxInFlight];
int n_in_flight;
uint64 done_pos; // everything of ours before this is durable and marked so

bool mine(const lt::Ping &p) { return lt::consumer_of(p.fix.driver_id, n_flushers) == me; }
// Where the next run starts: after what is in flight.
uint64 next_pos(void) { return n_in_flight > 0 ? in_flight[n_in_flight - 1].end : done_pos; }

void settle(bool wait);

// On a clean exit (SIGTERM, FATAL) committed batches are finished before the
// process goes: a restarted flusher would otherwise write them again.
void flusher_exit(int, Datum) {
	settle(true);
	lt::store_release(lt_ctl->flusher_procno[me], int32(-1));
}

// Marks the run up to c.end finished (its records of ours are durable) and,
// if that releases ring records, tells whoever waits.
void publish(const Committed &c) {
	int64 now = lt::now_us();
	LtControl *ctl = lt_ctl;
	uint64 max_latency = 0;
	if (c.n > 0) {
		lt::Ping p;
		for (uint64 pos = done_pos; pos < c.end; pos++) {
			if (!lt_ring.peek_at(pos, p) || !mine(p) || (p.flags & lt::kPingStatusOnly))
				continue;
			uint64 lat = now > p.received_us ? uint64(now - p.received_us) : 0;
			ctl->flush_latency_us.add_shared(lat);
			if (lat > max_latency)
				max_latency = lat;
		}
		lt::fetch_add_relaxed(ctl->counters.flushed_records, c.n);
		lt::fetch_add_relaxed(ctl->hot_fixes, c.n); // every row goes to the hot log
		lt::fetch_add_relaxed(ctl->counters.flush_batches, uint64(1));
		lt::store_relaxed(ctl->last_flush_records, c.n);
		lt::store_relaxed(ctl->last_flush_max_latency_us, max_latency);
		lt::store_relaxed(ctl->last_flush_duration_us, c.duration_us);
		lt::store_relaxed(ctl->last_flush_us, uint64(now));
	}
	done_pos = c.end;
	if (lt::consumer_finish(ctl->flushers, lt_ring, me, c.end)) {
		ConditionVariableBroadcast(&ctl->flushed_cv);
		// ACKs can go out now, and paused connections may read again.
		if (Latch *l = lt_latch_of(lt::load_relaxed(ctl->listener_procno)))
			SetLatch(l);
		for (LtHttpSlot &h : ctl->http)
			if (lt::load_relaxed(h.awaits_commit)) {
				lt_wake_http(); // HTTP ingest answers after commit too
				break;
			}

	}
}

// Finishes the runs whose commit records are flushed. With wait (or when
// the oldest has waited a quarter of flush_interval for the WAL writer),
// flushes the WAL first so that all of them are.
void settle(bool wait) {
	if (n_in_flight == 0)
		return;
	int64 now = lt::now_us();
	if (wait || now - in_flight[0].committed_us > int64(lt_flush_interval_ms) * 250) {
		XLogRecPtr last = 0;
		for (int i = 0; i < n_in_flight; i++)
			last = Max(last, in_flight[i].lsn);
		if (GetFlushRecPtr(NULL) < last) {
			XLogFlush(last);
			cost.observe_wal_flush(double(lt::now_us() - now)); // the wait an ACK includes
		}
	}
	XLogRecPtr flushed = GetFlushRecPtr(NULL);
	int done = 0;
	while (done < n_in_flight && in_flight[done].lsn <= flushed)
		publish(in_flight[done++]);
	for (int i = done; i < n_in_flight; i++)
		in_flight[i - done] = in_flight[i];
	n_in_flight -= done;
}

// Queues a finished run behind those in flight (or finishes it now).
void enqueue(const Committed &c) {
	if (n_in_flight == 0 && c.lsn == 0) {
		publish(c);
		return;
	}
	if (n_in_flight == kMaxInFlight)
		settle(true);
	in_flight[n_in_flight++] = c;
}

// Whether this server's idea of a commit is a local WAL flush, which the
// flusher can wait for itself (see the file comment).
bool commit_is_local_flush(void) {
	if (synchronous_commit == SYNCHRONOUS_COMMIT_LOCAL_FLUSH)
		return true;
	bool standbys = SyncRepStandbyNames != NULL && SyncRepStandbyNames[0] != '\0';
	return synchronous_commit > SYNCHRONOUS_COMMIT_LOCAL_FLUSH && !standbys;
}

// Commits our n records in the ring run [from, end) to history. False if the
// extension is not the one we started with (the records were discarded).
bool flush(uint64 from, uint64 end, uint64 n, Oid ext) {
	if (n_in_flight == kMaxInFlight)
		settle(true); // room for this batch before it commits
	int64 started = lt::now_us();
	MemoryContext old = MemoryContextSwitchTo(batch_ctx);
	auto *pings = static_cast<lt::Ping *>(palloc(sizeof(lt::Ping) * n));
	uint64 got = 0, rows = 0;
	for (uint64 pos = from; pos < end && got < n; pos++)
		if (lt_ring.peek_at(pos, pings[got]) && mine(pings[got]))
			rows += (pings[got++].flags & lt::kPingStatusOnly) == 0;

	bool pipelined = commit_is_local_flush();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	Oid current = get_extension_oid("livetrack", true);
	bool dropped = current != ext;
	if (!dropped) {
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "writing history");
		lt_history_insert(pings, int(got));
		lt_registry_upsert(pings, int(got));
		lt_orders_push(pings, int(got), me, n_flushers);
		PopActiveSnapshot();
		if (lt_orders_recorded_event())
			pipelined = false;
		if (pipelined)
			(void)set_config_option("synchronous_commit", "off", PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true,
			                        0, false);
	}
	CommitTransactionCommand();
	if (!dropped) {
		// Nothing that can fail comes between the commit and this: a batch
		// that is committed is always in flight, never written twice.
		int64 now = lt::now_us();
		in_flight[n_in_flight++] = Committed{end, rows, XactLastCommitEnd, now, uint64(now - started)};
		cost.observe(got, double(now - started));
	}
	// Table and WAL statistics (what autovacuum goes by); at most once a second.
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(old);
	MemoryContextReset(batch_ctx);

	if (dropped) {
		settle(true); // what was committed before stays committed
		// Dropped, and maybe created again: if the listener already feeds the
		// new extension, what it put on the ring since then is the new one's,
		// for the next flush; what came before is discarded.
		uint64 cut = end;
		if (OidIsValid(current) && lt::load_acquire(lt_ctl->serving_ext) == current)
			cut = Min(Max(lt::load_relaxed(lt_ctl->serving_from), from), end);
		uint64 discarded = 0;
		lt::Ping p;
		for (uint64 pos = from; pos < cut; pos++)
			discarded += lt_ring.peek_at(pos, p) && mine(p);
		ereport(WARNING, (errmsg("livetrack flusher: extension dropped; discarding %llu records",
		                         (unsigned long long)discarded)));
		publish(Committed{cut, 0, 0, 0, 0});
		lt_history_forget();
		lt_orders_forget();
		lt_key_windows_forget();
		return false;
	}
	settle(!pipelined); // a synchronous commit is already flushed: finish it now
	return true;
}

// SIGTERM. In a server stop the listener is told too: it stops taking input
// (STOPPING), and we commit everything left on the ring (shared memory dies
// with the server) until it has gone (DOWN); flusher 1 then saves the replay
// windows, which no longer move. Told alone (pg_terminate_backend), with
// the listener still serving after a second, we go at once: shared memory
// stays, and the restarted flusher carries on from the ring.
int64 stop_seen_us;

bool may_exit(void) {
	lt_worker_begin_stop();
	int64 now = lt::mono_us();
	if (stop_seen_us == 0)
		stop_seen_us = now;
	uint32 state = lt::load_acquire(lt_ctl->listener_state);
	if (state == LT_LISTENER_STOPPING)
		return false;
	if (state != LT_LISTENER_DOWN)
		return now - stop_seen_us > 1000000;
	if (lt_ring.ready_from(next_pos(), 1) > 0)
		return false;
	settle(true);
	if (me == 0 && OidIsValid(extension))
		lt_key_windows_save();
	return true;
}

} // namespace

void livetrack_flusher_main(Datum arg) {
	me = uint32(DatumGetInt32(arg));
	n_flushers = lt_ctl->flushers.count;
	lt_worker_start();
	done_pos = lt::consumer_done(lt_ctl->flushers, me); // after a restart: where we stopped
	lt::store_release(lt_ctl->flusher_procno[me], int32(MyProc->pgprocno));
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
		settle(true); // batches committed before the error are done: finish them
		MemoryContextReset(batch_ctx);
		lt_history_forget();
		lt_orders_forget();
		lt_key_windows_forget();
		lt::fetch_add_relaxed(lt_ctl->counters.flush_errors, uint64(1));
		pgstat_report_activity(STATE_IDLE, NULL);
		RESUME_INTERRUPTS();
		lt_worker_sleep(1000);
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;) {
		lt_worker_interrupts();
		if (lt_stop_requested && may_exit())
			proc_exit(1); // not 0: a worker that exits with 0 is not restarted
		if (!OidIsValid(extension)) {
			extension = lt_extension_oid();
			if (!OidIsValid(extension)) {
				lt_worker_sleep(1000);
				continue;
			}
			next_maintenance_us = 0;
		}
		int64 now = lt::mono_us();
		if (me == 0 && now >= next_maintenance_us) {
			next_maintenance_us = now + kMaintenanceEveryUs;
			lt_history_maintain();
		}
		if (me == 0 && now >= next_summarize_us) {
			next_summarize_us = now + kSummarizeEveryUs;
			lt_history_summarize();
		}
		if (me == 0 && now >= next_windows_us) {
			next_windows_us = now + kSaveWindowsEveryUs;
			lt_key_windows_save();
		}

		// The next run: up to batch records of ours, in a window that other
		// flushers' records fill too.
		uint64 batch = uint64(lt_batch_size);
		uint64 from = next_pos();
		uint64 avail = lt_ring.ready_from(from, batch * n_flushers);
		uint64 n = 0, end = from, first = 0;
		int64 oldest_us = 0;
		lt::Ping p;
		for (uint64 pos = from; pos < from + avail && n < batch; pos++) {
			lt_ring.peek_at(pos, p);
			if (mine(p) && n++ == 0) {
				first = pos;
				oldest_us = p.received_us;
			}
			end = pos + 1;
		}
		if (avail > 0 && n == 0) {
			enqueue(Committed{end, 0, 0, 0, 0}); // nothing of ours: pass it
			continue;
		}
		if (n == 0 && n_in_flight > 0) {
			settle(true); // idle: make what is in flight durable now, then look again
			continue;
		}
		if (n == 0) {
			pgstat_report_stat(false);
			// The listener wakes us when the ring fills, and when it stops.
			lt_worker_sleep(lt_stop_requested ? Min(lt_flush_interval_ms, 100) : lt_flush_interval_ms);
			continue;
		}
		// A full batch goes at once; a partial one when it must start to be
		// durable within flush_interval of its oldest record's receipt, or
		// when wait_flushed() asks, or when we or the listener are stopping.
		lt::FlushDecision d =
		    lt::plan_flush(n, batch, lt::now_us() - oldest_us, int64(lt_flush_interval_ms) * 1000, cost,
		                   lt::load_acquire(lt_ctl->flush_req) > from || lt_stop_requested ||
		                       lt::load_relaxed(lt_ctl->listener_state) == LT_LISTENER_STOPPING);
		if (!d.go) {
			if (n_in_flight > 0) {
				settle(true); // time to spare: finish what is in flight, then plan again
				continue;
			}
			if (first > from) // the others' records before our first need not wait for it
				publish(Committed{first, 0, 0, 0, 0});
			lt_worker_sleep((d.sleep_us + 999) / 1000);
			continue;
		}
		if (!flush(from, end, n, extension))
			extension = InvalidOid;
	}
}
