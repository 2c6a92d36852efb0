# Past one machine (issue 27, docs/scale-out.md): scripts/cluster runs a
# three-node nats-server cluster (JetStream, MQTT, 3 replicas) in front of
# two livetrack servers, one per region, with both regions' simulators
# publishing through different broker nodes; under that load a broker node
# is killed and one livetrack server is stopped in immediate mode and
# started again. Every fix a broker acknowledged must be in its region's
# history, no region may hold the other's drivers, and nearest_drivers()
# answers each region with its own.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = "$ENV{TESTDIR}/../..";
plan skip_all => 'nats-server is not installed (apt-get install nats-server; CI installs it)'
  unless grep { -x "$_/nats-server" } split /:/, "$ENV{PATH}:/usr/sbin:/usr/bin";

my $dir = $PostgreSQL::Test::Utils::tmp_check . '/cluster';
my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ "$root/scripts/cluster", '--no-build', '--seconds', '30', '--drivers', '2000', '--rate', '1000',
		'--dir', $dir, '--summary-json' ], '>', \$out, '2>', \$err);
note $err;
my ($line) = grep { /^\{/ } split /\n/, $out;
my $s = eval { decode_json($line // '') };
ok($s, 'scripts/cluster printed its figures') or diag $out;
ok($ok, 'and found nothing wrong');
for my $r (qw(blr del)) {
	ok($s->{$r}{acked} > 10000, "$r: the broker acknowledged $s->{$r}{acked} fixes");
	is($s->{$r}{missing}, 0, "$r: every acknowledged fix is in the region's history");
	is($s->{$r}{foreign}, 0, "$r: no driver of the other region");
	is($s->{$r}{nearest_own}, '10/10', "$r: nearest_drivers() answers with the region's own drivers");
}
ok($s->{blr}{reconnects} >= 1, 'blr: its server moved to another broker node when n1 was killed');
done_testing();
