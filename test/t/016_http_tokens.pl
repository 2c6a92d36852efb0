# Tokens of the HTTP edge (SPEC 6): minted in SQL by roles granted the
# functions, carried three ways, and every failure answered 401 or 403:
# missing, malformed, forged, expired, alg none, RS256, another scope,
# another order or driver, and any token issued before rotate_token_secret()
# (which also ends the streams opened with one).
use strict;
use warnings;
use JSON::PP;
use LivetrackTest;
use MIME::Base64 qw(encode_base64 encode_base64url decode_base64url);
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $port, $http) = start_node('tokens');
my $sql = sub { $node->safe_psql('postgres', shift) };

my $o = $sql->('SELECT livetrack.create_order(12.90, 77.50, 12.92, 77.50)');
my $o2 = $sql->('SELECT livetrack.create_order(12.90, 77.50, 12.92, 77.50)');
my $watch = $sql->("SELECT livetrack.watch_token($o)");
my $device = $sql->('SELECT livetrack.device_token(7)');
my $dispatch = $sql->('SELECT livetrack.dispatch_token()');

sub get {
	my ($path, %h) = @_;
	return http_request($http, 'GET', $path, headers => \%h);
}
sub code { my $r = get(@_); return $r->{status}; }

# Three ways to carry a token.
is(code("/v1/orders/$o", Authorization => "Bearer $watch"), 200, 'Authorization: Bearer');
is(code("/v1/orders/$o", Authorization => 'Basic ' . encode_base64("app:$watch", '')), 200,
	'the password of Basic credentials');
is(code("/v1/orders/$o?access_token=$watch"), 200, '?access_token=');
is(code("/v1/orders/$o?access_token=$dispatch"), 200, 'a dispatch token reads any order');

# The claims are what the functions say.
my ($h64, $p64, $s64) = split /\./, $watch;
is_deeply(decode_json(decode_base64url($h64)), { alg => 'HS256', typ => 'JWT' }, 'HS256 header');
my $claims = decode_json(decode_base64url($p64));
is_deeply([ @$claims{qw(iss scope order_id)} ], [ 'livetrack', 'watch', $o ], 'watch claims');
ok(abs($claims->{exp} - $claims->{iat} - 4 * 3600) <= 1, 'default ttl 4 h');

# 401: missing, malformed, forged, expired, alg none, RS256.
my $r = get("/v1/orders/$o");
is($r->{status}, 401, 'no token: 401');
is(decode_json($r->{body})->{error} =~ /token is required/ ? 1 : 0, 1, 'with a JSON error body') or diag $r->{body};
like($r->{headers}{'www-authenticate'} // '', qr/^Bearer/, 'and WWW-Authenticate: Bearer');
is(code("/v1/orders/$o?access_token=nonsense"), 401, 'malformed: 401');
my $forged_claims = encode_base64url(encode_json({ %$claims, order_id => $o2 }));
is(code("/v1/orders/$o2?access_token=$h64.$forged_claims.$s64"), 401, 'forged (claims changed): 401');
my $sig = decode_base64url($s64);
substr($sig, 0, 1) = chr(ord(substr($sig, 0, 1)) ^ 1);
is(code("/v1/orders/$o?access_token=$h64.$p64." . encode_base64url($sig)), 401, 'forged (signature changed): 401');
my $expired = $sql->("SELECT livetrack._token(jsonb_build_object('scope', 'watch', 'order_id', $o), '1 second')");
sleep 2;
$r = get("/v1/orders/$o?access_token=$expired");
is($r->{status}, 401, 'expired: 401');
like($r->{body}, qr/expired/, 'says so');
my $none = encode_base64url(encode_json({ alg => 'none', typ => 'JWT' })) . ".$p64.";
is(code("/v1/orders/$o?access_token=$none"), 401, 'alg none: 401');
my $rs = encode_base64url(encode_json({ alg => 'RS256', typ => 'JWT' }));
is(code("/v1/orders/$o?access_token=$rs.$p64.$s64"), 401, 'RS256: 401');

# 403: a valid token of another scope, order or driver.
is(code("/v1/orders/$o2?access_token=$watch"), 403, 'another order: 403');
is(code("/v1/orders/$o/stream?access_token=$device"), 403, 'a device token cannot watch: 403');
$r = http_request($http, 'POST', '/v1/pings', headers => { Authorization => "Bearer $watch" },
	body => qq({"driver_id":7,"lat":1,"lon":2}\n));
is($r->{status}, 403, 'a watch token cannot post fixes: 403');
$r = http_request($http, 'POST', '/v1/pings', headers => { Authorization => "Bearer $device", 'X-Forwarded-For' => '203.0.113.9' },
	body => qq({"driver_id":8,"lat":1,"lon":2}\n));
is($r->{status}, 200, "a device token posts: 200");
like($r->{body}, qr/"accepted":0,"rejected":1,.*"reason":"auth"/, "but not another driver's fixes");
is(code("/metrics", 'X-Forwarded-For' => '203.0.113.9'), 401, 'metrics through a proxy need a token');
is(code("/metrics?access_token=$watch", 'X-Forwarded-For' => '203.0.113.9'), 403, 'a dispatch token');
is(code("/metrics?access_token=$dispatch", 'X-Forwarded-For' => '203.0.113.9'), 200, 'which reads them');
is(code('/metrics'), 200, 'from loopback without one');
is(code('/v1/orders/999999?access_token=' . $dispatch), 404, 'an unknown order: 404');

# A dispatch token for an area reads the orders whose pickup is inside it.
my $area = $sql->("SELECT livetrack.dispatch_token(ST_MakeEnvelope(77.4, 12.8, 77.6, 13.0, 4326))");
is(code("/v1/orders/$o?access_token=$area"), 200, 'an area dispatch token: an order inside');
my $far = $sql->("SELECT livetrack.dispatch_token(ST_MakeEnvelope(10, 10, 11, 11, 4326))");
is(code("/v1/orders/$o?access_token=$far"), 403, 'and not one outside');
my ($ok, $out, $err) = $node->psql('postgres', "SELECT livetrack.dispatch_token(ST_MakePoint(1, 2))");
like($err, qr/must be a polygon/, 'a point is no area');
($ok, $out, $err) = $node->psql('postgres', "SELECT livetrack.watch_token(999999)");
like($err, qr/order 999999 does not exist/, 'no token for an unknown order');
($ok, $out, $err) = $node->psql('postgres', "SELECT livetrack.device_token(0)");
like($err, qr/out of range/, 'nor for driver 0');
($ok, $out, $err) = $node->psql('postgres', "SELECT livetrack.watch_token($o, '-1 hour')");
like($err, qr/positive ttl/, 'nor with a negative ttl');

# Minting is not for everyone, and the secret is the owner's.
$sql->('CREATE ROLE app LOGIN; GRANT USAGE ON SCHEMA livetrack TO app');
for my $f ("watch_token($o)", 'dispatch_token()', 'device_token(7)', 'rotate_token_secret()') {
	($ok, $out, $err) = $node->psql('postgres', "SELECT livetrack.$f", extra_params => [ '-U', 'app' ]);
	like($err, qr/permission denied for function/, "$f is not granted to PUBLIC");
}
($ok, $out, $err) = $node->psql('postgres', 'SELECT secret FROM livetrack.token_secret', extra_params => [ '-U', 'app' ]);
like($err, qr/permission denied for table token_secret/, 'the secret is not readable');
$sql->("GRANT EXECUTE ON FUNCTION livetrack.watch_token(bigint, interval) TO app");
($ok, $out, $err) = $node->psql('postgres', "SELECT livetrack.watch_token($o)", extra_params => [ '-U', 'app' ]);
is(code("/v1/orders/$o?access_token=$out"), 200, 'a role granted watch_token() mints working tokens');

# Rotation: every token issued before is refused, and open streams end.
my ($s, $status) = sse_open($http, "/v1/orders/$o/stream?access_token=$watch");
is($status, 200, 'a stream is open');
sse_events($s, 5, sub { @{ $_[0] } >= 1 });
$sql->('SELECT livetrack.rotate_token_secret()');
my ($ev, $closed) = sse_events($s, 10, sub { 0 });
ok($closed, 'rotating the secret ends the stream');
is((grep { $_->{event} eq 'error' } @$ev) ? 1 : 0, 1, 'with an error event first');
is(code("/v1/orders/$o?access_token=$watch"), 401, 'the old token is refused');
is(code("/v1/orders/$o?access_token=$dispatch"), 401, 'all of them');
my $new = $sql->("SELECT livetrack.watch_token($o)");
is(code("/v1/orders/$o?access_token=$new"), 200, 'a new one works');

my $st = stats($node);
ok($st->{http_unauthorized} >= 8, "http_unauthorized = $st->{http_unauthorized}");
ok($st->{http_forbidden} >= 5, "http_forbidden = $st->{http_forbidden}");
done_testing();
