# DROP EXTENSION closes the device port and forgets the live state; a new
# CREATE EXTENSION starts over, and its first records, acknowledged, are in
# its history (the flushers, idle across the drop, do not take them for the
# dropped extension's).
use strict;
use warnings;
use IO::Socket::INET;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $port) = start_node('drop_extension');

sub send_one {
	my ($id) = @_;
	my $s = tcp_connect($port);
	print $s frame({}, record(driver_id => $id, ts => now_ms(), lat => 3, lon => 4));
	my @acks = read_acks($s, 1, 10);
	close $s;
	return \@acks;
}
sub port_open {
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 2);
	return defined $s;
}

is_deeply(send_one(21001), [ [ 0, 1, 1 ] ], 'a record before the drop is acknowledged');
is($node->safe_psql('postgres', 'SELECT count(*) FROM livetrack.pings WHERE driver_id = 21001'), '1', 'and stored');

$node->safe_psql('postgres', 'DROP EXTENSION livetrack');
my $closed = 0;
for (1 .. 100) {
	if (!port_open()) { $closed = 1; last; }
	select(undef, undef, undef, 0.1);
}
ok($closed, 'the device port closes after DROP EXTENSION');

$node->safe_psql('postgres', 'CREATE EXTENSION livetrack');
wait_serving($node);
is_deeply(send_one(21002), [ [ 0, 1, 1 ] ], 'the first record after CREATE EXTENSION is acknowledged');
is($node->safe_psql('postgres', 'SELECT count(*) FROM livetrack.pings WHERE driver_id = 21002'), '1',
	'and it is in the new history');
is($node->safe_psql('postgres', 'SELECT string_agg(driver_id::text, \',\') FROM livetrack.live'), '21002',
	'the live state starts over: only the new driver');
unlike(slurp_file($node->logfile), qr/discarding [1-9]\d* records/, 'nothing accepted after the CREATE was discarded');

$node->stop;
done_testing();
