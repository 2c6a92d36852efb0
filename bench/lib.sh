# Helpers shared by bench/ingest and bench/mqtt: psql, livetrack.stats
# snapshots, arithmetic, the tools' JSON summaries, background runs.
# Source it after scripts/lib.sh, with PGHOST/PGPORT set and DPORT the
# device port.

sql() { as_pg psql -XAtq -v ON_ERROR_STOP=1 "$@"; }

# The listener opens the device port once the live state is rebuilt.
wait_listener() {
	for _ in $(seq 300); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$DPORT") 2>/dev/null; then return 0; fi
		sleep 0.2
	done
	die "the livetrack listener did not open port $DPORT (see $DIR/server.log)"
}

# snap NAME: livetrack.stats into ST[NAME.metric].
declare -A ST
snap() {
	local m v n=0
	while read -r m v; do
		ST[$1.$m]=$v
		n=$((n + 1))
	done < <(sql -F ' ' -c "SELECT metric, value FROM livetrack.stats")
	[ "$n" -gt 0 ] || die "could not read livetrack.stats"
}
delta() { echo $((${ST[$3.$1]:-0} - ${ST[$2.$1]:-0})); } # delta METRIC FROM TO

now() { date +%s.%N; }
# calc EXPR [DECIMALS]: floating-point arithmetic; empty when EXPR divides by 0.
calc() { awk "BEGIN { printf \"%.${2:-1}f\", ($1) }" 2>/dev/null || true; }
ratio() { # ratio A B: A/B to 2 decimals, "–" when either is missing or B is 0
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) printf "–"; else printf "%.2f", a / b }'
}
# jget FILE KEY: one value of the tool's JSON summary ("" for null).
jget() {
	perl -MJSON::PP -e 'local $/; my $j = decode_json(<STDIN>); my $v = $j->{$ARGV[0]};
		print defined $v ? $v : ""' "$2" <"$1"
}
# run_bg OUTFILE CMD...: runs a tool in the background; wait_bg waits and checks it.
run_bg() {
	local out=$1
	shift
	"$@" >"$out" &
	BG_PID=$!
}
wait_bg() {
	local rc=0
	wait "$BG_PID" || rc=$?
	BG_PID=
	[ "$rc" = 0 ] || die "$1 failed (exit $rc)"
}

