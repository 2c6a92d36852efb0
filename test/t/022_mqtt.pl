# MQTT ingest (SPEC 7) against a real mosquitto: devices publish with
# mosquitto_pub at QoS 1, the listener subscribes with a persistent session
# and acknowledges each message only after its records are committed, in
# the order they came. A spy between the listener and the broker shows the
# PUBACKs on the wire. Then the faults: a rejected payload is acknowledged
# (and counted), a broker that sends garbage is left (counted), a broker
# restart and a listener crash lose nothing the broker holds.
use strict;
use warnings;
use LivetrackTest;
use MqttTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $dir = $PostgreSQL::Test::Utils::tmp_check . '/mqtt';
mkdir $dir;
my $broker = start_mosquitto("$dir/broker");
my $spy = start_spy($broker->{port});

my ($node, $port) = start_node('mqtt', "livetrack.mqtt_broker = 'mqtt://127.0.0.1:$spy->{port}'",
	"livetrack.mqtt_client_id = 'livetrack-test'", 'restart_after_crash = on');
my $sql = sub { $node->safe_psql('postgres', shift) };
sub count_of { $sql->("SELECT count(*) FROM livetrack.pings WHERE driver_id = $_[0]") }
sub stat_of { stat_value($node, shift) }
ok($node->poll_query_until('postgres', "SELECT value = 1 FROM livetrack.stats WHERE metric = 'mqtt_connected'"),
	'the listener connects to the broker');
is($sql->("SHOW livetrack.mqtt_topics"), 'livetrack/+/+', 'and subscribes to livetrack/+/+ by default');

# A JSON fix, its driver from the topic.
my $t = now_ms();
mqtt_pub($broker, 'livetrack/blr/9001', message => qq({"lat":12.9716,"lon":77.5946,"ts":$t,"speed":8.3}));
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM livetrack.pings WHERE driver_id = 9001'),
	'a QoS 1 message reaches history');
ok(wait_for(sub { grep { /^puback/ } spy_log($spy) }, 10), 'and the broker gets a PUBACK');
is($sql->('SELECT round(speed_mps::numeric, 1) FROM livetrack.pings WHERE driver_id = 9001'), '8.3', 'with its fields');

# PUBACK only after commit: block the flusher, publish, see the fix live
# but no PUBACK on the wire; commit, see it.
my $blocker = $node->background_psql('postgres');
$blocker->query_safe('BEGIN; LOCK TABLE livetrack.pings IN ACCESS EXCLUSIVE MODE;');
my $acks_before = grep { /^puback/ } spy_log($spy);
mqtt_pub($broker, 'livetrack/blr/9002', message => '{"lat":12.98,"lon":77.6}');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM livetrack.driver_position(9002)'),
	'while the commit is blocked the fix is already live');
sleep 1;
is(scalar(grep { /^puback/ } spy_log($spy)), $acks_before, 'but no PUBACK has gone to the broker');
is(stat_of('mqtt_pending_acks'), 1, 'one message waits for its commit');
$blocker->query_safe('COMMIT');
ok(wait_for(sub { grep({ /^puback/ } spy_log($spy)) == $acks_before + 1 }, 10), 'the PUBACK follows the commit');
is(count_of(9002), 1, 'and the fix is in history');

# Order: many messages held behind one blocked commit are acknowledged in
# the order the broker sent them, once.
$blocker->query_safe('BEGIN; LOCK TABLE livetrack.pings IN ACCESS EXCLUSIVE MODE;');
my $n = 50;
my @lines = map { sprintf('{"lat":12.%04d,"lon":77.5,"ts":%d}', $_, $t + $_) } 1 .. $n;
my $mark = scalar(spy_log($spy));
mqtt_pub($broker, 'livetrack/blr/9010', lines => \@lines);
ok(wait_for(sub { stat_of('mqtt_pending_acks') == $n }, 10), "$n messages wait for one commit");
$blocker->query_safe('COMMIT');
ok($node->poll_query_until('postgres', "SELECT count(*) = $n FROM livetrack.pings WHERE driver_id = 9010"),
	'all of them reach history');
ok(wait_for(sub { grep({ /^puback/ } (spy_log($spy))[ $mark .. scalar(spy_log($spy)) - 1 ]) == $n }, 10),
	"$n PUBACKs");
my @seen = (spy_log($spy))[ $mark .. scalar(spy_log($spy)) - 1 ];
my @in = map { /^publish (\d+)/ ? $1 : () } @seen;
my @out = map { /^puback (\d+)/ ? $1 : () } @seen;
is_deeply(\@out, \@in, 'in the order of the PUBLISHes');
ok((grep { /^puback/ } @seen[ 0 .. $n - 1 ]) == 0, 'none before all the PUBLISHes were in (one blocked commit)');

# OwnTracks (its MQTT mode publishes exactly this).
my $tst = int(time()) - 5;
mqtt_pub($broker, 'livetrack/del/9003',
	message => qq({"_type":"location","lat":28.6139,"lon":77.209,"tst":$tst,"vel":36,"cog":270,"acc":8,"tid":"9c"}));
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM livetrack.pings WHERE driver_id = 9003'),
	'an OwnTracks location is a fix');
is($sql->("SELECT round(speed_mps::numeric, 1) || ' ' || heading_deg || ' ' || accuracy_m || ' ' || "
		. "extract(epoch FROM ts)::bigint FROM livetrack.pings WHERE driver_id = 9003"),
	"10.0 270 8 $tst", 'with speed (km/h to m/s), course, accuracy and its time');

# A binary message (SPEC 2.1) as the payload.
my $bin = "$dir/frame.bin";
open my $fh, '>:raw', $bin or die;
print $fh frame({}, record(driver_id => 9004, ts => now_ms(), lat => 1.5, lon => 2.5),
	record(driver_id => 9004, ts => now_ms() + 1, lat => 1.6, lon => 2.6));
close $fh;
mqtt_pub($broker, 'livetrack/blr/9004', file => $bin);
ok($node->poll_query_until('postgres', 'SELECT count(*) = 2 FROM livetrack.pings WHERE driver_id = 9004'),
	'a binary message with two records');

# Rejected payloads are counted by reason and acknowledged, and block nothing.
my $s0 = stats($node);
$mark = scalar(spy_log($spy));
mqtt_pub($broker, 'livetrack/blr/9005', message => '{"driver_id":9006,"lat":1,"lon":2}');
mqtt_pub($broker, 'livetrack/blr/9005', message => 'hello');
mqtt_pub($broker, 'livetrack/blr/9005', message => '{"lat":91,"lon":2}');
mqtt_pub($broker, 'livetrack/blr/9005', message => '{"lat":1,"lon":2}');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM livetrack.pings WHERE driver_id = 9005'),
	'the good message after three bad ones arrives');
my $s1 = stats($node);
is($s1->{rejected_auth} - $s0->{rejected_auth}, 1, 'a payload naming another driver: rejected (auth)');
is($s1->{rejected_malformed} - $s0->{rejected_malformed}, 1, 'junk: rejected (malformed)');
is($s1->{rejected_range} - $s0->{rejected_range}, 1, 'out of range: rejected (range)');
is(count_of(9006), 0, 'nothing stored for the driver the payload named');
ok(wait_for(sub { grep({ /^puback/ } (spy_log($spy))[ $mark .. scalar(spy_log($spy)) - 1 ]) == 4 }, 10),
	'all four acknowledged');
is($s1->{mqtt_messages} - $s0->{mqtt_messages}, 4, 'mqtt_messages counts them');

# A broker that sends garbage: the listener leaves it (counted) and keeps
# serving the other paths; pointed back at the real broker, it resumes.
my $fake = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 4, ReuseAddr => 1) or die;
my $listener_pid = worker_pid($node, 'listener');
$sql->("ALTER SYSTEM SET livetrack.mqtt_broker = 'mqtt://127.0.0.1:" . $fake->sockport . "'");
$sql->('SELECT pg_reload_conf()');
my $c = $fake->accept;
ok($c, 'after a reload the listener connects to the new broker');
sysread($c, my $connect, 4096);
is(ord($connect) >> 4, 1, 'with a CONNECT');
syswrite($c, "\x20\x03\x00\x00\x00" . "\x30\xff\xff\xff\xff\x7f");    # CONNACK, then a 5-byte length
ok($node->poll_query_until('postgres', "SELECT value >= 1 FROM livetrack.stats WHERE metric = 'mqtt_protocol_errors'"),
	'a malformed packet ends the connection, counted');
ok(closed_by_peer($c, 5), 'the listener closed it');
is(worker_pid($node, 'listener'), $listener_pid, 'the listener did not crash');
is(tcp_send($port, frame({}, record(driver_id => 9007, ts => now_ms()))), 1, 'and the device port still serves');
$sql->('ALTER SYSTEM RESET livetrack.mqtt_broker');
$sql->('SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', "SELECT value = 1 FROM livetrack.stats WHERE metric = 'mqtt_connected'"),
	'back on the real broker');

# Broker restart under load, with messages held behind a blocked commit:
# the broker keeps the session and what was not acknowledged, and sends it
# again to the reconnected listener. Nothing is lost (duplicates may be).
$blocker->query_safe('BEGIN; LOCK TABLE livetrack.pings IN ACCESS EXCLUSIVE MODE;');
@lines = map { sprintf('{"lat":13.%04d,"lon":77.5,"ts":%d}', $_, $t + $_) } 1 .. 100;
mqtt_pub($broker, 'livetrack/blr/9020', lines => \@lines);
ok(wait_for(sub { stat_of('mqtt_pending_acks') == 100 }, 10), '100 messages wait for their commit');
my $reconnects = stat_of('mqtt_reconnects');
stop_mosquitto($broker, 1);
mqtt_pub($broker, 'livetrack/blr/9020', lines => [ map { sprintf('{"lat":14.%04d,"lon":77.5,"ts":%d}', $_, $t + 1000 + $_) } 1 .. 100 ]);
ok($node->poll_query_until('postgres', "SELECT value > $reconnects FROM livetrack.stats WHERE metric = 'mqtt_reconnects'"),
	'after the broker restarts the listener reconnects (mqtt_reconnects)');
$blocker->query_safe('COMMIT');
ok($node->poll_query_until('postgres',
		"SELECT count(DISTINCT ts) = 200 FROM livetrack.pings WHERE driver_id = 9020"),
	'every message published before and after the restart is in history');
ok(wait_for(sub { stat_of('mqtt_pending_acks') == 0 }, 10), 'and acknowledged');

# The listener crashes (kill -9: the whole server restarts and shared
# memory, the ring included, is gone) with messages taken but not
# committed: the broker did not get their PUBACKs and sends them again.
$blocker->query_safe('BEGIN; LOCK TABLE livetrack.pings IN ACCESS EXCLUSIVE MODE;');
@lines = map { sprintf('{"lat":15.%04d,"lon":77.5,"ts":%d}', $_, $t + $_) } 1 .. 100;
mqtt_pub($broker, 'livetrack/blr/9030', lines => \@lines);
ok(wait_for(sub { stat_of('mqtt_pending_acks') == 100 }, 10), '100 messages taken, none committed');
kill 'KILL', worker_pid($node, 'listener');
eval { $blocker->quit };
wait_serving($node);
ok($node->poll_query_until('postgres', "SELECT count(DISTINCT ts) = 100 FROM livetrack.pings WHERE driver_id = 9030"),
	'after the crash and restart all 100 are in history');
# A flusher may still commit the ring as the server goes down (the crash
# ends the blocking session too), before any PUBACK left: then the broker's
# copies come on top. At least once, at most twice.
my $n9030 = count_of(9030);
ok($n9030 >= 100 && $n9030 <= 200, "$n9030 rows for 100 messages: at-least-once");

# Credentials come from a file only the server's user may read.
my $pw = "$dir/mqtt.pw";
open $fh, '>', $pw or die;
print $fh "secret\n";
close $fh;
chmod 0644, $pw;
$sql->("ALTER SYSTEM SET livetrack.mqtt_password_file = '$pw'");
$sql->("ALTER SYSTEM SET livetrack.mqtt_username = 'lt'");
$sql->('SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', "SELECT value = 0 FROM livetrack.stats WHERE metric = 'mqtt_connected'"),
	'a password file others can read is refused: no connection');
ok(wait_for(sub { slurp_file($node->logfile) =~ /mqtt_password_file .* must be a file owned by the server's user/ }, 10),
	'and the log says why');
unlike($sql->("SELECT string_agg(setting, ',') FROM pg_settings WHERE name LIKE 'livetrack.mqtt%'"), qr/secret/,
	'no setting shows the password');
chmod 0600, $pw;
$sql->('SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', "SELECT value = 1 FROM livetrack.stats WHERE metric = 'mqtt_connected'"),
	'with mode 0600 the listener connects (as user lt)');

stop_spy($spy);
stop_mosquitto($broker);
$node->stop;
done_testing();
