# The flushers start the kernel's writeback of the history they write
# (worker/history.cpp, start_writeback): pages of a growing partition do not
# sit dirty in the page cache until the kernel's own thresholds. Checked with
# cachestat(2), which counts a file's dirty pages (Linux 6.5+, x86-64 here).
use strict;
use warnings;
use LivetrackTest;
use POSIX ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my (undef, undef, $release, undef, $machine) = POSIX::uname();
my ($major, $minor) = $release =~ /^(\d+)\.(\d+)/;
plan skip_all => 'cachestat(2) needs Linux 6.5 or later on x86-64'
  unless $machine eq 'x86_64' && ($major > 6 || ($major == 6 && $minor >= 5));
my $SYS_cachestat = 451;

# Dirty and under-writeback pages of a file, in bytes.
sub dirty_bytes {
	my ($path) = @_;
	open(my $fh, '<', $path) or die "open $path: $!";
	my $range = pack('QQ', 0, 0);    # the whole file
	my $stat = "\0" x 40;
	syscall($SYS_cachestat, fileno($fh), $range, $stat, 0) == 0 or die "cachestat $path: $!";
	close $fh;
	my (undef, $dirty, $writeback) = unpack('QQQ', $stat);
	return ($dirty * 4096, $writeback * 4096);
}

# Writeback is skipped with fsync = off, the test clusters' default.
# compaction_delay: the minute is not compacted (and emptied) under the test.
my ($node, $port) = start_node('writeback', 'fsync = on', "livetrack.compaction_delay = '1h'");

# About 4 MB of history in one hot partition (one ts, one minute), through
# the ring and the flushers.
$node->safe_psql('postgres',
	"SELECT count(livetrack.ingest(i, 10 + i / 1e6, 20, now())) FROM generate_series(1, 60000) i");
wait_flushed($node);
# One more fix after the writeback interval, so that the last call covers
# every page written before it.
sleep(0.3);
$node->safe_psql('postgres', "SELECT livetrack.ingest(1, 10, 20, now())");
wait_flushed($node);

my $file = $node->data_dir . '/'
  . $node->safe_psql('postgres',
	"SELECT pg_relation_filepath(tableoid) FROM livetrack.hot WHERE driver_id = 60000 LIMIT 1");
my $size = -s $file;
ok($size > 2 << 20, "the partition holds $size bytes");
my ($dirty, $writeback) = dirty_bytes($file);
cmp_ok($dirty, '<', $size / 10, "of them, $dirty bytes are still dirty in the page cache ($writeback under writeback)");

$node->stop;
done_testing();
