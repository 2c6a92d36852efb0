# More workers than max_worker_processes has room for: livetrack says so at
# start (with the value to set), the core workers come first, and
# livetrack.http_max_connections is shared among the HTTP workers that did
# start, not among those asked for (each would otherwise refuse past its
# share of workers that do not exist).
use strict;
use warnings;
use IO::Socket::INET;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $port, $hport) = start_node('slots', 'max_worker_processes = 6', 'livetrack.http_workers = 4',
	'livetrack.http_max_connections = 4');
like(slurp_file($node->logfile), qr/livetrack: only \d+ of its 8 background workers could be registered/,
	'the shortage is logged');
like(slurp_file($node->logfile), qr/HINT:  Raise max_worker_processes to at least 16/, 'with the value to set');
my %types = map { $_ => 1 } split /\n/,
  $node->safe_psql('postgres', "SELECT backend_type FROM pg_stat_activity WHERE backend_type LIKE 'livetrack%'");
ok($types{$_}, "$_ runs") for ('livetrack listener', 'livetrack compactor', 'livetrack flusher 1', 'livetrack flusher 2');
my $http = grep { /^livetrack http/ } keys %types;
ok($http >= 1 && $http < 4, "$http of 4 HTTP workers run");

SKIP: {
	# With one worker the whole limit is its own; with more, which worker a
	# connection reaches is the kernel's choice.
	skip "$http HTTP workers: which one takes a connection is up to the kernel", 1 if $http != 1;
	my @socks;
	my @status;
	for (1 .. 4) {
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $hport, Proto => 'tcp') or die "connect: $!";
		print $s "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";
		my $line = <$s>;
		push @status, $line =~ m{^HTTP/1\.1 (\d+)} ? $1 : 'none';
		push @socks, $s; # held open: each counts against the limit
	}
	is("@status", '200 200 200 200', 'the one HTTP worker serves all of http_max_connections');
}

$node->stop;
done_testing();
