-- Every metric the contract names (SPEC 3, 7) is there.
SELECT m AS missing_metric
FROM unnest(ARRAY['received_messages', 'accepted_records', 'rejected_malformed', 'rejected_auth',
                  'rejected_replay', 'rejected_range', 'rejected_clock', 'late_records',
                  'dropped_ring_full', 'flushed_records', 'flush_batches', 'notifications',
                  'live_drivers', 'mqtt_connected', 'mqtt_messages', 'mqtt_reconnects']) m
WHERE m NOT IN (SELECT metric FROM livetrack.stats);

-- ingest() calls refused with an error are counted by reason.
SELECT max(value) FILTER (WHERE metric = 'ingest_rejected_malformed') AS malformed0,
       max(value) FILTER (WHERE metric = 'ingest_rejected_range') AS range0,
       max(value) FILTER (WHERE metric = 'ingest_rejected_clock') AS clock0
FROM livetrack.stats \gset
DO $$
BEGIN
    BEGIN PERFORM livetrack.ingest(NULL, 1, 1); EXCEPTION WHEN null_value_not_allowed THEN END;
    BEGIN PERFORM livetrack.ingest(1, 95, 1); EXCEPTION WHEN numeric_value_out_of_range THEN END;
    BEGIN PERFORM livetrack.ingest(1, 1, 1, now(), -1); EXCEPTION WHEN numeric_value_out_of_range THEN END;
    BEGIN PERFORM livetrack.ingest(1, 1, 1, now(), NULL, NULL, NULL, 'parked'); EXCEPTION WHEN invalid_parameter_value THEN END;
    BEGIN PERFORM livetrack.ingest(1, 1, 1, now() - interval '1 hour'); EXCEPTION WHEN invalid_parameter_value THEN END;
END $$;
SELECT max(value) FILTER (WHERE metric = 'ingest_rejected_malformed') - :malformed0 AS malformed_delta,
       max(value) FILTER (WHERE metric = 'ingest_rejected_range') - :range0 AS range_delta,
       max(value) FILTER (WHERE metric = 'ingest_rejected_clock') - :clock0 AS clock_delta
FROM livetrack.stats;

-- Counters move with traffic: what was accepted was flushed, batch by batch.
SELECT max(value) FILTER (WHERE metric = 'accepted_records') AS accepted,
       max(value) FILTER (WHERE metric = 'flushed_records') AS flushed
FROM livetrack.stats \gset
SELECT livetrack.ingest(5000 + i, 1, 1) FROM generate_series(1, 10) i;
SELECT livetrack.wait_flushed();
SELECT max(value) FILTER (WHERE metric = 'accepted_records') - :accepted AS accepted_delta,
       max(value) FILTER (WHERE metric = 'flushed_records') - :flushed AS flushed_delta,
       max(value) FILTER (WHERE metric = 'flush_batches') > 0 AS batched,
       max(value) FILTER (WHERE metric = 'live_drivers') = (SELECT count(*) FROM livetrack.live) AS live_matches,
       max(value) FILTER (WHERE metric = 'ring_used') = 0 AS ring_drained,
       max(value) FILTER (WHERE metric = 'listener_state') AS listener_state
FROM livetrack.stats;

-- reset_stats(): counters and latency figures start again from zero; gauges
-- such as live_drivers are untouched.
SELECT livetrack.reset_stats();
SELECT max(value) FILTER (WHERE metric = 'accepted_records') AS accepted_after_reset,
       max(value) FILTER (WHERE metric = 'flush_latency_p99_us') AS flush_p99_after_reset,
       max(value) FILTER (WHERE metric = 'live_drivers') > 0 AS gauges_untouched
FROM livetrack.stats;
SELECT livetrack.ingest(5100 + i, 1, 1) FROM generate_series(1, 3) i;
SELECT livetrack.wait_flushed();
SELECT max(value) FILTER (WHERE metric = 'accepted_records') AS accepted_since,
       max(value) FILTER (WHERE metric = 'flushed_records') AS flushed_since,
       max(value) FILTER (WHERE metric = 'flush_latency_p99_us') > 0 AS latency_again
FROM livetrack.stats;

-- Like pg_stat_reset(), only for superusers unless granted.
CREATE ROLE livetrack_regress_nobody;
GRANT USAGE ON SCHEMA livetrack TO livetrack_regress_nobody;
SET ROLE livetrack_regress_nobody;
SELECT livetrack.reset_stats();
RESET ROLE;
REVOKE USAGE ON SCHEMA livetrack FROM livetrack_regress_nobody;
DROP ROLE livetrack_regress_nobody;
