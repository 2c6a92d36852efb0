# TCP acknowledgements mean "committed": while the flusher cannot commit, a
# device gets no ACK (and no "ok N"), and gets it as soon as the commit happens.
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

$blocker->query_safe('COMMIT');
is_deeply([ read_acks($bin, 1, 10) ], [ [ 0, 1, 1 ] ], 'the ACK arrives once the record is committed');
is(read_line($json, 10), "ok 1\n", 'so does "ok 1"');
is($node->safe_psql('postgres', 'SELECT count(*) FROM livetrack.pings WHERE driver_id IN (7001, 7002)'), '2',
	'both records are in history');
$blocker->quit;
$node->stop;
done_testing();
