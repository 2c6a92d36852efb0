// C++ headers before the Postgres ones (history.hpp brings those in).
#include <algorithm>

#include "../core/clock.hpp"
#include "../core/gserialized.hpp"

#include "history.hpp"

extern "C" {
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "storage/smgr.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/date.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
}

namespace {

constexpr int kChunk = 1000;     // rows per table_multi_insert call
constexpr int kCacheMinutes = 8;
constexpr int64 kWritebackEveryUs = 250000;

// minute (Unix ms of its start) -> hot partition OID.
struct PartitionCache {
	int64 minute[kCacheMinutes];
	Oid relid[kCacheMinutes];
	int next;
} cache;

Oid hot_late_relid;

Oid ask_sql(const char *query, Oid argtype, Datum arg) {
	Oid argtypes[1] = {argtype};
	Datum args[1] = {arg};
	SPI_connect();
	if (SPI_execute_with_args(query, 1, argtypes, args, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "livetrack: could not find or create a history partition");
	bool isnull;
	Oid relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return relid;
}

Oid partition_for(int64 minute_ms) {
	for (int i = 0; i < kCacheMinutes; i++)
		if (OidIsValid(cache.relid[i]) && cache.minute[i] == minute_ms)
			return cache.relid[i];
	// Missing: ask SQL to find or create it (DDL lives in the extension script).
	Oid relid = ask_sql("SELECT livetrack._hot_partition($1)::oid", TIMESTAMPTZOID,
	                    TimestampTzGetDatum(lt_unix_us_to_ts(minute_ms * 1000)));
	cache.minute[cache.next] = minute_ms;
	cache.relid[cache.next] = relid;
	cache.next = (cache.next + 1) % kCacheMinutes;
	return relid;
}

void forget_minute(Oid relid) {
	for (int i = 0; i < kCacheMinutes; i++)
		if (cache.relid[i] == relid)
			cache.relid[i] = InvalidOid;
}

// The hot log's columns (sql/livetrack--0.2.0--0.3.0.sql), in order.
enum { cDriver, cTs, cLat, cLon, cSpeed, cHeading, cAccuracy, cReceived, kCols };

void fill_slot(TupleTableSlot *slot, const lt::Ping &p) {
	ExecClearTuple(slot);
	const lt::Fix &f = p.fix;
	Datum *v = slot->tts_values;
	bool *n = slot->tts_isnull;
	for (int i = 0; i < kCols; i++)
		n[i] = false;
	v[cDriver] = Int64GetDatum(int64(f.driver_id));
	v[cTs] = TimestampTzGetDatum(lt_unix_us_to_ts(f.ts_ms * 1000));
	v[cLat] = Int32GetDatum(f.lat_e7);
	v[cLon] = Int32GetDatum(f.lon_e7);
	// The wire's 16-bit values, bits kept (0xFFFF, unknown, reads as -1).
	v[cSpeed] = Int16GetDatum(int16(f.speed_cms));
	v[cHeading] = Int16GetDatum(int16(f.heading_cd));
	v[cAccuracy] = Int16GetDatum(int16(f.accuracy_dm));
	v[cReceived] = TimestampTzGetDatum(lt_unix_us_to_ts(p.received_us));
	ExecStoreVirtualTuple(slot);
}

// Asks the kernel to start writing a relation's dirty pages to disk, without
// waiting for the writes (sync_file_range; a no-op with fsync = off). History
// grows by megabytes a second, largely through relation extension, which no
// *_flush_after setting covers; left to the kernel's defaults, gigabytes of
// it pile up in the page cache, and the WAL fsync of a commit can end up
// waiting behind a large share of them (100-500 ms stalls on ext4). Started
// every kWritebackEveryUs (by one flusher), the pile never forms. The call
// itself took up to 18 ms when the disk was busy.
void start_writeback(Relation r) {
	SMgrRelation smgr = RelationGetSmgr(r);
	smgrwriteback(smgr, MAIN_FORKNUM, 0, smgrnblocks(smgr, MAIN_FORKNUM));
}

// Slots for table_multi_insert, kept for the flusher's life: making and
// dropping a thousand per batch (each pinning the row descriptor in the
// transaction's resource owner) took 6-8 % of a flusher's CPU. They use a
// private, unpinned copy of the hot log's row descriptor, so no transaction
// owns them.
struct SlotCache {
	TupleDesc desc;
	TupleTableSlot *slots[kChunk];
	int n;
} slot_cache;

TupleTableSlot **slots_for(Relation rel, int n) {
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	if (slot_cache.desc == NULL) {
		TupleDesc desc = RelationGetDescr(rel);
		if (desc->natts != kCols)
			elog(ERROR, "livetrack: the hot log has %d columns, not %d", desc->natts, kCols);
		slot_cache.desc = CreateTupleDescCopy(desc); // refcount -1: never pinned
	}
	while (slot_cache.n < n)
		slot_cache.slots[slot_cache.n++] = MakeSingleTupleTableSlot(slot_cache.desc, &TTSOpsVirtual);
	MemoryContextSwitchTo(old);
	return slot_cache.slots;
}

// Inserts rows[0..n) (indexes into pings) into one hot partition (or the
// late table). False if the partition is gone: compacted and dropped since
// the cache learnt of it.
bool insert_into(Oid relid, const lt::Ping *pings, const int *rows, int n) {
	Relation rel = try_table_open(relid, RowExclusiveLock);
	if (rel == NULL)
		return false;
	EState *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);

	BulkInsertState bistate = GetBulkInsertState();
	CommandId cid = GetCurrentCommandId(true);
	TupleTableSlot **slots = slots_for(rel, n < kChunk ? n : kChunk);

	for (int done = 0; done < n;) {
		int m = n - done < kChunk ? n - done : kChunk;
		MemoryContext old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
		for (int i = 0; i < m; i++)
			fill_slot(slots[i], pings[rows[done + i]]);
		table_multi_insert(rel, slots, m, cid, 0, bistate);
		// The BRIN on driver_id: its ranges are summarized afterwards
		// (lt_history_summarize), so this is cheap for fresh pages.
		for (int i = 0; i < m; i++)
			if (rri->ri_NumIndices > 0)
				list_free(ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL));
		MemoryContextSwitchTo(old);
		for (int i = 0; i < m; i++)
			ExecClearTuple(slots[i]);
		ResetPerTupleExprContext(estate);
		done += m;
	}

	FreeBulkInsertState(bistate);
	table_finish_bulk_insert(rel, 0);
	// Whichever flusher comes first after the interval does it for all.
	int64 now = lt::mono_us(), due = lt::load_relaxed(lt_ctl->writeback_due_us);
	if (now >= due && lt::cas(lt_ctl->writeback_due_us, due, now + kWritebackEveryUs))
		start_writeback(rel);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	return true;
}

} // namespace

void lt_history_forget(void) {
	memset(&cache, 0, sizeof cache);
	hot_late_relid = InvalidOid;
}

int64 lt_minute_of(int64 ts_ms) {
	constexpr int64 kMinuteMs = 60000;
	return (ts_ms >= 0 ? ts_ms / kMinuteMs : -((-ts_ms + kMinuteMs - 1) / kMinuteMs)) * kMinuteMs;
}

bool lt_minute_closed(int64 minute_ms, int64 now_ms) {
	return now_ms >= minute_ms + 60000 + int64(lt_compaction_delay_ms);
}

void lt_history_insert(const lt::Ping *pings, int n) {
	int *rows = static_cast<int *>(palloc(sizeof(int) * size_t(n)));
	bool *done = static_cast<bool *>(palloc0(sizeof(bool) * size_t(n)));
	for (int i = 0; i < n; i++)
		done[i] = (pings[i].flags & lt::kPingStatusOnly) != 0; // no fix: nothing for history
	int64 now_ms = lt::now_us() / 1000;
	// Usually one or two minutes per batch, and a few late fixes. A minute
	// that is closed (the compactor may have taken it) goes to hot_late.
	for (int first = 0; first < n; first++) {
		if (done[first])
			continue;
		int64 minute = lt_minute_of(pings[first].fix.ts_ms);
		bool late = lt_minute_closed(minute, now_ms);
		int m = 0;
		for (int i = first; i < n; i++)
			if (!done[i] && (late ? lt_minute_closed(lt_minute_of(pings[i].fix.ts_ms), now_ms)
			                      : lt_minute_of(pings[i].fix.ts_ms) == minute)) {
				rows[m++] = i;
				done[i] = true;
			}
		// In driver order, so that one driver's rows of a batch share a page
		// and the BRIN on driver_id finds them (trail(), WHERE driver_id = ).
		std::sort(rows, rows + m, [pings](int a, int b) {
			const lt::Fix &x = pings[a].fix, &y = pings[b].fix;
			return x.driver_id != y.driver_id ? x.driver_id < y.driver_id : x.ts_ms < y.ts_ms;
		});
		if (late) {
			if (!OidIsValid(hot_late_relid))
				hot_late_relid = ask_sql("SELECT $1::regclass::oid", TEXTOID, CStringGetTextDatum("livetrack.hot_late"));
			if (!insert_into(hot_late_relid, pings, rows, m))
				elog(ERROR, "livetrack: livetrack.hot_late is missing");
			continue;
		}
		Oid relid = partition_for(minute);
		if (!insert_into(relid, pings, rows, m)) {
			forget_minute(relid); // dropped meanwhile: find or make it again
			if (!insert_into(partition_for(minute), pings, rows, m))
				elog(ERROR, "livetrack: the hot partition of a minute vanished twice");
		}
	}
	pfree(rows);
	pfree(done);
}

void lt_registry_upsert(const lt::Ping *pings, int n) {
	int m = 0;
	for (int i = 0; i < n; i++)
		m += (pings[i].flags & lt::kPingRegister) != 0;
	if (m == 0)
		return;
	Datum *ids = static_cast<Datum *>(palloc(sizeof(Datum) * size_t(m)));
	Datum *statuses = static_cast<Datum *>(palloc(sizeof(Datum) * size_t(m)));
	Datum *ats = static_cast<Datum *>(palloc(sizeof(Datum) * size_t(m)));
	int k = 0;
	for (int i = 0; i < n; i++) {
		if (!(pings[i].flags & lt::kPingRegister))
			continue;
		ids[k] = Int64GetDatum(int64(pings[i].fix.driver_id));
		statuses[k] = Int16GetDatum(int16(pings[i].fix.status));
		ats[k] = TimestampTzGetDatum(lt_unix_us_to_ts(pings[i].fix.ts_ms * 1000));
		k++;
	}
	Oid argtypes[3] = {INT8ARRAYOID, INT2ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum args[3] = {
	    PointerGetDatum(construct_array(ids, m, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
	    PointerGetDatum(construct_array(statuses, m, INT2OID, 2, true, TYPALIGN_SHORT)),
	    PointerGetDatum(construct_array(ats, m, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
	};
	SPI_connect();
	if (SPI_execute_with_args("SELECT livetrack._register_drivers($1, $2, $3)", 3, argtypes, args, NULL, false, 0) !=
	    SPI_OK_SELECT)
		elog(ERROR, "livetrack: could not update livetrack.drivers");
	SPI_finish();
}

void lt_history_maintain(void) {
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	Oid argtypes[1] = {INT4OID};
	Datum args[1] = {Int32GetDatum(lt_history_retention_min)};
	if (SPI_execute_with_args("SELECT created, dropped FROM livetrack._maintain_history($1)", 1, argtypes, args,
	                          NULL, false, 1) == SPI_OK_SELECT &&
	    SPI_processed == 1) {
		bool n1, n2;
		int32 created = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &n1));
		int32 dropped = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &n2));
		lt::bump(lt_ctl->counters.partitions_created, uint64(created));
		lt::bump(lt_ctl->counters.partitions_dropped, uint64(dropped));
		if (dropped > 0)
			lt_history_forget();
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	pgstat_report_stat(false);
}

void lt_history_summarize(void) {
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	// A short lock_timeout: this flusher's next batch must not wait behind
	// it (SHARE UPDATE EXCLUSIVE conflicts only with maintenance commands on
	// the same partition; a range left out now is summarized next second).
	if (SPI_execute("SELECT set_config('lock_timeout', '20ms', true), livetrack._summarize_hot()", false, 1) !=
	    SPI_OK_SELECT)
		elog(ERROR, "livetrack: could not summarize the hot log's BRIN ranges");
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}
