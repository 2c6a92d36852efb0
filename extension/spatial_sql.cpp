// nearest_drivers() and the candidate search behind drivers_within(), served
// by the grid index over the live state in shared memory.
//
// The search runs in the core and fills a std::vector inside pg_entry(); the
// Postgres calls that copy it out run inside pg_call(), so a Postgres error
// unwinds the vector instead of longjmp-ing over it.
#include <cmath>
#include <vector>

#include "../core/clock.hpp"
#include "../core/grid_index.hpp"
#include "live_sql.hpp"
#include "spatial_sql.hpp"

extern "C" {
#include "utils/tuplestore.h"
}

namespace {

void bad_argument(const char *msg) {
	ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s", msg)));
}

// status text -> wire status; NULL means any (0).
uint8 status_arg(NullableDatum arg) {
	if (arg.isnull)
		return 0;
	text *t = DatumGetTextPP(arg.value);
	uint8 s = lt::status_from_name(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	if (s == 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid status \"%s\"", text_to_cstring(t)),
		                errhint("Use offline, available, busy, or NULL for any.")));
	return s;
}

// Oldest fix time allowed by max_age (NULL: no limit).
int64 min_ts_arg(NullableDatum arg) {
	if (arg.isnull)
		return INT64_MIN;
	int64 age = lt_interval_ms(DatumGetIntervalP(arg.value));
	if (age < 0)
		bad_argument("max_age must not be negative");
	return lt::now_ms() - age;
}

Datum ts_datum(int64 ts_ms) { return TimestampTzGetDatum(lt_unix_us_to_ts(ts_ms * 1000)); }

} // namespace

lt::NearestQuery lt_nearest_query(const NullableDatum *args) {
	lt_require_shared();
	if (args[0].isnull || args[1].isnull || args[2].isnull)
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("lat, lon and k must not be null")));
	double lat = DatumGetFloat8(args[0].value), lon = DatumGetFloat8(args[1].value);
	int32 k = DatumGetInt32(args[2].value);
	if (!(lat >= -90 && lat <= 90))
		ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("lat must be between -90 and 90")));
	if (!(lon >= -180 && lon <= 180))
		ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("lon must be between -180 and 180")));
	if (k <= 0)
		bad_argument("k must be positive");
	double radius = args[3].isnull ? INFINITY : DatumGetFloat8(args[3].value);
	if (!(radius >= 0))
		bad_argument("radius_m must be a non-negative number");
	return lt::NearestQuery{lat, lon, uint32(k), radius, status_arg(args[4]), min_ts_arg(args[5])};
}

uint32 lt_nearest_search(const lt::NearestQuery &q, LtNearestRows *rows) {
	uint32 n = 0;
	lt::pg_entry([&] {
		std::vector<lt::Neighbor> found;
		lt_live.grid().nearest(lt_live, q, found);
		n = uint32(found.size());
		if (n > rows->capacity)
			lt::pg_call([&] {
				rows->rows = static_cast<lt::Neighbor *>(
				    rows->rows ? repalloc(rows->rows, n * sizeof(lt::Neighbor))
				               : MemoryContextAlloc(rows->cxt, n * sizeof(lt::Neighbor)));
				rows->capacity = n;
			});
		std::copy(found.begin(), found.end(), rows->rows);
		return (Datum)0;
	});
	return n;
}

Datum lt_nearest_column(const lt::Neighbor &n, int attno) {
	switch (attno) {
	case kNearestDriver: return Int64GetDatum(int64(n.v.driver_id));
	case kNearestDistance: return Float8GetDatum(n.distance_m);
	case kNearestLat: return Float8GetDatum(n.v.lat_e7 / 1e7);
	case kNearestLon: return Float8GetDatum(n.v.lon_e7 / 1e7);
	case kNearestTs: return ts_datum(n.v.ts_ms);
	default: return lt_status_text(n.v.status);
	}
}

// livetrack.nearest_drivers(lat, lon, k, radius_m, status, max_age). Plain
// queries of it usually run as the custom scan in nearest_scan.cpp instead.
LT_FUNCTION(livetrack_nearest_drivers) {
	lt::NearestQuery q = lt_nearest_query(fcinfo->args);
	ReturnSetInfo *rsinfo = lt_init_srf(fcinfo);
	LtNearestRows rows{CurrentMemoryContext, NULL, 0};
	uint32 n = lt_nearest_search(q, &rows);
	for (uint32 i = 0; i < n; i++) {
		Datum values[kNearestCols];
		bool nulls[kNearestCols] = {false};
		for (int c = 0; c < kNearestCols; c++)
			values[c] = lt_nearest_column(rows.rows[i], c + 1);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum)0;
}

// livetrack._live_in_box(lat0, lat1, lon0, lon1, max_age, srid, geodesic):
// live drivers inside a latitude/longitude box; drivers_within() refines the
// candidates with PostGIS ST_Intersects. With geodesic = true the box comes
// from a geography, whose edges are great-circle arcs that bulge toward the
// poles, so it is widened (or dropped for very large areas).
LT_FUNCTION(livetrack_live_in_box) {
	lt_require_shared();
	ReturnSetInfo *rsinfo = lt_init_srf(fcinfo);
	for (int i = 0; i < 4; i++)
		if (PG_ARGISNULL(i))
			return (Datum)0; // an empty area has no bounding box
	int32 srid = PG_ARGISNULL(5) ? 0 : PG_GETARG_INT32(5);
	if (srid != 0 && srid != 4326)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("area must be in SRID 4326, not %d", srid),
		                errhint("Use ST_Transform(area, 4326).")));
	double lat0 = PG_GETARG_FLOAT8(0), lat1 = PG_GETARG_FLOAT8(1), lon0 = PG_GETARG_FLOAT8(2),
	       lon1 = PG_GETARG_FLOAT8(3);
	if (!PG_ARGISNULL(6) && PG_GETARG_BOOL(6)) {
		double dlat = lat1 - lat0, dlon = lon1 - lon0;
		if (dlon > 90 || dlat > 45 || lat0 < -80 || lat1 > 80) {
			lat0 = -90, lat1 = 90, lon0 = -180, lon1 = 180;
		} else {
			double m = 0.001 + 0.05 * (dlat > dlon ? dlat : dlon);
			lat0 -= m, lat1 += m, lon0 -= m, lon1 += m;
		}
	}
	int64 min_ts = min_ts_arg(fcinfo->args[4]);

	std::vector<lt::LiveView> found;
	lt_live.grid().within_box(lt_live, lat0, lat1, lon0, lon1, min_ts, found);
	lt::pg_call([&] {
		for (const lt::LiveView &v : found) {
			Datum values[5] = {Int64GetDatum(int64(v.driver_id)), Float8GetDatum(v.lat_e7 / 1e7),
			                   Float8GetDatum(v.lon_e7 / 1e7), ts_datum(v.ts_ms), lt_status_text(v.status)};
			bool nulls[5] = {false, false, false, false, false};
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	});
	return (Datum)0;
}
