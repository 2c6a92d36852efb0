# After a server restart the live state is rebuilt from history before any
# new fix is applied: same drivers, positions, times and statuses, and fixes
# sent while it restarts are judged against the rebuilt state.
use strict;
use warnings;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;

# One flusher here (the other tests run the default two): the single-flusher
# configuration keeps working.
my ($node, $port) = start_node('restart', 'livetrack.flushers = 1');
my $t = now_ms();
my @statuses = (0, 1, 2, 3);

# 1,000 drivers over UDP with mixed statuses, two fixes each (the newer wins),
# plus a late fix and SQL ingest.
for my $round (0, 1) {
	for my $base (0 .. 15) {
		udp_send($port, frame({}, map {
			my $id = 1 + $base * 64 + $_;
			record(driver_id => $id, ts => $t - 10000 + $round * 5000, lat => 10 + $id / 1000 + $round,
				lon => 20 - $id / 1000, speed => $id, heading => $id * 7 % 36000, accuracy => $id % 100,
				status => $statuses[($id + $round) % 4])
		} 0 .. 63));
	}
}
udp_send($port, frame({}, record(driver_id => 5, ts => $t - 60000, lat => 0, lon => 0, status => 3)));
$node->safe_psql('postgres', "SELECT livetrack.ingest(5000, 1.5, 2.5, now() - interval '1 s', 3, 4, 5, 'busy')");
wait_flushed($node);

my $query = 'SELECT driver_id, lat, lon, ts, speed_mps, heading_deg, accuracy_m, status FROM livetrack.live ORDER BY driver_id';
my $before = $node->safe_psql('postgres', $query);
is(scalar(split /\n/, $before), 1025, '1,025 live drivers before the restart');

$node->restart;
wait_serving($node);
my $after = $node->safe_psql('postgres', $query);
is($after, $before, 'the live state is rebuilt exactly');
like(slurp_file($node->logfile), qr/live state rebuilt with 1025 drivers/, 'the rebuild is logged');

# The rebuilt state keeps enforcing "newer wins".
my $late_before = stat_value($node, 'late_records');
udp_send($port, frame({}, record(driver_id => 7, ts => $t - 20000, lat => 50, lon => 50)));
wait_flushed($node);
is(stat_value($node, 'late_records') - $late_before, 1, 'a fix older than the rebuilt one is late');

# Fixes that come in while the listener is still starting (ingest() right
# after the server accepts connections, usually before the rebuild is done)
# are applied after the rebuild: the newer one moves its driver, the older one
# does not undo history.
$node->restart;
$node->safe_psql('postgres', sprintf(
	"SELECT livetrack.ingest(8, 60, 60, to_timestamp(%.3f)), livetrack.ingest(9, 61, 61, to_timestamp(%.3f))",
	($t - 1000) / 1000, ($t - 8000) / 1000));
wait_flushed($node);
is($node->safe_psql('postgres', 'SELECT lat, lon FROM livetrack.live WHERE driver_id = 8'), '60|60',
	'a fix newer than history, sent during the restart, wins');
is($node->safe_psql('postgres', 'SELECT lat, lon FROM livetrack.live WHERE driver_id = 9'), '11.009|19.991',
	'one older than history, sent during the restart, does not move the driver');
$node->stop;
done_testing();
