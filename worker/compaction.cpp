// A closed minute of the hot log becomes one segment row per driver
// (docs/architecture.md, History). In one transaction: lock the partition
// against writers (EXCLUSIVE: readers go on), read it in (driver, ts) order,
// encode each driver's fixes, insert the segment rows and the day's totals,
// and TRUNCATE the partition. A crash anywhere leaves either all of that or
// none of it: nothing is lost and nothing is written twice.
//
// Postgres-calling code: no C++ object with a destructor lives here (an
// ERROR longjmps through these frames); arrays are palloc'd.
#include <algorithm>

#include "../core/segment.hpp"

#include "compaction.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
}

namespace {

constexpr int kFetch = 10000;         // rows per cursor fetch
constexpr int kRowsCap = kFetch + 1;  // segment rows one fetch can complete
constexpr int kMaxDays = 64;          // days one compaction writes to (late fixes span a few)
constexpr int64 kMinuteMs = 60000;
constexpr int64 kDayMs = 86400000;

int64 floor_div(int64 a, int64 b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Segment rows waiting for their INSERT, and per-day totals.
struct Writer {
	int n;
	Datum driver[kRowsCap], period[kRowsCap], t_min[kRowsCap], t_max[kRowsCap], fixes[kRowsCap], lat_min[kRowsCap],
	    lat_max[kRowsCap], lon_min[kRowsCap], lon_max[kRowsCap], data[kRowsCap];
	int ndays;
	int64 day[kMaxDays]; // days since 1970, each with its partition ready
	int64 day_rows[kMaxDays], day_fixes[kMaxDays];
	MemoryContext cxt;        // the bytea values, freed after each INSERT
	uint64 moved;
};

SPIPlanPtr insert_plan, totals_plan;

void prepare_plans(void) {
	if (insert_plan == NULL) {
		Oid types[10] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID,
		                 INT4ARRAYOID,  INT4ARRAYOID,         INT4ARRAYOID,         INT4ARRAYOID,         BYTEAARRAYOID};
		insert_plan = lt_keep_plan(
		    "INSERT INTO livetrack.segments (driver_id, period, t_min, t_max, fixes, lat_min, lat_max, lon_min, "
		    "lon_max, data) SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
		    10, types);
	}
	if (totals_plan == NULL) {
		Oid types[3] = {DATEOID, INT8OID, INT8OID};
		totals_plan = lt_keep_plan("INSERT INTO livetrack.segment_totals AS t (day, rows, fixes) VALUES ($1, $2, $3) "
		                           "ON CONFLICT (day) DO UPDATE SET rows = t.rows + excluded.rows, "
		                           "fixes = t.fixes + excluded.fixes",
		                           3, types);
	}
}

Datum array_of(Datum *v, int n, Oid type) {
	int16 len;
	bool byval;
	char align;
	get_typlenbyvalalign(type, &len, &byval, &align);
	return PointerGetDatum(construct_array(v, n, type, len, byval, align));
}

void flush_rows(Writer *w) {
	if (w->n == 0)
		return;
	Datum args[10] = {
	    array_of(w->driver, w->n, INT8OID),   array_of(w->period, w->n, TIMESTAMPTZOID),
	    array_of(w->t_min, w->n, TIMESTAMPTZOID), array_of(w->t_max, w->n, TIMESTAMPTZOID),
	    array_of(w->fixes, w->n, INT4OID),    array_of(w->lat_min, w->n, INT4OID),
	    array_of(w->lat_max, w->n, INT4OID),  array_of(w->lon_min, w->n, INT4OID),
	    array_of(w->lon_max, w->n, INT4OID),  array_of(w->data, w->n, BYTEAOID)};
	if (SPI_execute_plan(insert_plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "livetrack: could not insert segments");
	w->n = 0;
	MemoryContextReset(w->cxt);
}

// Finds or creates the segments partition of every day the source's rows
// fall in, before any row is read: rows are routed there, and no SPI call
// may come between a fetch and the end of its rows.
void prepare_days(Writer *w, const char *rel) {
	if (SPI_execute(psprintf("SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date - '1970-01-01'::date FROM %s", rel), true,
	                0) != SPI_OK_SELECT)
		elog(ERROR, "livetrack: could not read the days of %s", rel);
	if (SPI_processed > uint64(kMaxDays))
		elog(ERROR, "livetrack: %s holds fixes of more than %d days; compact them with fewer days at a time", rel,
		     kMaxDays);
	uint64 ndays = SPI_processed;
	int64 days[kMaxDays];
	for (uint64 i = 0; i < ndays; i++) {
		bool isnull;
		days[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	for (uint64 i = 0; i < ndays; i++) {
		Oid argtypes[1] = {DATEOID};
		Datum args[1] = {DateADTGetDatum(DateADT(days[i] - 10957))}; // 10957 days from 1970 to 2000
		if (SPI_execute_with_args("SELECT livetrack._segment_partition($1)", 1, argtypes, args, NULL, false, 1) !=
		    SPI_OK_SELECT)
			elog(ERROR, "livetrack: could not find or create a segments partition");
		w->day[w->ndays] = days[i];
		w->day_rows[w->ndays] = w->day_fixes[w->ndays] = 0;
		w->ndays++;
	}
}

int day_slot(Writer *w, int64 day) {
	for (int i = 0; i < w->ndays; i++)
		if (w->day[i] == day)
			return i;
	elog(ERROR, "livetrack: a fix of a day not prepared for"); // prepare_days saw every day
	pg_unreachable();
}

// One driver's fixes of one minute, sorted by ts: one segment row.
void emit(Writer *w, uint64 driver, int64 minute_ms, lt::segment::Point *pts, size_t n) {
	int d = day_slot(w, floor_div(minute_ms, kDayMs));
	int32 lat_min = pts[0].lat_e7, lat_max = lat_min, lon_min = pts[0].lon_e7, lon_max = lon_min;
	for (size_t i = 1; i < n; i++) {
		lat_min = Min(lat_min, pts[i].lat_e7);
		lat_max = Max(lat_max, pts[i].lat_e7);
		lon_min = Min(lon_min, pts[i].lon_e7);
		lon_max = Max(lon_max, pts[i].lon_e7);
	}
	MemoryContext old = MemoryContextSwitchTo(w->cxt);
	auto *b = static_cast<bytea *>(palloc(VARHDRSZ + lt::segment::max_size(n)));
	size_t len = lt::segment::encode(pts, n, reinterpret_cast<uint8_t *>(VARDATA(b)));
	SET_VARSIZE(b, VARHDRSZ + len);
	MemoryContextSwitchTo(old);
	int i = w->n++;
	w->driver[i] = Int64GetDatum(int64(driver));
	w->period[i] = TimestampTzGetDatum(lt_unix_us_to_ts(minute_ms * 1000));
	w->t_min[i] = TimestampTzGetDatum(lt_unix_us_to_ts(pts[0].ts_ms * 1000));
	w->t_max[i] = TimestampTzGetDatum(lt_unix_us_to_ts(pts[n - 1].ts_ms * 1000));
	w->fixes[i] = Int32GetDatum(int32(n));
	w->lat_min[i] = Int32GetDatum(lat_min);
	w->lat_max[i] = Int32GetDatum(lat_max);
	w->lon_min[i] = Int32GetDatum(lon_min);
	w->lon_max[i] = Int32GetDatum(lon_max);
	w->data[i] = PointerGetDatum(b);
	w->day_rows[d]++;
	w->day_fixes[d] += int64(n);
	w->moved += n;
}

void write_totals(Writer *w) {
	for (int i = 0; i < w->ndays; i++) {
		if (w->day_rows[i] == 0)
			continue;
		Datum args[3] = {DateADTGetDatum(DateADT(w->day[i] - 10957)), Int64GetDatum(w->day_rows[i]),
		                 Int64GetDatum(w->day_fixes[i])};
		if (SPI_execute_plan(totals_plan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "livetrack: could not update livetrack.segment_totals");
	}
}

void run(const char *sql) {
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "livetrack: %s failed", sql);
}

} // namespace

int lt_closed_minutes(int64 now_ms, LtHotMinute **out) {
	SPI_connect();
	// The partition's name is its minute (livetrack._hot_name).
	if (SPI_execute("SELECT c.oid, extract(epoch FROM livetrack._hot_minute(c.relname))::int8 * 1000 "
	                "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
	                "WHERE i.inhparent = 'livetrack.hot'::regclass ORDER BY 2",
	                true, 0) != SPI_OK_SELECT)
		elog(ERROR, "livetrack: could not list the hot log's partitions");
	int n = 0;
	auto *list = static_cast<LtHotMinute *>(
	    MemoryContextAlloc(CurTransactionContext, sizeof(LtHotMinute) * (SPI_processed + 1)));
	for (uint64 r = 0; r < SPI_processed; r++) {
		bool n1, n2;
		Oid relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &n1));
		int64 minute = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &n2));
		// A little past the flushers' own rule (lt_minute_closed): a flusher
		// that judged the minute open an instant before still gets its rows
		// in first, under the lock taken below.
		if (!n1 && !n2 && now_ms >= minute + kMinuteMs + int64(lt_compaction_delay_ms) + 2000)
			list[n++] = LtHotMinute{relid, minute};
	}
	SPI_finish();
	*out = list;
	return n;
}

uint64 lt_compact_minute(Oid relid, bool bounded) {
	SPI_connect();
	prepare_plans();
	char *rel = OidIsValid(relid) ? quote_qualified_identifier("livetrack", get_rel_name(relid))
	                              : pstrdup("livetrack.hot_late");
	if (OidIsValid(relid) && get_rel_name(relid) == NULL) {
		SPI_finish();
		return 0; // dropped meanwhile
	}
	// Writers wait from here; readers go on. The SELECT below takes its
	// snapshot after the lock, so it sees every row any flusher committed.
	if (bounded)
		run("SELECT set_config('lock_timeout', '5s', true)");
	run(psprintf("LOCK TABLE %s IN EXCLUSIVE MODE", rel));

	Writer *w = static_cast<Writer *>(palloc0(sizeof(Writer)));
	w->cxt = AllocSetContextCreate(CurrentMemoryContext, "livetrack segments", ALLOCSET_DEFAULT_SIZES);
	prepare_days(w, rel);
	MemoryContext batch = AllocSetContextCreate(CurrentMemoryContext, "livetrack compaction batch",
	                                            ALLOCSET_DEFAULT_SIZES);
	size_t cap = 1024, n = 0;
	auto *pts = static_cast<lt::segment::Point *>(palloc(sizeof(lt::segment::Point) * cap));
	uint64 driver = 0;
	int64 minute = 0;

	Portal portal = SPI_cursor_open_with_args(
	    NULL,
	    psprintf("SELECT driver_id, ts, lat_e7, lon_e7, speed, heading, accuracy, received_at FROM %s "
	             "ORDER BY driver_id, ts, received_at",
	             rel),
	    0, NULL, NULL, NULL, true, 0);
	for (;;) {
		SPI_cursor_fetch(portal, true, kFetch);
		if (SPI_processed == 0)
			break;
		MemoryContext old = MemoryContextSwitchTo(batch);
		TupleDesc desc = SPI_tuptable->tupdesc;
		for (uint64 r = 0; r < SPI_processed; r++) {
			HeapTuple t = SPI_tuptable->vals[r];
			bool nul;
			uint64 d = uint64(DatumGetInt64(SPI_getbinval(t, desc, 1, &nul)));
			int64 ts_ms = lt_ts_to_unix_us(DatumGetTimestampTz(SPI_getbinval(t, desc, 2, &nul))) / 1000;
			int64 m = floor_div(ts_ms, kMinuteMs) * kMinuteMs;
			if (n > 0 && (d != driver || m != minute)) {
				emit(w, driver, minute, pts, n);
				n = 0;
			}
			if (n == cap) {
				cap *= 2;
				pts = static_cast<lt::segment::Point *>(repalloc(pts, sizeof(lt::segment::Point) * cap));
			}
			driver = d;
			minute = m;
			lt::segment::Point &p = pts[n++];
			p.ts_ms = ts_ms;
			p.lat_e7 = DatumGetInt32(SPI_getbinval(t, desc, 3, &nul));
			p.lon_e7 = DatumGetInt32(SPI_getbinval(t, desc, 4, &nul));
			p.speed_cms = uint16(DatumGetInt16(SPI_getbinval(t, desc, 5, &nul)));
			p.heading_cd = uint16(DatumGetInt16(SPI_getbinval(t, desc, 6, &nul)));
			p.accuracy_dm = uint16(DatumGetInt16(SPI_getbinval(t, desc, 7, &nul)));
			p.received_us = lt_ts_to_unix_us(DatumGetTimestampTz(SPI_getbinval(t, desc, 8, &nul)));
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch);
		SPI_freetuptable(SPI_tuptable);
		flush_rows(w); // between fetches: SPI_tuptable is free again
	}
	SPI_cursor_close(portal);
	if (n > 0)
		emit(w, driver, minute, pts, n);
	flush_rows(w);
	write_totals(w);
	// Empty it. TRUNCATE waits for readers of this partition; the worker
	// gives up after a while (and tries again later) rather than have new
	// readers queue behind it.
	if (w->moved > 0) { // nothing to empty (hot_late, most passes): no lock to wait for
		if (bounded)
			run("SELECT set_config('lock_timeout', '1s', true)");
		run(psprintf("TRUNCATE %s", rel));
	}
	uint64 moved = w->moved;
	SPI_finish();
	lt::fetch_add_relaxed(lt_ctl->counters.compacted_fixes, moved);
	return moved;
}

bool lt_drop_compacted(Oid relid) {
	SPI_connect();
	Oid argtypes[1] = {OIDOID};
	Datum args[1] = {ObjectIdGetDatum(relid)};
	bool dropped = false;
	if (SPI_execute_with_args("SELECT livetrack._drop_compacted($1::regclass)", 1, argtypes, args, NULL, false, 1) ==
	        SPI_OK_SELECT &&
	    SPI_processed == 1) {
		bool isnull;
		dropped = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) && !isnull;
	}
	SPI_finish();
	return dropped;
}

uint64 lt_count_hot(void) {
	SPI_connect();
	uint64 n = 0;
	if (SPI_execute("SELECT (SELECT count(*) FROM livetrack.hot) + (SELECT count(*) FROM livetrack.hot_late)", true,
	                1) == SPI_OK_SELECT &&
	    SPI_processed == 1) {
		bool isnull;
		n = uint64(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
	}
	SPI_finish();
	return n;
}

void lt_history_measure(void) {
	SPI_connect();
	if (SPI_execute("SELECT coalesce((SELECT sum(rows) FROM livetrack.segment_totals), 0)::int8, "
	                "coalesce((SELECT sum(fixes) FROM livetrack.segment_totals), 0)::int8, "
	                "coalesce((SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
	                "  WHERE c.relnamespace = 'livetrack'::regnamespace AND c.relkind = 'r' "
	                "    AND (c.relname ~ '^(hot|segments|pings)_[0-9]{8}' OR c.relname = 'hot_late')), 0)::int8, "
	                "coalesce((SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
	                "  WHERE c.relnamespace = 'livetrack'::regnamespace AND c.relkind = 'r' "
	                "    AND c.relname ~ '^segments_[0-9]{8}'), 0)::int8",
	                true, 1) == SPI_OK_SELECT &&
	    SPI_processed == 1) {
		bool isnull;
		HeapTuple t = SPI_tuptable->vals[0];
		TupleDesc d = SPI_tuptable->tupdesc;
		lt::store_relaxed(lt_ctl->segment_rows, uint64(DatumGetInt64(SPI_getbinval(t, d, 1, &isnull))));
		lt::store_relaxed(lt_ctl->segment_fixes, uint64(DatumGetInt64(SPI_getbinval(t, d, 2, &isnull))));
		lt::store_relaxed(lt_ctl->history_bytes, uint64(DatumGetInt64(SPI_getbinval(t, d, 3, &isnull))));
		lt::store_relaxed(lt_ctl->segment_bytes, uint64(DatumGetInt64(SPI_getbinval(t, d, 4, &isnull))));
	}
	SPI_finish();
}
