// Reading the live state from SQL: livetrack.live and driver_position().
// Both read shared memory directly, lock-free; nothing here scans a table.
#include "../core/clock.hpp"
#include "../core/gserialized.hpp"
#include "live_sql.hpp"

extern "C" {
#include "utils/tuplestore.h"
}

Datum lt_geog_point(double lon, double lat) {
	auto *d = static_cast<uint8_t *>(palloc(lt::gser::kPointSize));
	SET_VARSIZE(d, lt::gser::kPointSize);
	lt::gser::encode_point_body(d, lon, lat);
	return PointerGetDatum(d);
}

Datum lt_interval_us(int64 us) {
	auto *iv = static_cast<Interval *>(palloc(sizeof(Interval)));
	iv->month = 0;
	iv->day = int32(us / USECS_PER_DAY);
	iv->time = us % USECS_PER_DAY;
	return IntervalPGetDatum(iv);
}

Datum lt_status_text(uint8 status) {
	const char *s = lt::status_name(status);
	return CStringGetTextDatum(s ? s : "available");
}

// Columns of livetrack.live, in order.
enum { kDriver, kLat, kLon, kGeog, kTs, kSpeed, kHeading, kAccuracy, kStatus, kAge, kLiveCols };

static void put_live_row(Tuplestorestate *ts, TupleDesc desc, const lt::LiveView &v, int64 now_us) {
	Datum values[kLiveCols];
	bool nulls[kLiveCols] = {false};
	double lat = v.lat_e7 / 1e7, lon = v.lon_e7 / 1e7;
	values[kDriver] = Int64GetDatum(int64(v.driver_id));
	values[kLat] = Float8GetDatum(lat);
	values[kLon] = Float8GetDatum(lon);
	values[kGeog] = lt_geog_point(lon, lat);
	values[kTs] = TimestampTzGetDatum(lt_unix_us_to_ts(v.ts_ms * 1000));
	values[kSpeed] = Float4GetDatum(float4(v.speed_cms / 100.0));
	nulls[kSpeed] = v.speed_cms == lt::kUnknown16;
	values[kHeading] = Float4GetDatum(float4(v.heading_cd / 100.0));
	nulls[kHeading] = v.heading_cd == lt::kUnknown16;
	values[kAccuracy] = Float4GetDatum(float4(v.accuracy_dm / 10.0));
	nulls[kAccuracy] = v.accuracy_dm == lt::kUnknown16;
	values[kStatus] = lt_status_text(v.status);
	values[kAge] = lt_interval_us(now_us - v.ts_ms * 1000);
	tuplestore_putvalues(ts, desc, values, nulls);
}

static void check_live_desc(TupleDesc desc) {
	if (desc->natts != kLiveCols)
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH), errmsg("livetrack.live has an unexpected shape"),
		                errhint("Reinstall the extension.")));
}

// livetrack._live(): the rows behind the livetrack.live view.
LT_FUNCTION(livetrack_live_rows) {
	lt_require_shared();
	ReturnSetInfo *rsinfo = lt_init_srf(fcinfo);
	check_live_desc(rsinfo->setDesc);
	int64 now = lt::now_us();
	uint32 n = lt_live.size();
	lt::LiveView v;
	for (uint32 i = 0; i < n; i++) {
		lt_live.read(i, v);
		put_live_row(rsinfo->setResult, rsinfo->setDesc, v, now);
	}
	return (Datum)0;
}

// livetrack.driver_position(driver_id): zero or one row of livetrack.live.
LT_FUNCTION(livetrack_driver_position) {
	lt_require_shared();
	ReturnSetInfo *rsinfo = lt_init_srf(fcinfo);
	check_live_desc(rsinfo->setDesc);
	int64 id = PG_GETARG_INT64(0);
	lt::LiveView v;
	if (id > 0 && lt_live.get(uint64(id), v))
		put_live_row(rsinfo->setResult, rsinfo->setDesc, v, lt::now_us());
	return (Datum)0;
}
