# kill -9 of each worker: the postmaster restarts everything, no record that
# was acknowledged over TCP is lost, the live state comes back, ingest resumes.
# And a clean stop of each flusher (SIGTERM) while it streams: it finishes the
# batches it committed before it goes, so its successor writes none twice and
# takes up its share of the ring where it stopped.
use strict;
use warnings;
use IO::Select;
use POSIX ();
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# Every message is a new driver: room for all of them in the live state.
my ($node, $port) = start_node('crash', 'restart_after_crash = on', 'livetrack.max_drivers = 1000000');
my $next_driver = 100000;

# Streams 10-record messages (one driver each, distinct ts) for $seconds,
# kills the worker halfway, and returns (first driver, acknowledged messages).
sub stream_and_kill {
	my ($worker, $signal, $seconds) = @_;
	my $sock = tcp_connect($port);
	my $sel = IO::Select->new($sock);
	my ($first, $sent, $acked, $buf, $killed) = ($next_driver + 1, 0, 0, '', 0);
	my $t0 = time();
	my $pid = worker_pid($node, $worker);
	while (time() - $t0 < $seconds) {
		if (!$killed && time() - $t0 > $seconds / 2) {
			ok(kill($signal, $pid), "kill -$signal the $worker (pid $pid)");
			$killed = 1;
		}
		my $id = ++$next_driver;
		my $ts = now_ms();
		last unless defined syswrite($sock, frame({}, map { record(driver_id => $id, ts => $ts + $_, lat => 1, lon => 1) } 0 .. 9));
		$sent++;
		while ($sel->can_read(0)) {
			my $got = sysread($sock, $buf, 65536, length $buf);
			last if !$got;
			while (length($buf) >= 12) {
				my (undef, undef, $status, $n, $accepted) = unpack('a2 C C N N', substr($buf, 0, 12, ''));
				die "ACK out of order" unless $n == $acked + 1 && $status == 0 && $accepted == 10;
				$acked = $n;
			}
		}
	}
	close $sock;
	return ($first, $acked, $sent);
}

for my $case ([ 'flusher 1', 'KILL' ], [ 'listener', 'KILL' ], [ 'flusher 1', 'TERM' ], [ 'flusher 2', 'TERM' ]) {
	my ($worker, $signal) = @$case;
	my ($first, $acked, $sent) = stream_and_kill($worker, $signal, 4);
	ok($acked > 0, "$worker: $acked of $sent messages were acknowledged before the crash");
	wait_serving($node);
	my $last = $first + $acked - 1;
	is($node->safe_psql('postgres',
		"SELECT count(*) FROM livetrack.pings WHERE driver_id BETWEEN $first AND $last"),
		$acked * 10, "$worker: every acknowledged record is in history");
	# Every record is distinct (driver, ts), and nobody resends here: a row
	# twice would be the server writing a batch again.
	is($node->safe_psql('postgres',
		"SELECT count(*) - count(DISTINCT (driver_id, ts)) FROM livetrack.pings WHERE driver_id > $first - 1"),
		'0', "$worker ($signal): no record is in history twice");
	is($node->safe_psql('postgres',
		"SELECT count(*) FROM livetrack.live WHERE driver_id BETWEEN $first AND $last"),
		$acked, "$worker: their drivers are live again after the rebuild");

	# Ingest resumes.
	my $sock = tcp_connect($port);
	my $id = ++$next_driver;
	print $sock frame({}, record(driver_id => $id, ts => now_ms(), lat => 2, lon => 2));
	is_deeply([ read_acks($sock, 1, 10) ], [ [ 0, 1, 1 ] ], "$worker: a new connection is acknowledged");
	is($node->safe_psql('postgres', "SELECT count(*) FROM livetrack.pings WHERE driver_id = $id"), '1',
		"$worker: and its record is in history");
	like($node->safe_psql('postgres', "SELECT backend_type FROM pg_stat_activity WHERE backend_type LIKE 'livetrack%' ORDER BY 1"),
		qr/^livetrack compactor\nlivetrack flusher 1\nlivetrack flusher 2\nlivetrack http\nlivetrack listener$/,
		"$worker: all five workers are back");
}

# The listener asks for a short scheduler slice (docs/architecture.md), and
# so does each listener the postmaster restarted above. Kernels before 6.12
# have no per-task slice to ask for.
SKIP: {
	my ($major, $minor) = (POSIX::uname())[2] =~ /^(\d+)\.(\d+)/;
	skip 'no per-task scheduler slice before Linux 6.12', 1 unless $major > 6 || ($major == 6 && $minor >= 12);
	my $pid = worker_pid($node, 'listener');
	open(my $fh, '<', "/proc/$pid/sched") or skip "cannot read /proc/$pid/sched", 1;
	my ($slice) = join('', <$fh>) =~ /^se\.slice\s*:\s*(\d+)/m;
	close $fh;
	is($slice, 100000, 'the restarted listener runs on a 100 us scheduler slice');
}
$node->stop;
done_testing();
