-- CREATE EXTENSION brings PostGIS along and wakes the workers.
CREATE EXTENSION livetrack CASCADE;
SELECT extname FROM pg_extension WHERE extname IN ('livetrack', 'postgis') ORDER BY 1;

-- wait_flushed() waits for the listener to serve, so it is ready after this.
SELECT livetrack.wait_flushed('30 s');

-- The flusher creates the hot log's partitions for the next minutes and
-- the segments' for today and tomorrow, ahead of need.
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN (SELECT count(*) FROM pg_inherits WHERE inhparent = 'livetrack.segments'::regclass) >= 2;
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT c.relname = 'segments_' || to_char((now() AT TIME ZONE 'UTC')::date + d, 'YYYYMMDD') AS named_by_day,
       pg_get_expr(c.relpartbound, c.oid) LIKE 'FOR VALUES FROM%' AS range_partition
FROM generate_series(0, 1) d
JOIN pg_class c ON c.relname = 'segments_' || to_char((now() AT TIME ZONE 'UTC')::date + d, 'YYYYMMDD')
ORDER BY d;
SELECT count(*) >= 5 AS hot_minutes_ahead FROM pg_inherits WHERE inhparent = 'livetrack.hot'::regclass;

-- The workers show in pg_stat_activity under their own names.
SELECT backend_type, datname FROM pg_stat_activity WHERE backend_type LIKE 'livetrack%' ORDER BY 1;

-- The contract's shapes (SPEC 3).
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'livetrack.live'::regclass AND attnum > 0 ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'livetrack.pings'::regclass AND attnum > 0 ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'livetrack.stats'::regclass AND attnum > 0 ORDER BY attnum;
SELECT p.oid::regprocedure AS function, pg_get_function_result(p.oid) AS returns
FROM pg_proc p WHERE p.pronamespace = 'livetrack'::regnamespace AND p.proname !~ '^_'
ORDER BY p.proname, p.oid::regprocedure::text COLLATE "C";
-- Argument names and defaults: callers use them (k => 20, max_age => '5 min').
SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments
FROM pg_proc p WHERE p.pronamespace = 'livetrack'::regnamespace AND p.proname !~ '^_'
ORDER BY p.proname, p.oid::regprocedure::text COLLATE "C";
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'livetrack.orders'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'livetrack.events'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
