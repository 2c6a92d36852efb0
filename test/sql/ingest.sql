-- Fixes from ingest() travel the same path as network fixes: listener, live
-- state, ring, flusher, history.
SELECT livetrack.ingest(1001, 12.9716, 77.5946, now() - interval '2 s', 8.3, 90, 5, 'busy');
SELECT livetrack.ingest(1002, -33.8688, 151.2093);
SELECT livetrack.wait_flushed();

-- Visible in the live state (shared memory) ...
SELECT driver_id, lat, lon, ST_AsText(geog) AS geog, speed_mps, heading_deg, accuracy_m, status,
       age > interval '1 s' AS older_than_1s
FROM livetrack.live WHERE driver_id IN (1001, 1002) ORDER BY driver_id;
SELECT driver_id, lat, lon, status FROM livetrack.driver_position(1001);
SELECT count(*) AS unknown_driver FROM livetrack.driver_position(999999);

-- ... and committed in history, with the same point PostGIS would build.
SELECT driver_id, ST_AsEWKT(geog) AS geog, speed_mps, heading_deg, accuracy_m,
       geog = ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography AS same_point,
       received_at >= ts AS received_after_fix
FROM livetrack.pings
JOIN (VALUES (1001, 77.5946::float8, 12.9716::float8), (1002, 151.2093, -33.8688)) v(id, lon, lat)
  ON driver_id = v.id
ORDER BY driver_id;

-- A newer fix moves the driver; a status of NULL keeps the current one.
SELECT livetrack.ingest(1001, 12.9800, 77.6000, now() - interval '1 s');
SELECT livetrack.wait_flushed();
SELECT lat, lon, status, speed_mps IS NULL AS speed_unknown FROM livetrack.driver_position(1001);

-- A late fix (not newer than the live one) goes to history only, and is counted.
SELECT value AS late_before FROM livetrack.stats WHERE metric = 'late_records' \gset
SELECT livetrack.ingest(1001, 1.0, 1.0, now() - interval '5 min', NULL, NULL, NULL, 'offline');
SELECT livetrack.wait_flushed();
SELECT lat, lon, status FROM livetrack.driver_position(1001);
SELECT count(*) AS history_rows FROM livetrack.pings WHERE driver_id = 1001;
SELECT value - :late_before AS late_counted FROM livetrack.stats WHERE metric = 'late_records';

-- Status changes are persisted for rebuilding the live state after a restart.
SELECT livetrack.ingest(1002, -33.8688, 151.2093, now(), NULL, NULL, NULL, 'offline');
SELECT livetrack.wait_flushed();
SELECT driver_id, status FROM livetrack.drivers WHERE driver_id IN (1001, 1002) ORDER BY driver_id;

-- trail(): the path in time order, late fixes included where they belong.
SELECT livetrack.ingest(1003, 10.00, 20.00, now() - interval '40 s');
SELECT livetrack.ingest(1003, 10.02, 20.02, now() - interval '20 s');
SELECT livetrack.ingest(1003, 10.01, 20.01, now() - interval '30 s');
SELECT livetrack.ingest(1003, 10.03, 20.03, now() - interval '10 s');
SELECT livetrack.wait_flushed();
SELECT ST_AsText(livetrack.trail(1003, now() - interval '1 hour')) AS trail;
SELECT ST_AsText(livetrack.trail(1003, now() - interval '25 s')) AS recent;
SELECT ST_SRID(livetrack.trail(1003, now() - interval '1 hour')) AS srid;
SELECT livetrack.trail(1003, now() - interval '15 s') IS NULL AS one_fix_is_no_trail;
SELECT livetrack.trail(424242, now() - interval '1 hour') IS NULL AS unknown_driver;

-- Many fixes in one statement: nothing lost between ingest and history.
SELECT count(livetrack.ingest(200000 + i, 48.8566 + i * 1e-5, 2.3522 - i * 1e-5, now() - interval '3 s'))
FROM generate_series(1, 20000) i;
SELECT livetrack.wait_flushed('60 s');
SELECT count(*) AS live, count(DISTINCT driver_id) AS distinct_ids,
       bool_and(lat = 48.8566 + (driver_id - 200000) * 1e-5) AS positions_match
FROM livetrack.live WHERE driver_id > 200000;
SELECT count(*) AS in_history FROM livetrack.pings WHERE driver_id > 200000;
