# Orders end to end (SPEC 3, 4): LISTEN pushes for status, position and near
# as fixes arrive over TCP, the events table as the record of every push,
# two concurrent assign_order() calls, and a restart in the middle of an order.
use strict;
use warnings;
use IPC::Run;
use JSON::PP;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my ($node, $port) = start_node('orders', "livetrack.notify_interval = '1s'", 'livetrack.near_radius = 300');

# Pickup P, dropoff Q 2.2 km north of it; driver 7001 starts 1.1 km south of
# P, 7002 farther away.
my ($plat, $plon, $qlat, $qlon) = (12.90, 77.50, 12.92, 77.50);
my $m_per_deg = 110_574;    # metres per degree of latitude here, near enough to place fixes
sub fix {
	my ($id, $lat, %r) = @_;
	return frame({}, record(driver_id => $id, ts => now_ms(), lat => $lat, lon => $plon, speed => 800, %r));
}
is(tcp_send($port, fix(7001, $plat - 1100 / $m_per_deg, status => 2), fix(7002, $plat - 1800 / $m_per_deg, status => 2)),
	2, 'two drivers');

# A notification service's session: everything pushed, decoded.
my $bg = $node->background_psql('postgres');
my @got;
sub listener_query {    # psql prints what arrived after each command's result
	my $out = $bg->query_safe(shift);
	while ($out =~ /^Asynchronous notification "([^"]+)" with payload "(.*)" received from server process with PID \d+\.$/mg) {
		push @got, { channel => $1, %{ decode_json($2) } };
	}
}
sub poll_pushes {
	my ($until, $timeout) = @_;
	my $deadline = time() + ($timeout // 10);
	while (1) {
		listener_query('SELECT 1');
		return 1 if $until->();
		return 0 if time() > $deadline;
		sleep 0.05;
	}
}
sub pushes {
	my ($channel, $type) = @_;
	return grep { $_->{channel} eq $channel && (!defined $type || $_->{type} eq $type) } @got;
}

listener_query('LISTEN livetrack_events');
my $o = $node->safe_psql('postgres', "SELECT livetrack.create_order($plat, $plon, $qlat, $qlon, '{\"ref\": \"T-1\"}')");
my $ch = "livetrack_order_$o";
listener_query("LISTEN $ch");
is($node->safe_psql('postgres', "SELECT livetrack.assign_order($o)"), '7001', 'the nearest driver is assigned');
ok(poll_pushes(sub { pushes($ch, 'status') && pushes('livetrack_events', 'status') }), 'status pushed on both channels');
my ($st) = pushes($ch, 'status');
is_deeply([ @$st{qw(order_id driver_id status target)} ], [ $o, 7001, 'assigned', 'pickup' ], 'status payload');
ok($st->{event_id} > 0 && $st->{ts} =~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'status payload has event_id and ts');
is($node->safe_psql('postgres', "SELECT type || ':' || (payload->>'status') FROM livetrack.events WHERE event_id = $st->{event_id}"),
	'status:assigned', 'the pushed event is a row of livetrack.events');

# Positions: every fix of an assigned order's driver may send one, at most
# one a second. The first goes at once.
my $t0 = time();
tcp_send($port, fix(7001, $plat - 900 / $m_per_deg));
ok(poll_pushes(sub { pushes($ch, 'position') >= 1 }), 'a position message');
my ($pos) = pushes($ch, 'position');
is_deeply([ @$pos{qw(order_id driver_id status target)} ], [ $o, 7001, 'assigned', 'pickup' ], 'position payload');
my $lat900 = sprintf('%.7f', $plat - 900 / $m_per_deg);
my $pg_d = $node->safe_psql('postgres', "SELECT ST_Distance(ST_MakePoint($plon, $lat900)::geography, ST_MakePoint($plon, $plat)::geography)");
ok(abs($pos->{distance_m} - $pg_d) < 0.1, "position distance $pos->{distance_m} m is PostGIS's $pg_d m");
ok(abs($pos->{eta_s} - $pos->{distance_m} / 8) < 0.1, 'ETA at the reported 8 m/s');
ok(!pushes('livetrack_events', 'position'), 'positions are not on livetrack_events');
ok(!defined $pos->{event_id}, 'positions are not events');

# A second fix well within the second sends none; one after it does.
tcp_send($port, fix(7001, $plat - 800 / $m_per_deg));
my $soon = time() - $t0 < 0.8;
poll_pushes(sub { 0 }, 0.2);
SKIP: {
	skip 'the machine was too slow to send a fix within the interval', 1 unless $soon;
	is(scalar(pushes($ch, 'position')), 1, 'no second position within notify_interval');
}
sleep 1.05;
tcp_send($port, fix(7001, $plat - 700 / $m_per_deg));
ok(poll_pushes(sub { pushes($ch, 'position') >= 2 }), 'the next position after the interval');

# Near: once, by the first fix within 300 m of the pickup.
tcp_send($port, fix(7001, $plat - 350 / $m_per_deg));
poll_pushes(sub { 0 }, 0.3);
ok(!pushes($ch, 'near'), 'no near message at 350 m');
tcp_send($port, fix(7001, $plat - 250 / $m_per_deg));
ok(poll_pushes(sub { pushes($ch, 'near') && pushes('livetrack_events', 'near') }), 'near message on both channels');
tcp_send($port, fix(7001, $plat - 100 / $m_per_deg), fix(7001, $plat - 50 / $m_per_deg));
poll_pushes(sub { 0 }, 0.3);
my @near = pushes($ch, 'near');
is(scalar @near, 1, 'near only once per target');
ok(abs($near[0]{distance_m} - 250) < 2 && $near[0]{target} eq 'pickup' && $near[0]{status} eq 'assigned', 'near payload');
is($node->safe_psql('postgres', "SELECT type || ':' || (payload->>'target') FROM livetrack.events WHERE event_id = $near[0]{event_id}"),
	'near:pickup', 'the near event is recorded');

# Picked up: the target becomes the dropoff, with its own near message.
$node->safe_psql('postgres', "SELECT livetrack.pickup_order($o)");
ok(poll_pushes(sub { grep { $_->{status} eq 'picked_up' } pushes($ch, 'status') }), 'picked_up pushed');
sleep 1.05;
tcp_send($port, fix(7001, $plat + 10 / $m_per_deg));
ok(poll_pushes(sub { grep { $_->{target} eq 'dropoff' } pushes($ch, 'position') }), 'positions now measure to the dropoff');
tcp_send($port, fix(7001, $qlat - 200 / $m_per_deg));
ok(poll_pushes(sub { grep { $_->{target} eq 'dropoff' } pushes($ch, 'near') }), 'near the dropoff');

# Delivered: no more positions.
$node->safe_psql('postgres', "SELECT livetrack.deliver_order($o)");
ok(poll_pushes(sub { grep { $_->{status} eq 'delivered' } pushes($ch, 'status') }), 'delivered pushed');
my $positions = pushes($ch, 'position');
sleep 1.05;
tcp_send($port, fix(7001, $qlat));
poll_pushes(sub { 0 }, 0.5);
is(scalar(pushes($ch, 'position')), $positions, 'no positions after delivery');
is($node->safe_psql('postgres', 'SELECT status FROM livetrack.live WHERE driver_id = 7001'), 'available',
	'the driver is available again');

# The events table holds exactly what livetrack_events pushed, in order.
my @ev = map { $_->{event_id} } pushes('livetrack_events');
is($node->safe_psql('postgres', 'SELECT string_agg(event_id::text, \',\' ORDER BY event_id) FROM livetrack.events'),
	join(',', sort { $a <=> $b } @ev), 'every event was pushed, and every push is an event');
is_deeply(\@ev, [ sort { $a <=> $b } @ev ], 'pushed in event_id order');
is($node->safe_psql('postgres', "SELECT string_agg(type || ':' || (payload->>'status'), ' ' ORDER BY event_id) FROM livetrack.events WHERE order_id = $o"),
	'status:created status:assigned near:assigned status:picked_up near:picked_up status:delivered', 'the order\'s history');

# Two concurrent assign_order(NULL) calls never get the same driver: the
# second waits for the first, then takes the next nearest.
tcp_send($port, fix(7101, 13.1000, lon => 77.70, status => 2), fix(7102, 13.1050, lon => 77.70, status => 2));
my ($o1, $o2) = split /\n/, $node->safe_psql('postgres',
	'SELECT livetrack.create_order(13.1, 77.7, 13.2, 77.7) FROM generate_series(1, 2)');
my $s1 = $node->background_psql('postgres');
$s1->query_safe('BEGIN');
is($s1->query_safe("SELECT livetrack.assign_order($o1)"), '7101', 'first assignment (not committed yet)');
my ($out2, $err2) = ('', '');
my $h2 = IPC::Run::start([ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr('postgres'), '-c', "SELECT livetrack.assign_order($o2)" ],
	'>', \$out2, '2>', \$err2);
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%assign_order($o2)%'"),
	'the second assignment waits for the first');
$s1->query_safe('COMMIT');
$h2->finish;
is($out2 =~ s/\s+$//r, '7102', 'then takes the next driver') or diag $err2;
is($node->safe_psql('postgres', "SELECT string_agg(driver_id::text, ',' ORDER BY order_id) FROM livetrack.orders WHERE order_id IN ($o1, $o2)"),
	'7101,7102', 'both orders committed with different drivers');

# An open transaction that changed an order holds nobody else up, and event
# ids follow commit order: s1 changes o1 first but commits last.
my $s2 = $node->background_psql('postgres');
$s1->query_safe('BEGIN');
$s1->query_safe("SELECT livetrack.cancel_order($o1)");
$s2->query_safe('BEGIN');
$s2->query_safe("SELECT livetrack.pickup_order($o2)");
pass('a change of another order does not wait for the open transaction');
$s2->query_safe('COMMIT');
$s1->query_safe('COMMIT');
my ($picked, $cancelled) = map {
	$node->safe_psql('postgres', "SELECT event_id FROM livetrack.events WHERE payload->>'status' = '$_->[1]' AND order_id = $_->[0]")
} [ $o2, 'picked_up' ], [ $o1, 'cancelled' ];
ok($picked < $cancelled, "the event committed first has the smaller id ($picked < $cancelled)");
$s1->quit;
$s2->quit;

# A restart in the middle of an order: the driver is still busy, and the
# flushers pick the order up again.
my $o3 = $node->safe_psql('postgres', "SELECT livetrack.create_order($plat, $plon, $qlat, $qlon)");
$node->safe_psql('postgres', "SELECT livetrack.assign_order($o3, 7001)");
wait_flushed($node);
$bg->quit;
$node->restart;
wait_serving($node);
is($node->safe_psql('postgres', 'SELECT status FROM livetrack.live WHERE driver_id = 7001'), 'busy',
	'busy survives the restart');
$bg = $node->background_psql('postgres');
@got = ();
listener_query("LISTEN livetrack_order_$o3");
tcp_send($port, fix(7001, $plat - 150 / $m_per_deg));
ok(poll_pushes(sub { pushes("livetrack_order_$o3", 'position') }), 'positions after the restart');
ok(poll_pushes(sub { pushes("livetrack_order_$o3", 'near') }), 'near after the restart');
is(stat_value($node, 'flush_errors'), '0', 'no flush errors');
unlike(slurp_file($node->logfile), qr/order messages of this batch not sent/, 'no push failures logged');
$bg->quit;

done_testing();
