# A clean stop loses nothing that was accepted: records still on the ring
# (shared memory, gone with the server) are committed on the way out, TCP
# devices get their ACKs before the connection closes, and flusher 1 saves
# the replay windows after the listener has stopped moving them. A lone
# SIGTERM to the listener (pg_terminate_backend) does the same, and the
# postmaster restarts it.
use strict;
use warnings;
use Digest::SHA qw(hmac_sha256);
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;

# Flushes wait 30 s for a batch to fill: what is sent stays on the ring.
my ($node, $port) = start_node('clean_stop', "livetrack.flush_interval = '30s'");
my $t = now_ms();

sub history {
	my ($lo, $hi) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM livetrack.pings WHERE driver_id BETWEEN $lo AND $hi");
}
sub accepted_reaches {
	my ($n) = @_;
	return $node->poll_query_until('postgres',
		"SELECT value >= $n FROM livetrack.stats WHERE metric = 'accepted_records'");
}

# 1,024 fixes over UDP, 3 messages over TCP, one signed message.
my ($key, $hex) = split /\|/, $node->safe_psql('postgres',
	"SELECT key_id, encode(secret, 'hex') FROM livetrack.create_key()");
my $base = stat_value($node, 'accepted_records');
for my $m (0 .. 15) {
	udp_send($port, frame({}, map { record(driver_id => 10001 + $m * 64 + $_, ts => $t, lat => 5, lon => 6) } 0 .. 63));
}
my $tcp = tcp_connect($port);
print $tcp frame({}, record(driver_id => 11501 + $_, ts => $t, lat => 5, lon => 6)) for 0 .. 2;
my $body = frame({ flags => 1, key_id => $key, seq => 5 }, record(driver_id => 12001, ts => $t, lat => 5, lon => 6));
$body = substr($body, 0, length($body) - 16);
my $signed = $body . substr(hmac_sha256($body, pack('H*', $hex)), 0, 16);
udp_send($port, $signed);
ok(accepted_reaches($base + 1024 + 3 + 1), 'all 1,028 records are accepted');
is(history(10001, 12001), '0', 'none is committed yet: they are on the ring');
is(scalar(read_acks($tcp, 1, 0.5)), 0, 'so the TCP device has no ACK yet');

# pg_ctl stop -m fast: SIGTERM to every worker at once.
$node->stop('fast');
is_deeply([ read_acks($tcp, 3, 10) ], [ [ 0, 1, 1 ], [ 0, 2, 1 ], [ 0, 3, 1 ] ],
	'the TCP device got its three ACKs before the server went');
ok(closed_by_peer($tcp, 5), 'then the connection closed');
like(slurp_file($node->logfile), qr/livetrack listener: stopped; 1028 records committed on the way out/,
	'the listener logs what it committed on the way out');

$node->start;
wait_serving($node);
is(history(10001, 12001), '1028', 'after the restart every accepted record is in history');
is($node->safe_psql('postgres', 'SELECT count(*) FROM livetrack.live WHERE driver_id BETWEEN 10001 AND 12001'),
	'1028', 'and live again');
is($node->safe_psql('postgres', "SELECT last_seq FROM livetrack.keys WHERE key_id = $key"), '5',
	"the key's window was saved at the stop, not up to 5 s before it");
udp_send($port, $signed);
ok($node->poll_query_until('postgres', "SELECT value = 1 FROM livetrack.stats WHERE metric = 'rejected_replay'"),
	'a replay of the signed message after the restart is refused');

# The listener alone: it commits the ring, ACKs, exits, and comes back.
$base = stat_value($node, 'accepted_records');
$tcp = tcp_connect($port);
print $tcp frame({}, record(driver_id => 13001, ts => now_ms(), lat => 5, lon => 6));
ok(accepted_reaches($base + 1), 'a TCP record is accepted');
my $pid = worker_pid($node, 'listener');
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't', 'pg_terminate_backend(listener)');
is_deeply([ read_acks($tcp, 1, 10) ], [ [ 0, 1, 1 ] ], 'its device gets the ACK before the listener goes');
is(history(13001, 13001), '1', 'the record is committed');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'livetrack listener' AND pid <> $pid"),
	'the postmaster starts a new listener');
wait_serving($node);
$tcp = tcp_connect($port);
print $tcp frame({}, record(driver_id => 13002, ts => now_ms(), lat => 5, lon => 6));
is($node->safe_psql('postgres', 'SELECT livetrack.wait_flushed()'), 't', 'wait_flushed');
is_deeply([ read_acks($tcp, 1, 10) ], [ [ 0, 1, 1 ] ], 'and it serves');

$node->stop;
done_testing();
