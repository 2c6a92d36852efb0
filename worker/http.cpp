// The HTTP worker (SPEC 6): the Postgres shell around HttpServer.
//
// Life cycle: connect -> wait for CREATE EXTENSION -> read the token secret
// and where the event stream stands -> open the HTTP port -> serve. It waits
// on one WaitEventSet: its latch (commits that published events or rotated
// the token secret, flushers when HTTP ingest waits for a commit, SIGHUP,
// SIGTERM), postmaster death, and the engine's epoll descriptor.
//
// The engine asks the database for snapshots and events through the
// backend below; each call is one short read-only transaction, and a
// Postgres error there comes back to the engine as a C++ exception (the
// engine answers 503 or tries again), never as a longjmp across its frames.
// Errors elsewhere end the worker, which the postmaster restarts.
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/resource.h>

#include "../core/clock.hpp"
#include "http_server.hpp"
#include "worker_common.hpp"

extern "C" {
#include "executor/spi.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void livetrack_http_main(Datum arg);
}

namespace {

lt::HttpServer *server;

template <typename F> void engine_call(const char *what, F &&fn) {
	char msg[256];
	try {
		fn();
		return;
	} catch (const std::exception &e) {
		strlcpy(msg, e.what(), sizeof msg);
	} catch (...) {
		strlcpy(msg, "unknown exception", sizeof msg);
	}
	ereport(FATAL, (errmsg("livetrack http: %s failed: %s", what, msg)));
}

// Runs fn in a short transaction with SPI. A Postgres error aborts the
// transaction and is rethrown as lt::PgError. fn keeps no object with a
// destructor alive across a Postgres call.
template <typename F> void in_xact(F &&fn) {
	MemoryContext caller = CurrentMemoryContext;
	try {
		lt::pg_call([&] {
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			SPI_connect();
			PushActiveSnapshot(GetTransactionSnapshot());
			fn();
			PopActiveSnapshot();
			SPI_finish();
			CommitTransactionCommand();
		});
	} catch (...) {
		AbortCurrentTransaction();
		MemoryContextSwitchTo(caller);
		pgstat_report_activity(STATE_IDLE, NULL);
		throw;
	}
	MemoryContextSwitchTo(caller);
	pgstat_report_activity(STATE_IDLE, NULL);
}

// Column readers for the loops below, which make every Postgres call of a
// row first and only then build the row's C++ object: an error longjmps
// past no destructor.
const char *text_col(HeapTuple tup, TupleDesc desc, int col) {
	char *v = SPI_getvalue(tup, desc, col);
	return v ? v : "";
}

int64 int8_col(HeapTuple tup, TupleDesc desc, int col) {
	bool isnull;
	Datum d = SPI_getbinval(tup, desc, col, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

double float8_col(HeapTuple tup, TupleDesc desc, int col) {
	bool isnull;
	Datum d = SPI_getbinval(tup, desc, col, &isnull);
	return isnull ? 0 : DatumGetFloat8(d);
}

Datum int8_array(const std::vector<uint64_t> &v) {
	Datum *d = static_cast<Datum *>(palloc(sizeof(Datum) * (v.size() + 1)));
	for (size_t i = 0; i < v.size(); i++)
		d[i] = Int64GetDatum(int64(v[i]));
	return PointerGetDatum(construct_array(d, int(v.size()), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

void read_events(std::vector<lt::EventRow> &out) {
	TupleDesc desc = SPI_tuptable->tupdesc;
	for (uint64 i = 0; i < SPI_processed; i++) {
		HeapTuple t = SPI_tuptable->vals[i];
		int64 id = int8_col(t, desc, 1), order = int8_col(t, desc, 2), driver = int8_col(t, desc, 3);
		const char *type = text_col(t, desc, 4), *status = text_col(t, desc, 5), *target = text_col(t, desc, 6);
		const char *payload = text_col(t, desc, 7);
		out.push_back(lt::EventRow{uint64_t(id), uint64_t(order), uint64_t(driver), type, status, target, payload});
	}
}

constexpr char kEventCols[] = "e.event_id, e.order_id, e.driver_id, e.type, e.payload->>'status', e.payload->>'target', "
                              "e.payload::text";

class Backend : public lt::HttpBackend {
public:
	void load_orders(const std::vector<uint64_t> &ids, std::vector<lt::OrderRow> &out) override {
		in_xact([&] {
			pgstat_report_activity(STATE_RUNNING, "loading watched orders");
			Oid types[1] = {INT8ARRAYOID};
			Datum args[1] = {int8_array(ids)};
			// The snapshot is track_order()'s row, as JSON.
			if (SPI_execute_with_args(
			        "SELECT w.id, o.order_id IS NOT NULL, "
			        "  (SELECT row_to_json(t)::text FROM (SELECT order_id, status, driver_id, driver_lat, driver_lon, "
			        "          driver_ts, target, distance_m, eta_s FROM livetrack._track(w.id)) t), "
			        "  o.status, o.driver_id, livetrack._lat(o.pickup), livetrack._lon(o.pickup), "
			        "  livetrack._lat(o.dropoff), livetrack._lon(o.dropoff), "
			        "  (SELECT max(e.event_id) FROM livetrack.events e WHERE e.order_id = w.id AND e.event_id > 0) "
			        "FROM unnest($1::bigint[]) w(id) LEFT JOIN livetrack.orders o ON o.order_id = w.id",
			        1, types, args, NULL, true, 0) != SPI_OK_SELECT)
				elog(ERROR, "livetrack http: could not read orders");
			TupleDesc desc = SPI_tuptable->tupdesc;
			for (uint64 i = 0; i < SPI_processed; i++) {
				HeapTuple t = SPI_tuptable->vals[i];
				bool isnull;
				int64 id = int8_col(t, desc, 1);
				bool found = DatumGetBool(SPI_getbinval(t, desc, 2, &isnull));
				const char *snapshot = text_col(t, desc, 3), *status = text_col(t, desc, 4);
				int64 driver = int8_col(t, desc, 5);
				double plat = float8_col(t, desc, 6), plon = float8_col(t, desc, 7);
				double dlat = float8_col(t, desc, 8), dlon = float8_col(t, desc, 9);
				int64 last = int8_col(t, desc, 10);
				out.push_back(lt::OrderRow{uint64_t(id), found, snapshot, status, uint64_t(driver), plat, plon, dlat,
				                           dlon, uint64_t(last)});
			}
		});
	}

	void order_events(const std::vector<std::pair<uint64_t, uint64_t>> &order_after, uint64_t upto,
	                  std::vector<lt::EventRow> &out) override {
		std::vector<uint64_t> orders, after;
		for (const auto &p : order_after) {
			orders.push_back(p.first);
			after.push_back(p.second);
		}
		std::string sql = std::string("SELECT ") + kEventCols +
		                  " FROM unnest($1::bigint[], $2::bigint[]) w(o, after)"
		                  " JOIN LATERAL (SELECT * FROM livetrack.events x WHERE x.order_id = w.o"
		                  "   AND x.event_id > w.after AND x.event_id <= $3 ORDER BY x.event_id) e ON true"
		                  " ORDER BY e.event_id";
		in_xact([&] {
			pgstat_report_activity(STATE_RUNNING, "reading the events a client missed");
			Oid types[3] = {INT8ARRAYOID, INT8ARRAYOID, INT8OID};
			Datum args[3] = {int8_array(orders), int8_array(after), Int64GetDatum(int64(upto))};
			if (SPI_execute_with_args(sql.c_str(), 3, types, args, NULL, true, 0) != SPI_OK_SELECT)
				elog(ERROR, "livetrack http: could not read events");
			read_events(out);
		});
	}

	void events_after(uint64_t after, int limit, std::vector<lt::EventRow> &out) override {
		std::string sql = std::string("SELECT ") + kEventCols +
		                  " FROM livetrack.events e WHERE e.event_id > $1 ORDER BY e.event_id LIMIT $2";
		in_xact([&] {
			Oid types[2] = {INT8OID, INT4OID};
			Datum args[2] = {Int64GetDatum(int64(after)), Int32GetDatum(limit)};
			if (SPI_execute_with_args(sql.c_str(), 2, types, args, NULL, true, 0) != SPI_OK_SELECT)
				elog(ERROR, "livetrack http: could not read events");
			read_events(out);
		});
	}

	std::string metrics() override {
		std::string out;
		out.reserve(8192);
		lt_stats_collect(
		    [](void *arg, const char *metric, uint64 value, bool counter) {
			    auto &o = *static_cast<std::string *>(arg);
			    o += "# TYPE livetrack_";
			    o += metric;
			    o += counter ? " counter\n" : " gauge\n";
			    o += "livetrack_";
			    o += metric;
			    o += ' ';
			    o += std::to_string(value);
			    o += '\n';
		    },
		    &out);
		return out;
	}

	bool healthy(std::string &detail) override {
		const LtControl *ctl = lt_ctl;
		if (lt::load_relaxed(ctl->listener_state) != LT_LISTENER_SERVING) {
			detail = "the listener is not serving";
			return false;
		}
		for (uint32 i = 0; i < ctl->flushers.count; i++)
			if (lt::load_relaxed(ctl->flusher_procno[i]) < 0) {
				detail = "flusher " + std::to_string(i + 1) + " is not running";
				return false;
			}
		return true;
	}

	// The page and its scripts are installed with the extension
	// (share/livetrack/); Leaflet is Debian's libjs-leaflet, or a copy under
	// share/livetrack/leaflet/.
	bool map_file(const std::string &name, std::string &body, std::string &content_type) override {
		char share[MAXPGPATH];
		get_share_path(my_exec_path, share);
		std::string base = std::string(share) + "/livetrack/";
		std::vector<std::string> candidates;
		bool leaflet = name.rfind("leaflet", 0) == 0 || name.rfind("images/", 0) == 0;
		if (leaflet) {
			candidates.push_back("/usr/share/javascript/leaflet/" + name);
			candidates.push_back(base + "leaflet/" + name);
		} else {
			candidates.push_back(base + name);
		}
		for (const std::string &path : candidates) {
			std::ifstream f(path, std::ios::binary);
			if (!f)
				continue;
			body.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
			content_type = content_type_of(name);
			return true;
		}
		return false;
	}

	static std::string content_type_of(const std::string &name) {
		auto ends = [&](const char *ext) {
			size_t n = std::strlen(ext);
			return name.size() >= n && name.compare(name.size() - n, n, ext) == 0;
		};
		if (ends(".html"))
			return "text/html; charset=utf-8";
		if (ends(".js"))
			return "text/javascript; charset=utf-8";
		if (ends(".css"))
			return "text/css; charset=utf-8";
		if (ends(".png"))
			return "image/png";
		if (ends(".svg"))
			return "image/svg+xml";
		return "application/octet-stream";
	}
};

Backend *backend;

lt::HttpConfig http_config(void) {
	lt::HttpConfig cfg;
	std::string all = lt_http_listen_addresses ? lt_http_listen_addresses : "";
	size_t start = 0;
	while (start <= all.size()) {
		size_t comma = all.find(',', start);
		std::string a = all.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
		size_t b = a.find_first_not_of(" \t"), e = a.find_last_not_of(" \t");
		if (b != std::string::npos)
			cfg.addresses.push_back(a.substr(b, e - b + 1));
		if (comma == std::string::npos)
			break;
		start = comma + 1;
	}
	cfg.port = lt_http_port;
	// Each worker takes its share: the kernel spreads connections evenly
	// over the workers that exist (fewer than asked for if
	// max_worker_processes had no room: the server log warned at start).
	int workers = lt_http_workers_registered > 0 ? lt_http_workers_registered : lt_http_workers;
	cfg.max_connections = (lt_http_max_connections + workers - 1) / workers;
	cfg.reuse_port = lt_http_workers > 1;
	cfg.policy.auth = lt::AuthMode(lt_auth);
	cfg.policy.clock = lt::ClockLimits{lt_max_future_ms, lt_max_late_ms};
	cfg.notify_interval_us = int64(lt_notify_interval_ms) * 1000;
	cfg.map_tiles = lt_map_tiles ? lt_map_tiles : "";
	return cfg;
}

// The token secret, read whenever rotate_token_secret() has committed.
void load_secret(void) {
	uint64 gen = lt::load_acquire(lt_ctl->tokens_gen); // before the read: a later rotation is seen again
	uint8 secret[64];
	int len = 0;
	engine_call("read the token secret", [&] {
		in_xact([&] {
			if (SPI_execute("SELECT secret FROM livetrack.token_secret", true, 1) != SPI_OK_SELECT ||
			    SPI_processed != 1)
				elog(ERROR, "livetrack http: no token secret in livetrack.token_secret");
			bool isnull;
			bytea *b = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			len = int(Min(VARSIZE_ANY_EXHDR(b), sizeof secret));
			memcpy(secret, VARDATA_ANY(b), size_t(len));
		});
		server->set_token_secret(secret, size_t(len), gen);
	});
}

uint64 newest_event(void) {
	int64 id = 0;
	engine_call("read the newest event", [&] {
		in_xact([&] {
			if (SPI_execute("SELECT coalesce(max(event_id), 0) FROM livetrack.events", true, 1) != SPI_OK_SELECT)
				elog(ERROR, "livetrack http: could not read livetrack.events");
			bool isnull;
			id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		});
	});
	return uint64(id);
}

// Each stream is a socket: as many as the hard limit allows.
void raise_open_files(void) {
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			ereport(LOG, (errmsg("livetrack http: could not raise the open files limit: %m")));
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur * rlim_t(lt_http_workers_registered > 0 ? lt_http_workers_registered : lt_http_workers) <
	        rlim_t(lt_http_max_connections) + 64)
		ereport(LOG, (errmsg("livetrack http: the open files limit (%llu) times livetrack.http_workers (%d) is below "
		                     "livetrack.http_max_connections (%d); raise LimitNOFILE / ulimit -Hn, or "
		                     "livetrack.http_workers",
		                     (unsigned long long)rl.rlim_cur, lt_http_workers, lt_http_max_connections)));
}

LtHttpSlot *me; // this worker's slot of the control block

void http_exit(int, Datum) {
	lt::store_release(me->state, uint32(LT_LISTENER_DOWN));
	lt::store_release(me->procno, int32(-1));
	lt::store_relaxed(me->awaits_commit, uint32(0));
	lt::store_relaxed(me->connections, uint64(0));
	lt::store_relaxed(me->streams, uint64(0));
	lt::store_relaxed(me->watched_orders, uint64(0));
}

void publish_gauges(void) {
	lt::store_relaxed(me->connections, uint64(server->connections()));
	lt::store_relaxed(me->streams, uint64(server->streams()));
	lt::store_relaxed(me->watched_orders, uint64(server->watched_orders()));
	lt::store_relaxed(me->awaits_commit, uint32(server->awaiting_commit() > 0));
	if (server->take_listener_wake())
		if (Latch *l = lt_latch_of(lt::load_relaxed(lt_ctl->listener_procno)))
			SetLatch(l);
}

} // namespace

void livetrack_http_main(Datum arg) {
	me = &lt_ctl->http[DatumGetInt32(arg)];
	lt_worker_start();
	raise_open_files();
	lt::store_release(me->procno, int32(MyProc->pgprocno));
	before_shmem_exit(http_exit, 0);
	engine_call("setup", [] {
		backend = new Backend;
		server = new lt::HttpServer(*backend, lt_ring, lt_ingest, &lt_ctl->ingest_ring_mark, lt_live, &lt_keys,
		                            &lt_moved, me->counters, me->records);
	});
	MemoryContext loop_ctx = AllocSetContextCreate(TopMemoryContext, "livetrack http", ALLOCSET_DEFAULT_SIZES);
	WaitEventSet *set = NULL;
	Oid served_ext = InvalidOid;
	uint64 tokens_seen = 0, events_seen = 0;
	int64 next_check_us = 0, next_tick_us = 0, stop_deadline_us = 0;

	for (;;) {
		MemoryContextSwitchTo(loop_ctx);
		if (lt_stop_requested) {
			// A server stop: requests waiting for their commit get their
			// answer if it comes soon (the flushers commit what the ring
			// holds on the way out); streams end, and clients reconnect.
			lt_worker_begin_stop();
			int64 now = lt::mono_us();
			if (stop_deadline_us == 0)
				stop_deadline_us = now + 5000000;
			if (set == NULL || server->awaiting_commit() == 0 || now > stop_deadline_us) {
				engine_call("close", [] { server->close_all(); });
				proc_exit(1);
			}
		}
		if (set == NULL) {
			served_ext = lt_extension_oid();
			if (!OidIsValid(served_ext)) {
				lt_worker_sleep(1000);
				continue;
			}
			load_secret();
			tokens_seen = lt::load_acquire(lt_ctl->tokens_gen);
			events_seen = lt::load_acquire(lt_ctl->events_gen);
			server->set_event_cursor(newest_event());
			bool ok = false;
			char err[512] = "";
			engine_call("open", [&] {
				std::string e;
				ok = server->open(http_config(), e);
				strlcpy(err, e.c_str(), sizeof err);
			});
			if (err[0])
				ereport(ok ? WARNING : LOG, (errmsg("livetrack http: %s", err)));
			if (!ok) {
				lt_worker_sleep(5000); // the port may be busy; try again
				continue;
			}
			set = CreateWaitEventSet(TopMemoryContext, 3);
			AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
			AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
			AddWaitEventToSet(set, WL_SOCKET_READABLE, server->epoll_fd(), NULL, NULL);
			lt::store_release(me->state, uint32(LT_LISTENER_SERVING));
			ereport(LOG, (errmsg("livetrack http: serving port %d on %s", lt_http_port, lt_http_listen_addresses)));
		}

		int64 now = lt::mono_us();
		long timeout = long(Max(int64(0), next_tick_us - now) / 1000);
		WaitEvent ev;
		(void)WaitEventSetWait(set, Min(timeout, 1000L), &ev, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (lt_worker_interrupts())
			engine_call("reload", [] { server->set_config(http_config()); });

		uint64 tg = lt::load_acquire(lt_ctl->tokens_gen);
		if (tg != tokens_seen) {
			tokens_seen = tg;
			load_secret();
		}
		uint64 eg = lt::load_acquire(lt_ctl->events_gen);
		if (eg != events_seen) {
			events_seen = eg;
			server->events_changed();
		}
		engine_call("poll", [] { server->run_once(); });
		now = lt::mono_us();
		if (now >= next_tick_us) {
			next_tick_us = now + server->tick_ms() * 1000;
			engine_call("tick", [] { server->tick(); });
		}
		publish_gauges();

		if (now >= next_check_us) {
			next_check_us = now + 1000000;
			if (lt_extension_oid() != served_ext) {
				ereport(LOG, (errmsg("livetrack http: extension dropped, closing the HTTP port")));
				engine_call("close", [] { server->close_all(); });
				FreeWaitEventSet(set);
				set = NULL;
				lt::store_release(me->state, uint32(LT_LISTENER_WAITING));
			}
		}
		MemoryContextReset(loop_ctx);
	}
}
