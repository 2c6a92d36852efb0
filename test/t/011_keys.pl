# Signed input end to end (SPEC 2.3) with livetrack.auth = required: keys
# from create_key(), HMAC-SHA256 tags computed here with Digest::SHA, device
# and gateway keys, the anti-replay window, revocation, and keys surviving a
# restart.
use strict;
use warnings;
use Digest::SHA qw(hmac_sha256);
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $port) = start_node('keys', "livetrack.auth = 'required'");

sub new_key {
	my ($driver) = @_;
	my ($id, $hex) = split /\|/, $node->safe_psql('postgres',
		'SELECT key_id, encode(secret, \'hex\') FROM livetrack.create_key(' . ($driver // 'NULL') . ')');
	return ($id, pack('H*', $hex));
}
my ($gw, $gw_secret) = new_key();
my ($dev, $dev_secret) = new_key(8001);
is(length($gw_secret), 32, 'a secret is 32 bytes');
isnt($gw_secret, $dev_secret, 'each key has its own secret');

# header || records || first 16 bytes of HMAC-SHA256(secret, header || records)
sub signed {
	my ($key, $secret, $seq, @records) = @_;
	my $m = frame({ flags => 1, key_id => $key, seq => $seq }, @records);
	my $body = substr($m, 0, length($m) - 16);
	return $body . substr(hmac_sha256($body, $secret), 0, 16);
}
sub fix { my ($id) = @_; return record(driver_id => $id, lat => 12.5, lon => 77.5, status => 2); }

# Sends messages on one connection; returns "status/accepted" per ACK.
sub send_acks {
	my @messages = @_;
	my $s = tcp_connect($port);
	print $s join('', @messages);
	my @acks = read_acks($s, scalar @messages, 10);
	close $s;
	return join(' ', map { "$_->[0]/$_->[2]" } @acks);
}

my $before = stats($node);
is(send_acks(frame({}, fix(8100))), '2/0', 'unsigned input is refused, even from loopback');
my $s = tcp_connect($port);
print $s json_line(driver_id => 8101, lat => 1, lon => 1) . json_line(driver_id => 8102, lat => 1, lon => 1);
is(read_line($s, 10), "ok 2\n", 'JSON lines are read...');
close $s;

is(send_acks(signed($gw, $gw_secret, 1, fix(8200), fix(8201))), '0/2', 'a gateway key signs for any driver');
is(send_acks(signed($gw, $gw_secret, 1, fix(8202))), '2/0', 'the same sequence number again is a replay');
is(send_acks(signed($gw, $gw_secret, 100, fix(8203)), signed($gw, $gw_secret, 36, fix(8204)),
	signed($gw, $gw_secret, 37, fix(8205))), '0/1 2/0 0/1', 'the window: 64 below the highest is too old, 63 is not');
is(send_acks(signed($gw, $dev_secret, 101, fix(8206))), '2/0', 'a tag made with another secret is refused');
is(send_acks(signed(9999, $gw_secret, 1, fix(8207))), '2/0', 'an unknown key is refused');
my $tampered = signed($gw, $gw_secret, 102, fix(8208));
substr($tampered, 16 + 8, 1) = "\x01";
is(send_acks($tampered), '2/0', 'a record changed after signing is refused');
is(send_acks(signed($dev, $dev_secret, 1, fix(8001), fix(8002), fix(8001))), '1/2',
	'a device key signs for its own driver only');
udp_send($port, signed($gw, $gw_secret, 103, fix(8209)));
wait_flushed($node);

is($node->safe_psql('postgres', 'SELECT string_agg(driver_id::text, \',\' ORDER BY driver_id) FROM livetrack.live'),
	'8001,8200,8201,8203,8205,8209', 'exactly the authentic records are live');
my $after = stats($node);
is($after->{rejected_auth} - $before->{rejected_auth}, 1 + 2 + 1 + 1 + 1 + 1,
	'rejected_auth: unsigned, 2 JSON lines, wrong secret, unknown key, tampered, other driver');
is($after->{rejected_replay} - $before->{rejected_replay}, 2, 'rejected_replay: the repeat and the too-old one');
is($after->{signing_keys}, 2, 'both keys in shared memory');

# Revocation takes effect at commit.
$node->safe_psql('postgres', "SELECT livetrack.revoke_key($gw)");
is(send_acks(signed($gw, $gw_secret, 200, fix(8210))), '2/0', 'a revoked key is refused at once');
my ($gw2, $gw2_secret) = new_key();
is(send_acks(signed($gw2, $gw2_secret, 1, fix(8211))), '0/1', 'a new key works at once');

# A key whose transaction rolls back never works.
my ($rb, $rb_hex) = split /\|/, $node->safe_psql('postgres',
	'BEGIN; SELECT key_id, encode(secret, \'hex\') FROM livetrack.create_key(); ROLLBACK;');
is(send_acks(signed($rb, pack('H*', $rb_hex), 1, fix(8212))), '2/0', 'a rolled-back key is refused');

# After a restart the keys come back from livetrack.keys; revoked ones do
# not. Their windows come back too, once flusher 1 has saved them.
my $before_restart = signed($dev, $dev_secret, 7, fix(8001));
is(send_acks($before_restart), '0/1', 'a message the device sends before the restart');
ok($node->poll_query_until('postgres', "SELECT last_seq = 7 FROM livetrack.keys WHERE key_id = $dev"),
	'the window is saved');
$node->restart;
wait_serving($node);
like(slurp_file($node->logfile), qr/2 signing keys loaded/, 'the unrevoked keys are reloaded');
is(send_acks($before_restart), '2/0', 'replaying it after the restart is refused');
is(stat_value($node, 'rejected_replay'), '1', 'as a replay');
is(send_acks(signed($dev, $dev_secret, 1000, fix(8001))), '0/1', 'the device key works after the restart');
is(send_acks(signed($gw, $gw_secret, 1000, fix(8213))), '2/0', 'the revoked key stays revoked');
is(stat_value($node, 'signing_keys'), '2', 'two keys in shared memory');

done_testing();
