# Behind a reverse proxy (SPEC 6): Debian's nginx with the shipped
# contrib/nginx/livetrack.conf, TLS with a self-signed certificate. Streams
# pass through unbuffered; requests that came through the proxy are never
# taken for loopback (no unsigned fixes, no /metrics without a token),
# although nginx itself connects from loopback.
use strict;
use warnings;
use IPC::Run;
use JSON::PP;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $nginx = '/usr/sbin/nginx';
plan skip_all => "no $nginx (scripts/lib.sh installs nginx-light)" unless -x $nginx;

my ($node, $port, $http) = start_node('nginx');
my $sql = sub { $node->safe_psql('postgres', shift) };
my $dir = "${PostgreSQL::Test::Utils::tmp_check}/nginx";
mkdir $dir;
my $https = PostgreSQL::Test::Cluster::get_free_port();

# A self-signed certificate, and the shipped configuration with this test's
# ports and paths.
system('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
	'-keyout', "$dir/key.pem", '-out', "$dir/cert.pem") == 0 or die 'openssl failed';
my $conf = slurp_file("contrib/nginx/livetrack.conf");    # prove runs from the top directory
$conf =~ s/127\.0\.0\.1:5481/127.0.0.1:$http/ or die 'no upstream in the shipped file';
$conf =~ s/listen 443 ssl http2;/listen 127.0.0.1:$https ssl http2;/ or die 'no listen in the shipped file';
$conf =~ s{/etc/ssl/livetrack/fullchain\.pem}{$dir/cert.pem} or die;
$conf =~ s{/etc/ssl/livetrack/privkey\.pem}{$dir/key.pem} or die;
open(my $fh, '>', "$dir/nginx.conf") or die $!;
print $fh <<"EOF";
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log info;
worker_processes 1;
events { worker_connections 256; }
http {
    access_log $dir/access.log;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
$conf
}
EOF
close $fh;
my $proxy = IPC::Run::start([ $nginx, '-e', "$dir/error.log", '-p', $dir, '-c', "$dir/nginx.conf" ],
	'>', "$dir/stdout", '2>', "$dir/stderr");
my $base = "https://localhost:$https";
my $up = 0;
for (1 .. 50) {
	last if ($up = (`curl -sk -o /dev/null -w '%{http_code}' $base/healthz` eq '200'));
	sleep 0.2;
}
ok($up, 'nginx serves the worker over TLS') or diag slurp_file("$dir/error.log");

sub curl {
	my (@args) = @_;
	my $out = `curl -sk --max-time 10 -w '\\n%{http_code}' @args`;
	my ($body, $code) = $out =~ /^(.*)\n(\d+)$/s;
	return ($code // 0, $body // '');
}

# Unsigned fixes through the proxy are refused, though nginx is on loopback.
my ($code, $body) = curl("-X POST --data-binary '{\"driver_id\":801,\"lat\":12.9,\"lon\":77.5}' $base/v1/pings");
is($code, 401, 'an unsigned fix through nginx: 401');
is($sql->('SELECT count(*) FROM livetrack.live WHERE driver_id = 801'), '0', 'not taken');
($code) = curl("$base/metrics");
is($code, 401, '/metrics through nginx needs a token');
my $device = $sql->('SELECT livetrack.device_token(801)');
($code, $body) = curl("-X POST -H 'Authorization: Bearer $device' --data-binary '{\"driver_id\":801,\"lat\":12.9,\"lon\":77.5,\"status\":\"available\"}' $base/v1/pings");
is($code, 200, 'with a device token: 200');
is(decode_json($body)->{accepted}, 1, 'accepted');
# The same request straight to the worker, from loopback, is trusted.
($code) = curl("-X POST --data-binary '{\"driver_id\":802,\"lat\":12.9,\"lon\":77.5}' http://127.0.0.1:$http/v1/pings");
is($code, 200, 'unsigned straight to the worker from loopback: 200');

# A stream through the proxy, unbuffered: an event arrives at once.
my $o = $sql->('SELECT livetrack.create_order(12.901, 77.5, 12.95, 77.5)');
my $t = $sql->("SELECT livetrack.watch_token($o)");
my $stream = '';
my $h = IPC::Run::start([ 'curl', '-skN', '--max-time', '20', "$base/v1/orders/$o/stream?access_token=$t" ], '>', \$stream);
my $deadline = time() + 10;
$h->pump_nb while $stream !~ /event: snapshot/ && time() < $deadline && sleep 0.05;
like($stream, qr/event: snapshot/, 'the snapshot arrives through nginx');
my $t0 = time();
$sql->("SELECT livetrack.assign_order($o)");
$deadline = time() + 10;
$h->pump_nb while $stream !~ /"status": "assigned"/ && time() < $deadline && sleep 0.02;
my $took = time() - $t0;
like($stream, qr/event: status\ndata: .*"status": "assigned"/, 'the status event arrives through nginx');
ok($took < 2, sprintf('%.0f ms after the commit: not buffered', 1000 * $took));
tcp_send($port, frame({}, record(driver_id => 801, lat => 12.899, lon => 77.5)));
$deadline = time() + 10;
$h->pump_nb while $stream !~ /event: position/ && time() < $deadline && sleep 0.02;
like($stream, qr/event: position/, 'positions too');
$h->kill_kill;

$proxy->signal('QUIT');
$proxy->finish;
done_testing();
