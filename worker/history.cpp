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

constexpr int64 kDayMs = 86400000;
constexpr int kChunk = 1000;     // rows per table_multi_insert call
constexpr int kCacheDays = 4;
constexpr int64 kWritebackEveryUs = 250000;

// day (days since 1970-01-01, UTC) -> partition OID.
struct PartitionCache {
	int64 day[kCacheDays];
	Oid relid[kCacheDays];
	int next;
} cache;

int64 day_of(int64 ts_ms) { return ts_ms >= 0 ? ts_ms / kDayMs : -((-ts_ms + kDayMs - 1) / kDayMs); }

Oid partition_for(int64 day) {
	for (int i = 0; i < kCacheDays; i++)
		if (OidIsValid(cache.relid[i]) && cache.day[i] == day)
			return cache.relid[i];
	// Missing: ask SQL to find or create it (DDL lives in the extension script).
	Oid argtypes[1] = {DATEOID};
	Datum args[1] = {DateADTGetDatum(DateADT(day - 10957))}; // 10957 days from 1970 to 2000
	SPI_connect();
	if (SPI_execute_with_args("SELECT livetrack._ensure_partition($1)::oid", 1, argtypes, args, NULL, false, 1) !=
	        SPI_OK_SELECT ||
	    SPI_processed != 1)
		elog(ERROR, "livetrack: could not find or create the history partition");
	bool isnull;
	Oid relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	cache.day[cache.next] = day;
	cache.relid[cache.next] = relid;
	cache.next = (cache.next + 1) % kCacheDays;
	return relid;
}

// Where our columns are in a partition (users may have added columns).
enum { cDriver, cTs, cGeog, cSpeed, cHeading, cAccuracy, cReceived, kCols };
const char *const kColNames[kCols] = {"driver_id", "ts", "geog", "speed_mps", "heading_deg", "accuracy_m", "received_at"};

void map_columns(TupleDesc desc, int *attidx) {
	for (int c = 0; c < kCols; c++) {
		attidx[c] = -1;
		for (int i = 0; i < desc->natts; i++) {
			Form_pg_attribute a = TupleDescAttr(desc, i);
			if (!a->attisdropped && strcmp(NameStr(a->attname), kColNames[c]) == 0)
				attidx[c] = i;
		}
		if (attidx[c] < 0)
			elog(ERROR, "livetrack: column %s is missing from livetrack.pings", kColNames[c]);
	}
}

void fill_slot(TupleTableSlot *slot, const int *attidx, const lt::Ping &p) {
	ExecClearTuple(slot);
	int natts = slot->tts_tupleDescriptor->natts;
	for (int i = 0; i < natts; i++)
		slot->tts_isnull[i] = true;
	const lt::Fix &f = p.fix;
	Datum *v = slot->tts_values;
	bool *n = slot->tts_isnull;
	auto set = [&](int col, Datum d, bool null = false) {
		v[attidx[col]] = d;
		n[attidx[col]] = null;
	};
	set(cDriver, Int64GetDatum(int64(f.driver_id)));
	set(cTs, TimestampTzGetDatum(lt_unix_us_to_ts(f.ts_ms * 1000)));
	auto *g = static_cast<uint8_t *>(palloc(lt::gser::kPointSize));
	SET_VARSIZE(g, lt::gser::kPointSize);
	lt::gser::encode_point_body(g, f.lon_e7 / 1e7, f.lat_e7 / 1e7);
	set(cGeog, PointerGetDatum(g));
	set(cSpeed, Float4GetDatum(float4(f.speed_cms / 100.0)), f.speed_cms == lt::kUnknown16);
	set(cHeading, Float4GetDatum(float4(f.heading_cd / 100.0)), f.heading_cd == lt::kUnknown16);
	set(cAccuracy, Float4GetDatum(float4(f.accuracy_dm / 10.0)), f.accuracy_dm == lt::kUnknown16);
	set(cReceived, TimestampTzGetDatum(lt_unix_us_to_ts(p.received_us)));
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
// private, unpinned copy of the partitions' row descriptor, so no
// transaction owns them, and are made again if a partition's columns are laid
// out differently (a user may add a column to history).
struct SlotCache {
	TupleDesc desc;
	const TupleTableSlotOps *ops;
	TupleTableSlot *slots[kChunk];
	int n;
} slot_cache;

bool same_layout(TupleDesc a, TupleDesc b) {
	if (a->natts != b->natts)
		return false;
	for (int i = 0; i < a->natts; i++) {
		Form_pg_attribute x = TupleDescAttr(a, i), y = TupleDescAttr(b, i);
		if (x->atttypid != y->atttypid || x->atttypmod != y->atttypmod || x->attlen != y->attlen ||
		    x->attbyval != y->attbyval || x->attalign != y->attalign || x->attstorage != y->attstorage ||
		    x->attisdropped != y->attisdropped)
			return false;
	}
	return true;
}

TupleTableSlot **slots_for(Relation rel, int n) {
	TupleDesc desc = RelationGetDescr(rel);
	const TupleTableSlotOps *ops = table_slot_callbacks(rel);
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	if (slot_cache.desc == NULL || slot_cache.ops != ops || !same_layout(slot_cache.desc, desc)) {
		for (int i = 0; i < slot_cache.n; i++)
			ExecDropSingleTupleTableSlot(slot_cache.slots[i]);
		slot_cache.n = 0;
		if (slot_cache.desc != NULL)
			FreeTupleDesc(slot_cache.desc);
		slot_cache.desc = NULL; // in case the copy fails
		slot_cache.desc = CreateTupleDescCopy(desc); // refcount -1: never pinned
		slot_cache.ops = ops;
	}
	while (slot_cache.n < n)
		slot_cache.slots[slot_cache.n++] = MakeSingleTupleTableSlot(slot_cache.desc, ops);
	MemoryContextSwitchTo(old);
	return slot_cache.slots;
}

// Inserts rows[0..n) (indexes into pings) into one partition.
void insert_into(Oid relid, const lt::Ping *pings, const int *rows, int n) {
	Relation rel = table_open(relid, RowExclusiveLock);
	EState *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	int attidx[kCols];
	map_columns(RelationGetDescr(rel), attidx);

	BulkInsertState bistate = GetBulkInsertState();
	CommandId cid = GetCurrentCommandId(true);
	TupleTableSlot **slots = slots_for(rel, n < kChunk ? n : kChunk);

	for (int done = 0; done < n;) {
		int m = n - done < kChunk ? n - done : kChunk;
		MemoryContext old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
		for (int i = 0; i < m; i++)
			fill_slot(slots[i], attidx, pings[rows[done + i]]);
		table_multi_insert(rel, slots, m, cid, 0, bistate);
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
	// Whichever flusher comes first after the interval does it for all: they
	// write the same partition.
	int64 now = lt::mono_us(), due = lt::load_relaxed(lt_ctl->writeback_due_us);
	if (now >= due && lt::cas(lt_ctl->writeback_due_us, due, now + kWritebackEveryUs)) {
		start_writeback(rel);
		for (int i = 0; i < rri->ri_NumIndices; i++)
			start_writeback(rri->ri_IndexRelationDescs[i]);
	}
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}

} // namespace

void lt_history_forget(void) { memset(&cache, 0, sizeof cache); }

void lt_history_insert(const lt::Ping *pings, int n) {
	int *rows = static_cast<int *>(palloc(sizeof(int) * size_t(n)));
	bool *done = static_cast<bool *>(palloc0(sizeof(bool) * size_t(n)));
	for (int i = 0; i < n; i++)
		done[i] = (pings[i].flags & lt::kPingStatusOnly) != 0; // no fix: nothing for history
	// Usually one day per batch; around midnight, two.
	for (int first = 0; first < n; first++) {
		if (done[first])
			continue;
		int64 day = day_of(pings[first].fix.ts_ms);
		int m = 0;
		for (int i = first; i < n; i++)
			if (!done[i] && day_of(pings[i].fix.ts_ms) == day) {
				rows[m++] = i;
				done[i] = true;
			}
		// In key order, consecutive inserts descend the (driver_id, ts) index
		// along nearly the same path, whose pages are still in the CPU cache:
		// with fixes in random order (devices are independent) the flushers
		// wrote 240,000 records/s, sorted 290,000-310,000.
		std::sort(rows, rows + m, [pings](int a, int b) {
			const lt::Fix &x = pings[a].fix, &y = pings[b].fix;
			return x.driver_id != y.driver_id ? x.driver_id < y.driver_id : x.ts_ms < y.ts_ms;
		});
		insert_into(partition_for(day), pings, rows, m);
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
	if (SPI_execute_with_args("SELECT created, dropped FROM livetrack._maintain_partitions($1)", 1, argtypes, args,
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
