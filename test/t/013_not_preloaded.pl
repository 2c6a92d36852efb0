# Without shared_preload_libraries the library can still be loaded (CREATE
# EXTENSION does), and then every function that needs the shared state
# says how to fix it, with a SQLSTATE, instead of ending the session.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('not_preloaded');
$node->init;
$node->start;
my ($rc, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION livetrack CASCADE; SELECT 1');
is($rc, 0, 'CREATE EXTENSION works without the preload') or diag($err);
is($out, '1', 'and the session goes on');
for my $call ('SELECT livetrack.ingest(1, 1, 1)', 'SELECT * FROM livetrack.live',
	'SELECT * FROM livetrack.nearest_drivers(1, 1)', 'SELECT livetrack.wait_flushed()') {
	($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$call");
	like($err, qr/ERROR:  55000: livetrack is not loaded/, "$call: livetrack is not loaded (55000)");
	like($err, qr/HINT:  Add livetrack to shared_preload_libraries/, "$call: with the fix as a hint");
}
($rc, $out) = $node->psql('postgres', "LOAD 'livetrack'; SELECT current_setting('livetrack.assign_radius')");
is($out, '5000', 'settings a session may change exist');
$node->stop;
done_testing();
