// The listener background worker: the Postgres shell around ListenerEngine.
//
// Life cycle: connect -> wait for CREATE EXTENSION -> rebuild the live state
// from history (only when shared memory is fresh) -> open the device port ->
// serve. It waits on one WaitEventSet: its latch (ingest(), wait_flushed(),
// flusher commits, SIGHUP, SIGTERM), postmaster death, and the engine's epoll
// descriptor, which stands for every device socket.
//
// The engine is C++ and may throw; every call into it is wrapped so an
// exception ends the process with FATAL (the postmaster restarts it and the
// shared state survives). A Postgres ERROR here has no recovery loop to land
// in: it longjmps to StartBackgroundWorker, which exits, and the postmaster
// restarts us. That jump crosses this file's frames, so none of them may hold
// an object with a destructor while calling Postgres (the engine is a raw
// pointer; the engine_call lambdas call no Postgres code).
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/clock.hpp"
#include "../core/gserialized.hpp"
#include "listener_engine.hpp"
#include "worker_common.hpp"

extern "C" {
#include "executor/spi.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void livetrack_listener_main(Datum arg);
}

static lt::ListenerEngine *engine;

// Wake-ups that find fewer messages than this, closer together than
// kBusyGapUs, are a busy trickle (see the main loop).
constexpr uint64 kBatchWorthy = 16;
constexpr int64 kBusyGapUs = 250;

// The listener wakes for nearly every datagram and does little each time,
// while the flushers are CPU-bound. On an EEVDF kernel (Linux 6.12 and
// later) a task that asks for a short slice gets an early deadline, so it
// runs as soon as it wakes instead of after a flusher's slice: receipt ->
// visible p99 at 100,000 fixes/s on two cores went from 3.5-4.4 ms to
// 1.6-2.6 ms. It keeps the same share of CPU. Older kernels ignore the
// field; no privilege is needed, and failure only costs that latency.
static void request_short_slice(void) {
#if defined(SYS_sched_setattr) && defined(SYS_sched_getattr)
	// The kernel's struct sched_attr, first version (its uapi header clashes
	// with glibc's <sched.h>, and glibc before 2.41 has no wrapper).
	struct {
		uint32 size, sched_policy;
		uint64 sched_flags;
		int32 sched_nice;
		uint32 sched_priority;
		uint64 sched_runtime, sched_deadline, sched_period;
	} attr;
	static_assert(sizeof attr == 48, "SCHED_ATTR_SIZE_VER0");
	constexpr uint64 kResetOnFork = 0x01; // SCHED_FLAG_RESET_ON_FORK
	memset(&attr, 0, sizeof attr);
	// Keep whatever policy and nice the server was started with; only the
	// fair-share policies have a slice.
	if (syscall(SYS_sched_getattr, 0, &attr, sizeof attr, 0) != 0 ||
	    (attr.sched_policy != SCHED_OTHER && attr.sched_policy != SCHED_BATCH))
		return;
	attr.size = sizeof attr;
	attr.sched_flags &= kResetOnFork; // leave utilization clamps alone
	attr.sched_runtime = 100 * 1000;  // ns: the shortest slice the kernel allows
	if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0)
		ereport(LOG, (errmsg("livetrack listener: could not ask for a short scheduler slice: %m")));
#endif
}

template <typename F> static void engine_call(const char *what, F &&fn) {
	char msg[256];
	try {
		fn();
		return;
	} catch (const std::exception &e) {
		strlcpy(msg, e.what(), sizeof msg);
	} catch (...) {
		strlcpy(msg, "unknown exception", sizeof msg);
	}
	ereport(FATAL, (errmsg("livetrack listener: %s failed: %s", what, msg)));
}

static std::vector<std::string> split_list(const char *list) {
	std::vector<std::string> out;
	std::string all = list ? list : "";
	size_t start = 0;
	while (start <= all.size()) {
		size_t comma = all.find(',', start);
		std::string a = all.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
		size_t b = a.find_first_not_of(" \t"), e = a.find_last_not_of(" \t");
		if (b != std::string::npos)
			out.push_back(a.substr(b, e - b + 1));
		if (comma == std::string::npos)
			break;
		start = comma + 1;
	}
	return out;
}

// The broker's password, from livetrack.mqtt_password_file: it must belong
// to the server's OS user and be readable by nobody else (like ~/.pgpass),
// so the password is neither a setting SHOW prints nor a file others read.
// False (logged) if the file is unusable: then we do not connect at all.
static bool read_password_file(const char *path, std::string &out) {
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		ereport(WARNING, (errmsg("livetrack listener: could not open livetrack.mqtt_password_file \"%s\": %m", path)));
		return false;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
		close(fd);
		ereport(WARNING, (errmsg("livetrack listener: livetrack.mqtt_password_file \"%s\" must be a file owned by "
		                         "the server's user with no access for group or others (chmod 0600); not "
		                         "connecting to the MQTT broker",
		                         path)));
		return false;
	}
	char buf[1024];
	ssize_t n = read(fd, buf, sizeof buf);
	close(fd);
	if (n < 0 || n == ssize_t(sizeof buf)) {
		ereport(WARNING, (errmsg("livetrack listener: could not read livetrack.mqtt_password_file \"%s\"", path)));
		return false;
	}
	out.assign(buf, size_t(n));
	while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
		out.pop_back(); // the file's last line ending is not part of the password
	return true;
}

static lt::MqttConfig mqtt_config(void) {
	lt::MqttConfig m;
	if (lt_mqtt_broker == NULL || lt_mqtt_broker[0] == '\0')
		return m;
	std::vector<lt::MqttBroker> brokers;
	std::string bad;
	if (!lt::parse_mqtt_urls(lt_mqtt_broker, brokers, bad)) {
		ereport(WARNING, (errmsg("livetrack listener: livetrack.mqtt_broker: \"%s\" is not mqtt://host[:port]; MQTT is off",
		                         bad.c_str())));
		return m;
	}
	m.topics = split_list(lt_mqtt_topics);
	if (m.topics.empty()) {
		ereport(WARNING, (errmsg("livetrack listener: livetrack.mqtt_topics is empty; MQTT is off")));
		return m;
	}
	m.client_id = lt_mqtt_client_id && lt_mqtt_client_id[0] ? lt_mqtt_client_id
	                                                         : std::string("livetrack-") + lt_database;
	m.username = lt_mqtt_username ? lt_mqtt_username : "";
	if (lt_mqtt_password_file && lt_mqtt_password_file[0] && !read_password_file(lt_mqtt_password_file, m.password))
		return m;
	m.brokers = brokers;
	return m;
}

static lt::EngineConfig engine_config(void) {
	lt::EngineConfig cfg;
	cfg.addresses = split_list(lt_listen_addresses);
	cfg.port = lt_port;
	cfg.max_connections = lt_max_connections;
	cfg.idle_timeout_s = lt_tcp_idle_timeout_s;
	cfg.flush_hint = uint64(lt_batch_size);
	cfg.policy.auth = lt::AuthMode(lt_auth);
	cfg.policy.clock = lt::ClockLimits{lt_max_future_ms, lt_max_late_ms};
	cfg.mqtt = mqtt_config();
	return cfg;
}

// What the engine has to say (MQTT connects and faults) goes to the server log.
static void log_engine(void) {
	std::vector<std::string> *lines = nullptr;
	engine_call("log", [&] {
		auto l = engine->take_log();
		if (!l.empty())
			lines = new std::vector<std::string>(std::move(l));
	});
	if (lines == nullptr)
		return;
	for (const std::string &l : *lines) {
		char msg[512];
		strlcpy(msg, l.c_str(), sizeof msg);
		ereport(LOG, (errmsg("livetrack listener: %s", msg)));
	}
	delete lines;
}

static void listener_exit(int, Datum) {
	lt::store_release(lt_ctl->listener_state, uint32(LT_LISTENER_DOWN));
	lt::store_release(lt_ctl->listener_procno, int32(-1));
	lt::store_relaxed(lt_ctl->tcp_connections, uint64(0));
	lt::store_relaxed(lt_ctl->mqtt_connected, uint64(0));
	lt::store_relaxed(lt_ctl->mqtt_pending, uint64(0));
	lt_wake_flushers(); // stopping flushers wait for this
}

static void set_state(uint32 s) {
	lt::store_release(lt_ctl->listener_state, s);
	ConditionVariableBroadcast(&lt_ctl->drained_cv); // wait_flushed() waits for SERVING
}

// Loads each driver's newest committed fix and status. Runs before any new
// input is applied, so history and live agree from the first new fix on.
static void rebuild_live(void) {
	MemoryContext caller = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "rebuilding live state from history");
	Portal portal = SPI_cursor_open_with_args(
	    NULL,
	    "SELECT driver_id, status, ts, geog, speed_mps, heading_deg, accuracy_m, received_at "
	    "FROM livetrack._rebuild_source()",
	    0, NULL, NULL, NULL, true, 0);
	uint64 loaded = 0;
	// What the rows allocate (status strings, detoasted points) goes here and
	// is freed every batch: the registry may hold many more drivers than
	// max_drivers.
	MemoryContext batch = AllocSetContextCreate(CurrentMemoryContext, "livetrack rebuild", ALLOCSET_DEFAULT_SIZES);
	for (;;) {
		SPI_cursor_fetch(portal, true, 10000);
		if (SPI_processed == 0)
			break;
		MemoryContext spi = MemoryContextSwitchTo(batch);
		TupleDesc desc = SPI_tuptable->tupdesc;
		for (uint64 r = 0; r < SPI_processed; r++) {
			HeapTuple tup = SPI_tuptable->vals[r];
			bool isnull;
			lt::Fix f{};
			f.driver_id = uint64(DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)));
			char *status = SPI_getvalue(tup, desc, 2);
			f.status = status ? lt::status_from_name(status, strlen(status)) : 0;
			f.ts_ms = lt_ts_to_unix_us(DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull))) / 1000;
			Datum g = SPI_getbinval(tup, desc, 4, &isnull);
			struct varlena *gv = PG_DETOAST_DATUM(g);
			double lon, lat;
			if (!lt::gser::decode_point(reinterpret_cast<const uint8_t *>(gv), VARSIZE(gv), lon, lat))
				continue;
			f.lat_e7 = int32(std::llround(lat * 1e7));
			f.lon_e7 = int32(std::llround(lon * 1e7));
			auto scaled = [&](int col, double scale) -> uint16 {
				bool n;
				Datum d = SPI_getbinval(tup, desc, col, &n);
				return n ? lt::kUnknown16 : uint16(std::nearbyint(double(DatumGetFloat4(d)) * scale));
			};
			f.speed_cms = scaled(5, 100);
			f.heading_cd = scaled(6, 100);
			f.accuracy_dm = scaled(7, 10);
			int64 received = lt_ts_to_unix_us(DatumGetTimestampTz(SPI_getbinval(tup, desc, 8, &isnull)));
			uint8 st;
			bool reg;
			lt_live.apply(f, received, &st, &reg);
			loaded++;
		}
		MemoryContextSwitchTo(spi);
		MemoryContextReset(batch);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	pgstat_report_activity(STATE_IDLE, NULL);
	// A driver may come in several candidate rows (hot log, late fixes,
	// segments): the live table holds each once.
	ereport(LOG, (errmsg("livetrack listener: live state rebuilt with %u drivers (%llu candidate rows)",
	                     lt_live.size(), (unsigned long long)loaded)));
}

// Loads the signing keys that are not revoked (shared memory is fresh after
// a server start or crash), with their replay windows as flusher 1 last
// saved them. Keys created meanwhile install themselves at commit;
// installing one twice keeps the first.
static void rebuild_keys(void) {
	MemoryContext caller = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("SELECT key_id, coalesce(driver_id, 0), secret, last_seq FROM livetrack.keys "
	                "WHERE revoked_at IS NULL",
	                true, 0) != SPI_OK_SELECT)
		elog(ERROR, "livetrack listener: could not read livetrack.keys");
	uint64 loaded = 0;
	for (uint64 r = 0; r < SPI_processed; r++) {
		HeapTuple tup = SPI_tuptable->vals[r];
		TupleDesc desc = SPI_tuptable->tupdesc;
		bool isnull;
		uint32 key_id = uint32(DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull)));
		uint64 driver = uint64(DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull)));
		bytea *secret = DatumGetByteaPP(SPI_getbinval(tup, desc, 3, &isnull));
		if (VARSIZE_ANY_EXHDR(secret) != lt::kSecretBytes)
			continue;
		if (lt_keys.install(key_id, driver, reinterpret_cast<const uint8 *>(VARDATA_ANY(secret))) ==
		    lt::KeyStore::Install::Full) {
			ereport(WARNING, (errmsg("livetrack listener: livetrack.max_keys (%u) reached; later keys are refused",
			                         lt_keys.capacity())));
			break;
		}
		// The window goes on from where it was saved; nothing is served yet.
		Datum last = SPI_getbinval(tup, desc, 4, &isnull);
		if (!isnull)
			if (lt::KeyEntry *e = lt_keys.find(key_id))
				lt::replay_resume(*e, uint32(DatumGetInt64(last)));
		loaded++;
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	if (loaded > 0)
		ereport(LOG, (errmsg("livetrack listener: %llu signing keys loaded", (unsigned long long)loaded)));
}

// Opens the device port and builds the WaitEventSet. False if nothing could be bound.
static WaitEventSet *start_serving(void) {
	bool ok = false;
	char err[512] = "";
	engine_call("open", [&] {
		std::string e;
		ok = engine->open(engine_config(), e);
		strlcpy(err, e.c_str(), sizeof err);
	});
	if (err[0])
		ereport(ok ? WARNING : LOG, (errmsg("livetrack listener: %s", err)));
	if (!ok)
		return NULL;
	WaitEventSet *set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(set, WL_SOCKET_READABLE, engine->epoll_fd(), NULL, NULL);
	ereport(LOG, (errmsg("livetrack listener: serving port %d on %s", lt_port, lt_listen_addresses)));
	return set;
}

static bool any_flusher_running(void) {
	for (uint32 i = 0; i < lt_ctl->flushers.count; i++)
		if (lt::load_acquire(lt_ctl->flusher_procno[i]) >= 0)
			return true;
	return false;
}

// SIGTERM (a server stop, or pg_terminate_backend): take no more input, put
// what ingest() queued on the ring, let the flushers commit everything the
// ring holds and send the ACKs for it, then exit. Otherwise a clean stop
// would lose what had been accepted but not yet committed, since shared
// memory does not outlive the server. Bounded by kStopGraceMs.
static void stop_and_exit(bool serving) {
	lt_worker_begin_stop();
	if (serving) {
		int64 started = lt::mono_us();
		uint64 head = lt_ring.head(), first_tail = lt_ring.tail();
		set_state(LT_LISTENER_STOPPING);
		for (;;) {
			engine_call("stop", [] {
				engine->drain_ingest();
				engine->send_acks();
			});
			head = lt_ring.head();
			if ((lt_ring.tail() >= head && lt_ingest.size() == 0) || !any_flusher_running())
				break;
			lt_wake_flushers();
			(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		ereport(LOG, (errmsg("livetrack listener: stopped; %llu records committed on the way out in %lld ms%s",
		                     (unsigned long long)(lt_ring.tail() - first_tail),
		                     (long long)((lt::mono_us() - started) / 1000),
		                     lt_ring.tail() >= head ? "" : ", the rest left uncommitted: no flusher is running")));
	}
	// Not 0: a worker that exits with 0 is not restarted (pg_terminate_backend).
	proc_exit(1);
}

static void stop_serving(WaitEventSet **set) {
	engine_call("close", [] { engine->close_all(); });
	if (*set)
		FreeWaitEventSet(*set);
	*set = NULL;
}

void livetrack_listener_main(Datum) {
	lt_worker_start();
	request_short_slice();
	lt::store_release(lt_ctl->listener_procno, int32(MyProc->pgprocno));
	before_shmem_exit(listener_exit, 0);
	engine_call("setup", [] {
		engine = new lt::ListenerEngine(lt_ring, lt_ingest, lt_live, lt_ctl->counters, &lt_ctl->visible_latency_us);
		engine->set_keys(&lt_keys);
		engine->set_ingest_mark(&lt_ctl->ingest_ring_mark);
		engine->set_moved_feed(&lt_moved);
		engine->set_mqtt_latency(&lt_ctl->mqtt_ack_latency_us);
	});
	MemoryContext loop_ctx = AllocSetContextCreate(TopMemoryContext, "livetrack listener", ALLOCSET_DEFAULT_SIZES);
	WaitEventSet *set = NULL;
	Oid served_ext = InvalidOid; // the extension whose tables we feed
	int64 next_check_us = 0;
	bool trickle = false; // the last wake-ups came fast and found little work
	int64 last_wake_us = 0;

	for (;;) {
		MemoryContextSwitchTo(loop_ctx);
		if (lt_stop_requested)
			stop_and_exit(set != NULL);
		if (set == NULL) {
			set_state(LT_LISTENER_WAITING);
			served_ext = lt_extension_oid();
			if (!OidIsValid(served_ext)) {
				lt_worker_sleep(1000);
				continue;
			}
			if (!lt::load_acquire(lt_ctl->live_ready)) {
				set_state(LT_LISTENER_REBUILDING);
				rebuild_live();
				rebuild_keys();
				lt::store_release(lt_ctl->live_ready, uint32(1));
			}
			set = start_serving();
			if (set == NULL) {
				lt_worker_sleep(5000); // the port may be busy; try again
				continue;
			}
			if (lt::load_relaxed(lt_ctl->serving_ext) != served_ext) {
				lt::store_relaxed(lt_ctl->serving_from, lt_ring.head());
				lt::store_release(lt_ctl->serving_ext, uint32(served_ext));
			}
			set_state(LT_LISTENER_SERVING);
		}

		// Interrupt coalescing: when wake-ups come faster than one per
		// kBusyGapUs and each finds only a trickle, give the trickle up to
		// 1 ms to become a batch (the latch still wakes us at once). At
		// 25,000 single-fix datagrams/s this turns 25,000 wake-ups into about
		// 1,000, for at most 1 ms of receipt-to-visible time; slower traffic
		// (1,600 datagrams of 64 fixes = 100,000 fixes/s) is read at once.
		if (trickle)
			(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1, PG_WAIT_EXTENSION);
		// At most a second, less when an MQTT timer (keep-alive, reconnect) is due.
		int64 timer = engine->next_timer_us(), until = timer - lt::mono_us();
		long timeout = timer == INT64_MAX || until >= 1000000 ? 1000 : until <= 0 ? 0 : long(until / 1000) + 1;
		WaitEvent ev;
		(void)WaitEventSetWait(set, timeout, &ev, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (lt_worker_interrupts())
			engine_call("reload", [] { engine->set_config(engine_config()); });

		uint64 req = lt::load_acquire(lt_ctl->drain_req);
		bool drain = req > lt::load_relaxed(lt_ctl->drain_done);
		uint64 before = lt::load_relaxed(lt_ctl->counters.received_messages);
		engine_call("poll", [&] { engine->run_once(drain); });
		int64 woke = lt::mono_us();
		trickle = lt::load_relaxed(lt_ctl->counters.received_messages) - before < kBatchWorthy &&
		          woke - last_wake_us < kBusyGapUs;
		last_wake_us = woke;
		// Everything received is now on the ring, unless the ring was too full
		// to take the whole ingest queue (then try again next round).
		if (drain && (lt_ring.free_slots() > 0 || lt_ingest.size() == 0)) {
			lt::store_release(lt_ctl->drain_pos, lt_ring.head());
			lt::store_release(lt_ctl->drain_done, req);
			ConditionVariableBroadcast(&lt_ctl->drained_cv);
		}
		if (engine->take_flusher_wake())
			lt_wake_flushers();
		lt::store_relaxed(lt_ctl->tcp_connections, uint64(engine->connections()));
		lt::store_relaxed(lt_ctl->mqtt_connected, uint64(engine->mqtt_connected()));
		lt::store_relaxed(lt_ctl->mqtt_pending, uint64(engine->mqtt_pending()));
		log_engine();

		int64 now = lt::mono_us();
		if (now >= next_check_us) {
			next_check_us = now + 1000000;
			engine_call("housekeeping", [] { engine->housekeeping(); });
			if (lt_extension_oid() != served_ext) {
				// DROP EXTENSION: stop taking input and forget the live state;
				// a new CREATE EXTENSION starts from its (empty) history.
				ereport(LOG, (errmsg("livetrack listener: extension dropped, closing the device port")));
				stop_serving(&set);
				lt_live.clear();
				lt_keys.clear();
				lt::store_release(lt_ctl->live_ready, uint32(0));
			}
		}
		MemoryContextReset(loop_ctx);
	}
}
