# Helpers for livetrack's TAP tests: a preloaded cluster, and a device side
# that speaks the wire protocol (SPEC 2) over real sockets.
package LivetrackTest;

use strict;
use warnings;
use Exporter 'import';
use IO::Select;
use IO::Socket::INET;
use Math::BigInt;
use POSIX qw(floor);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

our @EXPORT = qw(start_node record frame json_line now_ms udp_send tcp_send tcp_connect read_acks read_line
  closed_by_peer stat_value stats wait_flushed worker_pid wait_serving flusher_of);

$SIG{PIPE} = 'IGNORE';    # a closed device socket is an error to report, not a reason to die

# A cluster that preloads livetrack, serves database "postgres", and has the
# extension created and the listener serving. Returns ($node, $device_port).
sub start_node {
	my ($name, @conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $lport = PostgreSQL::Test::Cluster::get_free_port();
	$node->append_conf('postgresql.conf', join("\n",
		"shared_preload_libraries = 'livetrack'",
		"livetrack.port = $lport",
		"livetrack.flush_interval = '50ms'",
		@conf) . "\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION livetrack CASCADE');
	wait_serving($node);
	return ($node, $lport);
}

# Waits (through restarts) until the listener serves and wait_flushed works.
sub wait_serving {
	my ($node) = @_;
	$node->poll_query_until('postgres',
		"SELECT value = 3 FROM livetrack.stats WHERE metric = 'listener_state'")
	  or die "listener did not start serving";
}

sub now_ms { return int(time() * 1000); }

# One 32-byte record (SPEC 2.1). lat/lon in degrees, or lat_e7/lon_e7 raw.
sub record {
	my (%r) = @_;
	my $lat = $r{lat_e7} // floor(($r{lat} // 0) * 1e7 + 0.5);
	my $lon = $r{lon_e7} // floor(($r{lon} // 0) * 1e7 + 0.5);
	return pack('Q> q> l> l> n n n C C',
		$r{driver_id}, $r{ts} // now_ms(), $lat, $lon,
		$r{speed} // 0xFFFF, $r{heading} // 0xFFFF, $r{accuracy} // 0xFFFF,
		$r{status} // 0, $r{reserved} // 0);
}

# A message: header fields can be overridden to make broken frames.
sub frame {
	my ($h, @records) = @_;
	my $flags = $h->{flags} // 0;
	my $msg = pack('a2 C C n n N N', $h->{magic} // 'LT', $h->{version} // 1, $flags,
		$h->{count} // scalar(@records), $h->{reserved} // 0, $h->{key_id} // 0, $h->{seq} // 0);
	$msg .= join('', @records);
	$msg .= "\0" x 16 if $flags & 1;
	return $msg;
}

sub json_line {
	my (%f) = @_;
	return '{' . join(',', map { my $v = $f{$_}; "\"$_\":" . ($v =~ /^-?[0-9.]+$/ ? $v : "\"$v\"") } sort keys %f)
	  . "}\n";
}

sub udp_send {
	my ($port, @datagrams) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'udp')
	  or die "udp socket: $!";
	$s->send($_) // die "udp send: $!" for @datagrams;
	$s->close;
}

# Sends messages over one TCP connection and waits for all their ACKs
# (delivery guaranteed, unlike a burst of UDP). Returns the number accepted.
sub tcp_send {
	my ($port, @messages) = @_;
	my $s = tcp_connect($port);
	my $accepted = 0;
	while (my @chunk = splice(@messages, 0, 256)) {
		print $s join('', @chunk);
		my @acks = read_acks($s, scalar @chunk, 30);
		die 'missing ACKs' unless @acks == @chunk;
		$accepted += $_->[2] for @acks;
	}
	close $s;
	return $accepted;
}

sub tcp_connect {
	my ($port) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 10)
	  or die "tcp connect: $!";
	$s->autoflush(1);
	return $s;
}

# Reads up to $n ACKs within $timeout seconds. Returns a list of
# [status, n, accepted]; fewer if the time ran out or the peer closed.
sub read_acks {
	my ($sock, $n, $timeout) = @_;
	my ($buf, @acks) = ('');
	my $deadline = time() + $timeout;
	my $sel = IO::Select->new($sock);
	while (@acks < $n) {
		my $left = $deadline - time();
		last if $left <= 0 || !$sel->can_read($left);
		my $got = sysread($sock, $buf, 4096, length $buf);
		last if !$got;
		while (length($buf) >= 12) {
			my ($magic, $ver, $status, $idx, $accepted) = unpack('a2 C C N N', substr($buf, 0, 12, ''));
			die "not an ACK: $magic" unless $magic eq 'LA' && $ver == 1;
			push @acks, [ $status, $idx, $accepted ];
		}
	}
	return @acks;
}

# Reads one "\n"-terminated line (JSON mode answers), or undef on timeout/EOF.
sub read_line {
	my ($sock, $timeout) = @_;
	my $line = '';
	my $sel = IO::Select->new($sock);
	my $deadline = time() + $timeout;
	while ($line !~ /\n\z/) {
		my $left = $deadline - time();
		return undef if $left <= 0 || !$sel->can_read($left);
		my $got = sysread($sock, $line, 1, length $line);
		return undef if !$got;
	}
	return $line;
}

# True once the server has closed the connection (EOF or reset) within
# $timeout seconds; false if it is still open then. Data that arrives first
# is read and ignored.
sub closed_by_peer {
	my ($sock, $timeout) = @_;
	my $sel = IO::Select->new($sock);
	my $deadline = time() + $timeout;
	while ((my $left = $deadline - time()) > 0) {
		next unless $sel->can_read($left);
		my $got = sysread($sock, my $buf, 4096);
		return 1 if !$got;    # 0: EOF; undef: an error such as ECONNRESET
	}
	return 0;
}

sub stat_value {
	my ($node, $metric) = @_;
	return $node->safe_psql('postgres', "SELECT value FROM livetrack.stats WHERE metric = '$metric'");
}

# All counters as a hash.
sub stats {
	my ($node) = @_;
	my %s = map { split /\|/ } split /\n/, $node->safe_psql('postgres', 'SELECT metric, value FROM livetrack.stats');
	return \%s;
}

sub wait_flushed {
	my ($node) = @_;
	is($node->safe_psql('postgres', "SELECT livetrack.wait_flushed('30 s')"), 't', 'wait_flushed');
}

# Which flusher (0-based) writes a driver's records: core/consumer_group.hpp.
sub flusher_of {
	my ($id, $n) = @_;
	my $h = Math::BigInt->new($id)->bmul(Math::BigInt->from_hex('9E3779B97F4A7C15'))
		->bmod(Math::BigInt->new(2)->bpow(64))->brsft(32);
	return $h->bmod($n)->numify;
}

sub worker_pid {
	my ($node, $type) = @_;
	return $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'livetrack $type'");
}

1;
