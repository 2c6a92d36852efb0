# Helpers for livetrack's TAP tests: a preloaded cluster, and a device side
# that speaks the wire protocol (SPEC 2) over real sockets.
package LivetrackTest;

use strict;
use warnings;
use Exporter 'import';
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use Math::BigInt;
use POSIX qw(floor);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

our @EXPORT = qw(start_node record frame json_line now_ms udp_send tcp_send tcp_connect read_acks read_line
  closed_by_peer stat_value stats wait_flushed worker_pid wait_serving flusher_of
  http_request sse_open sse_events wait_http ws_connect ws_send ws_frame ws_recv);

$SIG{PIPE} = 'IGNORE';    # a closed device socket is an error to report, not a reason to die

# A cluster that preloads livetrack, serves database "postgres", and has the
# extension created and the listener serving. Returns ($node, $device_port,
# $http_port).
sub start_node {
	my ($name, @conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $lport = PostgreSQL::Test::Cluster::get_free_port();
	my $hport = PostgreSQL::Test::Cluster::get_free_port();
	$node->append_conf('postgresql.conf', join("\n",
		"shared_preload_libraries = 'livetrack'",
		"livetrack.port = $lport",
		"livetrack.http_port = $hport",
		"livetrack.flush_interval = '50ms'",
		@conf) . "\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION livetrack CASCADE');
	wait_serving($node);
	wait_http($node);
	return ($node, $lport, $hport);
}

# Waits (through restarts) until the HTTP worker serves.
sub wait_http {
	my ($node) = @_;
	$node->poll_query_until('postgres', "SELECT value = 3 FROM livetrack.stats WHERE metric = 'http_state'")
	  or die "the HTTP worker did not start serving";
}

# One HTTP/1.1 request on a connection of its own. Options: headers =>
# {name => value}, body => bytes, timeout => s, raw => the whole request as
# bytes instead. Returns {status, headers (lower-case names), body}; status
# is 0 if the connection closed or timed out before an answer.
sub http_request {
	my ($port, $method, $path, %o) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 10)
	  or die "http connect: $!";
	my $req = $o{raw};
	if (!defined $req) {
		my %h = (Host => "127.0.0.1:$port", Connection => 'close', %{ $o{headers} // {} });
		$h{'Content-Length'} = length($o{body}) if defined $o{body};
		$req = "$method $path HTTP/1.1\r\n" . join('', map { "$_: $h{$_}\r\n" } sort keys %h) . "\r\n" . ($o{body} // '');
	}
	syswrite($s, $req);
	my ($buf, $sel, $deadline) = ('', IO::Select->new($s), time() + ($o{timeout} // 20));
	while ((my $left = $deadline - time()) > 0) {
		last unless $sel->can_read($left);
		my $got = sysread($s, $buf, 65536, length $buf);
		last if !$got;
		last if _complete($buf);
	}
	close $s;
	return _parse_response($buf);
}

sub _complete {
	my ($buf) = @_;
	my $end = index($buf, "\r\n\r\n");
	return 0 if $end < 0;
	my $head = substr($buf, 0, $end);
	return length($buf) >= $end + 4 + $1 if $head =~ /^content-length:\s*(\d+)/mi;
	return 0;
}

sub _parse_response {
	my ($buf) = @_;
	my $end = index($buf, "\r\n\r\n");
	return { status => 0, headers => {}, body => $buf } if $end < 0;
	my ($status_line, @lines) = split /\r\n/, substr($buf, 0, $end);
	my ($status) = $status_line =~ m{^HTTP/1\.\d (\d{3})};
	my %h = map { my ($k, $v) = /^([^:]+):\s*(.*)$/; (lc($k) => $v) } @lines;
	return { status => $status // 0, headers => \%h, body => substr($buf, $end + 4) };
}

# Opens a Server-Sent Events stream. Returns ($socket, $status, $headers);
# the socket is positioned after the response head, events follow.
my %sse_buf;
sub sse_open {
	my ($port, $path, %headers) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 10)
	  or die "sse connect: $!";
	my $req = "GET $path HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nAccept: text/event-stream\r\n"
	  . join('', map { "$_: $headers{$_}\r\n" } sort keys %headers) . "\r\n";
	syswrite($s, $req);
	my ($buf, $sel, $deadline) = ('', IO::Select->new($s), time() + 20);
	while (index($buf, "\r\n\r\n") < 0) {
		my $left = $deadline - time();
		last if $left <= 0 || !$sel->can_read($left);
		my $got = sysread($s, $buf, 65536, length $buf);
		last if !$got;
	}
	my $r = _parse_response($buf);
	$sse_buf{"$s"} = $r->{body};
	return ($s, $r->{status}, $r->{headers}, $r->{body});
}

# Reads events until $until->(\@events) is true, the timeout passes, or the
# stream ends. Returns (\@events, $closed): each event {event, id, data,
# json (the data decoded, if it is JSON)}; comments count as {event => ':'}.
sub sse_events {
	my ($s, $timeout, $until) = @_;
	my @ev;
	my $closed = 0;
	my $sel = IO::Select->new($s);
	my $deadline = time() + $timeout;
	my $buf = \$sse_buf{"$s"};
	$$buf //= '';
	while (1) {
		while ($$buf =~ s/^(.*?)\n\n//s) {
			my %e = (event => 'message');
			for my $line (split /\n/, $1) {
				if ($line =~ /^:/) { $e{event} = ':'; next; }
				my ($k, $v) = $line =~ /^([^:]*):\s?(.*)$/ or next;
				if ($k eq 'data') { $e{data} = defined $e{data} ? "$e{data}\n$v" : $v; }
				else { $e{$k} = $v; }
			}
			# A block with neither data nor a comment (retry:, a bare id:) is no event.
			next unless defined $e{data} || $e{event} eq ':';
			$e{json} = eval { JSON::PP::decode_json($e{data}) } if defined $e{data} && $e{data} =~ /^[{\[]/;
			push @ev, \%e;
		}
		last if $until && $until->(\@ev);
		my $left = $deadline - time();
		last if $left <= 0;
		next unless $sel->can_read($left);
		my $got = sysread($s, $$buf, 65536, length $$buf);
		if (!$got) { $closed = 1; last; }
	}
	return (\@ev, $closed);
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

# A WebSocket client (RFC 6455) over a plain socket: ws_connect returns
# ($socket, $status, $headers) after the opening handshake.
sub ws_connect {
	my ($port, $path, %headers) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 10)
	  or die "ws connect: $!";
	my %h = (Host => "127.0.0.1:$port", Upgrade => 'websocket', Connection => 'Upgrade',
		'Sec-WebSocket-Key' => 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version' => 13, %headers);
	syswrite($s, "GET $path HTTP/1.1\r\n" . join('', map { "$_: $h{$_}\r\n" } grep { defined $h{$_} } sort keys %h) . "\r\n");
	my ($buf, $sel, $deadline) = ('', IO::Select->new($s), time() + 10);
	while (index($buf, "\r\n\r\n") < 0) {
		my $left = $deadline - time();
		last if $left <= 0 || !$sel->can_read($left);
		last if !sysread($s, $buf, 1, length $buf); # byte by byte: frames may follow at once
	}
	my $r = _parse_response($buf);
	$sse_buf{"$s"} = '';
	return ($s, $r->{status}, $r->{headers});
}

# One frame as a client sends it: masked unless mask => 0.
sub ws_frame {
	my ($opcode, $payload, %o) = @_;
	my $fin = $o{fin} // 1;
	my $mask = $o{mask} // 1;
	my $len = length $payload;
	my $f = chr(($fin ? 0x80 : 0) | $opcode);
	my $m = $mask ? 0x80 : 0;
	if ($len < 126) { $f .= chr($m | $len); }
	elsif ($len < 65536) { $f .= chr($m | 126) . pack('n', $len); }
	else { $f .= chr($m | 127) . pack('Q>', $len); }
	return $f . $payload unless $mask;
	my $key = pack('N', int(rand(2**32)));
	my @k = unpack('C4', $key);
	my $i = 0;
	return $f . $key . join('', map { chr(ord($_) ^ $k[ $i++ % 4 ]) } split //, $payload);
}

sub ws_send {
	my ($s, $text) = @_;
	syswrite($s, ws_frame(1, $text));
}

# Reads frames until $until->(\@frames) is true, the timeout passes, or the
# connection closes. Returns (\@frames, $closed): each {opcode, payload,
# json (text frames that are JSON), code (close frames)}. Pings are answered.
sub ws_recv {
	my ($s, $timeout, $until) = @_;
	my (@frames, $closed);
	my $sel = IO::Select->new($s);
	my $deadline = time() + $timeout;
	my $buf = \$sse_buf{"$s"};
	while (1) {
		while (length($$buf) >= 2) {
			my ($b0, $b1) = unpack('C2', $$buf);
			my ($len, $off) = ($b1 & 0x7f, 2);
			if ($len == 126) { last if length($$buf) < 4; $len = unpack('n', substr($$buf, 2, 2)); $off = 4; }
			elsif ($len == 127) { last if length($$buf) < 10; $len = unpack('Q>', substr($$buf, 2, 8)); $off = 10; }
			last if length($$buf) < $off + $len;
			my $payload = substr($$buf, $off, $len);
			substr($$buf, 0, $off + $len, '');
			my %f = (opcode => $b0 & 0x0f, payload => $payload);
			$f{json} = eval { JSON::PP::decode_json($payload) } if $f{opcode} == 1;
			$f{code} = length($payload) >= 2 ? unpack('n', $payload) : undef if $f{opcode} == 8;
			syswrite($s, ws_frame(10, $payload)) if $f{opcode} == 9;
			push @frames, \%f;
		}
		last if $until && $until->(\@frames);
		my $left = $deadline - time();
		last if $left <= 0;
		next unless $sel->can_read($left);
		my $got = sysread($s, $$buf, 65536, length $$buf);
		if (!$got) { $closed = 1; last; }
	}
	return (\@frames, $closed);
}


1;
