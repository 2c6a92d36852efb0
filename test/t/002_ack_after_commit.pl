# TCP acknowledgements mean "committed": while the flusher cannot commit, a
# device gets no ACK (and no "ok N"), and gets it as soon as the commit happens.
# With two flushers, each writing its share of the drivers, one that is stuck
# does not stop the other, and holds back every ACK behind its records.
use strict;
use warnings;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $port) = start_node('ack');

# Hold a lock that the flusher's insert into the history partition needs.
my $blocker = $node->background_psql('postgres');
$blocker->query_safe('BEGIN; LOCK TABLE livetrack.pings IN ACCESS EXCLUSIVE MODE;');

my $bin = tcp_connect($port);
print $bin frame({}, record(driver_id => 7001, ts => now_ms()));
my $json = tcp_connect($port);
print $json json_line(driver_id => 7002, lat => 1, lon => 2);

is(scalar(read_acks($bin, 1, 2)), 0, 'no binary ACK while the commit is blocked');
ok(!defined read_line($json, 1), 'no "ok N" while the commit is blocked');
is($node->safe_psql('postgres', 'SELECT count(*) FROM livetrack.driver_position(7001)'), '1',
	'the fix is already live (live state does not wait for history)');
is($blocker->query_safe('SELECT count(*) FROM livetrack.pings WHERE driver_id IN (7001, 7002)'), '0',
	'and not yet in history');
is($node->safe_psql('postgres', "SELECT livetrack.wait_flushed('300 ms')"), 'f',
	'wait_flushed() gives up with false when its timeout passes first');

$blocker->query_safe('COMMIT');
is_deeply([ read_acks($bin, 1, 10) ], [ [ 0, 1, 1 ] ], 'the ACK arrives once the record is committed');
is(read_line($json, 10), "ok 1\n", 'so does "ok 1"');
is($node->safe_psql('postgres', 'SELECT count(*) FROM livetrack.pings WHERE driver_id IN (7001, 7002)'), '2',
	'both records are in history');
# Two flushers (the default): block only the one that writes driver $stuck, on
# its registry row (a status change updates livetrack.drivers).
my $stuck = 7101;
my $other = $stuck + 1;
$other++ while flusher_of($other, 2) == flusher_of($stuck, 2);
my $sock = tcp_connect($port);
print $sock frame({}, record(driver_id => $stuck, ts => now_ms() - 1000, lat => 1, lon => 1, status => 2));
is_deeply([ read_acks($sock, 1, 10) ], [ [ 0, 1, 1 ] ], "driver $stuck is registered");
$blocker->query_safe("BEGIN; SELECT 1 FROM livetrack.drivers WHERE driver_id = $stuck FOR UPDATE;");
print $sock frame({}, record(driver_id => $stuck, ts => now_ms(), lat => 1, lon => 1, status => 3));
print $sock frame({}, record(driver_id => $other, ts => now_ms(), lat => 1, lon => 1, status => 2));
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM livetrack.pings WHERE driver_id = $other"),
	"driver $other (the other flusher) reaches history while driver ${stuck}'s flusher waits");
is(scalar(read_acks($sock, 1, 1)), 0, 'but no ACK goes out: the first unACKed record is not committed');
is($node->safe_psql('postgres', "SELECT count(*) FROM livetrack.pings WHERE driver_id = $stuck"), '1',
	"driver ${stuck}'s second fix is not in history yet");
$blocker->query_safe('COMMIT');
is_deeply([ read_acks($sock, 2, 10) ], [ [ 0, 2, 1 ], [ 0, 3, 1 ] ], 'both ACKs come once it commits');
is($node->safe_psql('postgres', "SELECT status FROM livetrack.drivers WHERE driver_id = $stuck"), 'busy',
	'and the status change is stored');

$blocker->quit;
$node->stop;
done_testing();
