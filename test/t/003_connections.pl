# Many device connections: idle and half-sent ones never stall a sender, the
# connection limit refuses politely, and idle connections are closed.
use strict;
use warnings;
use IO::Socket::INET;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my ($node, $port) = start_node('connections', 'livetrack.max_connections = 220');

# 200 connections that say nothing, or stop in the middle of a frame.
my @idle;
for my $i (1 .. 200) {
	my $s = tcp_connect($port);
	print $s substr(frame({}, record(driver_id => 8000 + $i, ts => now_ms())), 0, $i % 3 == 0 ? 0 : 9 + $i % 30)
	  if $i % 3;
	push @idle, $s;
}
$node->poll_query_until('postgres', "SELECT value = 200 FROM livetrack.stats WHERE metric = 'tcp_connections'")
  or die 'connections not registered';

# Another device is served at once, over TCP and UDP.
my $active = tcp_connect($port);
my $t0 = time();
print $active frame({}, record(driver_id => 8500, ts => now_ms()));
is_deeply([ read_acks($active, 1, 10) ], [ [ 0, 1, 1 ] ], 'a sender is acknowledged next to 200 idle connections');
ok(time() - $t0 < 2, 'promptly (' . sprintf('%.0f ms', (time() - $t0) * 1000) . ')');
udp_send($port, frame({}, record(driver_id => 8501, ts => now_ms())));
wait_flushed($node);
is($node->safe_psql('postgres', 'SELECT count(*) FROM livetrack.live WHERE driver_id IN (8500, 8501)'), '2',
	'UDP is served too');
is($node->safe_psql('postgres', 'SELECT count(*) FROM livetrack.live WHERE driver_id BETWEEN 8001 AND 8200'), '0',
	'half-sent frames were not taken as records');

# Past livetrack.max_connections new connections are closed at once.
my $refused_before = stat_value($node, 'tcp_connections_refused');
# (A refused connection may fail already in connect(): the reset can beat it.)
my @extra = map { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp') } 1 .. 30;
$node->poll_query_until('postgres',
	"SELECT value - $refused_before >= 11 FROM livetrack.stats WHERE metric = 'tcp_connections_refused'");
is(stat_value($node, 'tcp_connections_refused') - $refused_before, 11, 'connections beyond the limit are counted (201 open + 19 fit under 220)');
# The refused ones are closed already; the 19 that fit stay open.
my $closed = grep { !$_ || closed_by_peer($_, 0.2) } @extra;
is($closed, 11, 'and closed, while the 19 that fit stay open');
close $_ for grep { defined } @extra;

# Idle connections are closed after livetrack.tcp_idle_timeout.
$node->safe_psql('postgres', "ALTER SYSTEM SET livetrack.tcp_idle_timeout = '2s'; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres', "SELECT value >= 200 FROM livetrack.stats WHERE metric = 'tcp_connections_closed_idle'"),
	'idle connections are closed after the idle timeout');
ok(closed_by_peer($idle[0], 5), 'an idle client sees its connection closed');
close $_ for @idle;
$node->stop;
done_testing();
