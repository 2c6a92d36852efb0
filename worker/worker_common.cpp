#include "worker_common.hpp"

extern "C" {
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
}

void lt_worker_start(void) {
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
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

Oid lt_extension_oid(void) {
	// Commit leaves TopMemoryContext current; give the caller its own back,
	// so a loop's per-iteration context keeps covering what it allocates.
	MemoryContext caller = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	Oid oid = get_extension_oid("livetrack", true);
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	pgstat_report_activity(STATE_IDLE, NULL);
	return oid;
}
