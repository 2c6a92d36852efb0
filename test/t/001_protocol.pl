# Wire protocol over real sockets: UDP and TCP binary, JSON lines, ACKs,
# every reject reason, garbage, late fixes.
use strict;
use warnings;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $port) = start_node('protocol');
my $t = now_ms();

sub live_row {
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT lat, lon, status, speed_mps, heading_deg, accuracy_m FROM livetrack.driver_position($id)");
}
sub history_count {
	my ($where) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM livetrack.pings WHERE $where");
}

# --- UDP binary ------------------------------------------------------------
udp_send($port, frame({}, record(driver_id => 1, ts => $t, lat => 12.9716, lon => 77.5946,
	speed => 830, heading => 9000, accuracy => 50, status => 3)));
udp_send($port, frame({}, map { record(driver_id => 100 + $_, ts => $t, lat => -33.5, lon => 151 + $_ / 100) } 1 .. 64));
wait_flushed($node);
is(live_row(1), '12.9716|77.5946|busy|8.3|90|5', 'UDP binary fix is live with its fields');
is($node->safe_psql('postgres', 'SELECT count(*) FROM livetrack.live WHERE driver_id BETWEEN 101 AND 164'),
	'64', 'a 64-record datagram lands whole');
is(history_count('driver_id = 1 OR driver_id BETWEEN 101 AND 164'), '65', 'and in history');
ok(stat_value($node, 'visible_latency_p99_us') > 0, 'receipt-to-visible latency is measured for UDP records');

# --- TCP binary with ACKs -----------------------------------------------------
my $tcp = tcp_connect($port);
print $tcp frame({}, map { record(driver_id => 200 + $_, ts => $t) } 1 .. 3);
print $tcp frame({}, record(driver_id => 210, ts => $t), record(driver_id => 211, ts => $t, lat => 91));
print $tcp frame({ reserved => 7 }, record(driver_id => 212, ts => $t));
my @acks = read_acks($tcp, 3, 10);
is_deeply(\@acks, [ [ 0, 1, 3 ], [ 1, 2, 1 ], [ 2, 3, 0 ] ],
	'ACKs in order: all accepted, some rejected, message rejected');
is(history_count('driver_id BETWEEN 201 AND 212'), '4', 'acknowledged records are in history');

# A frame that cannot be parsed: earlier messages are acknowledged, then the
# connection is closed without an ACK for it.
print $tcp frame({}, record(driver_id => 220, ts => $t));
print $tcp "GARBAGE" x 4;
@acks = read_acks($tcp, 2, 10);
is_deeply(\@acks, [ [ 0, 4, 1 ] ], 'the message before the bad frame is acknowledged, the bad frame is not');
ok(closed_by_peer($tcp, 5), 'the server closed the connection');
close $tcp;

# --- JSON lines ----------------------------------------------------------------
my $iso = do { my @g = gmtime(time() - 1); sprintf('%04d-%02d-%02dT%02d:%02d:%02d.250Z', $g[5] + 1900, $g[4] + 1, @g[3, 2, 1, 0]) };
udp_send($port,
	  json_line(driver_id => 300, latitude => 40.7128, longitude => -74.006, timestamp => $iso, status => 'busy')
	. json_line(driver_id => 301, lat => 51.5074, lon => -0.1278, ts => $t, speed => 8.3, heading => 90, accuracy => 5)
	. json_line(driver_id => 302, lat => 48.85, lon => 2.35));
$tcp = tcp_connect($port);
print $tcp json_line(driver_id => 303, lat => 35.68, lon => 139.69, ts => $t, extra => 'ignored')
  . "{not json\n" . "\r\n" . json_line(driver_id => 304, lat => 1.29, lon => 103.85);
is(read_line($tcp, 10), "ok 3\n", 'TCP JSON: ok N counts processed lines (bad ones too) after commit');
close $tcp;
wait_flushed($node);
is(live_row(300), '40.7128|-74.006|busy|||', 'JSON aliases latitude/longitude/timestamp');
is($node->safe_psql('postgres', "SELECT ts FROM livetrack.driver_position(300) WHERE ts = '$iso'"),
	$node->safe_psql('postgres', "SELECT '$iso'::timestamptz"), 'ISO-8601 timestamp kept to the millisecond');
is(live_row(301), '51.5074|-0.1278|available|8.3|90|5', 'JSON units: m/s, degrees, metres');
is($node->safe_psql('postgres', 'SELECT count(*) FROM livetrack.live WHERE driver_id IN (302, 303, 304)'),
	'3', 'JSON without ts, with unknown fields, after a bad line');

# --- every reject reason, counted and kept out ----------------------------------
my @cases = (
	[ 'rejected_malformed', 'garbage datagram', 1, 'hello world' ],
	[ 'rejected_malformed', 'truncated frame', 1, substr(frame({}, record(driver_id => 400, ts => $t)), 0, 40) ],
	[ 'rejected_malformed', 'frame with a trailing byte', 1, frame({}, record(driver_id => 400, ts => $t)) . 'x' ],
	[ 'rejected_malformed', 'count 0', 1, frame({ count => 0 }) ],
	[ 'rejected_malformed', 'count 65', 1, frame({ count => 65 }, map { record(driver_id => 400, ts => $t) } 1 .. 65) ],
	[ 'rejected_malformed', 'version 2', 1, frame({ version => 2 }, record(driver_id => 400, ts => $t)) ],
	[ 'rejected_malformed', 'flag bit 1', 1, frame({ flags => 2 }, record(driver_id => 400, ts => $t)) ],
	[ 'rejected_malformed', 'record reserved byte', 1, frame({}, record(driver_id => 400, ts => $t, reserved => 1)) ],
	[ 'rejected_malformed', 'bad JSON', 1, "{\"driver_id\": 400, \"lat\": \n" ],
	[ 'rejected_malformed', 'JSON without lon', 1, json_line(driver_id => 400, lat => 1) ],
	[ 'rejected_auth', 'signed message without keys', 2,
		frame({ flags => 1, key_id => 9, seq => 1 }, record(driver_id => 400, ts => $t), record(driver_id => 401, ts => $t)) ],
	[ 'rejected_range', 'lat beyond 90', 1, frame({}, record(driver_id => 400, ts => $t, lat_e7 => 900000001)) ],
	[ 'rejected_range', 'lon beyond 180', 1, frame({}, record(driver_id => 400, ts => $t, lon_e7 => -1800000001)) ],
	[ 'rejected_range', 'driver_id 0', 1, frame({}, record(driver_id => 0, ts => $t)) ],
	[ 'rejected_range', 'driver_id 2^63', 1, frame({}, record(driver_id => 9223372036854775808, ts => $t)) ],
	[ 'rejected_range', 'heading 36000', 1, frame({}, record(driver_id => 400, ts => $t, heading => 36000)) ],
	[ 'rejected_range', 'status 4', 1, frame({}, record(driver_id => 400, ts => $t, status => 4)) ],
	[ 'rejected_range', 'JSON unknown status', 1, json_line(driver_id => 400, lat => 1, lon => 1, status => 'flying') ],
	[ 'rejected_clock', 'ts 1 min ahead', 1, frame({}, record(driver_id => 400, ts => now_ms() + 60000)) ],
	[ 'rejected_clock', 'ts 11 min behind', 1, frame({}, record(driver_id => 400, ts => now_ms() - 660000)) ],
);
for my $c (@cases) {
	my ($metric, $what, $n, $bytes) = @$c;
	my $before = stats($node);
	udp_send($port, $bytes);
	wait_flushed($node);
	my $after = stats($node);
	is($after->{$metric} - $before->{$metric}, $n, "$what: $metric +$n");
	is($after->{accepted_records} - $before->{accepted_records}, 0, "$what: nothing accepted");
}
is(history_count('driver_id IN (0, 400, 401)'), '0', 'rejected records never reach history');

# A bad record does not spoil its message: the others are taken.
udp_send($port, frame({}, record(driver_id => 410, ts => $t), record(driver_id => 411, ts => $t, lat => 95),
	record(driver_id => 412, ts => $t)));
wait_flushed($node);
is($node->safe_psql('postgres', 'SELECT string_agg(driver_id::text, \',\' ORDER BY driver_id) FROM livetrack.live WHERE driver_id BETWEEN 410 AND 412'),
	'410,412', 'valid records of a partly bad message are accepted');

# --- late fixes -------------------------------------------------------------------
my $before = stats($node);
udp_send($port, frame({}, record(driver_id => 500, ts => $t, lat => 10, lon => 10)));
wait_flushed($node);
udp_send($port, frame({}, record(driver_id => 500, ts => $t - 5000, lat => 20, lon => 20)),
	frame({}, record(driver_id => 500, ts => $t, lat => 30, lon => 30)));
wait_flushed($node);
is(live_row(500), '10|10|available|||', 'late and equal-ts fixes do not move the live position');
is(history_count('driver_id = 500'), '3', 'but they are in history');
is(stats($node)->{late_records} - $before->{late_records}, 2, 'and counted as late');

# --- auth = off takes signed input (its tag unchecked: no keys exist yet) ------------
$node->safe_psql('postgres', "ALTER SYSTEM SET livetrack.auth = 'off'; SELECT pg_reload_conf()");
$node->poll_query_until('postgres', "SELECT current_setting('livetrack.auth') = 'off'");
sleep 1;    # the listener applies SIGHUP on its next wake-up
udp_send($port, frame({ flags => 1, key_id => 9, seq => 2 }, record(driver_id => 600, ts => now_ms())));
wait_flushed($node);
is($node->safe_psql('postgres', 'SELECT count(*) FROM livetrack.live WHERE driver_id = 600'), '1',
	'with livetrack.auth = off a signed message is accepted');

# --- auth = required: only signed messages, and with no keys yet that is none ------
$node->safe_psql('postgres', "ALTER SYSTEM SET livetrack.auth = 'required'; SELECT pg_reload_conf()");
$node->poll_query_until('postgres', "SELECT current_setting('livetrack.auth') = 'required'");
sleep 1;
$before = stats($node);
udp_send($port, frame({}, record(driver_id => 610, ts => now_ms())));
udp_send($port, frame({ flags => 1, key_id => 9, seq => 3 }, record(driver_id => 611, ts => now_ms())));
udp_send($port, json_line(driver_id => 612, lat => 1, lon => 2));
$node->poll_query_until('postgres', "SELECT value - $before->{rejected_auth} >= 3 FROM livetrack.stats WHERE metric = 'rejected_auth'");
wait_flushed($node);
is(stats($node)->{rejected_auth} - $before->{rejected_auth}, 3,
	'with livetrack.auth = required, unsigned, signed (no keys) and JSON input from loopback are refused');
is($node->safe_psql('postgres', 'SELECT count(*) FROM livetrack.live WHERE driver_id BETWEEN 610 AND 612'), '0',
	'and none of it reaches the live state');

$node->stop;
done_testing();
