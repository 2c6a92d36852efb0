# Helpers for the MQTT tests (SPEC 7): a real mosquitto started on a free
# port with a configuration of the test's own, mosquitto_pub as the device,
# and a spy: a TCP relay between the listener and the broker that logs the
# packet ids of each PUBLISH the broker sends and each PUBACK the listener
# answers, so a test sees on the wire when livetrack acknowledged what.
package MqttTest;

use strict;
use warnings;
use Exporter 'import';
use File::Temp qw(tempfile);
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(start_mosquitto stop_mosquitto mqtt_pub start_spy spy_log stop_spy wait_for);

my $mosquitto = -x '/usr/sbin/mosquitto' ? '/usr/sbin/mosquitto' : 'mosquitto';

# Starts mosquitto on $port (a free one if undef) with its data in $dir;
# extra configuration lines may be given. Returns {pid, port, dir, conf}.
sub start_mosquitto {
	my ($dir, $port, @extra) = @_;
	$port //= PostgreSQL::Test::Cluster::get_free_port();
	mkdir $dir;
	my $conf = "$dir/mosquitto.conf";
	open my $fh, '>', $conf or die "$conf: $!";
	print $fh join("\n",
		"listener $port 127.0.0.1",
		'allow_anonymous true',
		'persistence true',          # sessions and their messages survive a restart
		"persistence_location $dir/",
		'max_queued_messages 0',     # queue for an absent subscriber without limit
		"log_dest file $dir/mosquitto.log",
		'log_type error', 'log_type warning', 'log_type notice', 'log_type information',
		@extra) . "\n";
	close $fh;
	my $b = { port => $port, dir => $dir, conf => $conf };
	_spawn($b);
	return $b;
}

sub _spawn {
	my ($b) = @_;
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		open STDOUT, '>>', "$b->{dir}/stdout.log";
		open STDERR, '>&', \*STDOUT;
		{ exec $mosquitto, '-c', $b->{conf} }
		print STDERR "exec mosquitto: $!\n";
		POSIX::_exit(127);
	}
	$b->{pid} = $pid;
	# Ready when the port answers.
	for (1 .. 100) {
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $b->{port}, Proto => 'tcp');
		if ($s) { close $s; return; }
		usleep(50_000);
	}
	die "mosquitto did not start on port $b->{port}: " . slurp_file("$b->{dir}/mosquitto.log");
}

# Stops the broker (it saves its sessions on the way out); with $restart,
# starts it again on the same port with the same data.
sub stop_mosquitto {
	my ($b, $restart) = @_;
	kill 'TERM', $b->{pid};
	waitpid($b->{pid}, 0);
	_spawn($b) if $restart;
}

# mosquitto_pub at QoS 1: one message, or with lines => [...] one message
# per line, or with file => path one message of the file's bytes.
sub mqtt_pub {
	my ($b, $topic, %o) = @_;
	my @cmd = ('mosquitto_pub', '-h', '127.0.0.1', '-p', $b->{port}, '-q', $o{qos} // 1, '-t', $topic,
		'-i', $o{client_id} // "pub-$$");
	my $stdin = '';
	if ($o{lines}) { push @cmd, '-l'; $stdin = join("\n", @{ $o{lines} }) . "\n"; }
	elsif (defined $o{file}) { push @cmd, '-f', $o{file}; }
	else { push @cmd, '-m', $o{message}; }
	my ($out, $err);
	IPC::Run::run(\@cmd, '<', \$stdin, '>', \$out, '2>', \$err) or die "mosquitto_pub failed: $err";
}

# The spy: listens on a free port and relays each connection to the broker
# at $broker_port, logging "publish ID" (broker -> listener, QoS 1) and
# "puback ID" (listener -> broker) lines to a file, in the order they pass.
sub start_spy {
	my ($broker_port) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my ($fh, $log) = tempfile('mqtt-spy-XXXX', TMPDIR => 1, UNLINK => 1);
	close $fh;
	my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 16, ReuseAddr => 1)
	  or die "spy listen: $!";
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		eval { _relay($l, $broker_port, $log) };
		POSIX::_exit(0); # never exit(): the test's END blocks stop its nodes
	}
	close $l;
	return { pid => $pid, port => $port, log => $log };
}

sub _relay {
	my ($l, $broker_port, $log) = @_;
	open my $out, '>>', $log or die "$log: $!";
	$out->autoflush(1);
	my $sel = IO::Select->new($l);
	my (%peer, %buf, %dir);
	while (1) {
		for my $s ($sel->can_read(1)) {
			if ($s == $l) {
				my $c = $l->accept or next;
				my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $broker_port, Proto => 'tcp');
				if (!$u) { close $c; next; }    # broker down: so is the relay
				($peer{$c}, $peer{$u}) = ($u, $c);
				($dir{$c}, $dir{$u}) = ('out', 'in');
				($buf{$c}, $buf{$u}) = ('', '');
				print $out "connect\n";
				$sel->add($c, $u);
				next;
			}
			my $got = sysread($s, my $data, 65536);
			my $p = $peer{$s};
			if (!$got) {
				for my $x ($s, $p) { $sel->remove($x); close $x; delete $peer{$x}; delete $buf{$x}; }
				print $out "disconnect\n";
				next;
			}
			syswrite($p, $data);
			$buf{$s} .= $data;
			_packets(\$buf{$s}, $dir{$s}, $out);
		}
	}
}

# Logs the ids of QoS 1 PUBLISHes going in and PUBACKs going out.
sub _packets {
	my ($b, $dir, $out) = @_;
	while (length($$b) >= 2) {
		my ($len, $mul, $i) = (0, 1, 1);
		while (1) {
			return if $i >= length($$b);
			my $c = ord(substr($$b, $i, 1));
			$len += ($c & 0x7f) * $mul;
			$mul *= 128;
			last unless $c & 0x80;
			$i++;
		}
		return if length($$b) < $i + 1 + $len;
		my $type = ord(substr($$b, 0, 1)) >> 4;
		my $qos = (ord(substr($$b, 0, 1)) >> 1) & 3;
		my $body = substr($$b, $i + 1, $len);
		substr($$b, 0, $i + 1 + $len, '');
		if ($dir eq 'in' && $type == 3 && $qos == 1) {
			my $tlen = unpack('n', $body);
			print $out 'publish ' . unpack('n', substr($body, 2 + $tlen, 2)) . "\n";
		}
		print $out 'puback ' . unpack('n', $body) . "\n" if $dir eq 'out' && $type == 4;
	}
}

# The spy's log as a list of lines.
sub spy_log {
	my ($spy) = @_;
	open my $fh, '<', $spy->{log} or return ();
	chomp(my @l = <$fh>);
	return @l;
}

sub stop_spy {
	my ($spy) = @_;
	kill 'KILL', $spy->{pid};
	waitpid($spy->{pid}, 0);
}

# Polls $cond (a sub) every 50 ms for up to $timeout seconds.
sub wait_for {
	my ($cond, $timeout) = @_;
	my $deadline = time() + ($timeout // 30);
	while (time() < $deadline) {
		return 1 if $cond->();
		usleep(50_000);
	}
	return 0;
}

1;
