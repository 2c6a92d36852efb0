// Module entry: settings, shared memory, and the background workers.
#include "../core/message.hpp"
#include "spatial_sql.hpp"

extern "C" {
#include "commands/dbcommands.h"
#include "postmaster/bgworker.h"
#include "postmaster/bgworker_internals.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void _PG_init(void);
}

LtControl *lt_ctl;
lt::Ring<lt::Ping> lt_ring;
lt::Ring<lt::Ping> lt_ingest;
lt::LiveTable lt_live;
lt::KeyStore lt_keys;
lt::MovedFeed lt_moved;

char *lt_database;
char *lt_listen_addresses;
int lt_port;
int lt_auth;
int lt_max_drivers;
int lt_ring_size;
int lt_flush_interval_ms;
int lt_batch_size;
int lt_max_late_ms;
int lt_max_future_ms;
int lt_history_retention_min;
int lt_max_connections;
int lt_tcp_idle_timeout_s;
int lt_flushers;
int lt_max_keys;
int lt_notify_interval_ms;
double lt_near_radius_m;
double lt_assign_radius_m;
char *lt_http_listen_addresses;
int lt_http_port;
int lt_http_max_connections;
int lt_http_workers;
char *lt_map_tiles;
char *lt_mqtt_broker;
char *lt_mqtt_topics;
char *lt_mqtt_client_id;
char *lt_mqtt_username;
char *lt_mqtt_password_file;
int lt_compaction_delay_ms;
int lt_http_workers_registered; // set by _PG_init, inherited by the workers

static shmem_request_hook_type prev_shmem_request_hook;
static shmem_startup_hook_type prev_shmem_startup_hook;

static const struct config_enum_entry auth_options[] = {
    {"loopback_trust", int(lt::AuthMode::LoopbackTrust), false},
    {"off", int(lt::AuthMode::Off), false},
    {"required", int(lt::AuthMode::Required), false},
    {NULL, 0, false},
};

static Size align64(Size n) { return (n + 63) & ~Size(63); }

// Layout of the segment: control | ring | ingest queue | live table | keys | moved feed.
static Size segment_layout(uint64 *ring_off, uint64 *ingest_off, uint64 *live_off, uint64 *keys_off,
                           uint64 *moved_off) {
	Size off = align64(sizeof(LtControl));
	*ring_off = off;
	off = align64(off + lt::Ring<lt::Ping>::bytes_needed(uint64(lt_ring_size)));
	*ingest_off = off;
	off = align64(off + lt::Ring<lt::Ping>::bytes_needed(kIngestQueueSize));
	*live_off = off;
	off = align64(off + lt::LiveTable::bytes_needed(uint32(lt_max_drivers)));
	*keys_off = off;
	off = align64(off + lt::KeyStore::bytes_needed(uint32(lt_max_keys)));
	*moved_off = off;
	off = align64(off + lt::MovedFeed::bytes_needed(kMovedFeedSize));
	return off;
}

static void lt_shmem_request(void) {
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	uint64 a, b, c, d, e;
	RequestAddinShmemSpace(segment_layout(&a, &b, &c, &d, &e));
}

static void lt_shmem_startup(void) {
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	uint64 ring_off, ingest_off, live_off, keys_off, moved_off;
	Size size = segment_layout(&ring_off, &ingest_off, &live_off, &keys_off, &moved_off);
	bool found;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	char *base = static_cast<char *>(ShmemInitStruct("livetrack", size, &found));
	if (!found) {
		// Fresh memory: server start or crash restart. The live state is
		// empty until the listener rebuilds it from history.
		auto *ctl = reinterpret_cast<LtControl *>(base);
		memset(ctl, 0, sizeof *ctl);
		ctl->listener_procno = -1;
		ctl->compactor_procno = -1;
		for (LtHttpSlot &h : ctl->http)
			h.procno = -1;
		for (int32 &p : ctl->flusher_procno)
			p = -1;
		lt::consumer_group_init(ctl->flushers, uint32(lt_flushers), 0);
		ConditionVariableInit(&ctl->drained_cv);
		ConditionVariableInit(&ctl->flushed_cv);
		ctl->ring_offset = ring_off;
		ctl->ingest_offset = ingest_off;
		ctl->live_offset = live_off;
		ctl->keys_offset = keys_off;
		ctl->moved_offset = moved_off;
		lt::Ring<lt::Ping>::format(base + ring_off, uint64(lt_ring_size));
		lt::Ring<lt::Ping>::format(base + ingest_off, kIngestQueueSize);
		lt::LiveTable::format(base + live_off, uint32(lt_max_drivers));
		lt::KeyStore::format(base + keys_off, uint32(lt_max_keys));
		lt::MovedFeed::format(base + moved_off, kMovedFeedSize);
	}
	LWLockRelease(AddinShmemInitLock);
	lt_ctl = reinterpret_cast<LtControl *>(base);
	lt_ring.attach(base + lt_ctl->ring_offset);
	lt_ingest.attach(base + lt_ctl->ingest_offset);
	lt_live.attach(base + lt_ctl->live_offset);
	lt_keys.attach(base + lt_ctl->keys_offset);
	lt_moved.attach(base + lt_ctl->moved_offset);
}

void lt_require_shared(void) {
	if (lt_ctl == NULL)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("livetrack is not loaded"),
		                errhint("Add livetrack to shared_preload_libraries and restart the server.")));
}

void lt_require_database(void) {
	lt_require_shared();
	if (strcmp(get_database_name(MyDatabaseId), lt_database) != 0)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("livetrack serves database \"%s\", not this one", lt_database),
		                errhint("Set livetrack.database in postgresql.conf and restart the server.")));
}

Latch *lt_latch_of(int32 procno) {
	if (procno < 0)
		return NULL;
	return &ProcGlobal->allProcs[procno].procLatch;
}

void lt_wake_http(void) {
	for (LtHttpSlot &h : lt_ctl->http)
		if (Latch *l = lt_latch_of(lt::load_relaxed(h.procno)))
			SetLatch(l);
}

void lt_wake_flushers(void) {
	for (uint32 i = 0; i < lt::kMaxConsumers; i++)
		if (Latch *l = lt_latch_of(lt::load_relaxed(lt_ctl->flusher_procno[i])))
			SetLatch(l);
}

// Settings read once at server start. Postgres refuses to create them
// after startup (FATAL, ending the session), so they exist only when the
// library is preloaded; loaded later, the SQL functions say how to fix it.
static void define_server_settings(void) {
	DefineCustomStringVariable("livetrack.database", "Database the livetrack workers serve.", NULL, &lt_database,
	                           "postgres", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("livetrack.listen_addresses",
	                           "Comma-separated addresses for the device port ('*' for all).", NULL,
	                           &lt_listen_addresses, "127.0.0.1", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.port", "UDP and TCP port for devices.", NULL, &lt_port, 5480, 1, 65535,
	                        PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.max_drivers", "Capacity of the live state (drivers).", NULL,
	                        &lt_max_drivers, 200000, 16, 100000000, PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.max_keys", "Signing keys the server can hold (revoked ones included).",
	                        NULL, &lt_max_keys, 100000, 16, 10000000, PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.ring_size", "Records the listener-to-flusher ring holds.", NULL,
	                        &lt_ring_size, 1 << 20, 1024, 1 << 30, PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.flushers", "Flusher processes writing history in parallel.",
	                        "Each writes the drivers that hash to it.", &lt_flushers, 2, 1, int(lt::kMaxConsumers),
	                        PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("livetrack.http_listen_addresses",
	                           "Comma-separated addresses for the HTTP port ('*' for all).", NULL,
	                           &lt_http_listen_addresses, "127.0.0.1", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.http_port", "HTTP port for apps, browsers and phones (0: off).", NULL,
	                        &lt_http_port, 5481, 0, 65535, PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.http_workers", "HTTP worker processes sharing the HTTP port.",
	                        "The kernel spreads new connections over them (SO_REUSEPORT): more cores for "
	                        "streams, and more open files than one process may have.",
	                        &lt_http_workers, 1, 1, kMaxHttpWorkers, PGC_POSTMASTER, 0, NULL, NULL, NULL);
}

static void define_settings(void) {
	DefineCustomEnumVariable("livetrack.auth", "Which device input is accepted.",
	                         "loopback_trust: unsigned input only from loopback; off: everything; "
	                         "required: only signed messages.", &lt_auth,
	                         int(lt::AuthMode::LoopbackTrust), auth_options, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.flush_interval", "Longest a received record waits before its commit.",
	                        NULL, &lt_flush_interval_ms, 100, 1, 60000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.batch_size", "Records per history transaction.", NULL, &lt_batch_size, 8192,
	                        1, 1 << 20, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.max_late", "Oldest accepted fix, behind the server clock.", NULL,
	                        &lt_max_late_ms, 10 * 60 * 1000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.max_future", "Newest accepted fix, ahead of the server clock.", NULL,
	                        &lt_max_future_ms, 30 * 1000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.history_retention", "Age after which history partitions are dropped.",
	                        "0 keeps history forever.", &lt_history_retention_min, 7 * 24 * 60, 0, INT_MAX,
	                        PGC_SIGHUP, GUC_UNIT_MIN, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.max_connections", "Concurrent device TCP connections.", NULL,
	                        &lt_max_connections, 1024, 1, 100000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.tcp_idle_timeout", "Idle device TCP connections are closed after this.",
	                        "0 disables the timeout.", &lt_tcp_idle_timeout_s, 300, 0, INT_MAX, PGC_SIGHUP,
	                        GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.notify_interval", "Shortest time between position messages of an order.",
	                        NULL, &lt_notify_interval_ms, 1000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomRealVariable("livetrack.near_radius",
	                         "Distance to an order's target, in metres, that sends its near message.", NULL,
	                         &lt_near_radius_m, 300, 0, 1e7, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("livetrack.assign_radius",
	                         "How far from the pickup, in metres, assign_order() looks for a driver.", NULL,
	                         &lt_assign_radius_m, 5000, 0, 2e7, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.http_max_connections", "Concurrent HTTP connections; more get 503.", NULL,
	                        &lt_http_max_connections, 10000, 1, 10000000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("livetrack.map_tiles",
	                           "Tile URL template for the /map page, e.g. https://tile.example.com/{z}/{x}/{y}.png.",
	                           "Empty: a plain background, and the page asks nothing of any other server.",
	                           &lt_map_tiles, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("livetrack.compaction_delay",
	                        "How long after a minute ends its history is compacted into segments.",
	                        "Fixes for a minute that come later go to livetrack.hot_late and are compacted on their own.",
	                        &lt_compaction_delay_ms, 30000, 0, 7 * 24 * 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL,
	                        NULL);
	DefineCustomStringVariable("livetrack.mqtt_broker", "MQTT broker the listener subscribes to, as mqtt://host:port.",
	                           "Several, comma-separated, are nodes of one cluster, tried in turn. Empty: no MQTT.", &lt_mqtt_broker, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("livetrack.mqtt_topics", "Comma-separated MQTT topic filters, subscribed at QoS 1.",
	                           "The last level of a message's topic is its driver id.", &lt_mqtt_topics,
	                           "livetrack/+/+", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("livetrack.mqtt_client_id", "MQTT client id of the listener's persistent session.",
	                           "Empty: livetrack-<database>.", &lt_mqtt_client_id, "", PGC_SIGHUP, 0, NULL, NULL,
	                           NULL);
	DefineCustomStringVariable("livetrack.mqtt_username", "User name for the MQTT broker (empty: none).", NULL,
	                           &lt_mqtt_username, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("livetrack.mqtt_password_file",
	                           "File holding the MQTT broker's password: owned by the server's OS user, mode 0600.",
	                           "The password itself is never a setting, so SHOW cannot print it.",
	                           &lt_mqtt_password_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomBoolVariable("livetrack.enable_nearest_scan",
	                         "Lets the planner run nearest_drivers() calls as livetrack's own scan node.",
	                         "Off: every call runs as a function scan, with the same results.",
	                         &lt_enable_nearest_scan, true, PGC_USERSET, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("livetrack");
}

// Registered background workers, ours and everyone's (the postmaster's list).
static int registered_workers(void) {
	int n = 0;
	for (slist_node *i = BackgroundWorkerList.head.next; i != NULL; i = i->next) // slist_foreach is C-only
		n++;
	return n;
}

// False if the postmaster had no slot left (max_worker_processes): it logs
// "too many background workers" and carries on without this one.
static bool register_worker(const char *name, const char *function, int32 arg = 0) {
	int before = registered_workers();
	BackgroundWorker w;
	memset(&w, 0, sizeof w);
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = 1;
	w.bgw_main_arg = Int32GetDatum(arg);
	strlcpy(w.bgw_library_name, "livetrack", BGW_MAXLEN);
	strlcpy(w.bgw_function_name, function, BGW_MAXLEN);
	strlcpy(w.bgw_name, name, BGW_MAXLEN);
	strlcpy(w.bgw_type, name, BGW_MAXLEN);
	RegisterBackgroundWorker(&w);
	return registered_workers() > before;
}

void _PG_init(void) {
	if (process_shared_preload_libraries_in_progress)
		define_server_settings();
	define_settings();
	if (!process_shared_preload_libraries_in_progress)
		return; // SQL functions will say how to load it properly
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = lt_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = lt_shmem_startup;
	lt_nearest_scan_init();
	lt_history_planner_init();
	lt_at_commit_init();
	int wanted = 2 + lt_flushers + (lt_http_port != 0 ? lt_http_workers : 0), got = 0;
	got += register_worker("livetrack listener", "livetrack_listener_main");
	got += register_worker("livetrack compactor", "livetrack_compactor_main");
	for (int i = 0; i < lt_flushers; i++) {
		char name[BGW_MAXLEN];
		snprintf(name, sizeof name, "livetrack flusher %d", i + 1);
		got += register_worker(name, "livetrack_flusher_main", i);
	}
	lt_http_workers_registered = 0;
	for (int i = 0; lt_http_port != 0 && i < lt_http_workers; i++) {
		char name[BGW_MAXLEN];
		if (lt_http_workers == 1)
			strlcpy(name, "livetrack http", sizeof name);
		else
			snprintf(name, sizeof name, "livetrack http %d", i + 1);
		if (register_worker(name, "livetrack_http_main", i))
			lt_http_workers_registered++;
	}
	got += lt_http_workers_registered;
	if (got < wanted)
		ereport(WARNING, (errmsg("livetrack: only %d of its %d background workers could be registered", got, wanted),
		                  errdetail("max_worker_processes (%d) is shared by every extension, PostgreSQL's own "
		                            "workers and parallel queries.",
		                            max_worker_processes),
		                  errhint("Raise max_worker_processes to at least %d and restart.", wanted + 8)));
}
