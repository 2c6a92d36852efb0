// History's SQL surface (issue 28): decoding segments for the pings view,
// trail() straight from segments and the hot log, compact_history().
#include <algorithm>

#include "../core/clock.hpp"
#include "../core/gserialized.hpp"
#include "../core/segment.hpp"
#include "../worker/compaction.hpp"
#include "pg.hpp"
#include "shared.hpp"

extern "C" {
#include "access/xact.h"
#include "executor/spi.h"
#include "utils/snapmgr.h"
}

namespace {

// A geography(Point,4326) datum from 1e-7 degrees, as the flushers build it.
Datum point_datum(int32 lat_e7, int32 lon_e7) {
	auto *g = static_cast<uint8_t *>(palloc(lt::gser::kPointSize));
	SET_VARSIZE(g, lt::gser::kPointSize);
	lt::gser::encode_point_body(g, lon_e7 / 1e7, lat_e7 / 1e7);
	return PointerGetDatum(g);
}

// Decodes a segment into a palloc'd array (*n fixes); ERROR if it is corrupt.
lt::segment::Point *decode_segment(bytea *b, size_t *n) {
	const auto *d = reinterpret_cast<const uint8_t *>(VARDATA_ANY(b));
	size_t len = VARSIZE_ANY_EXHDR(b), count = 0;
	const char *why = "malformed header";
	lt::segment::Point *pts = NULL;
	if (lt::segment::count(d, len, &count)) {
		pts = static_cast<lt::segment::Point *>(palloc(sizeof(lt::segment::Point) * count));
		if (lt::segment::decode(d, len, pts, count, n, &why))
			return pts;
	}
	ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED), errmsg("livetrack: a history segment is corrupt: %s", why)));
	pg_unreachable();
}

} // namespace

LT_FUNCTION(livetrack_point) { return point_datum(PG_GETARG_INT32(0), PG_GETARG_INT32(1)); }

// livetrack._segment_fixes(data): the fixes of one segment, as pings rows.
LT_FUNCTION(livetrack_segment_fixes) {
	ReturnSetInfo *rsinfo = lt_init_srf(fcinfo);
	size_t n = 0;
	lt::segment::Point *pts = decode_segment(PG_GETARG_BYTEA_PP(0), &n);
	for (size_t i = 0; i < n; i++) {
		const lt::segment::Point &p = pts[i];
		auto unit = [](uint16 v, double scale, bool *isnull) {
			*isnull = v == lt::kUnknown16;
			return Float4GetDatum(float4(v / scale));
		};
		Datum values[6];
		bool nulls[6] = {false, false, false, false, false, false};
		values[0] = TimestampTzGetDatum(lt_unix_us_to_ts(p.ts_ms * 1000));
		values[1] = point_datum(p.lat_e7, p.lon_e7);
		values[2] = unit(p.speed_cms, 100, &nulls[2]);
		values[3] = unit(p.heading_cd, 100, &nulls[3]);
		values[4] = unit(p.accuracy_dm, 10, &nulls[4]);
		values[5] = TimestampTzGetDatum(lt_unix_us_to_ts(p.received_us));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum)0;
}

namespace {

struct TrailPoint {
	int64 ts_ms;
	double lon, lat;
};

SPIPlanPtr trail_segments_plan, trail_rows_plan;

} // namespace

SPIPlanPtr lt_keep_plan(const char *sql, int nargs, Oid *types) {
	SPIPlanPtr p = SPI_prepare(sql, nargs, types);
	if (p == NULL || SPI_keepplan(p) != 0)
		elog(ERROR, "livetrack: could not prepare \"%s\"", sql);
	return p;
}

// trail(driver_id, since, until): the driver's path in time order, from its
// segments (decoded here, one index probe per minute) and whatever of the
// range is still in the hot log or in history from before 0.3.0; NULL with
// fewer than two fixes.
LT_FUNCTION(livetrack_trail) {
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	Datum args[3] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1), PG_GETARG_DATUM(2)};
	int64 since_us = lt_ts_to_unix_us(PG_GETARG_TIMESTAMPTZ(1)), until_us = lt_ts_to_unix_us(PG_GETARG_TIMESTAMPTZ(2));
	// ts is whole milliseconds: [since, until] in µs, compared as such below.
	MemoryContext caller = CurrentMemoryContext;
	SPI_connect();
	if (trail_segments_plan == NULL) {
		Oid types[3] = {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID};
		trail_segments_plan = lt_keep_plan("SELECT data FROM livetrack.segments WHERE driver_id = $1 "
		                           "AND period > $2 - interval '1 minute' AND period <= $3 "
		                           "AND t_max >= $2 AND t_min <= $3",
		                           3, types);
		trail_rows_plan = lt_keep_plan(
		    "SELECT ts, lat_e7, lon_e7, NULL::geography FROM livetrack.hot WHERE driver_id = $1 AND ts BETWEEN $2 AND $3 "
		    "UNION ALL SELECT ts, lat_e7, lon_e7, NULL FROM livetrack.hot_late WHERE driver_id = $1 AND ts BETWEEN $2 AND $3 "
		    "UNION ALL SELECT ts, NULL, NULL, geog FROM livetrack.pings_0_2 WHERE driver_id = $1 AND ts BETWEEN $2 AND $3",
		    3, types);
	}
	size_t cap = 4096, n = 0;
	auto *pts = static_cast<TrailPoint *>(MemoryContextAlloc(caller, sizeof(TrailPoint) * cap));
	auto add = [&](int64 ts_ms, double lon, double lat) {
		if (n == cap) {
			cap *= 2;
			pts = static_cast<TrailPoint *>(repalloc(pts, sizeof(TrailPoint) * cap));
		}
		pts[n++] = TrailPoint{ts_ms, lon, lat};
	};
	if (SPI_execute_plan(trail_segments_plan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "livetrack: could not read segments");
	for (uint64 r = 0; r < SPI_processed; r++) {
		bool isnull;
		bytea *b = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
		size_t m = 0;
		lt::segment::Point *seg = decode_segment(b, &m);
		for (size_t i = 0; i < m; i++) {
			int64 us = seg[i].ts_ms * 1000;
			if (us >= since_us && us <= until_us)
				add(seg[i].ts_ms, seg[i].lon_e7 / 1e7, seg[i].lat_e7 / 1e7);
		}
		pfree(seg);
	}
	if (SPI_execute_plan(trail_rows_plan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "livetrack: could not read the hot log");
	for (uint64 r = 0; r < SPI_processed; r++) {
		HeapTuple t = SPI_tuptable->vals[r];
		TupleDesc d = SPI_tuptable->tupdesc;
		bool isnull, nolat;
		int64 ts_ms = lt_ts_to_unix_us(DatumGetTimestampTz(SPI_getbinval(t, d, 1, &isnull))) / 1000;
		Datum lat = SPI_getbinval(t, d, 2, &nolat);
		if (!nolat) {
			add(ts_ms, DatumGetInt32(SPI_getbinval(t, d, 3, &isnull)) / 1e7, DatumGetInt32(lat) / 1e7);
			continue;
		}
		struct varlena *g = PG_DETOAST_DATUM(SPI_getbinval(t, d, 4, &isnull));
		double lon, la;
		if (lt::gser::decode_point(reinterpret_cast<const uint8_t *>(g), VARSIZE(g), lon, la))
			add(ts_ms, lon, la);
	}
	SPI_finish();
	if (n < 2)
		PG_RETURN_NULL();
	std::stable_sort(pts, pts + n, [](const TrailPoint &a, const TrailPoint &b) { return a.ts_ms < b.ts_ms; });
	auto *xy = static_cast<double *>(palloc(sizeof(double) * 2 * n));
	for (size_t i = 0; i < n; i++) {
		xy[2 * i] = pts[i].lon;
		xy[2 * i + 1] = pts[i].lat;
	}
	size_t size = lt::gser::line_size(n);
	auto *line = static_cast<uint8_t *>(palloc(size));
	SET_VARSIZE(line, size);
	lt::gser::encode_line_body(line, xy, n);
	PG_RETURN_POINTER(line);
}

// compact_history(): every closed minute and the late fixes, now, in the
// caller's transaction; the number of fixes moved.
LT_FUNCTION(livetrack_compact_history) {
	lt_require_shared();
	// The compaction reads each minute after locking it, then empties it: a
	// snapshot taken before the lock would miss rows that it then removes.
	if (IsolationUsesXactSnapshot())
		ereport(ERROR, (errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
		                errmsg("livetrack.compact_history() needs READ COMMITTED isolation")));
	LtHotMinute *minutes = NULL;
	int n = lt_closed_minutes(lt::now_us() / 1000, &minutes);
	uint64 moved = 0;
	for (int i = 0; i < n; i++)
		moved += lt_compact_minute(minutes[i].relid, false);
	moved += lt_compact_minute(InvalidOid, false);
	lt::fetch_sub_relaxed(lt_ctl->hot_fixes, Min(moved, lt::load_relaxed(lt_ctl->hot_fixes)));
	lt_history_measure();
	PG_RETURN_INT64(int64(moved));
}
