#include "worker_common.hpp"

extern "C" {
#include "access/genam.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/timeout.h"
}

volatile sig_atomic_t lt_stop_requested = 0;

namespace {

TimeoutId stop_timeout;
bool stop_begun;

// Not escalated on a second SIGTERM: a fast shutdown may send two.
void request_stop(SIGNAL_ARGS) {
	int save_errno = errno;
	lt_stop_requested = 1;
	SetLatch(MyLatch);
	errno = save_errno;
}

// The grace period is over: terminate as die() does, so that even a wait
// for a lock ends (the next CHECK_FOR_INTERRUPTS raises FATAL).
void stop_grace_over(void) {
	InterruptPending = true;
	ProcDiePending = true;
	SetLatch(MyLatch);
}

} // namespace

void lt_worker_begin_stop(void) {
	if (stop_begun)
		return;
	stop_begun = true;
	enable_timeout_after(stop_timeout, kStopGraceMs);
}

void lt_worker_start(void) {
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, request_stop);
	stop_timeout = RegisterTimeout(USER_TIMEOUT, stop_grace_over);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(lt_database, NULL, 0);
	// Each short transaction must see what committed before it started (the
	// flushers reload orders that way), whatever the server's default is.
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
}

bool lt_worker_interrupts(void) {
	CHECK_FOR_INTERRUPTS();
	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	return true;
}

bool lt_worker_sleep(long ms) {
	(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms < 1 ? 1 : ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	return lt_worker_interrupts();
}

// The installed version of the extension, or NULL (in the current
// transaction's memory).
static char *extension_version(void) {
	Relation rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ, CStringGetDatum("livetrack"));
	SysScanDesc scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	HeapTuple tup = systable_getnext(scan);
	char *version = NULL;
	if (HeapTupleIsValid(tup)) {
		bool isnull;
		Datum d = heap_getattr(tup, Anum_pg_extension_extversion, RelationGetDescr(rel), &isnull);
		if (!isnull)
			version = text_to_cstring(DatumGetTextPP(d));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

Oid lt_extension_oid(void) {
	// Commit leaves TopMemoryContext current; give the caller its own back,
	// so a loop's per-iteration context keeps covering what it allocates.
	MemoryContext caller = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	Oid oid = get_extension_oid("livetrack", true);
	if (OidIsValid(oid)) {
		// The SQL objects of another version are not what this library
		// writes to: wait for ALTER EXTENSION livetrack UPDATE.
		static Oid warned;
		char *v = extension_version();
		if (v == NULL || strcmp(v, LT_EXTENSION_VERSION) != 0) {
			if (warned != oid)
				ereport(LOG, (errmsg("%s: extension livetrack is version %s, this library serves %s; waiting for "
				                     "ALTER EXTENSION livetrack UPDATE",
				                     MyBgworkerEntry ? MyBgworkerEntry->bgw_name : "livetrack", v ? v : "?",
				                     LT_EXTENSION_VERSION)));
			warned = oid;
			oid = InvalidOid;
		}
	}
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	pgstat_report_activity(STATE_IDLE, NULL);
	return oid;
}
