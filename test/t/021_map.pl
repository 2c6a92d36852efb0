# The live map (GET /map) in a real browser: Debian's headless chromium,
# driven by test/browser/map_test.mjs (playwright-core, installed by
# scripts/lib.sh), loads the page while the simulator runs. The drivers in
# view are drawn and move (their positions read twice, 3 s apart), one
# order's courier, pickup, dropoff, ETA and events show, the page asks
# nothing of any other server, and screenshots are saved.
use strict;
use warnings;
use IPC::Run;
use JSON::PP;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $chromium = $ENV{CHROMIUM} // '/usr/bin/chromium';
plan skip_all => "no $chromium (scripts/lib.sh installs it)" unless -x $chromium;
plan skip_all => 'no node or test/browser/node_modules (scripts/lib.sh installs them)'
  unless system('node --version >/dev/null 2>&1') == 0 && -d 'test/browser/node_modules/playwright-core';

my ($node, $port, $http) = start_node('map', "livetrack.notify_interval = '1s'");
my $sql = sub { $node->safe_psql('postgres', shift) };

# 2,000 drivers in Bengaluru, one fix a second each.
my $sim = IPC::Run::start([ "$ENV{LT_BUILD}/livetrack-sim", '--port', $port, '--drivers', 2000, '--interval', 1,
	'--duration', 90, '--report', 0 ], '>', \my $sim_out, '2>', \my $sim_err);
ok($node->poll_query_until('postgres', "SELECT value >= 1900 FROM livetrack.stats WHERE metric = 'live_drivers'"),
	'the fleet is live');

my $o = $sql->('SELECT livetrack.create_order(12.9716, 77.5946, 12.9352, 77.6245)');
my $driver = $sql->("SELECT livetrack.assign_order($o)");
ok($driver > 0, "order $o assigned to driver $driver");
my $dispatch = $sql->('SELECT livetrack.dispatch_token()');
my $watch = $sql->("SELECT livetrack.watch_token($o)");
my $base = "http://127.0.0.1:$http/map";
my $shots = $ENV{TESTDIR} // '.';

my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ 'node', 'test/browser/map_test.mjs', "$base?access_token=$dispatch&bbox=77.55,12.93,77.65,13.01",
	"$base?access_token=$watch", $shots ], '>', \$out, '2>', \$err, IPC::Run::timeout(120));
ok($ok, 'chromium loaded both pages') or diag $err;
my $r = eval { decode_json($out) } // {};

my $d = $r->{dispatch} // {};
ok(($d->{drivers} // 0) >= 100, "the dispatch map draws the drivers in view ($d->{drivers})");
is($d->{canvas}, 1, 'on a canvas');
ok(($d->{seen_twice} // 0) > 0 && $d->{moved} >= $d->{seen_twice} / 2,
	"and they move: $d->{moved} of $d->{seen_twice} moved between two looks 3 s apart");
is_deeply($d->{errors}, [], 'no errors on the page');

my $w = $r->{watch} // {};
ok($w->{courier} && abs($w->{courier}{lat} - 12.97) < 0.2, "the watch map shows the courier ($w->{courier}{lat}, $w->{courier}{lon})");
is($w->{status}, 'assigned', "and the order's status");
is_deeply($w->{events}, [ 'status:created', 'status:assigned' ], 'and its events so far');
like($w->{summary} // '', qr/Heading to the pickup\n\d+ m away\nETA \d+ min/, 'distance and ETA');

is_deeply($r->{external}, [], 'the pages asked nothing of any other server (' . scalar(@{ $r->{requests} // [] }) . ' requests)');
ok((grep { m{/map/leaflet\.js$} } @{ $r->{requests} // [] }), 'Leaflet came from livetrack');
is_deeply($r->{console_errors}, [], 'no errors in the console');
ok(-s "$shots/map-dispatch.png" && -s "$shots/map-watch.png", "screenshots in $shots");

$sim->kill_kill;
done_testing();
