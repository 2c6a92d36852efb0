# Fixes over HTTP (SPEC 6): POST /v1/pings with JSON lines, a JSON array and
# binary messages, answered only after commit, counted like the device port;
# what free phone apps send to /v1/osmand (Traccar Client's OsmAnd query,
# form and JSON, OwnTracks in HTTP mode) with the token in the URL or as the
# Basic password; loopback trust never applies through a proxy; and the
# 400, 401, 413 and 431 cases.
use strict;
use warnings;
use Digest::SHA qw(hmac_sha256);
use IO::Select;
use JSON::PP;
use LivetrackTest;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $port, $http) = start_node('http_ingest');
my $sql = sub { $node->safe_psql('postgres', shift) };
sub count_of { $sql->("SELECT count(*) FROM livetrack.pings WHERE driver_id = $_[0]") }
sub post {
	my ($path, $body, %h) = @_;
	my $r = http_request($http, 'POST', $path, headers => \%h, body => $body);
	$r->{json} = eval { decode_json($r->{body}) };
	return $r;
}

# JSON lines from loopback: answered after commit, so the rows are there
# the moment the answer is.
my $before = stats($node);
my $now = now_ms();
my $r = post('/v1/pings', qq({"driver_id":501,"lat":12.97,"lon":77.59,"ts":$now,"speed":8.3}\n)
	. qq({"driver_id":502,"latitude":12.98,"longitude":77.60,"status":"busy"}\n)
	. qq({"driver_id":503,"lat":95,"lon":77.6}\nnot json\n), 'Content-Type' => 'application/x-ndjson');
is($r->{status}, 200, 'POST /v1/pings: 200');
is_deeply($r->{json}, { accepted => 2, rejected => 2,
	errors => [ { index => 3, reason => 'range' }, { index => 4, reason => 'malformed' } ] }, 'counts and reasons');
is(count_of(501) + count_of(502), 2, 'both accepted fixes are committed when the answer comes');
is($sql->('SELECT round(speed_mps::numeric, 2) FROM livetrack.pings WHERE driver_id = 501'), '8.30', 'with their fields');
is($sql->('SELECT status FROM livetrack.live WHERE driver_id = 502'), 'busy', 'and live');
my $after = stats($node);
is($after->{received_messages} - $before->{received_messages}, 4, 'received_messages counts every line');
is($after->{accepted_records} - $before->{accepted_records}, 2, 'accepted_records');
is($after->{rejected_range} - $before->{rejected_range}, 1, 'rejected_range');
is($after->{rejected_malformed} - $before->{rejected_malformed}, 1, 'rejected_malformed');
is($after->{http_ingest_requests} - $before->{http_ingest_requests}, 1, 'http_ingest_requests');

# A JSON array, and binary messages.
$r = post('/v1/pings', '[{"driver_id":504,"lat":1,"lon":2},{"driver_id":505,"lat":1,"lon":2}]',
	'Content-Type' => 'application/json');
is($r->{json}{accepted}, 2, 'a JSON array');
my $bin = frame({}, record(driver_id => 506, lat => 1, lon => 2), record(driver_id => 507, lat => 1, lon => 2))
  . frame({}, record(driver_id => 508, lat => 1, lon => 2));
$r = post('/v1/pings', $bin, 'Content-Type' => 'application/octet-stream');
is_deeply($r->{json}, { accepted => 3, rejected => 0, errors => [] }, 'binary messages');
is(count_of(506) + count_of(507) + count_of(508), 3, 'committed');

# Answered only after commit: with history blocked, no answer; then one.
my $blocker = $node->background_psql('postgres');
$blocker->query_safe('BEGIN; LOCK TABLE livetrack.pings IN ACCESS EXCLUSIVE MODE;');
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $http, Proto => 'tcp') or die $!;
my $body = qq({"driver_id":509,"lat":1,"lon":2}\n);
syswrite($s, "POST /v1/pings HTTP/1.1\r\nHost: x\r\nContent-Length: " . length($body) . "\r\n\r\n$body");
ok(!IO::Select->new($s)->can_read(1.5), 'no answer while the commit is blocked');
is($sql->('SELECT count(*) FROM livetrack.live WHERE driver_id = 509'), '1', 'though the fix is live');
$blocker->query_safe('COMMIT');
ok(IO::Select->new($s)->can_read(10), 'the answer comes once it commits');
sysread($s, my $answer, 4096);
like($answer, qr/^HTTP\/1.1 200 .*"accepted":1/s, '200 with accepted 1');
close $s;

# Bad input: 400, 413, 431, pipelined junk; each counted.
$before = stats($node);
$r = post('/v1/pings', '[{"driver_id":1,', 'Content-Type' => 'application/json');
is($r->{status}, 400, 'a broken JSON array: 400');
like($r->{json}{error}, qr/not a valid JSON array/, 'with a reason');
$r = post('/v1/pings', '');
is($r->{status}, 400, 'an empty body: 400');
$r = post('/v1/pings', 'x' x (1024 * 1024 + 1));
is($r->{status}, 413, 'a body over 1 MB: 413');
$r = http_request($http, 'GET', '/healthz', headers => { 'X-Big' => 'a' x 9000 });
is($r->{status}, 431, 'headers over 8 KB: 431');
$r = http_request($http, 'GET', '/' . ('a' x 9000));
is($r->{status}, 414, 'a request line over 8 KB: 414');
$r = http_request($http, 'GET', '/v1/pings');
is($r->{status}, 405, 'a wrong method: 405');
$s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $http, Proto => 'tcp') or die $!;
syswrite($s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02 JUNK \xff\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
my $all = '';
while (IO::Select->new($s)->can_read(5)) { last unless sysread($s, $all, 4096, length $all); }
my @statuses = $all =~ m{^HTTP/1\.1 (\d+)}mg;
is_deeply(\@statuses, [ 200, 400 ], 'pipelined junk: the good request is answered, the junk gets 400, and nothing after');
ok(closed_by_peer($s, 2), 'and the connection is closed');
$after = stats($node);
is($after->{http_too_large} - $before->{http_too_large}, 1, 'http_too_large');
is($after->{http_headers_too_large} - $before->{http_headers_too_large}, 2, 'http_headers_too_large');
ok($after->{http_bad_requests} - $before->{http_bad_requests} >= 4, 'http_bad_requests');
is($after->{rejected_malformed} - $before->{rejected_malformed}, 2, 'the unusable bodies count as malformed messages');

# Behind a proxy a request is never from loopback: no unsigned fixes.
$r = post('/v1/pings', qq({"driver_id":510,"lat":1,"lon":2}\n), 'X-Forwarded-For' => '203.0.113.7');
is($r->{status}, 401, 'unsigned through a proxy (X-Forwarded-For): 401');
$r = post('/v1/pings', qq({"driver_id":510,"lat":1,"lon":2}\n), 'Forwarded' => 'for=203.0.113.7;proto=https');
is($r->{status}, 401, 'unsigned through a proxy (Forwarded): 401');
is(count_of(510), 0, 'nothing stored');
my $device = $sql->('SELECT livetrack.device_token(510)');
$r = post('/v1/pings', qq({"driver_id":510,"lat":1,"lon":2}\n{"driver_id":511,"lat":1,"lon":2}\n),
	'X-Forwarded-For' => '203.0.113.7', Authorization => "Bearer $device");
is_deeply([ $r->{status}, $r->{json}{accepted}, $r->{json}{errors}[0]{reason} ], [ 200, 1, 'auth' ],
	"a device token: its driver's fixes, not another's");
# Signed binary messages verify as on the device port, replay window included.
my ($key, $hex) = split /\|/, $sql->('SELECT key_id, encode(secret, \'hex\') FROM livetrack.create_key()');
my $m = frame({ flags => 1, key_id => $key, seq => 1 }, record(driver_id => 512, lat => 1, lon => 2));
$m = substr($m, 0, -16) . substr(hmac_sha256(substr($m, 0, -16), pack('H*', $hex)), 0, 16);
$r = post('/v1/pings', $m, 'Content-Type' => 'application/octet-stream', 'X-Forwarded-For' => '203.0.113.7');
is($r->{json}{accepted}, 1, 'a signed message through a proxy is accepted');
$r = post('/v1/pings', $m, 'Content-Type' => 'application/octet-stream', 'X-Forwarded-For' => '203.0.113.7');
is($r->{json}{errors}[0]{reason}, 'replay', 'and refused when replayed');

# Traccar Client, legacy Android: POST, the position in the query string,
# the token pasted into the server URL.
my $t601 = $sql->('SELECT livetrack.device_token(601)');
my $ts = int(time());
$r = post("/v1/osmand?id=601&timestamp=$ts&lat=12.9716&lon=77.5946&speed=10.0&bearing=90.0&altitude=920.0&accuracy=5.0&batt=87.0&access_token=$t601", '',
	'X-Forwarded-For' => '203.0.113.8');
is($r->{status}, 200, 'Traccar Client (OsmAnd query): 200');
is($r->{json}{accepted}, 1, 'accepted');
is($sql->('SELECT round(speed_mps::numeric, 2) || \' \' || heading_deg || \' \' || accuracy_m FROM livetrack.pings WHERE driver_id = 601'),
	'5.14 90 5', 'speed in knots became m/s; bearing, accuracy');
# Traccar Client 10: the same as a form; iOS legacy: a GET.
$r = post("/v1/osmand/?access_token=$t601", "id=601&lat=12.9717&lon=77.5947&timestamp=$ts&accuracy=4.0&altitude=0.0&speed=0.0&bearing=0.0&batt=87&charge=false",
	'Content-Type' => 'application/x-www-form-urlencoded', 'X-Forwarded-For' => '203.0.113.8');
is($r->{json}{accepted}, 1, 'Traccar Client 10 (form body)');
$r = http_request($http, 'GET', "/v1/osmand?id=601&timestamp=$ts&lat=12.971800&lon=77.594800&speed=0&bearing=0&altitude=0&accuracy=0&batt=0&access_token=$t601");
is($r->{status}, 200, 'Traccar Client iOS (GET)');
# Traccar Client 9: JSON.
my $iso = $sql->("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')");
$r = post("/v1/osmand?access_token=$t601",
	qq({"location":{"timestamp":"$iso","coords":{"latitude":12.9719,"longitude":77.5949,"accuracy":5,"speed":4.5,"heading":-1,"altitude":5},"is_moving":true,"odometer":0,"event":"","battery":{"level":0.8,"is_charging":false},"activity":{"type":"in_vehicle"},"extras":{},"_":"&id=601&lat=12.9719&lon=77.5949&timestamp=$iso&"},"device_id":"601"}),
	'Content-Type' => 'application/json', 'X-Forwarded-For' => '203.0.113.8');
is($r->{json}{accepted}, 1, 'Traccar Client 9 (JSON)');
is(count_of(601), 4, 'all four in history');
$r = post("/v1/osmand?id=602&lat=1&lon=2&access_token=$t601", '', 'X-Forwarded-For' => '203.0.113.8');
is($r->{json}{errors}[0]{reason}, 'auth', "a Traccar device id that is not the token's driver is refused");
$r = post("/v1/osmand?id=602&lat=1&lon=2", '', 'X-Forwarded-For' => '203.0.113.8');
is($r->{status}, 401, 'and without a token through a proxy: 401');
$r = post('/v1/osmand', "id=601&notificationToken=abc", 'Content-Type' => 'application/x-www-form-urlencoded');
is_deeply([ $r->{status}, $r->{json}{accepted}, $r->{json}{rejected} ], [ 200, 0, 0 ], 'a push-token request: 200, nothing stored');

# OwnTracks in HTTP mode: Basic credentials with the token as password,
# X-Limit-U/-D, the driver from the topic.
my $t603 = $sql->('SELECT livetrack.device_token(603)');
my %ot = (Authorization => 'Basic ' . encode_base64("courier:$t603", ''), 'X-Limit-U' => 'courier', 'X-Limit-D' => '603',
	'Content-Type' => 'application/json; charset=utf-8', 'User-Agent' => 'Owntracks-Android/gms/420412000',
	'X-Forwarded-For' => '203.0.113.9');
$r = post('/v1/osmand', qq({"_type":"location","acc":10,"alt":920,"batt":76,"bs":1,"conn":"m","created_at":$ts,"lat":12.9720,"lon":77.5950,"m":1,"tid":"03","tst":$ts,"vac":3,"vel":36,"cog":180,"topic":"owntracks/courier/603"}), %ot);
is($r->{status}, 200, 'OwnTracks location: 200');
is($r->{json}{accepted}, 1, 'accepted');
is($sql->('SELECT round(speed_mps::numeric, 1) || \' \' || heading_deg FROM livetrack.pings WHERE driver_id = 603'), '10.0 180',
	'vel km/h became m/s; cog');
$r = post('/v1/osmand', qq({"_type":"transition","wtst":$ts,"lat":12.9,"lon":77.5,"tst":$ts,"acc":10,"tid":"03","event":"enter","desc":"depot","t":"c"}), %ot);
is_deeply([ $r->{status}, $r->{json}{accepted} ], [ 200, 0 ], 'a transition is taken and stores nothing');
$r = post('/v1/osmand', '', %ot);
is($r->{status}, 200, 'an empty body (a cleared contact) too');

$blocker->quit;
done_testing();
