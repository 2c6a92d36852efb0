# The HTTP edge's order streams (SPEC 6): a customer follows an order over
# Server-Sent Events through assign, near, pickup and delivery; the client is
# cut in the middle and resumes with Last-Event-ID, missing nothing; the
# worker is killed with kill -9 and the stream is resumed again; heartbeats.
use strict;
use warnings;
use JSON::PP;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my ($node, $port, $http) = start_node('stream', "livetrack.notify_interval = '1s'", 'livetrack.near_radius = 300',
	'restart_after_crash = on');
my $sql = sub { $node->safe_psql('postgres', shift) };

# Pickup P, dropoff Q 2.2 km north; the driver starts 1.1 km south of P.
my ($plat, $plon, $qlat, $qlon) = (12.90, 77.50, 12.92, 77.50);
my $m_per_deg = 110_574;
sub fix {
	my ($lat, %r) = @_;
	tcp_send($port, frame({}, record(driver_id => 7001, ts => now_ms(), lat => $lat, lon => $plon, speed => 800, %r)));
}
fix($plat - 1100 / $m_per_deg, status => 2);

my $o = $sql->("SELECT livetrack.create_order($plat, $plon, $qlat, $qlon)");
my $token = $sql->("SELECT livetrack.watch_token($o)");

# GET /v1/orders/{id}: the track_order row as JSON.
my $r = http_request($http, 'GET', "/v1/orders/$o", headers => { Authorization => "Bearer $token" });
is($r->{status}, 200, 'GET /v1/orders/{id}');
is_deeply(decode_json($r->{body}), decode_json($sql->("SELECT row_to_json(t) FROM livetrack.track_order($o) t")),
	'its body is the track_order row');

# The stream: a snapshot first.
my ($s, $status, $h) = sse_open($http, "/v1/orders/$o/stream?access_token=$token");
is($status, 200, 'the stream opens');
like($h->{'content-type'}, qr{^text/event-stream}, 'as text/event-stream');
my ($ev) = sse_events($s, 5, sub { @{ $_[0] } >= 1 });
is($ev->[0]{event}, 'snapshot', 'the first event is the snapshot');
is($ev->[0]{json}{status}, 'created', 'of the order as it is');

# Events carry id: event_id, and the very text of livetrack.events.payload.
my @seen;    # every event this customer received, over all connections
sub follow {
	my ($sock, $timeout, $until) = @_;
	my ($got, $closed) = sse_events($sock, $timeout, sub { $until->([ @seen, @{ $_[0] } ]) });
	push @seen, @$got;
	return $closed;
}
sub of_type { my ($t) = @_; grep { $_->{event} eq $t } @seen }
sub events_of_order {
	return map { [ split /\|/ ] } split /\n/,
	  $sql->("SELECT event_id, type, payload::text FROM livetrack.events WHERE order_id = $o ORDER BY event_id");
}

is($sql->("SELECT livetrack.assign_order($o)"), '7001', 'assigned');
follow($s, 10, sub { grep { $_->{event} eq 'status' } @{ $_[0] } });
my ($assigned) = of_type('status');
my ($row) = grep { $_->[0] == $assigned->{id} } events_of_order();
ok($row, "the status event's id ($assigned->{id}) is its event_id");
is($assigned->{data}, $row->[2], 'and its data is byte for byte the payload as livetrack.events stores it');
is($assigned->{json}{status}, 'assigned', 'status assigned');

# Positions come from the live state: with history blocked (no commit, so
# no NOTIFY either) they still arrive.
my $blocker = $node->background_psql('postgres');
$blocker->query_safe('BEGIN; LOCK TABLE livetrack.pings IN ACCESS EXCLUSIVE MODE;');
my $bin = tcp_connect($port);
my $lat900 = sprintf('%.7f', $plat - 900 / $m_per_deg);
print $bin frame({}, record(driver_id => 7001, ts => now_ms(), lat => $lat900, lon => $plon, speed => 800));
my $is900 = sub { $_[0]{event} eq 'position' && abs($_[0]{json}{lat} - $lat900) < 1e-7 };
follow($s, 10, sub { grep { $is900->($_) } @{ $_[0] } });
my ($pos) = grep { $is900->($_) } @seen;
ok($pos, 'a position arrives while its fix is not committed yet');
is_deeply([ @{ $pos->{json} }{qw(type order_id driver_id status target)} ], [ 'position', $o, 7001, 'assigned', 'pickup' ],
	'position message');
ok(!defined $pos->{id}, 'positions carry no id (they are not events)');
my $pg_d = $sql->("SELECT round(ST_Distance(ST_MakePoint($plon, $lat900)::geography, ST_MakePoint($plon, $plat)::geography)::numeric, 1)");
ok(abs($pos->{json}{distance_m} - $pg_d) <= 0.15, "distance $pos->{json}{distance_m} m is PostGIS's $pg_d m");
$blocker->query_safe('COMMIT');
is_deeply([ read_acks($bin, 1, 10) ], [ [ 0, 1, 1 ] ], 'the fix commits once history is free');
close $bin;

# At most one position per notify_interval.
for my $d (800, 700, 600, 500) {
	fix($plat - $d / $m_per_deg);
	sleep 0.25;
}
follow($s, 3, sub { 0 });
my @pos = of_type('position');
ok(@pos >= 2, scalar(@pos) . ' positions so far');

# Near the pickup: an event, with its id.
fix($plat - 250 / $m_per_deg);
follow($s, 10, sub { grep { $_->{event} eq 'near' } @{ $_[0] } });
my ($near) = of_type('near');
ok($near && $near->{id} > $assigned->{id}, 'near event');
is($near->{json}{target}, 'pickup', 'near the pickup');

# The customer's phone drops the connection; meanwhile the order is picked
# up and the driver moves.
close $s;
$sql->("SELECT livetrack.pickup_order($o)");
fix($plat + 100 / $m_per_deg);
my $last_id = (grep { defined $_->{id} } @seen)[-1]{id};
is($last_id, $near->{id}, 'the last event the customer saw was near');
($s, $status) = sse_open($http, "/v1/orders/$o/stream", Authorization => "Bearer $token", 'Last-Event-ID' => $last_id);
is($status, 200, 'reconnects with Last-Event-ID');
my @before = @seen;
follow($s, 10, sub { grep { $_->{event} eq 'status' && $_->{json}{status} eq 'picked_up' } @{ $_[0] } });
my @again = @seen[ @before .. $#seen ];
is($again[0]{event}, 'snapshot', 'a snapshot first');
is($again[0]{json}{status}, 'picked_up', 'of the order as it is now');
my ($picked) = grep { $_->{event} eq 'status' } @again;
ok($picked && $picked->{json}{status} eq 'picked_up', 'then the status event it missed');

# The worker is killed; the stream ends, and the client resumes.
my $pid = worker_pid($node, 'http');
ok($pid, "the HTTP worker runs (pid $pid)");
kill 'KILL', $pid;
my $closed = follow($s, 20, sub { 0 });
ok($closed, 'the stream ends when the worker dies');
wait_serving($node);
wait_http($node);
$last_id = (grep { defined $_->{id} } @seen)[-1]{id};
fix($qlat - 200 / $m_per_deg);    # near the dropoff, while nobody watches
($s, $status) = sse_open($http, "/v1/orders/$o/stream", Authorization => "Bearer $token", 'Last-Event-ID' => $last_id);
is($status, 200, 'the restarted worker serves the stream again');
follow($s, 10, sub { grep { $_->{event} eq 'near' && $_->{json}{target} eq 'dropoff' } @{ $_[0] } });
ok((grep { $_->{event} eq 'near' && $_->{json}{target} eq 'dropoff' } @seen), 'the near event of the dropoff, made while it was down');

# Delivered: the status, then end (with the last id), and the stream closes.
$sql->("SELECT livetrack.deliver_order($o)");
$closed = follow($s, 10, sub { grep { $_->{event} eq 'end' } @{ $_[0] } });
my ($end) = of_type('end');
ok($end, 'end after delivery');
$closed ||= follow($s, 5, sub { 0 });
ok($closed, 'and the stream closes');

# Nothing missed: every event of the order reached the customer exactly as
# stored, in order, across one disconnect and one crash.
my @ids = map { $_->{id} } grep { $_->{event} =~ /^(status|near)$/ } @seen;
my @stored = events_of_order();
my @want = map { $_->[0] } grep { $_->[0] > $assigned->{id} - 1 } @stored;
is_deeply(\@ids, \@want, 'every status and near event since the stream opened, once each, in order');
is($end->{id}, $stored[-1][0], "end carries the order's last event id");
my %payload = map { $_->[0] => $_->[2] } @stored;
is(scalar(grep { $_->{data} ne $payload{ $_->{id} } } grep { $_->{event} =~ /^(status|near)$/ } @seen), 0,
	'each one as stored');

# A finished order: a client that saw the end is told to stop (204); a new
# one gets the snapshot and end.
$r = http_request($http, 'GET', "/v1/orders/$o/stream",
	headers => { Authorization => "Bearer $token", 'Last-Event-ID' => $end->{id} });
is($r->{status}, 204, 'reconnecting after the end gets 204 (EventSource stops)');
($s, $status) = sse_open($http, "/v1/orders/$o/stream?access_token=$token");
my ($fresh, $fresh_closed) = sse_events($s, 5, sub { grep { $_->{event} eq 'end' } @{ $_[0] } });
is_deeply([ map { $_->{event} } @$fresh ], [ 'snapshot', 'end' ], 'a new client of a finished order: snapshot, end');

# Heartbeats: a quiet stream gets a comment at least every 15 s.
my $o2 = $sql->("SELECT livetrack.create_order($plat, $plon, $qlat, $qlon)");
my $t2 = $sql->("SELECT livetrack.watch_token($o2)");
($s) = sse_open($http, "/v1/orders/$o2/stream?access_token=$t2");
my $t0 = time();
my ($quiet) = sse_events($s, 16, sub { grep { $_->{event} eq ':' } @{ $_[0] } });
ok((grep { $_->{event} eq ':' } @$quiet), sprintf('a heartbeat comment after %.1f s', time() - $t0));
close $s;

my $st = stats($node);
ok($st->{http_stream_messages} > 0, "http_stream_messages = $st->{http_stream_messages}");
is($st->{http_closed_slow}, 0, 'no client was cut off as slow');
$blocker->quit;
done_testing();
