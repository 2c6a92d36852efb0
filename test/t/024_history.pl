# History in two layouts (issue 28): fixes land in the hot log and are
# compacted into segments once their minute closes. Through livetrack.pings
# and trail() they read back exactly the same before and after (every
# column, to the precision the wire carries); late fixes and resends are
# kept; retention drops whole days; the compactor killed with kill -9 at
# random points under load loses nothing and doubles nothing; the live
# state is rebuilt from segments after a restart.
use strict;
use warnings;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);

# compaction_delay 0: a minute is compacted a few seconds after it ends.
my ($node, $port) = start_node('history', 'restart_after_crash = on', "livetrack.compaction_delay = 0",
	"livetrack.max_late = '4d'");
my $sql = sub { $node->safe_psql('postgres', shift) };
sub stat_of { stat_value($node, shift) }

# Every column, exactly: geography as its bytes, reals as themselves.
my $cols = "driver_id, ts, encode(ST_AsBinary(geog), 'hex') AS g, speed_mps, heading_deg, accuracy_m, received_at";

# 25 s into a minute: the fixes below (up to 20 s old) are all of this
# minute, and it stays open while they are read back from the hot log.
my $into = $sql->("SELECT extract(second FROM clock_timestamp())");
sleep($into < 25 ? 25 - $into : 85 - $into);
my $now = now_ms();
# Binary records with every field, and with unknown ones (0xFFFF).
my @recs;
for my $d (1 .. 50) {
	for my $i (0 .. 9) {
		push @recs, record(driver_id => 24000 + $d, ts => $now - 20000 + $i * 1000 + $d, lat => 12.9 + $d / 1e4 + $i / 1e5,
			lon => 77.5 - $d / 1e4 + $i / 1e5, speed => $i == 3 ? 0xFFFF : 830 + $i, heading => $i == 4 ? 0xFFFF : 35999 - $i,
			accuracy => $i == 5 ? 0xFFFF : 65534 - $i);
	}
}
is(tcp_send($port, map { frame({}, @recs[ $_ * 50 .. $_ * 50 + 49 ]) } 0 .. 9), 500, '500 fixes acknowledged');
# JSON lines, with their own rounding (1e-7 degrees, cm/s, 0.01 degrees, dm).
my $s = tcp_connect($port);
print $s json_line(driver_id => 24099, lat => '-33.8688197', lon => '151.2092955', speed => 12.346, heading => 359.99,
	accuracy => 6553.4, ts => $now - 1500);
is(read_line($s, 10), "ok 1\n", 'a JSON fix too');
$sql->("CREATE TABLE hot_copy AS SELECT $cols FROM livetrack.pings WHERE driver_id BETWEEN 24001 AND 24099");
is($sql->('SELECT count(*) FROM hot_copy'), '501', 'all 501 in the hot log');
is($sql->('SELECT count(*) FROM livetrack.hot WHERE driver_id BETWEEN 24001 AND 24099'), '501', 'in the hot log');
my %trail_hot = map { $_ => $sql->("SELECT encode(ST_AsBinary(livetrack.trail($_, now() - interval '1 hour')), 'hex')") }
  (24001, 24017, 24050);

ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM livetrack.hot WHERE driver_id BETWEEN 24001 AND 24099'),
	'the compactor takes the minute once it has closed');
is($sql->('SELECT count(*) FROM livetrack.segments WHERE driver_id BETWEEN 24001 AND 24099'), '51',
	'one segment row per driver of that minute');
is($sql->("SELECT count(*) FROM (SELECT * FROM hot_copy EXCEPT ALL SELECT $cols FROM livetrack.pings) x"), '0',
	'every fix reads back from segments as it read from the hot log');
is($sql->("SELECT count(*) FROM (SELECT $cols FROM livetrack.pings WHERE driver_id BETWEEN 24001 AND 24099 "
			. "EXCEPT ALL SELECT * FROM hot_copy) x"),
	'0', 'and nothing more');
is($sql->("SELECT speed_mps || ' ' || heading_deg || ' ' || accuracy_m FROM livetrack.pings WHERE driver_id = 24099"),
	'12.35 359.99 6553.4', 'JSON values to the precision the wire carries');
is($sql->("SELECT concat_ws(' ', count(*) FILTER (WHERE speed_mps IS NULL), count(*) FILTER (WHERE heading_deg IS NULL), "
		. 'count(*) FILTER (WHERE accuracy_m IS NULL)) FROM livetrack.pings WHERE driver_id BETWEEN 24001 AND 24050'),
	'50 50 50', 'unknown fields stay NULL');
for my $d (sort keys %trail_hot) {
	is($sql->("SELECT encode(ST_AsBinary(livetrack.trail($d, now() - interval '1 hour')), 'hex')"), $trail_hot{$d},
		"trail($d) is the same line from segments");
}
is($sql->("SELECT ST_Equals(livetrack.trail(24017, now() - interval '1 hour'), "
		. "(SELECT ST_MakeLine(ST_GeomFromWKB(decode(g, 'hex'), 4326) ORDER BY ts) FROM hot_copy WHERE driver_id = 24017))"),
	't', 'which is the fixes in time order');

# Late fixes: for that minute, now compacted, and for one five minutes ago.
my $late_ts = $now - 19000;
is(tcp_send($port, frame({}, record(driver_id => 24001, ts => $late_ts + 500, lat => 13, lon => 78),
			record(driver_id => 24001, ts => $now - 300000, lat => 13.1, lon => 78.1))), 2, 'two late fixes');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM livetrack.hot_late'), 'compacted from hot_late');
is($sql->("SELECT count(*) FROM livetrack.segments WHERE driver_id = 24001 AND period = "
		. "date_trunc('minute', to_timestamp($late_ts / 1000.0))"),
	'2', 'the compacted minute has a second segment row for the late fix');
is($sql->("SELECT count(*) FROM livetrack.pings WHERE driver_id = 24001"), '12', 'all 12 fixes of driver 24001 read back');
is($sql->("SELECT ST_NPoints(livetrack.trail(24001, now() - interval '1 hour'))"), '12', 'trail() has them all');
is($sql->("SELECT ST_AsText(ST_PointN(livetrack.trail(24001, now() - interval '1 hour'), 1))"), 'POINT(78.1 13.1)',
	'in time order: the five-minute-old fix first');

# A resend (at-least-once): the same fix twice is two rows, before and after.
is(tcp_send($port, frame({}, record(driver_id => 24100, ts => $now - 600, lat => 1, lon => 2)),
		frame({}, record(driver_id => 24100, ts => $now - 600, lat => 1, lon => 2))), 2, 'a fix sent twice');
$sql->('SELECT livetrack.wait_flushed()');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM livetrack.hot WHERE driver_id = 24100'), 'compacted');
is($sql->('SELECT count(*) FROM livetrack.pings WHERE driver_id = 24100'), '2', 'a resent fix stays twice');

# The stats (measured after each of the compactor's passes).
ok($node->poll_query_until('postgres',
		"SELECT value >= 505 FROM livetrack.stats WHERE metric = 'history_segment_fixes'"),
	'history_segment_fixes counts them');
my $st = stats($node);
ok($st->{history_bytes} > 0 && $st->{history_segment_bytes} > 0, 'bytes on disk are measured');
ok($st->{compacted_fixes} >= 505, "compacted_fixes ($st->{compacted_fixes})");
is($st->{history_hot_fixes}, 0, 'history_hot_fixes: nothing left in the hot log');

# The live state after a restart comes from segments.
my $pos = $sql->("SELECT ts || ' ' || lat || ' ' || lon FROM livetrack.driver_position(24017)");
$node->restart;
wait_serving($node);
is($sql->("SELECT ts || ' ' || lat || ' ' || lon FROM livetrack.driver_position(24017)"), $pos,
	'a restart rebuilds the live state from segments');

# Retention drops whole days, segments included.
is(tcp_send($port, frame({}, record(driver_id => 24200, ts => $now - 2 * 86400000, lat => 5, lon => 5))), 1,
	'a fix two days old');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM livetrack.segments WHERE driver_id = 24200'),
	'compacted into the segments of its day');
$sql->('SELECT livetrack._maintain_history(24 * 60)');
is($sql->('SELECT count(*) FROM livetrack.pings WHERE driver_id = 24200'), '0', 'a retention of one day drops it');
is($sql->("SELECT count(*) FROM livetrack.segment_totals WHERE day = (now() AT TIME ZONE 'UTC')::date - 2"), '0',
	'and its totals');
is($sql->('SELECT count(*) FROM livetrack.pings WHERE driver_id = 24017'), '10', 'today stays');

# kill -9 under load: a sender writes what was acknowledged to a file; the
# compactor is killed three times at random points of its work (the whole
# server restarts each time, as after any crash). Every acknowledged fix
# must be in history exactly once.
my $acked = $PostgreSQL::Test::Utils::tmp_check . '/acked.txt';
my $stop = $PostgreSQL::Test::Utils::tmp_check . '/stop';
my $pid = fork() // die;
if ($pid == 0) {
	open my $out, '>', $acked or die;
	$out->autoflush(1);
	my ($sock, $batch) = (undef, 0);
	while (!-e $stop) {
		$sock //= eval { tcp_connect($port) } or do { sleep 0.3; next };
		# A third of them late (90 s old: hot_late), so that the compactor
		# works every few seconds, not only once a minute. Late ones go to
		# drivers of their own: a late batch must not repeat the (driver, ts)
		# of one sent 90 s before (that would be a second fix, not a copy).
		my $late = $batch % 3 == 0;
		my $t = now_ms() - ($late ? 90000 : 0);
		my @r = map { [ 25000 + ($late ? 500 : 0) + ($batch * 64 + $_) % 500, $t + $_ ] } 0 .. 63;
		print $sock frame({}, map { record(driver_id => $_->[0], ts => $_->[1], lat => 10, lon => 20) } @r);
		my @a = read_acks($sock, 1, 10);
		if (@a == 1 && $a[0][2] == 64) {
			print $out "$_->[0] $_->[1]\n" for @r;
		} else {
			close $sock;
			undef $sock;
		}
		$batch++;
		sleep 0.02;
	}
	POSIX::_exit(0); # not exit: the test's END blocks (which stop the node) belong to the parent
}
for my $k (1 .. 3) {
	sleep(1 + rand(2));
	my $deadline = time() + 100;
	my $cpid;
	while (time() < $deadline) {
		$cpid = eval {
			$node->safe_psql('postgres',
				"SELECT pid FROM pg_stat_activity WHERE backend_type = 'livetrack compactor' AND query LIKE 'compacting%'");
		};
		last if $cpid;
		sleep 0.02;
	}
	ok($cpid, "compaction $k caught at work");
	sleep(rand(0.2));
	kill 'KILL', $cpid if $cpid;
	sleep 1;
	wait_serving($node);
}
open my $fh, '>', $stop;
close $fh;
waitpid($pid, 0);
$sql->('SELECT livetrack.wait_flushed()');
$sql->('SELECT livetrack.compact_history()');
$sql->("CREATE TABLE acked (driver_id bigint, ts_ms bigint)");
$sql->("COPY acked FROM '$acked' WITH (DELIMITER ' ')");
my $n = $sql->('SELECT count(*) FROM acked');
ok($n > 5000, "$n fixes acknowledged under load");
is($sql->("SELECT count(*) FROM acked a WHERE NOT EXISTS (SELECT 1 FROM livetrack.pings p WHERE p.driver_id = a.driver_id "
		. "AND p.ts = timestamptz 'epoch' + a.ts_ms * interval '1 ms')"), '0', 'every one of them is in history');
is($sql->('SELECT count(*) - count(DISTINCT (driver_id, ts)) FROM livetrack.pings WHERE driver_id BETWEEN 25000 AND 25999'),
	'0', 'none twice');
ok($sql->('SELECT count(*) FROM livetrack.segments WHERE driver_id BETWEEN 25000 AND 25999') > 0,
	'much of it compacted meanwhile');
like(slurp_file($node->logfile), qr/compactor.*terminated by signal 9/, 'the compactor was killed');

# A hot minute has no statistics (no autovacuum), yet one driver of it is
# found through its BRIN rather than by reading the whole minute: the
# statistics hook of extension/history_planner.cpp. 100,000 rows written in
# driver order, as the flushers write, into a minute that is still open.
$sql->("INSERT INTO livetrack.hot SELECT 900000 + i / 50, date_trunc('minute', now()) + interval '3 min' + (i % 60000) * "
	. "interval '1 ms', 1, 1, -1, -1, -1, now() FROM generate_series(1, 100000) i ORDER BY 1");
like($sql->('EXPLAIN (COSTS OFF) SELECT count(*) FROM livetrack.pings WHERE driver_id = 900042'),
	qr/Bitmap Index Scan on hot_\d{8}_\d{4}_driver_id_idx/, 'one driver of a hot minute is read through its BRIN');

$node->stop;
done_testing();
