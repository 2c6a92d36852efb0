// The compactor background worker: every few seconds, each closed minute of
// the hot log (livetrack.compaction_delay past its end) becomes segments,
// oldest first, one short transaction per minute (worker/compaction.cpp);
// then the late fixes; then emptied partitions are dropped when their locks
// are free. It keeps the history gauges of livetrack.stats current.
//
// Errors (a lock it would not wait for, a disk that is full) end the
// transaction, not the worker: it waits and tries again. SIGTERM stops it
// between transactions; an immediate stop or a crash loses only the
// transaction in progress, which the next start does again.
#include "../core/clock.hpp"
#include "compaction.hpp"
#include "worker_common.hpp"

extern "C" {
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void livetrack_compactor_main(Datum arg);
}

namespace {

constexpr long kPassEveryMs = 5000;
constexpr int64 kRecountEveryUs = 300 * 1000000LL;

void compactor_exit(int, Datum) { lt::store_release(lt_ctl->compactor_procno, int32(-1)); }

// One unit of work in its own transaction.
template <typename F> void in_transaction(const char *activity, F &&fn) {
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	fn();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

Oid extension;
bool counted;
int64 next_recount_us;

// One pass: every closed minute, the late fixes, the empty partitions.
void pass(void) {
	int64 now_ms = lt::now_us() / 1000;
	LtHotMinute *minutes = NULL;
	int n = 0;
	MemoryContext caller = CurrentMemoryContext;
	in_transaction("listing closed minutes", [&] {
		LtHotMinute *list;
		n = lt_closed_minutes(now_ms, &list);
		minutes = static_cast<LtHotMinute *>(MemoryContextAlloc(caller, sizeof(LtHotMinute) * (n + 1)));
		memcpy(minutes, list, sizeof(LtHotMinute) * n);
	});
	MemoryContextSwitchTo(caller);
	for (int i = 0; i < n && !lt_stop_requested; i++) {
		uint64 moved = 0;
		in_transaction("compacting a minute of history", [&] { moved = lt_compact_minute(minutes[i].relid, true); });
		lt::fetch_sub_relaxed(lt_ctl->hot_fixes, Min(moved, lt::load_relaxed(lt_ctl->hot_fixes)));
		if (moved > 0)
			lt::fetch_add_relaxed(lt_ctl->counters.compacted_minutes, uint64(1));
		bool gone = false;
		in_transaction("dropping a compacted minute", [&] { gone = lt_drop_compacted(minutes[i].relid); });
		(void)gone; // if not now, the next pass drops it (it is empty)
		lt_worker_interrupts();
		MemoryContextSwitchTo(caller);
	}
	if (!lt_stop_requested) {
		uint64 moved = 0;
		in_transaction("compacting late fixes", [&] { moved = lt_compact_minute(InvalidOid, true); });
		lt::fetch_sub_relaxed(lt_ctl->hot_fixes, Min(moved, lt::load_relaxed(lt_ctl->hot_fixes)));
	}
	int64 now = lt::mono_us();
	if (!counted || now >= next_recount_us) {
		// Exact now and then (the flushers add and this subtracts in between).
		uint64 hot = 0;
		in_transaction("counting the hot log", [&] { hot = lt_count_hot(); });
		lt::store_relaxed(lt_ctl->hot_fixes, hot);
		counted = true;
		next_recount_us = now + kRecountEveryUs;
	}
	in_transaction("measuring history", [] { lt_history_measure(); });
	MemoryContextSwitchTo(caller);
}

} // namespace

void livetrack_compactor_main(Datum) {
	lt_worker_start();
	lt::store_release(lt_ctl->compactor_procno, int32(MyProc->pgprocno));
	before_shmem_exit(compactor_exit, 0);
	MemoryContext loop = AllocSetContextCreate(TopMemoryContext, "livetrack compactor", ALLOCSET_DEFAULT_SIZES);

	sigjmp_buf local_sigjmp_buf;
	if (sigsetjmp(local_sigjmp_buf, 1) != 0) {
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		MemoryContextReset(loop);
		lt::fetch_add_relaxed(lt_ctl->counters.compaction_errors, uint64(1));
		pgstat_report_activity(STATE_IDLE, NULL);
		RESUME_INTERRUPTS();
		lt_worker_sleep(kPassEveryMs);
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;) {
		MemoryContextSwitchTo(loop);
		lt_worker_interrupts();
		if (lt_stop_requested)
			proc_exit(1); // not 0: a worker that exits with 0 is not restarted
		Oid current = lt_extension_oid();
		if (current != extension) {
			extension = current;
			counted = false; // a new extension (or none): count from scratch
		}
		if (OidIsValid(extension))
			pass();
		MemoryContextReset(loop);
		lt_worker_sleep(kPassEveryMs);
	}
}
