// Shared memory and settings of the extension, as every process sees them.
#pragma once

#include "../core/consumer_group.hpp"
#include "../core/counters.hpp"
#include "../core/fix.hpp"
#include "../core/histogram.hpp"
#include "../core/key_store.hpp"
#include "../core/live_table.hpp"
#include "../core/moved_feed.hpp"
#include "../core/ring.hpp"
#include "pg.hpp"

extern "C" {
#include "storage/condition_variable.h"
#include "storage/latch.h"
}

// Listener life cycle, as published in LtControl::listener_state.
enum LtListenerState : uint32_t {
	LT_LISTENER_DOWN = 0,
	LT_LISTENER_WAITING = 1,    // connected; the extension does not exist yet
	LT_LISTENER_REBUILDING = 2, // loading the live state from history
	LT_LISTENER_SERVING = 3,
	LT_LISTENER_STOPPING = 4, // told to stop: takes no more input, waits for the flushers to commit the ring
};

// One HTTP worker's part of the control block.
constexpr int kMaxHttpWorkers = 16;
struct LtHttpSlot {
	int32 procno;              // -1 when not running
	uint32 state;              // LtListenerState values: SERVING once its port is open
	uint32 awaits_commit;      // HTTP ingest requests wait for the watermark: flushers wake it
	uint32 pad;
	lt::Counters records;      // received and rejected records of HTTP ingest
	lt::HttpCounters counters;
	lt::Counters records_base; // livetrack.reset_stats()
	lt::HttpCounters counters_base;
	uint64 connections;        // gauges
	uint64 streams;
	uint64 watched_orders;
};

// The control block at the start of the segment. Plain data only: positions
// and process numbers, never pointers.
struct LtControl {
	int32 listener_procno; // -1 when not running
	int32 flusher_procno[lt::kMaxConsumers];
	uint32 listener_state;
	uint32 live_ready; // the live state reflects history (set after a rebuild)
	// The extension the listener feeds, and the ring position from which it
	// did: after DROP and CREATE EXTENSION, what comes before that position
	// was taken for the dropped one.
	uint32 serving_ext;
	uint64 serving_from;

	// wait_flushed(): a backend bumps drain_req; the listener reads every
	// socket and the ingest queue, then publishes drain_pos = ring head and
	// drain_done = the request it served.
	uint64 drain_req;
	uint64 drain_done;
	uint64 drain_pos;
	uint64 flush_req; // the flushers commit up to here without waiting for a batch
	lt::ConsumerGroup flushers; // how far each flusher has made its share durable
	int64 writeback_due_us;     // monotonic: when a flusher next starts history writeback
	ConditionVariable drained_cv;
	ConditionVariable flushed_cv;

	lt::Counters counters;
	lt::Histogram flush_latency_us;   // receipt -> commit, per record (flusher)
	lt::Histogram visible_latency_us; // kernel receipt -> live state, per UDP record (listener)
	// livetrack.reset_stats() copies the counters and histograms here, and
	// livetrack.stats reports what came since: the writers are never touched.
	lt::Counters counters_base;
	lt::Histogram flush_latency_base;
	lt::Histogram visible_latency_base;
	lt::Histogram mqtt_ack_latency_us; // MQTT message taken -> its PUBACK sent, per message (listener)
	lt::Histogram mqtt_ack_latency_base;
	uint64 last_flush_us;           // Unix µs of the last commit
	uint64 last_flush_records;
	uint64 last_flush_max_latency_us;
	uint64 last_flush_duration_us;
	uint64 tcp_connections; // open device connections (listener)
	// History (issue 28): fixes in the hot log (flushers add after commit, the
	// compactor subtracts and recounts now and then); the rest the compactor
	// measures after each pass.
	int32 compactor_procno; // -1 when not running
	uint64 hot_fixes;
	uint64 segment_rows, segment_fixes, segment_bytes, history_bytes;
	uint64 mqtt_connected;  // 1 while the listener's MQTT session is up (listener)
	uint64 mqtt_pending;    // MQTT messages taken, their PUBACK waiting for a commit (listener)
	// Bumped when a transaction that changed an open order commits; a
	// flusher that sees it move reloads the orders it follows.
	uint64 orders_gen;

	// The HTTP edge: livetrack.http_workers workers (worker/http.cpp), each
	// with its own slot (one writer each; livetrack.stats adds them up).
	LtHttpSlot http[kMaxHttpWorkers];
	uint64 events_gen;  // bumped when a transaction that published order events commits
	uint64 tokens_gen;  // bumped when rotate_token_secret() commits
	// The ring's head after the listener last moved records from the ingest
	// queue onto it, stored before it released them: a producer that sees
	// the ingest queue's tail pass its record knows the record's ring
	// position is below this (HTTP ingest answers after that commits).
	uint64 ingest_ring_mark;

	uint64 ring_offset; // from the start of this struct
	uint64 ingest_offset;
	uint64 live_offset;
	uint64 keys_offset;
	uint64 moved_offset;
};
static_assert(std::is_trivially_copyable_v<LtControl>);
static_assert(std::is_trivially_default_constructible_v<lt::Ring<lt::Ping>>);
static_assert(std::is_trivially_default_constructible_v<lt::LiveTable>);

// Process-local views of the segment; set in the shmem startup hook. All
// NULL/unattached when livetrack is not in shared_preload_libraries.
extern LtControl *lt_ctl;
extern lt::Ring<lt::Ping> lt_ring;   // listener -> flushers
extern lt::Ring<lt::Ping> lt_ingest; // ingest() backends -> listener
extern lt::LiveTable lt_live;
extern lt::KeyStore lt_keys;         // signing keys (SPEC 2.3)
extern lt::MovedFeed lt_moved;       // listener -> HTTP workers: drivers that moved

// Settings (SPEC 5).
extern char *lt_database;
extern char *lt_listen_addresses;
extern int lt_port;
extern int lt_auth;
extern int lt_max_drivers;
extern int lt_ring_size;
extern int lt_flush_interval_ms;
extern int lt_batch_size;
extern int lt_max_late_ms;
extern int lt_max_future_ms;
extern int lt_history_retention_min;
extern int lt_max_connections;
extern int lt_tcp_idle_timeout_s;
extern int lt_flushers;
extern int lt_max_keys;
extern int lt_notify_interval_ms;
extern double lt_near_radius_m;
extern double lt_assign_radius_m;
extern char *lt_http_listen_addresses;
extern int lt_http_port;
extern int lt_http_max_connections;
extern int lt_http_workers;
extern int lt_http_workers_registered; // those the postmaster had room for
extern char *lt_map_tiles;
extern char *lt_mqtt_broker;
extern char *lt_mqtt_topics;
extern char *lt_mqtt_client_id;
extern char *lt_mqtt_username;
extern char *lt_mqtt_password_file;
extern int lt_compaction_delay_ms;

// The extension version these workers and functions were built for; the
// workers wait while the database has another (ALTER EXTENSION ... UPDATE).
#define LT_EXTENSION_VERSION "0.3.0"

constexpr uint64 kIngestQueueSize = 65536;
constexpr uint64 kMovedFeedSize = 1 << 20; // 4 MB: 40 s of moves at 25,000 fixes/s

// Errors out unless livetrack was preloaded (so the workers and memory exist).
void lt_require_shared(void);
// ... and that this is the database the workers serve.
void lt_require_database(void);
Latch *lt_latch_of(int32 procno);
void lt_wake_flushers(void);
void lt_wake_http(void);

// Every livetrack.stats metric, in order; `counter` says it only grows
// (between resets), else it is a gauge. put() must not raise an error.
typedef void (*LtStatFn)(void *arg, const char *metric, uint64 value, bool counter);
void lt_stats_collect(LtStatFn put, void *arg);

// SPI_prepare + SPI_keepplan, or ERROR (extension/history_sql.cpp). The
// type is executor/spi.h's SPIPlanPtr.
struct _SPI_plan *lt_keep_plan(const char *sql, int nargs, Oid *types);

// Installs the planner hook that lets ts filters on livetrack.pings prune
// segments (extension/history_planner.cpp).
void lt_history_planner_init(void);

// What waits for commit (extension/at_commit.cpp). lt_notify() is NOTIFY,
// counted in livetrack.stats when the transaction commits.
void lt_at_commit_init(void);
void lt_notify(const char *channel, const char *payload);

// Unix epoch microseconds <-> TimestampTz.
constexpr int64 kUnixToPgEpochUs = int64(946684800) * 1000000;
inline TimestampTz lt_unix_us_to_ts(int64 us) { return us - kUnixToPgEpochUs; }
inline int64 lt_ts_to_unix_us(TimestampTz ts) { return ts + kUnixToPgEpochUs; }

// An interval in milliseconds (a day is 24 h, a month 30 days), clamped to
// +/- 10^12 so that callers can add it to a clock safely.
inline int64 lt_interval_ms(const Interval *iv) {
	double ms = double(iv->time) / 1000.0 + double(iv->day) * 86400000.0 + double(iv->month) * 30 * 86400000.0;
	return ms < -1e12 ? int64(-1e12) : ms > 1e12 ? int64(1e12) : int64(ms);
}
