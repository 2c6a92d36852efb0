// Saving the signing keys' replay windows, so that a restart does not open
// them again (SPEC 2.3). Flusher 1 does it every few seconds, and at a clean
// stop once the listener has gone: the highest sequence number seen per key
// goes to livetrack.keys.last_seq, and the listener resumes each window from
// it after a server restart. Replays of messages from the last few seconds
// before a crash remain possible.
//
// C style like the rest of the flusher (its error recovery longjmps).
#include "key_windows.hpp"

extern "C" {
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/snapmgr.h"
}

namespace {

uint32 *saved;   // per key store entry: the high_seq last written (+1; 0 = never)
uint32 n_saved;  // entries `saved` covers

} // namespace

void lt_key_windows_forget(void) {
	if (saved != NULL)
		memset(saved, 0, sizeof(uint32) * n_saved);
}

void lt_key_windows_save(void) {
	uint32 n = lt_keys.size();
	if (n == 0)
		return;
	if (saved == NULL) {
		n_saved = lt_keys.capacity();
		saved = static_cast<uint32 *>(MemoryContextAllocZero(TopMemoryContext, sizeof(uint32) * n_saved));
	}
	// Which windows moved since the last save (the listener writes them; a
	// relaxed read is enough, the next save catches up).
	auto moved = [](lt::KeyEntry &e, uint32 i, uint32 &high) {
		if (!lt::load_relaxed(e.seen))
			return false;
		high = lt::load_relaxed(e.high_seq);
		return saved[i] != high + 1;
	};
	uint32 high;
	bool any = false;
	for (uint32 i = 0; i < n && !any; i++)
		any = moved(lt_keys.at(i), i, high);
	if (!any)
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	// In the transaction's memory, which an error frees too.
	Datum *ids = static_cast<Datum *>(palloc(sizeof(Datum) * n));
	Datum *seqs = static_cast<Datum *>(palloc(sizeof(Datum) * n));
	int m = 0;
	for (uint32 i = 0; i < n; i++) {
		lt::KeyEntry &e = lt_keys.at(i);
		if (!moved(e, i, high))
			continue;
		ids[m] = Int32GetDatum(int32(e.key_id));
		seqs[m] = Int64GetDatum(int64(high));
		saved[i] = high + 1;
		m++;
	}
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "saving replay windows");
	Oid types[2] = {INT4ARRAYOID, INT8ARRAYOID};
	Datum args[2] = {
	    PointerGetDatum(construct_array(ids, m, INT4OID, 4, true, TYPALIGN_INT)),
	    PointerGetDatum(construct_array(seqs, m, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
	};
	if (SPI_execute_with_args("UPDATE livetrack.keys k SET last_seq = u.seq FROM unnest($1, $2) AS u(id, seq) "
	                          "WHERE k.key_id = u.id",
	                          2, types, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "livetrack: could not save the replay windows");
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}
