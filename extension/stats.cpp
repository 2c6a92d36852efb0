// livetrack.stats: counters and gauges as (metric, value) rows, and
// livetrack.reset_stats().
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
	const lt::Counters &c = ctl->counters, &base = ctl->counters_base;
	// Counters only grow, from their value at the last reset.
	auto since_reset = [](uint64 now, uint64 then) { return now > then ? now - then : 0; };
#define LT_PUT(name) put(rsinfo, #name, since_reset(lt::load_relaxed(c.name), lt::load_relaxed(base.name)));
	LT_COUNTERS(LT_PUT)
#undef LT_PUT
	put(rsinfo, "live_drivers", lt_live.size());
	put(rsinfo, "live_capacity", lt_live.capacity());
	put(rsinfo, "ring_used", lt_ring.size());
	put(rsinfo, "ring_capacity", lt_ring.capacity());
	put(rsinfo, "ingest_queue_used", lt_ingest.size());
	put(rsinfo, "tcp_connections", lt::load_relaxed(ctl->tcp_connections));
	put(rsinfo, "flush_latency_p50_us", ctl->flush_latency_us.quantile(0.50, &ctl->flush_latency_base));
	put(rsinfo, "flush_latency_p99_us", ctl->flush_latency_us.quantile(0.99, &ctl->flush_latency_base));
	put(rsinfo, "visible_latency_p50_us", ctl->visible_latency_us.quantile(0.50, &ctl->visible_latency_base));
	put(rsinfo, "visible_latency_p99_us", ctl->visible_latency_us.quantile(0.99, &ctl->visible_latency_base));
	put(rsinfo, "last_flush_records", lt::load_relaxed(ctl->last_flush_records));
	put(rsinfo, "last_flush_max_latency_us", lt::load_relaxed(ctl->last_flush_max_latency_us));
	put(rsinfo, "last_flush_duration_us", lt::load_relaxed(ctl->last_flush_duration_us));
	put(rsinfo, "grid_cells", lt_live.grid().used());
	put(rsinfo, "grid_rebuilds", lt_live.grid().rebuilds());
	put(rsinfo, "signing_keys", lt_keys.size());
	put(rsinfo, "listener_state", lt::load_relaxed(ctl->listener_state));
	return (Datum)0;
}

// livetrack.reset_stats(): counters and latency figures start again from zero.
LT_FUNCTION(livetrack_reset_stats) {
	lt_require_shared();
	LtControl *ctl = lt_ctl;
#define LT_COPY(name) lt::store_relaxed(ctl->counters_base.name, lt::load_relaxed(ctl->counters.name));
	LT_COUNTERS(LT_COPY)
#undef LT_COPY
	ctl->flush_latency_us.copy_to(ctl->flush_latency_base);
	ctl->visible_latency_us.copy_to(ctl->visible_latency_base);
	PG_RETURN_VOID();
}
