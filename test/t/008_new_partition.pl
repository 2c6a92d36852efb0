# The first fixes of a minute that has no hot partition yet reach both
# flushers at once, and both ask livetrack._hot_partition() for it. One
# creates it, the other waits and finds it: no error, no worker restart, every
# record in history and acknowledged. A session holding the hot log's lock
# makes both flushers arrive at the same moment.
use strict;
use warnings;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;

# Fixes three days old are accepted (late fixes go to history only), and
# their minute is not closed yet (so it gets a partition of its own rather
# than going to livetrack.hot_late).
my ($node, $port) = start_node('partition', "livetrack.max_late = '4d'", "livetrack.compaction_delay = '4d'");

my $minute = $node->safe_psql('postgres', "SELECT date_trunc('minute', now()) - interval '3 days'");
my $name = $node->safe_psql('postgres', "SELECT livetrack._hot_name('$minute')");
is($node->safe_psql('postgres', "SELECT to_regclass('livetrack.$name') IS NULL"), 't', "no partition $name yet");
my $start_ms = 1000 * $node->safe_psql('postgres', "SELECT extract(epoch FROM '$minute'::timestamptz)::bigint");

my @drivers = (9001 .. 9020);
my %by_flusher;
$by_flusher{ flusher_of($_, 2) }++ for @drivers;
is(scalar(keys %by_flusher), 2, 'the drivers are split between both flushers');
my %pid = map { $_ => worker_pid($node, "flusher $_") } (1, 2);

my $blocker = $node->background_psql('postgres');
$blocker->query_safe('BEGIN; LOCK TABLE ONLY livetrack.hot IN SHARE UPDATE EXCLUSIVE MODE;');

my $sock = tcp_connect($port);
print $sock frame({}, map { record(driver_id => $_, ts => $start_ms + 30000 + $_, lat => 1, lon => 1) } @drivers);
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type LIKE 'livetrack flusher %' AND wait_event_type = 'Lock'"),
	'both flushers wait for the hot log');
$blocker->query_safe('COMMIT');

is_deeply([ read_acks($sock, 1, 30) ], [ [ 0, 1, scalar @drivers ] ], 'the message is acknowledged');
is($node->safe_psql('postgres', "SELECT count(*) FROM livetrack.$name WHERE driver_id BETWEEN 9001 AND 9020"),
	scalar @drivers, "all its records are in $name");
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_inherits WHERE inhparent = 'livetrack.hot'::regclass AND inhrelid = 'livetrack.$name'::regclass"),
	'1', 'one partition for the minute');
is(worker_pid($node, "flusher $_"), $pid{$_}, "flusher $_ kept running (no error, no restart)") for (1, 2);
unlike(slurp_file($node->logfile), qr/already exists/, 'no "already exists" error in the server log');

$blocker->quit;
$node->stop;
done_testing();
