# livetrack-sim, the load behind the demo and the benchmarks: it sends what
# it says it sends, at the rate it is asked for, from every driver; with
# --spread 4 (bench/ingest's fleet) the drivers' rates differ by about four
# times, and with --spread 1 they are all alike. Counted in history.
use strict;
use warnings;
use IPC::Run;
use LivetrackTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $sim = "$ENV{LT_BUILD}/livetrack-sim";
plan skip_all => "no simulator at $sim" unless -x $sim;

my ($node, $port) = start_node('simulator');

# Runs the simulator over UDP (binary), returns its JSON summary's records
# and rate.
sub run_sim {
	my ($id_base, $spread) = @_;
	my ($out, $err);
	IPC::Run::run([ $sim, '--port', $port, '--drivers', 200, '--rate', 2000, '--duration', 5,
			'--spread', $spread, '--id-base', $id_base, '--report', 0, '--summary-json' ],
		'>', \$out, '2>', \$err)
	  or die "livetrack-sim failed: $err";
	my ($records) = $out =~ /"records_sent":(\d+)/;
	my ($rate) = $out =~ /"rate":([0-9.]+)/;
	return ($records, $rate);
}

# Per-driver counts in history for ids [base, base + 200): drivers, records,
# fewest and most per driver, and the ratio of the busiest tenth's mean to
# the quietest tenth's (steadier than max / min).
sub counts {
	my ($base) = @_;
	wait_flushed($node);
	my $row = $node->safe_psql('postgres', qq{
		WITH d AS (SELECT count(*) AS n FROM livetrack.pings
		           WHERE driver_id >= $base AND driver_id < $base + 200 GROUP BY driver_id),
		     t AS (SELECT n, ntile(10) OVER (ORDER BY n) AS tenth FROM d)
		SELECT count(*), sum(n), min(n), max(n),
		       round(avg(n) FILTER (WHERE tenth = 10) / avg(n) FILTER (WHERE tenth = 1), 2)
		FROM t});
	return split /\|/, $row;
}

for my $case ([ 10000, 1 ], [ 20000, 4 ]) {
	my ($base, $spread) = @$case;
	my ($sent, $rate) = run_sim($base, $spread);
	my ($drivers, $total, $min, $max, $tenths) = counts($base);
	note "spread $spread: sent $sent at $rate/s; $drivers drivers, $total in history, "
	  . "$min..$max per driver, busiest tenth / quietest tenth $tenths";
	cmp_ok(abs($rate - 2000), '<', 200, "spread $spread: the rate asked for (2000/s)");
	is($drivers, 200, "spread $spread: every driver pinged");
	is($total, $sent, "spread $spread: every record sent is in history");
	if ($spread == 1) {
		cmp_ok($max / $min, '<=', 1.1, 'drivers alike: each pings as often as the others');
	} else {
		# Periods drawn from 1..4 times the shortest: the busiest tenth pings
		# about 3.5 times as often as the quietest.
		cmp_ok($tenths, '>=', 2.5, 'spread 4: the busiest drivers ping several times as often as the quietest');
		cmp_ok($tenths, '<=', 5, 'spread 4: but not beyond four times by much');
	}
}

$node->stop;
done_testing();
