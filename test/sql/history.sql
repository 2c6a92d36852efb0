-- History partitions: one per UTC day, made ahead of need, dropped after
-- livetrack.history_retention (the flusher runs this once a minute with the
-- default 7 days, which leaves every partition made here alone).
SELECT livetrack._ensure_partition(((now() AT TIME ZONE 'UTC')::date - 5))::text
       = 'livetrack.pings_' || to_char((now() AT TIME ZONE 'UTC')::date - 5, 'YYYYMMDD') AS five_days_ago_made;
SELECT livetrack._ensure_partition(((now() AT TIME ZONE 'UTC')::date - 5)) =
       livetrack._ensure_partition(((now() AT TIME ZONE 'UTC')::date - 5)) AS found_again;
SELECT livetrack._ensure_partition(((now() AT TIME ZONE 'UTC')::date - 2)) IS NOT NULL AS two_days_ago_made;

-- Retention 0 keeps everything.
SELECT created, dropped FROM livetrack._maintain_partitions(0);

-- Three days: the day five days ago has ended more than three days ago and
-- goes; the day two days ago ended less than two days ago and stays, as do
-- today's and tomorrow's.
SELECT created, dropped FROM livetrack._maintain_partitions(3 * 24 * 60);
SELECT d AS days_ago, count(c.oid) AS partitions
FROM unnest(ARRAY[5, 2, 0, -1]) d
LEFT JOIN pg_class c ON c.relname = 'pings_' || to_char((now() AT TIME ZONE 'UTC')::date - d, 'YYYYMMDD')
GROUP BY d ORDER BY d DESC;

-- Not for ordinary roles: the maintenance functions are revoked from PUBLIC.
SELECT has_function_privilege('public', 'livetrack._maintain_partitions(int)', 'execute') AS public_may_maintain;

-- Users may add columns to history (not drop livetrack's: the extension
-- owns them): the flushers fill theirs by name and leave the others NULL,
-- and follow when a column comes or goes.
ALTER TABLE livetrack.pings ADD COLUMN note text;
SELECT livetrack.ingest(3001, 10, 20, now() - interval '2 s', accuracy_m => 5);
SELECT livetrack.wait_flushed('10 s');
SELECT driver_id, ST_AsText(geog) AS geog, accuracy_m, note IS NULL AS note_is_null
FROM livetrack.pings WHERE driver_id = 3001;
ALTER TABLE livetrack.pings DROP COLUMN note;
ALTER TABLE livetrack.pings DROP COLUMN accuracy_m;
SELECT livetrack.ingest(3001, 10.5, 20.5, now() - interval '1 s', accuracy_m => 7.5);
SELECT livetrack.wait_flushed('10 s');
SELECT driver_id, ST_AsText(geog) AS geog, accuracy_m FROM livetrack.pings WHERE driver_id = 3001 ORDER BY ts;
