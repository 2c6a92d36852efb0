-- Bad input gets a clear error with a SQLSTATE, and nothing is ingested.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT value AS received_before FROM livetrack.stats WHERE metric = 'received_messages' \gset
SELECT q, pg_temp.err(q) FROM (VALUES
    ('SELECT livetrack.ingest(0, 1, 1)'),
    ('SELECT livetrack.ingest(-5, 1, 1)'),
    ('SELECT livetrack.ingest(NULL, 1, 1)'),
    ('SELECT livetrack.ingest(7, NULL, 1)'),
    ('SELECT livetrack.ingest(7, 90.0000001, 1)'),
    ('SELECT livetrack.ingest(7, -91, 1)'),
    ('SELECT livetrack.ingest(7, ''NaN'', 1)'),
    ('SELECT livetrack.ingest(7, 1, 180.5)'),
    ('SELECT livetrack.ingest(7, 1, ''-Infinity'')'),
    ('SELECT livetrack.ingest(7, 1, 1, now() + interval ''1 min'')'),
    ('SELECT livetrack.ingest(7, 1, 1, now() - interval ''11 min'')'),
    ('SELECT livetrack.ingest(7, 1, 1, now(), -1)'),
    ('SELECT livetrack.ingest(7, 1, 1, now(), 700)'),
    ('SELECT livetrack.ingest(7, 1, 1, now(), NULL, -0.5)'),
    ('SELECT livetrack.ingest(7, 1, 1, now(), NULL, 400)'),
    ('SELECT livetrack.ingest(7, 1, 1, now(), NULL, NULL, -1)'),
    ('SELECT livetrack.ingest(7, 1, 1, now(), NULL, NULL, 7000)'),
    ('SELECT livetrack.ingest(7, 1, 1, now(), NULL, NULL, NULL, ''flying'')'),
    ('SELECT livetrack.ingest(7, 1, 1, now(), NULL, NULL, NULL, ''BUSY'')')
) t(q);
SELECT livetrack.wait_flushed();
SELECT value - :received_before AS received_after_errors FROM livetrack.stats WHERE metric = 'received_messages';
SELECT count(*) AS driver_7 FROM livetrack.driver_position(7);

-- The edges of the valid ranges are accepted; heading 360 means north.
SELECT livetrack.ingest(8, 90, 180, now(), 655.34, 360, 6553.4, 'available');
SELECT livetrack.ingest(9, -90, -180, now(), 0, 0, 0);
SELECT livetrack.wait_flushed();
SELECT driver_id, lat, lon, speed_mps, heading_deg, accuracy_m, status
FROM livetrack.live WHERE driver_id IN (8, 9) ORDER BY driver_id;
