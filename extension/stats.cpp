// livetrack.stats: counters and gauges as (metric, value) rows.
#include "shared.hpp"

extern "C" {
#include "utils/tuplestore.h"
}

static void put(ReturnSetInfo *rsinfo, const char *metric, uint64 value) {
	Datum values[2] = {CStringGetTextDatum(metric), Int64GetDatum(int64(value))};
	bool nulls[2] = {false, false};
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

LT_FUNCTION(livetrack_stats_rows) {
	lt_require_shared();
	ReturnSetInfo *rsinfo = lt_init_srf(fcinfo);
	const LtControl *ctl = lt_ctl;
	const lt::Counters &c = ctl->counters;
#define LT_PUT(name) put(rsinfo, #name, lt::load_relaxed(c.name));
	LT_COUNTERS(LT_PUT)
#undef LT_PUT
	put(rsinfo, "live_drivers", lt_live.size());
	put(rsinfo, "live_capacity", lt_live.capacity());
	put(rsinfo, "ring_used", lt_ring.size());
	put(rsinfo, "ring_capacity", lt_ring.capacity());
	put(rsinfo, "ingest_queue_used", lt_ingest.size());
	put(rsinfo, "tcp_connections", lt::load_relaxed(ctl->tcp_connections));
	put(rsinfo, "flush_latency_p50_us", ctl->flush_latency_us.quantile(0.50));
	put(rsinfo, "flush_latency_p99_us", ctl->flush_latency_us.quantile(0.99));
	put(rsinfo, "visible_latency_p50_us", ctl->visible_latency_us.quantile(0.50));
	put(rsinfo, "visible_latency_p99_us", ctl->visible_latency_us.quantile(0.99));
	put(rsinfo, "last_flush_records", lt::load_relaxed(ctl->last_flush_records));
	put(rsinfo, "last_flush_max_latency_us", lt::load_relaxed(ctl->last_flush_max_latency_us));
	put(rsinfo, "last_flush_duration_us", lt::load_relaxed(ctl->last_flush_duration_us));
	put(rsinfo, "grid_cells", lt_live.grid().used());
	put(rsinfo, "grid_rebuilds", lt_live.grid().rebuilds());
	put(rsinfo, "listener_state", lt::load_relaxed(ctl->listener_state));
	return (Datum)0;
}
