# The first fixes of a day that has no history partition yet reach both
# flushers at once, and both ask livetrack._ensure_partition() for it. One
# creates it, the other waits and finds it: no error, no worker restart, every
# record in history and acknowledged. A session holding the partitioned
# table's lock makes both flushers arrive at the same moment.
use strict;
use warnings;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;

# Fixes three days old are accepted (late fixes go to history only).
my ($node, $port) = start_node('partition', "livetrack.max_late = '4d'");

my $day = $node->safe_psql('postgres', "SELECT (now() AT TIME ZONE 'UTC')::date - 3");
my $name = 'pings_' . ($day =~ s/-//gr);
is($node->safe_psql('postgres', "SELECT to_regclass('livetrack.$name') IS NULL"), 't', "no partition $name yet");
my $noon_ms = 1000 * $node->safe_psql('postgres', "SELECT extract(epoch FROM '$day 12:00'::timestamp AT TIME ZONE 'UTC')::bigint");

my @drivers = (9001 .. 9020);
my %by_flusher;
$by_flusher{ flusher_of($_, 2) }++ for @drivers;
is(scalar(keys %by_flusher), 2, 'the drivers are split between both flushers');
my %pid = map { $_ => worker_pid($node, "flusher $_") } (1, 2);

my $blocker = $node->background_psql('postgres');
$blocker->query_safe('BEGIN; LOCK TABLE livetrack.pings IN SHARE UPDATE EXCLUSIVE MODE;');

my $sock = tcp_connect($port);
print $sock frame({}, map { record(driver_id => $_, ts => $noon_ms + $_, lat => 1, lon => 1) } @drivers);
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type LIKE 'livetrack flusher %' AND wait_event_type = 'Lock'"),
	'both flushers wait for the partitioned table');
$blocker->query_safe('COMMIT');

is_deeply([ read_acks($sock, 1, 30) ], [ [ 0, 1, scalar @drivers ] ], 'the message is acknowledged');
is($node->safe_psql('postgres', "SELECT count(*) FROM livetrack.$name WHERE driver_id BETWEEN 9001 AND 9020"),
	scalar @drivers, "all its records are in $name");
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_inherits WHERE inhparent = 'livetrack.pings'::regclass AND inhrelid = 'livetrack.$name'::regclass"),
	'1', 'one partition for the day');
is(worker_pid($node, "flusher $_"), $pid{$_}, "flusher $_ kept running (no error, no restart)") for (1, 2);
unlike(slurp_file($node->logfile), qr/already exists/, 'no "already exists" error in the server log');

$blocker->quit;
$node->stop;
done_testing();
