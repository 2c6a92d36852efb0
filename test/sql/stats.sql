-- Every metric the contract names (SPEC 3) is there.
SELECT m AS missing_metric
FROM unnest(ARRAY['received_messages', 'accepted_records', 'rejected_malformed', 'rejected_auth',
                  'rejected_replay', 'rejected_range', 'rejected_clock', 'late_records',
                  'dropped_ring_full', 'flushed_records', 'flush_batches', 'notifications',
                  'live_drivers']) m
WHERE m NOT IN (SELECT metric FROM livetrack.stats);

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
