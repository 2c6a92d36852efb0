# ALTER EXTENSION livetrack UPDATE from 0.1.0 with history in place (issue
# 28): the old daily partitions become livetrack.pings_0_2 and stay readable
# through the new livetrack.pings view, exactly as they were; trail() and the
# live-state rebuild read them; new fixes go to the hot log; retention drops
# the old days as before.
use strict;
use warnings;
use LivetrackTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('update');
$node->init;
my $lport = PostgreSQL::Test::Cluster::get_free_port();
$node->append_conf('postgresql.conf', join("\n", "shared_preload_libraries = 'livetrack'", "livetrack.port = $lport",
		"livetrack.http_port = 0", "livetrack.flush_interval = '50ms'", "livetrack.max_late = '4d'") . "\n");
$node->start;
my $sql = sub { $node->safe_psql('postgres', shift) };

# Version 0.1.0, and history in its layout: two days, three drivers.
$sql->("CREATE EXTENSION livetrack VERSION '0.1.0' CASCADE");
is($sql->("SELECT extversion FROM pg_extension WHERE extname = 'livetrack'"), '0.1.0', 'version 0.1.0');
$sql->(q{
	INSERT INTO livetrack.drivers (driver_id, status, status_since) VALUES (7001, 'busy', now()), (7002, 'available', now()),
	    (7003, 'offline', now());
	-- Today, yesterday (half an hour ago may be yesterday) and the day before.
	SELECT livetrack._ensure_partition((now() AT TIME ZONE 'UTC')::date - k) FROM generate_series(0, 2) k;
	INSERT INTO livetrack.pings (driver_id, ts, geog, speed_mps, heading_deg, accuracy_m, received_at)
	SELECT 7000 + d, t, ST_SetSRID(ST_MakePoint(77.5 + i / 1e4, 12.9 + d / 1e3), 4326)::geography,
	       CASE WHEN i % 3 = 0 THEN NULL ELSE i / 10.0 END, (i * 7) % 360, 5, t + interval '150 ms'
	FROM generate_series(1, 3) d, generate_series(1, 100) i,
	     LATERAL (SELECT date_trunc('minute', now()) - interval '30 min' + i * interval '10 s' AS t) x;
	INSERT INTO livetrack.pings (driver_id, ts, geog, speed_mps, heading_deg, accuracy_m, received_at)
	SELECT 7001, now() - interval '2 days' + i * interval '1 s', ST_SetSRID(ST_MakePoint(1, 2), 4326)::geography,
	       1, 2, 3, now() - interval '2 days'
	FROM generate_series(1, 50) i;
	CREATE TABLE old AS SELECT * FROM livetrack.pings;
});
is($sql->('SELECT count(*) FROM old'), '350', '350 fixes of history before the update');

$sql->('ALTER EXTENSION livetrack UPDATE');
is($sql->("SELECT extversion FROM pg_extension WHERE extname = 'livetrack'"), '0.3.0', 'updated to 0.3.0');
wait_serving($node);

my $cols = "driver_id, ts, encode(ST_AsBinary(geog), 'hex'), speed_mps, heading_deg, accuracy_m, received_at";
is($sql->("SELECT count(*) FROM (SELECT $cols FROM old EXCEPT ALL SELECT $cols FROM livetrack.pings) x"), '0',
	'every old fix reads back through livetrack.pings');
is($sql->("SELECT count(*) FROM (SELECT $cols FROM livetrack.pings EXCEPT ALL SELECT $cols FROM old) x"), '0',
	'and nothing else');
is($sql->("SELECT relkind FROM pg_class WHERE oid = 'livetrack.pings'::regclass"), 'v', 'livetrack.pings is a view now');
is($sql->("SELECT count(*) FROM livetrack.pings_0_2"), '350', 'over the old table, renamed');
is($sql->("SELECT livetrack.trail(7002, now() - interval '1 hour') = "
		. "(SELECT ST_MakeLine(geog::geometry ORDER BY ts) FROM old WHERE driver_id = 7002 AND ts > now() - interval '1 hour')"),
	't', 'trail() reads the old history');
is($sql->("SELECT lat::numeric(10,7) || ' ' || lon::numeric(10,7) || ' ' || status FROM livetrack.driver_position(7003)"),
	'12.9030000 77.5100000 offline', 'the live state was rebuilt from the old history');

# New fixes join them.
my $now = now_ms();
is(tcp_send($lport, frame({}, record(driver_id => 7002, ts => $now, lat => 13, lon => 78))), 1, 'a new fix');
$sql->('SELECT livetrack.wait_flushed()');
is($sql->("SELECT count(*) FROM livetrack.hot WHERE driver_id = 7002"), '1', 'in the hot log');
is($sql->("SELECT ST_NPoints(livetrack.trail(7002, now() - interval '1 hour'))"), '101', 'trail() spans old and new');
like($sql->("EXPLAIN (COSTS OFF) SELECT * FROM livetrack.pings WHERE ts > now() - interval '1 hour'"),
	qr/Subplans Removed|pings_\d{8}/, 'the old partitions are pruned by ts as before');

# Retention drops whole old days as it did.
my $two_days_ago = $sql->("SELECT 'pings_' || to_char((now() AT TIME ZONE 'UTC')::date - 2, 'YYYYMMDD')");
$sql->('SELECT livetrack._maintain_history(24 * 60)');
is($sql->("SELECT to_regclass('livetrack.$two_days_ago') IS NULL"), 't', "retention dropped $two_days_ago");
is($sql->('SELECT count(*) FROM livetrack.pings WHERE driver_id = 7001'), '100', 'today\'s old fixes stay');

$node->stop;
done_testing();
