# PGXS build of the livetrack extension: make && make install; make installcheck
EXTENSION = livetrack
MODULE_big = livetrack
DATA = sql/livetrack--0.1.0.sql sql/livetrack--0.1.0--0.2.0.sql sql/livetrack--0.2.0--0.3.0.sql

# Pure C++ core (no Postgres headers; also built by CMake for unit tests),
# the code Postgres calls (extension/), and the background workers (worker/).
CORE = core/fix.o core/wire.o core/json_lines.o core/message.o core/live_table.o core/grid_index.o core/push.o core/hmac.o core/key_store.o \
       core/base64.o core/jwt.o core/area.o core/http.o core/sse.o core/http_ingest.o core/websocket.o core/mqtt.o core/segment.o
EXT = extension/livetrack.o extension/ingest.o extension/live_sql.o extension/stats.o extension/spatial_sql.o extension/nearest_scan.o extension/at_commit.o extension/edge_sql.o \
      extension/history_sql.o extension/history_planner.o
WORKERS = worker/listener_engine.o worker/worker_common.o worker/listener.o worker/flusher.o worker/history.o worker/order_push.o worker/key_windows.o \
          worker/http_server.o worker/http.o worker/mqtt_client.o worker/compaction.o worker/compactor.o
OBJS = $(CORE) $(EXT) $(WORKERS)

# -fno-semantic-interposition: nothing replaces our functions at load time, so
# calls inside the library may be inlined and need not go through the PLT
# (with -fPIC GCC otherwise keeps every non-static function out of line).
PG_CXXFLAGS = -std=c++17 -fno-omit-frame-pointer -fno-semantic-interposition -Wno-register -Wno-missing-field-initializers
# libcrypto: HMAC-SHA256 for device signatures and tokens; http_parser: the
# HTTP edge's request parser; wslay: WebSocket framing (Debian packages, see
# scripts/lib.sh).
SHLIB_LINK = -lstdc++ -lcrypto -lhttp_parser -lwslay

# SQL tests need the workers, so they run against a server that preloads
# livetrack with livetrack.database = 'contrib_regression' (the database
# pg_regress uses), which must exist; scripts/test sets one up.
REGRESS = install ingest history errors spatial stats orders keys
REGRESS_OPTS = --inputdir=test --outputdir=build/regress --use-existing

# No LLVM bitcode for JIT: it needs a clang matching the server's build, and
# none of this code is called from expressions the JIT would inline.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): $(wildcard core/*.hpp extension/*.hpp worker/*.hpp)

# The map page (GET /map), served by the HTTP worker from share/livetrack/.
MAP_FILES = web/map.html web/map.js web/map.css
install: install-map
install-map:
	$(MKDIR_P) '$(DESTDIR)$(datadir)/livetrack'
	$(INSTALL_DATA) $(MAP_FILES) '$(DESTDIR)$(datadir)/livetrack/'
uninstall: uninstall-map
uninstall-map:
	rm -f $(addprefix '$(DESTDIR)$(datadir)/livetrack/', $(notdir $(MAP_FILES)))
.PHONY: install-map uninstall-map
