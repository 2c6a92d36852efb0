-- History (issue 28): a hot log of one-minute partitions, made ahead of
-- need; segments in daily partitions; retention drops whole days (the
-- flusher runs the maintenance once a minute with the default 7 days, which
-- leaves every partition made here alone).
SELECT livetrack._hot_partition(date_trunc('minute', now()) - interval '3 days')::text
       = 'livetrack.hot_' || to_char((date_trunc('minute', now()) - interval '3 days') AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI')
       AS three_days_ago_made;
SELECT livetrack._hot_partition(date_trunc('minute', now()) - interval '3 days') =
       livetrack._hot_partition(date_trunc('minute', now()) - interval '3 days') AS found_again;
SELECT livetrack._hot_minute('hot_20261207_2359') = '2026-12-07 23:59+00' AS name_is_the_minute;
SELECT pg_get_expr(c.relpartbound, c.oid) = format('FOR VALUES FROM (%L) TO (%L)',
           date_trunc('minute', now()) - interval '3 days', date_trunc('minute', now()) - interval '3 days' + interval '1 minute')
       AS one_minute_of_ts
FROM pg_class c WHERE c.oid = livetrack._hot_partition(date_trunc('minute', now()) - interval '3 days');
SELECT livetrack._segment_partition(((now() AT TIME ZONE 'UTC')::date - 5))::text
       = 'livetrack.segments_' || to_char((now() AT TIME ZONE 'UTC')::date - 5, 'YYYYMMDD') AS five_days_ago_made;
SELECT livetrack._segment_partition(((now() AT TIME ZONE 'UTC')::date - 2)) IS NOT NULL AS two_days_ago_made;
-- Encoded fixes stay in the row.
SELECT attstorage FROM pg_attribute
WHERE attrelid = livetrack._segment_partition(((now() AT TIME ZONE 'UTC')::date - 2)) AND attname = 'data';

-- Retention 0 keeps everything.
SELECT dropped FROM livetrack._maintain_history(0);

-- Two days: the segments of five days ago and the hot minute of three days
-- ago go; the segments of two days ago ended less than two days ago and stay.
SELECT dropped FROM livetrack._maintain_history(2 * 24 * 60);
SELECT d AS days_ago, count(c.oid) AS segment_partitions
FROM unnest(ARRAY[5, 2, 0, -1]) d
LEFT JOIN pg_class c ON c.relname = 'segments_' || to_char((now() AT TIME ZONE 'UTC')::date - d, 'YYYYMMDD')
GROUP BY d ORDER BY d DESC;
SELECT count(*) AS old_hot_minutes FROM pg_class
WHERE relname = 'hot_' || to_char((date_trunc('minute', now()) - interval '3 days') AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI');
-- Hot partitions for the next minutes exist.
SELECT count(*) >= 5 AS minutes_ahead FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'livetrack.hot'::regclass AND livetrack._hot_minute(c.relname) > now();

-- Not for ordinary roles: the maintenance functions are revoked from PUBLIC.
SELECT has_function_privilege('public', 'livetrack._maintain_history(int)', 'execute') AS public_may_maintain,
       has_function_privilege('public', 'livetrack.compact_history()', 'execute') AS public_may_compact;

-- A fix reads back through livetrack.pings with the SPEC's columns, before
-- and after compaction; it is compacted once its minute is closed (here:
-- it is two minutes old).
SELECT livetrack.ingest(3001, 10.1234567, 20.7654321, now() - interval '2 min', speed_mps => 8.3, accuracy_m => 5);
SELECT livetrack.wait_flushed('10 s');
SELECT driver_id, ST_AsText(geog) AS geog, speed_mps, heading_deg, accuracy_m
FROM livetrack.pings WHERE driver_id = 3001;
SELECT livetrack.compact_history() IS NOT NULL AS compacted; -- the compactor may have been first
SELECT count(*) AS in_hot FROM (SELECT driver_id FROM livetrack.hot UNION ALL SELECT driver_id FROM livetrack.hot_late) h
WHERE driver_id = 3001;
SELECT driver_id, fixes, lat_min, lon_max FROM livetrack.segments WHERE driver_id = 3001;
SELECT driver_id, ST_AsText(geog) AS geog, speed_mps, heading_deg, accuracy_m
FROM livetrack.pings WHERE driver_id = 3001;

-- compact_history() reads after locking: not under a transaction snapshot.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT livetrack.compact_history();
ROLLBACK;

-- History is a view now: columns of one's own are not supported.
ALTER TABLE livetrack.pings ADD COLUMN note text;
