// livetrack.stats: counters and gauges as (metric, value) rows, and
// livetrack.reset_stats(). The HTTP worker's /metrics reads the same list.
#include <algorithm>

#include "shared.hpp"

extern "C" {
#include "utils/tuplestore.h"
}

void lt_stats_collect(LtStatFn put, void *arg) {
	const LtControl *ctl = lt_ctl;
	const lt::Counters &c = ctl->counters, &base = ctl->counters_base;
	// Counters only grow, from their value at the last reset.
	auto since_reset = [](uint64 now, uint64 then) { return now > then ? now - then : 0; };
	// Records are counted by whichever worker took them: the listener
	// (UDP, TCP, MQTT, ingest()) or an HTTP worker.
	uint64 v;
#define LT_PUT(name)                                                                                  \
	v = since_reset(lt::load_relaxed(c.name), lt::load_relaxed(base.name));                           \
	for (int i = 0; i < kMaxHttpWorkers; i++)                                                         \
		v += since_reset(lt::load_relaxed(ctl->http[i].records.name), lt::load_relaxed(ctl->http[i].records_base.name)); \
	put(arg, #name, v, true);
	LT_COUNTERS(LT_PUT)
#undef LT_PUT
#define LT_PUT(name)                                                                                  \
	v = 0;                                                                                            \
	for (int i = 0; i < kMaxHttpWorkers; i++)                                                         \
		v += since_reset(lt::load_relaxed(ctl->http[i].counters.name), lt::load_relaxed(ctl->http[i].counters_base.name)); \
	put(arg, #name, v, true);
	LT_HTTP_COUNTERS(LT_PUT)
#undef LT_PUT
	uint64 conns = 0, streams = 0, watched = 0;
	// Serving when every HTTP worker that exists is (those max_worker_processes
	// had no room for never start; they are the last ones asked for).
	int http_workers = lt_http_workers_registered;
	uint32 http_state = lt_http_port != 0 && http_workers > 0 ? LT_LISTENER_SERVING : LT_LISTENER_DOWN;
	for (int i = 0; i < kMaxHttpWorkers; i++) {
		conns += lt::load_relaxed(ctl->http[i].connections);
		streams += lt::load_relaxed(ctl->http[i].streams);
		watched += lt::load_relaxed(ctl->http[i].watched_orders);
		if (i < http_workers && lt_http_port != 0)
			http_state = std::min(http_state, lt::load_relaxed(ctl->http[i].state)); // serving when all of them are
	}
	put(arg, "live_drivers", lt_live.size(), false);
	put(arg, "live_capacity", lt_live.capacity(), false);
	put(arg, "ring_used", lt_ring.size(), false);
	put(arg, "ring_capacity", lt_ring.capacity(), false);
	put(arg, "ingest_queue_used", lt_ingest.size(), false);
	put(arg, "tcp_connections", lt::load_relaxed(ctl->tcp_connections), false);
	put(arg, "history_hot_fixes", lt::load_relaxed(ctl->hot_fixes), false);
	put(arg, "history_segment_fixes", lt::load_relaxed(ctl->segment_fixes), false);
	put(arg, "history_segment_rows", lt::load_relaxed(ctl->segment_rows), false);
	put(arg, "history_segment_bytes", lt::load_relaxed(ctl->segment_bytes), false);
	put(arg, "history_bytes", lt::load_relaxed(ctl->history_bytes), false);
	put(arg, "compactor_running", lt::load_relaxed(ctl->compactor_procno) >= 0 ? 1 : 0, false);
	put(arg, "mqtt_connected", lt::load_relaxed(ctl->mqtt_connected), false);
	put(arg, "mqtt_pending_acks", lt::load_relaxed(ctl->mqtt_pending), false);
	put(arg, "http_connections", conns, false);
	put(arg, "http_streams", streams, false);
	put(arg, "http_watched_orders", watched, false); // an order watched through two workers counts twice
	put(arg, "flush_latency_p50_us", ctl->flush_latency_us.quantile(0.50, &ctl->flush_latency_base), false);
	put(arg, "flush_latency_p99_us", ctl->flush_latency_us.quantile(0.99, &ctl->flush_latency_base), false);
	put(arg, "visible_latency_p50_us", ctl->visible_latency_us.quantile(0.50, &ctl->visible_latency_base), false);
	put(arg, "visible_latency_p99_us", ctl->visible_latency_us.quantile(0.99, &ctl->visible_latency_base), false);
	put(arg, "mqtt_ack_latency_p50_us", ctl->mqtt_ack_latency_us.quantile(0.50, &ctl->mqtt_ack_latency_base), false);
	put(arg, "mqtt_ack_latency_p99_us", ctl->mqtt_ack_latency_us.quantile(0.99, &ctl->mqtt_ack_latency_base), false);
	put(arg, "last_flush_records", lt::load_relaxed(ctl->last_flush_records), false);
	put(arg, "last_flush_max_latency_us", lt::load_relaxed(ctl->last_flush_max_latency_us), false);
	put(arg, "last_flush_duration_us", lt::load_relaxed(ctl->last_flush_duration_us), false);
	put(arg, "grid_cells", lt_live.grid().used(), false);
	put(arg, "grid_rebuilds", lt_live.grid().rebuilds(), false);
	put(arg, "signing_keys", lt_keys.size(), false);
	put(arg, "listener_state", lt::load_relaxed(ctl->listener_state), false);
	put(arg, "http_state", http_state, false);
}

static void put_row(void *arg, const char *metric, uint64 value, bool) {
	auto *rsinfo = static_cast<ReturnSetInfo *>(arg);
	Datum values[2] = {CStringGetTextDatum(metric), Int64GetDatum(int64(value))};
	bool nulls[2] = {false, false};
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

LT_FUNCTION(livetrack_stats_rows) {
	lt_require_shared();
	ReturnSetInfo *rsinfo = lt_init_srf(fcinfo);
	lt_stats_collect(put_row, rsinfo);
	return (Datum)0;
}

// livetrack.reset_stats(): counters and latency figures start again from zero.
LT_FUNCTION(livetrack_reset_stats) {
	lt_require_shared();
	LtControl *ctl = lt_ctl;
#define LT_COPY(name) lt::store_relaxed(ctl->counters_base.name, lt::load_relaxed(ctl->counters.name));
	LT_COUNTERS(LT_COPY)
#undef LT_COPY
	for (int i = 0; i < kMaxHttpWorkers; i++) {
		LtHttpSlot &h = ctl->http[i];
#define LT_COPY(name) lt::store_relaxed(h.records_base.name, lt::load_relaxed(h.records.name));
		LT_COUNTERS(LT_COPY)
#undef LT_COPY
#define LT_COPY(name) lt::store_relaxed(h.counters_base.name, lt::load_relaxed(h.counters.name));
		LT_HTTP_COUNTERS(LT_COPY)
#undef LT_COPY
	}
	ctl->flush_latency_us.copy_to(ctl->flush_latency_base);
	ctl->visible_latency_us.copy_to(ctl->visible_latency_base);
	ctl->mqtt_ack_latency_us.copy_to(ctl->mqtt_ack_latency_base);
	PG_RETURN_VOID();
}
