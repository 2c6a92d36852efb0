# Shared helpers for scripts/demo, scripts/test and bench/*. Source it.
#
# Postgres refuses to run as root, so when these scripts run as root (CI, a
# fresh VM) every cluster belongs to the unprivileged OS user "postgres",
# which the Debian packages create.

set -euo pipefail

LT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LT_PACKAGES=(build-essential cmake pkg-config postgresql-15 postgresql-server-dev-15 postgresql-15-postgis-3
	libpq-dev rapidjson-dev libgtest-dev libipc-run-perl clang libclang-rt-dev netcat-openbsd
	libssl-dev libhttp-parser-dev libwslay-dev libjs-leaflet curl nginx-light chromium
	mosquitto mosquitto-clients nats-server)

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs the Debian packages we need, only those missing (idempotent).
lt_install_packages() {
	local missing=()
	for p in "${LT_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing packages: ${missing[*]}"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
	fi
	# The packaged default services are not ours; keep them from holding ports.
	# (mosquitto's starts on 1883 at install; the tests and demo run their own.)
	as_root systemctl disable --now postgresql nginx mosquitto nats-server >/dev/null 2>&1 || true
}

# A bigger UDP receive buffer lets the listener ride out bursts (the kernel
# caps SO_RCVBUF at net.core.rmem_max). Best effort: not allowed everywhere.
# Says what it changed; lt_restore_kernel puts the old value back (sockets
# already open keep their buffer).
LT_OLD_RMEM_MAX=
lt_tune_kernel() {
	local want=33554432 have
	have=$(cat /proc/sys/net/core/rmem_max 2>/dev/null || echo 0)
	if [ "$have" -lt "$want" ] && as_root sysctl -q -w net.core.rmem_max=$want >/dev/null 2>&1; then
		LT_OLD_RMEM_MAX=$have
		log "net.core.rmem_max raised from $have to $want (until reboot, or until this script puts it back)"
	fi
}
lt_restore_kernel() {
	[ -n "$LT_OLD_RMEM_MAX" ] || return 0
	as_root sysctl -q -w net.core.rmem_max="$LT_OLD_RMEM_MAX" >/dev/null 2>&1 || true
	log "net.core.rmem_max put back to $LT_OLD_RMEM_MAX"
	LT_OLD_RMEM_MAX=
}

PG_BINDIR=/usr/lib/postgresql/15/bin
export PATH="$PG_BINDIR:$PATH"

# The OS user that owns our clusters.
lt_pg_user() { if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi; }

# Runs a command as the cluster owner, keeping the environment we need.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		local vars=(PATH="$PATH") v
		for v in PGHOST PGPORT PGUSER PGDATABASE PERL5LIB PG_REGRESS TESTDIR LT_BUILD LT_DEVICE_PORT; do
			[ -n "${!v:-}" ] && vars+=("$v=${!v}")
		done
		runuser -u postgres -- env "${vars[@]}" "$@"
	else
		"$@"
	fi
}

# Makes a directory the cluster owner can write.
lt_owned_dir() {
	mkdir -p "$1"
	[ "$(id -u)" = 0 ] && chown -R postgres: "$1"
	return 0
}

# The browser test's driver: playwright-core from npm (its own browser is
# not downloaded: Debian's chromium is used), and Node.js if the machine
# has none. Idempotent: npm ci runs only when the lock file changed.
lt_install_browser_tools() {
	command -v node >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null
	local dir=$LT_ROOT/test/browser stamp=$LT_ROOT/test/browser/node_modules/.lock-installed
	if [ ! -f "$stamp" ] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
		log "installing the browser test's driver (npm ci in test/browser)"
		PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
		cp "$dir/package-lock.json" "$stamp"
	fi
}

# Builds (once) and installs the extension.
lt_build_install() {
	log "building and installing the extension (make && make install)"
	make -C "$LT_ROOT" -s -j2 >/dev/null
	as_root make -C "$LT_ROOT" -s install >/dev/null
}

# Builds the C++ core, unit tests and tools with CMake into build/cmake.
lt_build_tools() {
	log "building the core, unit tests and tools (cmake)"
	cmake -S "$LT_ROOT" -B "$LT_ROOT/build/cmake" -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$LT_ROOT/build/cmake" -j2 >/dev/null
}

# lt_cluster_init DIR PGPORT DEVICEPORT DATABASE [extra postgresql.conf lines...]
lt_cluster_init() {
	local dir=$1 port=$2 lport=$3 db=$4
	shift 4
	lt_owned_dir "$dir"
	as_pg test -w "$dir" ||
		die "the cluster owner ($(lt_pg_user)) cannot write $dir: clone the repository where it can reach (not under /root, which is mode 700)"
	as_pg rm -rf "$dir/data"
	as_pg initdb -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
	{
		echo "# livetrack: local cluster made by scripts/lib.sh"
		echo "port = $port"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "shared_preload_libraries = 'livetrack'"
		echo "livetrack.database = '$db'"
		echo "livetrack.port = $lport"
		# A free HTTP port unless the caller names one (a later line wins).
		echo "livetrack.http_port = $(lt_free_port)"
		# After each checkpoint every hot history-index page (one per driver)
		# is logged whole once; at 100,000 records/s 4GB of WAL brought one
		# every 80 s. With 16GB they come from checkpoint_timeout instead.
		echo "max_wal_size = '16GB'"
		echo "checkpoint_timeout = '15min'"
		echo "shared_buffers = '1GB'"
		# A fresh cluster has no WAL segments to recycle yet: zero-filling each
		# new 16 MB segment stalls the committing flusher for ~90 ms here.
		echo "wal_init_zero = off"
		# livetrack's workers (listener, compactor, flushers, up to 16 HTTP
		# workers) share these slots with PostgreSQL's own and parallel queries.
		echo "max_worker_processes = 32"
		echo "log_min_messages = warning"
		for line in "$@"; do echo "$line"; done
	} | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
}

lt_cluster_start() {
	local dir=$1
	as_pg pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
}

lt_cluster_stop() {
	local dir=$1
	[ -f "$dir/data/postmaster.pid" ] && as_pg pg_ctl -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# A TCP port nobody listens on.
lt_free_port() {
	perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0")->sockport, "\n"'
}
