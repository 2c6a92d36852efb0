# WebSocket (SPEC 6, RFC 6455) and driver boxes: the handshake, many
# subscriptions on one connection carrying the same JSON as SSE and NOTIFY,
# resume with last_event_id, errors as messages, ping/pong and close, and
# the connection ended (and counted) for unmasked frames, oversized
# messages and bad UTF-8. Driver boxes over SSE and WebSocket: only the
# drivers inside the box and the token's area, at most one position per
# driver per notify_interval.
use strict;
use warnings;
use Encode qw(encode_utf8);
use JSON::PP;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my ($node, $port, $http) = start_node('websocket', "livetrack.notify_interval = '1s'");
my $sql = sub { $node->safe_psql('postgres', shift) };
sub fix {
	my ($id, $lat, $lon, %r) = @_;
	tcp_send($port, frame({}, record(driver_id => $id, lat => $lat, lon => $lon, speed => 800, %r)));
}

# The handshake, as RFC 6455 1.3 works it: key dGhlIHNhbXBsZSBub25jZQ==.
my ($ws, $status, $h) = ws_connect($http, '/v1/ws');
is($status, 101, '101 Switching Protocols');
is($h->{'sec-websocket-accept'}, 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=', "the RFC's Sec-WebSocket-Accept");
my (undef, $st) = ws_connect($http, '/v1/ws', 'Sec-WebSocket-Key' => undef);
is($st, 400, 'no key: 400');
(undef, $st) = ws_connect($http, '/v1/ws', 'Sec-WebSocket-Version' => 8);
is($st, 426, 'version 8: 426');
(undef, $st) = ws_connect($http, '/v1/ws', Upgrade => undef);
is($st, 426, 'not an upgrade: 426');

# Two orders on one connection.
fix(9101, 12.89, 77.50, status => 2);
fix(9102, 13.09, 77.70, status => 2);
my $o1 = $sql->('SELECT livetrack.create_order(12.90, 77.50, 12.92, 77.50)');
my $o2 = $sql->('SELECT livetrack.create_order(13.10, 77.70, 13.12, 77.70)');
my ($t1, $t2) = map { $sql->("SELECT livetrack.watch_token($_)") } $o1, $o2;
my @got;
sub recv_until {
	my ($timeout, $cond) = @_;
	my ($f, $closed) = ws_recv($ws, $timeout, sub { $cond->([ @got, @{ $_[0] } ]) });
	push @got, @$f;
	return $closed;
}
sub msgs { my ($type, $order) = @_; grep { $_->{json} && $_->{json}{type} eq $type && (!$order || ($_->{json}{order_id} // 0) == $order) } @got }
ws_send($ws, encode_json({ op => 'subscribe', order_id => $o1 + 0, token => $t1 }));
ws_send($ws, encode_json({ op => 'subscribe', order_id => $o2 + 0, token => $t2 }));
recv_until(10, sub { scalar(grep { $_->{json} && $_->{json}{type} eq 'snapshot' } @{ $_[0] }) == 2 });
is(scalar(msgs('snapshot')), 2, 'a snapshot for each subscription');
is((msgs('snapshot', $o1))[0]{json}{order}{status}, 'created', "with the order's track_order row");
$sql->("SELECT livetrack.assign_order($o1, 9101)");
$sql->("SELECT livetrack.assign_order($o2, 9102)");
recv_until(10, sub { 2 == grep { $_->{json} && $_->{json}{type} eq 'status' } @{ $_[0] } });
my ($s1) = msgs('status', $o1);
my ($s2) = msgs('status', $o2);
ok($s1 && $s2, 'status events of both orders on the one connection');
is($s1->{payload}, $sql->("SELECT payload::text FROM livetrack.events WHERE event_id = $s1->{json}{event_id}"),
	'the same text as livetrack.events.payload (and NOTIFY, and SSE)');
fix(9101, 12.895, 77.50);
recv_until(10, sub { grep { $_->{json} && $_->{json}{type} eq 'position' && $_->{json}{order_id} == $o1 } @{ $_[0] } });
ok(scalar(msgs('position', $o1)), 'positions');

# Errors are messages, not silence.
@got = ();
ws_send($ws, 'not json');
ws_send($ws, encode_json({ op => 'subscribe', order_id => $o1 + 0, token => 'forged.token.here' }));
ws_send($ws, encode_json({ op => 'subscribe', order_id => $o2 + 0, token => $t1 }));
ws_send($ws, encode_json({ op => 'dance' }));
ws_send($ws, encode_json({ op => 'subscribe', order_id => 999999, token => $sql->('SELECT livetrack.dispatch_token()') }));
recv_until(10, sub { 5 == grep { $_->{json} && $_->{json}{type} eq 'error' } @{ $_[0] } });
is_deeply([ map { $_->{json}{status} } msgs('error') ], [ 400, 401, 403, 400, 404 ],
	'bad JSON 400, a forged token 401, another order 403, an unknown op 400, an unknown order 404');

# Resume: a new connection with last_event_id gets what it missed.
my $last = $s1->{json}{event_id};
$sql->("SELECT livetrack.pickup_order($o1)");
close $ws;
($ws) = ws_connect($http, "/v1/ws?access_token=$t1");
@got = ();
ws_send($ws, encode_json({ op => 'subscribe', order_id => $o1 + 0, last_event_id => $last + 0 }));
recv_until(10, sub { grep { $_->{json} && $_->{json}{type} eq 'status' } @{ $_[0] } });
is_deeply([ (map { $_->{json}{type} } grep { $_->{json} } @got)[0 .. 1] ], [ 'snapshot', 'status' ],
	'resumed (token from the URL): the snapshot, then the missed event');
is((msgs('status', $o1))[0]{json}{status}, 'picked_up', 'picked_up');
$sql->("SELECT livetrack.deliver_order($o1)");
recv_until(10, sub { grep { $_->{json} && $_->{json}{type} eq 'end' } @{ $_[0] } });
is((msgs('end', $o1))[0]{json}{status}, 'delivered', 'end, and the connection stays open for others');

# Ping and close.
syswrite($ws, ws_frame(9, 'hello'));
my ($f) = ws_recv($ws, 5, sub { grep { $_->{opcode} == 10 } @{ $_[0] } });
is((grep { $_->{opcode} == 10 } @$f)[0]{payload}, 'hello', 'a ping gets its pong');
syswrite($ws, ws_frame(8, pack('n', 1000) . 'bye'));
my $closed;
($f, $closed) = ws_recv($ws, 5, sub { grep { $_->{opcode} == 8 } @{ $_[0] } });
is((grep { $_->{opcode} == 8 } @$f)[0]{code}, 1000, 'a close is answered with a close');
ok(closed_by_peer($ws, 5), 'and the connection closes');

# Protocol errors end the connection with the RFC's code, and are counted.
my $errors0 = stat_value($node, 'http_ws_protocol_errors');
for my $case ([ 'an unmasked frame', ws_frame(1, '{"op":"x"}', mask => 0), 1002 ],
              [ 'a message over 16 KB', ws_frame(1, 'x' x 20000), 1009 ],
              [ 'bad UTF-8', ws_frame(1, "\xff\xfe\xfd"), 1007 ],
              [ 'a reserved opcode', ws_frame(3, 'x'), 1002 ]) {
	my ($name, $bytes, $code) = @$case;
	my ($w) = ws_connect($http, '/v1/ws');
	syswrite($w, $bytes);
	my ($fr, $cl) = ws_recv($w, 5, sub { grep { $_->{opcode} == 8 } @{ $_[0] } });
	is((grep { $_->{opcode} == 8 } @$fr)[0]{code}, $code, "$name: close $code");
	ok(closed_by_peer($w, 5), "$name: closed");
}
is(stat_value($node, 'http_ws_protocol_errors') - $errors0, 4, 'each counted in http_ws_protocol_errors');

# Driver boxes. Drivers in a 2 x 2 grid; a box around two of them.
my @in = (9201, 9202);
my @out = (9203, 9204);
fix(9201, 12.951, 77.551, status => 2);
fix(9202, 12.952, 77.552, status => 3);
fix(9203, 12.999, 77.551, status => 2);    # north of the box
fix(9204, 12.951, 77.599, status => 2);    # east of it
my $dispatch = $sql->('SELECT livetrack.dispatch_token()');
my ($sse) = sse_open($http, "/v1/drivers/stream?bbox=77.54,12.94,77.56,12.96&access_token=$dispatch");
my ($ev) = sse_events($sse, 5, sub { @{ $_[0] } >= 1 });
is($ev->[0]{event}, 'drivers', 'SSE: a drivers event');
ok($ev->[0]{json}{snapshot}, 'the first is a snapshot of the box');
is_deeply([ sort map { $_->{driver_id} } @{ $ev->[0]{json}{drivers} } ], \@in, 'with the drivers inside the box, and only them');
my ($busy) = grep { $_->{driver_id} == 9202 } @{ $ev->[0]{json}{drivers} };
is($busy->{status}, 'busy', 'with their status');
# Moves: inside ones come, outside ones do not; at most one per driver per second.
my $t_moves = time();
for my $i (1 .. 10) {
	fix(9201, 12.951 + $i / 1e5, 77.551);
	fix(9202, 12.952 + $i / 1e5, 77.552);
	fix($_, 12.999, 77.551 + $i / 1e5) for @out;
	sleep 0.2;
}
($ev) = sse_events($sse, 2, sub { 0 });
my $window = time() - $t_moves;
my @moved = map { @{ $_->{json}{drivers} } } grep { $_->{event} eq 'drivers' } @$ev;
ok(@moved >= 2, scalar(@moved) . ' positions in the updates');
is(scalar(grep { my $d = $_->{driver_id}; !grep { $_ == $d } @in } @moved), 0, 'none from outside the box');
# notify_interval is 1 s: ten fixes each, but about one position a second.
my %per;
$per{ $_->{driver_id} }++ for @moved;
ok((!grep { $_ > $window + 1 || $_ >= 10 } values %per),
	sprintf('at most one position per driver per notify_interval (%s in %.1f s)', join(',', map { "$_:$per{$_}" } sort keys %per), $window));
close $sse;

# A dispatch token for an area sees only the drivers inside the area.
my $area = $sql->("SELECT livetrack.dispatch_token(ST_MakeEnvelope(77.5505, 12.95, 77.5515, 12.96, 4326))");
($sse) = sse_open($http, "/v1/drivers/stream?bbox=77.54,12.94,77.56,12.96&access_token=$area");
($ev) = sse_events($sse, 5, sub { @{ $_[0] } >= 1 });
is_deeply([ map { $_->{driver_id} } @{ $ev->[0]{json}{drivers} } ], [9201], "an area token: only the drivers in its area");
close $sse;
is(http_request($http, 'GET', "/v1/drivers/stream?access_token=$dispatch")->{status}, 400, 'no bbox (and no area): 400');
is(http_request($http, 'GET', "/v1/drivers/stream?bbox=0,0,20,20&access_token=$dispatch")->{status}, 400, 'a box over 10 degrees: 400');
is(http_request($http, 'GET', "/v1/drivers/stream?bbox=77.54,12.94,77.56,12.96&access_token=$t2")->{status}, 403, 'a watch token: 403');

# The same box over WebSocket, beside an order.
($ws) = ws_connect($http, "/v1/ws?access_token=$dispatch");
@got = ();
ws_send($ws, encode_json({ op => 'subscribe_drivers', bbox => [ 77.54, 12.94, 77.56, 12.96 ] }));
recv_until(5, sub { grep { $_->{json} && $_->{json}{type} eq 'drivers' } @{ $_[0] } });
my ($sub) = msgs('subscribed');
my ($drv) = msgs('drivers');
ok($sub && $drv && $drv->{json}{sub} == $sub->{json}{sub}, 'WebSocket: subscribed, then drivers of that sub');
is_deeply([ sort map { $_->{driver_id} } @{ $drv->{json}{drivers} } ], \@in, 'the same drivers');
ws_send($ws, encode_json({ op => 'subscribe_drivers', bbox => [ 1, 2, 3 ] }));
recv_until(5, sub { grep { $_->{json} && $_->{json}{type} eq 'error' } @{ $_[0] } });
is((msgs('error'))[0]{json}{status}, 400, 'a bad bbox: an error message');
done_testing();
