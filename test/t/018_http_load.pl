# The HTTP worker under many clients and bad ones (SPEC 6, issue 25 item 7):
# 1,000 concurrent stream clients get their positions while another client
# is answered promptly; past http_max_connections new clients get 503; a
# client that stops reading loses stale positions, never a status event, and
# holds up nobody; a request that never completes is cut off.
use strict;
use warnings;
use IO::Select;
use IO::Socket::INET;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Socket qw(PF_INET SOCK_STREAM SOL_SOCKET SO_RCVBUF IPPROTO_TCP pack_sockaddr_in inet_aton);
use Test::More;
use Time::HiRes qw(time sleep);

my $clients = 1000;
my $orders = 100;
my ($node, $port, $http) = start_node('http_load', 'livetrack.http_max_connections = 1010',
	"livetrack.notify_interval = '200ms'");
my $sql = sub { $node->safe_psql('postgres', shift) };

# 100 drivers, each assigned one order near it.
my @drivers = map { 9000 + $_ } 1 .. $orders;
tcp_send($port, map { frame({}, record(driver_id => $_, lat => 12.9 + $_ / 1e5, lon => 77.5, status => 2)) } @drivers);
$sql->('SELECT livetrack.assign_order(livetrack.create_order(12.9 + d / 1e5, 77.5, 13.0, 77.6), d) FROM unnest(ARRAY['
	  . join(',', @drivers) . ']::bigint[]) AS d');
my %token = map { split /\|/ } split /\n/, $sql->('SELECT order_id, livetrack.watch_token(order_id) FROM livetrack.orders');
my @order_ids = sort { $a <=> $b } keys %token;
is(scalar @order_ids, $orders, "$orders orders assigned");

# 1,000 stream clients, ten per order.
my (@socks, %buf, %order_of);
my $t0 = time();
for my $i (0 .. $clients - 1) {
	my $o = $order_ids[ $i % $orders ];
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $http, Proto => 'tcp') or die "connect $i: $!";
	$s->blocking(0);
	syswrite($s, "GET /v1/orders/$o/stream?access_token=$token{$o} HTTP/1.1\r\nHost: x\r\n\r\n");
	push @socks, $s;
	$order_of{"$s"} = $o;
	$buf{"$s"} = '';
}
my $sel = IO::Select->new(@socks);
sub pump {    # reads whatever arrived, for up to $t seconds or until $done->()
	my ($t, $done) = @_;
	my $deadline = time() + $t;
	while (time() < $deadline) {
		last if $done && $done->();
		for my $s ($sel->can_read(0.2)) {
			my $n = sysread($s, $buf{"$s"}, 65536, length $buf{"$s"});
			$sel->remove($s) if defined $n && $n == 0;
		}
	}
}
my $all_snapshots = sub { !grep { $buf{"$_"} !~ /event: snapshot/ } @socks };
pump(30, $all_snapshots);
ok($all_snapshots->(), sprintf('%d stream clients have their snapshot after %.1f s', $clients, time() - $t0));
is(stat_value($node, 'http_streams'), $clients, 'http_streams counts them');

# Another client is served promptly meanwhile, and so is HTTP ingest.
my $t1 = time();
my $r = http_request($http, 'GET', '/healthz');
my $healthz = time() - $t1;
is($r->{status}, 200, 'healthz answers');
ok($healthz < 1, sprintf('within %.0f ms', 1000 * $healthz));

# Positions for every client: the drivers move.
my @moves = map { frame({}, record(driver_id => $_, lat => 12.91 + $_ / 1e5, lon => 77.5)) } @drivers;
$_ = '' for values %buf;
tcp_send($port, @moves);
my $all_positions = sub { !grep { $buf{"$_"} !~ /event: position/ } @socks };
pump(15, $all_positions);
ok($all_positions->(), 'every one of them receives a position of its own order');
my $wrong = grep { my $o = $order_of{"$_"}; $buf{"$_"} =~ /"order_id": (\d+)/ && $1 != $o } @socks;
is($wrong, 0, 'and only of its own order');

# Past http_max_connections (1,010): 503.
my @extra = map { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $http, Proto => 'tcp') } 1 .. 20;
my $refused = 0;
for my $s (grep { defined } @extra) {
	my $got = '';
	sysread($s, $got, 4096) if IO::Select->new($s)->can_read(2);
	$refused++ if $got =~ m{^HTTP/1\.1 503};
}
ok($refused >= 5, "$refused of 20 more connections got 503");
ok(stat_value($node, 'http_connections_refused') >= $refused, 'counted as http_connections_refused');
close $_ for grep { defined } @extra;
close $_ for @socks;
$sel = IO::Select->new();

# A client that stops reading: it keeps every status event, loses stale
# positions, and a client of the same order that reads is not held up.
$sql->("ALTER SYSTEM SET livetrack.notify_interval = '0'");
$sql->('SELECT pg_reload_conf()');
my $o = $order_ids[0];
my $d = $drivers[0];
socket(my $slow, PF_INET, SOCK_STREAM, 0) or die $!;
setsockopt($slow, SOL_SOCKET, SO_RCVBUF, 2048);
connect($slow, pack_sockaddr_in($http, inet_aton('127.0.0.1'))) or die $!;
syswrite($slow, "GET /v1/orders/$o/stream?access_token=$token{$o} HTTP/1.1\r\nHost: x\r\n\r\n");
my ($fast) = sse_open($http, "/v1/orders/$o/stream?access_token=$token{$o}");
my $skipped0 = stat_value($node, 'http_positions_skipped');
my $udp = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'udp') or die $!;
my @fast_events;
my $t2 = time();
my $step = 0;
my $skipped = $skipped0;
# Until the server has had to skip positions for it (its socket buffers
# full: how long that takes depends on the kernel's buffer sizes).
while (time() - $t2 < 60 && $skipped <= $skipped0 + 20) {
	for (1 .. 20) {
		$step++;
		$udp->send(frame({}, record(driver_id => $d, lat => 12.91 + $step / 1e6, lon => 77.5)));
	}
	$sql->("SELECT livetrack.pickup_order($o)") if $step == 400;
	my ($ev) = sse_events($fast, 0.05, sub { 0 });
	push @fast_events, @$ev;
	$skipped = stat_value($node, 'http_positions_skipped') if $step % 200 == 0;
}
$sql->("SELECT livetrack.deliver_order($o)");
my ($ev) = sse_events($fast, 5, sub { grep { $_->{event} eq 'end' } @{ $_[0] } });
push @fast_events, @$ev;
my @fast_pos = grep { $_->{event} eq 'position' } @fast_events;
ok(@fast_pos > 50, scalar(@fast_pos) . ' positions reached the reading client meanwhile');
ok(stat_value($node, 'http_positions_skipped') > $skipped0 + 20,
	sprintf('stale positions were skipped for the one that did not read (after %.0f s)', time() - $t2));
# Now the slow one reads everything.
my $slow_all = '';
my $slow_sel = IO::Select->new($slow);
while ($slow_sel->can_read(5)) { last unless sysread($slow, $slow_all, 65536, length $slow_all); }
my @slow_status = $slow_all =~ /^data: .*"type": "status", .*"status": "(\w+)"/mg;
my @fast_status = map { $_->{json}{status} } grep { $_->{event} eq 'status' } @fast_events;
is_deeply(\@slow_status, [ 'picked_up', 'delivered' ], 'the slow client got every status event');
is_deeply(\@fast_status, \@slow_status, 'the same as the reading one');
my $slow_pos = () = $slow_all =~ /^event: position$/mg;
ok($slow_pos < @fast_pos, "and fewer positions ($slow_pos, against " . scalar(@fast_pos) . ')');
like($slow_all, qr/event: end/, 'and the end');

# A request that never completes is cut off (408) after 10 s.
my $loris = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $http, Proto => 'tcp') or die $!;
syswrite($loris, "GET /healthz HTTP/1.1\r\nX-Slow: ");
my $got = '';
sysread($loris, $got, 4096) if IO::Select->new($loris)->can_read(15);
like($got, qr{^HTTP/1\.1 408}, 'a request that does not arrive within 10 s: 408');
ok(closed_by_peer($loris, 5), 'and the connection closes');
ok(stat_value($node, 'http_closed_idle') >= 1, 'counted as http_closed_idle');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'livetrack http'"), '1',
	'the worker is still the one it was');
done_testing();
