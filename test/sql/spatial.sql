-- nearest_drivers() and drivers_within(), served from the live state.
-- Drivers on a small ring around Harare (-17.83, 31.05), far from other tests.
SELECT count(livetrack.ingest(3000 + i, -17.83 + i * 0.001 * cos(radians(i * 36)),
                              31.05 + i * 0.001 * sin(radians(i * 36)), now() - interval '1 s',
                              NULL, NULL, NULL, CASE WHEN i % 4 = 0 THEN 'busy' END))
FROM generate_series(1, 12) i;
SELECT livetrack.ingest(3100, -17.8301, 31.0501, now() - interval '5 min');   -- stale
SELECT livetrack.ingest(3101, -17.8302, 31.0502, now(), NULL, NULL, NULL, 'offline');
SELECT livetrack.wait_flushed();

-- Nearest available, fresh drivers, in distance order. Distances are
-- geodesic on the WGS84 spheroid: PostGIS's ST_Distance(geography), to 1 mm.
SELECT n.driver_id, round(n.distance_m) AS metres, n.status,
       abs(n.distance_m - ST_Distance(ST_MakePoint(31.05, -17.83)::geography,
                                      ST_MakePoint(n.lon, n.lat)::geography)) < 0.001 AS same_as_postgis
FROM livetrack.nearest_drivers(-17.83, 31.05, 5) n;

-- status NULL means any; a radius cuts the list; k larger than the fleet is fine.
SELECT driver_id, status FROM livetrack.nearest_drivers(-17.83, 31.05, 3, 5000, NULL);
SELECT count(*) AS within_350m FROM livetrack.nearest_drivers(-17.83, 31.05, 100, 350);
SELECT count(*) AS all_busy FROM livetrack.nearest_drivers(-17.83, 31.05, 1000, 5000, 'busy');
SELECT driver_id FROM livetrack.nearest_drivers(-17.83, 31.05, 1, 100, NULL, '1 hour');
SELECT count(*) AS empty_ocean FROM livetrack.nearest_drivers(-40, -120, 10);

-- Across the antimeridian and at the pole.
SELECT livetrack.ingest(3201, 0.001, 179.9995, now());
SELECT livetrack.ingest(3202, -0.001, -179.9995, now());
SELECT livetrack.ingest(3203, 89.9999, 0, now());
SELECT livetrack.ingest(3204, 89.9999, 180, now());
SELECT livetrack.ingest(3205, 89.9999, -90, now());
SELECT livetrack.ingest(3206, 90, 180, now());    -- on the pole itself, whatever the longitude
SELECT livetrack.ingest(3207, 90, -45, now());
SELECT livetrack.wait_flushed();
SELECT driver_id, round(distance_m) AS metres FROM livetrack.nearest_drivers(0, 180, 2, 1000);
-- k = 6 leaves room for driver 8 of errors.sql, also on the pole if still fresh;
-- the filter keeps the output the same either way.
SELECT driver_id, round(distance_m) AS metres,
       abs(distance_m - ST_Distance(ST_MakePoint(0, 90)::geography, ST_MakePoint(lon, lat)::geography)) < 0.001
         AS same_as_postgis
FROM livetrack.nearest_drivers(90, 0, 6, 1000) WHERE driver_id > 3000 ORDER BY metres, driver_id;

-- drivers_within(): exactly what ST_Intersects says about the same points.
CREATE TEMP TABLE areas (name text, g geometry);
INSERT INTO areas VALUES
    ('envelope', ST_MakeEnvelope(31.045, -17.835, 31.06, -17.82, 4326)),
    ('triangle', ST_GeomFromText('POLYGON((31.04 -17.84, 31.07 -17.84, 31.05 -17.81, 31.04 -17.84))', 4326)),
    ('multipolygon', ST_GeomFromText('MULTIPOLYGON(((31.049 -17.832, 31.052 -17.832, 31.052 -17.829, 31.049 -17.829, 31.049 -17.832)),
                                                    ((31.055 -17.835, 31.07 -17.835, 31.07 -17.82, 31.055 -17.82, 31.055 -17.835)))', 4326)),
    ('srid 0', ST_MakeEnvelope(31.045, -17.835, 31.06, -17.82)),
    ('empty', 'POLYGON EMPTY'::geometry);
SELECT a.name,
       (SELECT array_agg(driver_id ORDER BY driver_id) FROM livetrack.drivers_within(a.g)) AS drivers,
       (SELECT array_agg(driver_id ORDER BY driver_id) FROM livetrack.live l
        WHERE l.age < interval '60 s' AND ST_Intersects(a.g, ST_SetSRID(ST_MakePoint(l.lon, l.lat), ST_SRID(a.g))))
       IS NOT DISTINCT FROM
       (SELECT array_agg(driver_id ORDER BY driver_id) FROM livetrack.drivers_within(a.g)) AS same_as_postgis
FROM areas a ORDER BY a.name;

-- Untyped text (WKT, EWKT) is read as geometry, and a NULL area is no error.
SELECT array_agg(driver_id ORDER BY driver_id) IS NOT DISTINCT FROM
       (SELECT array_agg(driver_id ORDER BY driver_id)
        FROM livetrack.drivers_within(ST_MakeEnvelope(31.045, -17.835, 31.06, -17.82, 4326))) AS ewkt_same,
       count(*) > 0 AS some
FROM livetrack.drivers_within('SRID=4326;POLYGON((31.045 -17.835, 31.06 -17.835, 31.06 -17.82, 31.045 -17.82, 31.045 -17.835))');
SELECT count(*) AS wkt FROM livetrack.drivers_within('POLYGON((31.045 -17.835, 31.06 -17.835, 31.06 -17.82, 31.045 -17.82, 31.045 -17.835))', '1 h');
SELECT count(*) AS null_area FROM livetrack.drivers_within(NULL);
PREPARE within_param AS SELECT count(*) FROM livetrack.drivers_within($1);
EXECUTE within_param('SRID=4326;POINT(0 0)');
DEALLOCATE within_param;

-- A circle from ST_Buffer(geography), and max_age.
SELECT array_agg(driver_id ORDER BY driver_id) AS in_500m
FROM livetrack.drivers_within(ST_Buffer(ST_MakePoint(31.05, -17.83)::geography, 500));
SELECT array_agg(driver_id ORDER BY driver_id) AS in_500m_any_age
FROM livetrack.drivers_within(ST_Buffer(ST_MakePoint(31.05, -17.83)::geography, 500), NULL);
SELECT array_agg(driver_id ORDER BY driver_id) AS postgis_500m
FROM livetrack.live l
WHERE l.age < interval '60 s' AND ST_Intersects(ST_Buffer(ST_MakePoint(31.05, -17.83)::geography, 500), l.geog);

-- Plain calls run as livetrack's own scan node. Whole-row and LATERAL uses
-- stay function scans, as does everything with livetrack.enable_nearest_scan
-- off, and both give the same rows.
EXPLAIN (VERBOSE, COSTS OFF)
SELECT driver_id, distance_m FROM livetrack.nearest_drivers(-17.83, 31.05, 5) WHERE distance_m > 10;
EXPLAIN (COSTS OFF) SELECT n FROM livetrack.nearest_drivers(-17.83, 31.05) n;
EXPLAIN (COSTS OFF)
SELECT p.i, n.driver_id FROM generate_series(1, 2) p(i), LATERAL livetrack.nearest_drivers(-17.83, 31.05, p.i) n;
CREATE TEMP VIEW nearest_rows AS
SELECT p.i, (SELECT array_agg(ROW(n.driver_id, n.distance_m, n.lat, n.lon, n.ts, n.status)::text
                              ORDER BY n.distance_m, n.driver_id)
             FROM livetrack.nearest_drivers(-17.83 + p.i * 0.0004, 31.05, p.i, 900 + p.i * 100,
                                            CASE WHEN p.i % 3 = 0 THEN 'busy' END, NULL) n) AS found
FROM generate_series(1, 14) p(i);
EXPLAIN (COSTS OFF) SELECT * FROM nearest_rows;
CREATE TEMP TABLE by_scan AS SELECT * FROM nearest_rows;
SET livetrack.enable_nearest_scan = off;
EXPLAIN (COSTS OFF) SELECT * FROM nearest_rows;
CREATE TEMP TABLE by_function AS SELECT * FROM nearest_rows;
RESET livetrack.enable_nearest_scan;
SELECT count(*) AS queries, sum(cardinality(s.found)) AS rows,
       count(*) FILTER (WHERE s.found IS DISTINCT FROM f.found) AS different
FROM by_scan s JOIN by_function f USING (i);

-- The function is recognised by its C symbol, not its name; one declared
-- with other column types stays a function scan (only EXPLAINed here: its
-- rows would not match its declaration).
CREATE FUNCTION pg_temp.near_alias(float8, float8, int, float8, text, interval)
RETURNS TABLE (driver_id bigint, distance_m float8, lat float8, lon float8, ts timestamptz, status text)
AS '$libdir/livetrack', 'livetrack_nearest_drivers' LANGUAGE C;
EXPLAIN (COSTS OFF) SELECT driver_id FROM pg_temp.near_alias(-17.83, 31.05, 3, 5000, NULL, NULL);
SELECT driver_id FROM pg_temp.near_alias(-17.83, 31.05, 3, 5000, NULL, NULL);
CREATE FUNCTION pg_temp.near_mistyped(float8, float8, int, float8, text, interval)
RETURNS TABLE (driver_id text, distance_m float8, lat float8, lon float8, ts timestamptz, status text)
AS '$libdir/livetrack', 'livetrack_nearest_drivers' LANGUAGE C;
EXPLAIN (COSTS OFF) SELECT driver_id FROM pg_temp.near_mistyped(-17.83, 31.05, 3, 5000, NULL, NULL);

-- A generic plan takes its arguments as parameters, errors included.
SET plan_cache_mode = force_generic_plan;
PREPARE near(float8, float8, int) AS
SELECT driver_id FROM livetrack.nearest_drivers($1, $2, $3, 5000, NULL, NULL) WHERE distance_m > 0;
EXPLAIN (COSTS OFF) EXECUTE near(-17.83, 31.05, 3);
EXECUTE near(-17.83, 31.05, 3);
EXECUTE near(-17.83, 31.05, 0);
EXECUTE near(95, 31.05, 3);
DEALLOCATE near;
RESET plan_cache_mode;

-- The scan checks EXECUTE on the function, as a function scan would.
CREATE ROLE livetrack_regress_dispatch;
GRANT USAGE ON SCHEMA livetrack TO livetrack_regress_dispatch;
REVOKE EXECUTE ON FUNCTION livetrack.nearest_drivers FROM PUBLIC;
SET ROLE livetrack_regress_dispatch;
SELECT driver_id FROM livetrack.nearest_drivers(-17.83, 31.05);
RESET ROLE;
GRANT EXECUTE ON FUNCTION livetrack.nearest_drivers TO PUBLIC;
SET ROLE livetrack_regress_dispatch;
SELECT count(*) AS granted FROM livetrack.nearest_drivers(-17.83, 31.05);
RESET ROLE;
REVOKE USAGE ON SCHEMA livetrack FROM livetrack_regress_dispatch;
DROP ROLE livetrack_regress_dispatch;

-- Bad arguments are errors with a SQLSTATE.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT q, pg_temp.err(q) FROM (VALUES
    ('SELECT * FROM livetrack.nearest_drivers(91, 0)'),
    ('SELECT * FROM livetrack.nearest_drivers(-90.5, 0)'),
    ('SELECT * FROM livetrack.nearest_drivers(0, 181)'),
    ('SELECT * FROM livetrack.nearest_drivers(0, -181)'),
    ('SELECT * FROM livetrack.nearest_drivers(''NaN'', 0)'),
    ('SELECT * FROM livetrack.nearest_drivers(0, ''NaN'')'),
    ('SELECT * FROM livetrack.nearest_drivers(NULL, 0)'),
    ('SELECT * FROM livetrack.nearest_drivers(0, NULL)'),
    ('SELECT * FROM livetrack.nearest_drivers(0, 0, NULL)'),
    ('SELECT * FROM livetrack.nearest_drivers(0, 0, 0)'),
    ('SELECT * FROM livetrack.nearest_drivers(0, 0, -3)'),
    ('SELECT * FROM livetrack.nearest_drivers(0, 0, 10, -1)'),
    ('SELECT * FROM livetrack.nearest_drivers(0, 0, 10, ''NaN'')'),
    ('SELECT * FROM livetrack.nearest_drivers(0, 0, 10, 5000, ''parked'')'),
    ('SELECT * FROM livetrack.nearest_drivers(0, 0, 10, 5000, NULL, ''-1 s'')'),
    ('SELECT * FROM livetrack.drivers_within(ST_MakeEnvelope(0, 0, 1, 1, 3857))'),
    ('SELECT * FROM livetrack.drivers_within(NULL::geometry)')
) t(q);
