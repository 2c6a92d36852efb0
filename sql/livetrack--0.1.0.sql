-- livetrack 0.1.0: ingest path, live state, history.
\echo Use "CREATE EXTENSION livetrack CASCADE" to load this file. \quit

-- History ------------------------------------------------------------------

-- One row per accepted fix. Daily partitions (UTC) are created ahead of need
-- by the flusher and dropped after livetrack.history_retention.
CREATE TABLE livetrack.pings (
    driver_id   bigint NOT NULL,
    ts          timestamptz NOT NULL,
    geog        geography(Point, 4326) NOT NULL,
    speed_mps   real,
    heading_deg real,
    accuracy_m  real,
    received_at timestamptz NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX pings_driver_ts ON livetrack.pings (driver_id, ts);
CREATE INDEX pings_ts_brin ON livetrack.pings USING brin (ts);

-- Every driver ever seen and its status: what the live state is rebuilt from,
-- together with each driver's newest fix in pings.
CREATE TABLE livetrack.drivers (
    driver_id    bigint PRIMARY KEY,
    status       text NOT NULL CHECK (status IN ('offline', 'available', 'busy')),
    first_seen   timestamptz NOT NULL DEFAULT now(),
    status_since timestamptz NOT NULL
);

CREATE FUNCTION livetrack._partition_name(day date) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'pings_' || to_char(day, 'YYYYMMDD');

-- Finds or creates the partition holding [day, day + 1). Flushers may ask for
-- the same day at once: the lock (self-conflicting, but not with inserts)
-- makes the second one wait and then find the first one's partition.
CREATE FUNCTION livetrack._ensure_partition(day date) RETURNS regclass
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    name text := livetrack._partition_name(day);
    rel regclass := to_regclass(format('livetrack.%I', name));
BEGIN
    IF rel IS NOT NULL THEN
        RETURN rel;
    END IF;
    LOCK TABLE ONLY livetrack.pings IN SHARE UPDATE EXCLUSIVE MODE;
    rel := to_regclass(format('livetrack.%I', name));
    IF rel IS NULL THEN
        EXECUTE format('CREATE TABLE livetrack.%I PARTITION OF livetrack.pings FOR VALUES FROM (%L) TO (%L)',
                       name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
        rel := format('livetrack.%I', name)::regclass;
    END IF;
    RETURN rel;
END $$;

-- Run by the flusher once a minute: partitions for today and tomorrow, and
-- retention. A lock timeout keeps it from stalling ingest behind long queries.
CREATE FUNCTION livetrack._maintain_partitions(retention_minutes int, OUT created int, OUT dropped int)
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    part record;
BEGIN
    created := 0;
    dropped := 0;
    PERFORM set_config('lock_timeout', '2s', true);
    FOR d IN 0..1 LOOP
        IF to_regclass(format('livetrack.%I', livetrack._partition_name(today + d))) IS NULL THEN
            PERFORM livetrack._ensure_partition(today + d);
            created := created + 1;
        END IF;
    END LOOP;
    IF retention_minutes > 0 THEN
        FOR part IN
            SELECT c.oid::regclass AS rel
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'livetrack.pings'::regclass
              AND c.relname ~ '^pings_[0-9]{8}$'
              AND to_date(substr(c.relname, 7), 'YYYYMMDD') + 1
                  <= ((now() - make_interval(mins => retention_minutes)) AT TIME ZONE 'UTC')::date
        LOOP
            EXECUTE format('DROP TABLE %s', part.rel);
            dropped := dropped + 1;
        END LOOP;
    END IF;
END $$;

-- Called by the flusher with the batch's first sightings and status changes.
CREATE FUNCTION livetrack._register_drivers(ids bigint[], statuses int2[], ats timestamptz[]) RETURNS void
LANGUAGE sql SET search_path = pg_catalog BEGIN ATOMIC
    INSERT INTO livetrack.drivers AS d (driver_id, status, status_since)
    SELECT DISTINCT ON (id) id,
           CASE st WHEN 1 THEN 'offline' WHEN 3 THEN 'busy' ELSE 'available' END,
           at
    FROM unnest(ids, statuses, ats) WITH ORDINALITY AS u(id, st, at, ord)
    ORDER BY id, ord DESC
    ON CONFLICT (driver_id) DO UPDATE
        SET status = excluded.status, status_since = excluded.status_since
        WHERE d.status IS DISTINCT FROM excluded.status;
END;

-- What the listener loads after a server (re)start: each driver's newest fix.
CREATE FUNCTION livetrack._rebuild_source()
RETURNS TABLE (driver_id bigint, status text, ts timestamptz, geog geography, speed_mps real,
               heading_deg real, accuracy_m real, received_at timestamptz)
LANGUAGE sql STABLE BEGIN ATOMIC
    SELECT d.driver_id, d.status, p.ts, p.geog, p.speed_mps, p.heading_deg, p.accuracy_m, p.received_at
    FROM livetrack.drivers d
    CROSS JOIN LATERAL (
        SELECT q.ts, q.geog, q.speed_mps, q.heading_deg, q.accuracy_m, q.received_at
        FROM livetrack.pings q
        WHERE q.driver_id = d.driver_id
        ORDER BY q.ts DESC
        LIMIT 1) p;
END;

REVOKE ALL ON FUNCTION livetrack._ensure_partition(date), livetrack._maintain_partitions(int),
    livetrack._register_drivers(bigint[], int2[], timestamptz[]), livetrack._rebuild_source() FROM PUBLIC;

-- trail(): the driver's path, in time order; NULL with fewer than two fixes.
CREATE FUNCTION livetrack.trail(driver_id bigint, since timestamptz, until timestamptz DEFAULT now())
RETURNS geometry(LineString, 4326)
LANGUAGE sql STABLE PARALLEL SAFE BEGIN ATOMIC
    SELECT CASE WHEN count(*) >= 2 THEN ST_MakeLine(p.geog::geometry ORDER BY p.ts) END
    FROM livetrack.pings p
    WHERE p.driver_id = trail.driver_id AND p.ts >= trail.since AND p.ts <= trail.until;
END;

-- Ingest -------------------------------------------------------------------

CREATE FUNCTION livetrack.ingest(driver_id bigint, lat float8, lon float8, ts timestamptz DEFAULT now(),
                                 speed_mps real DEFAULT NULL, heading_deg real DEFAULT NULL,
                                 accuracy_m real DEFAULT NULL, status text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'livetrack_ingest' LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION livetrack.wait_flushed(timeout interval DEFAULT '10 s') RETURNS boolean
AS 'MODULE_PATHNAME', 'livetrack_wait_flushed' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Live state (shared memory) -----------------------------------------------

CREATE FUNCTION livetrack._live()
RETURNS TABLE (driver_id bigint, lat float8, lon float8, geog geography, ts timestamptz, speed_mps real,
               heading_deg real, accuracy_m real, status text, age interval)
AS 'MODULE_PATHNAME', 'livetrack_live_rows' LANGUAGE C VOLATILE;

CREATE VIEW livetrack.live AS
SELECT driver_id, lat, lon, geog::geography(Point, 4326) AS geog, ts, speed_mps, heading_deg, accuracy_m,
       status, age
FROM livetrack._live();

CREATE FUNCTION livetrack.driver_position(driver_id bigint) RETURNS SETOF livetrack.live
AS 'MODULE_PATHNAME', 'livetrack_driver_position' LANGUAGE C VOLATILE STRICT ROWS 1;

CREATE FUNCTION livetrack.nearest_drivers(lat float8, lon float8, k int DEFAULT 10, radius_m float8 DEFAULT 5000,
                                          status text DEFAULT 'available', max_age interval DEFAULT '60 s')
RETURNS TABLE (driver_id bigint, distance_m float8, lat float8, lon float8, ts timestamptz, status text)
AS 'MODULE_PATHNAME', 'livetrack_nearest_drivers' LANGUAGE C VOLATILE PARALLEL SAFE ROWS 10;

CREATE FUNCTION livetrack._live_in_box(lat0 float8, lat1 float8, lon0 float8, lon1 float8, max_age interval,
                                       srid int, geodesic bool)
RETURNS TABLE (driver_id bigint, lat float8, lon float8, ts timestamptz, status text)
AS 'MODULE_PATHNAME', 'livetrack_live_in_box' LANGUAGE C VOLATILE PARALLEL SAFE;

-- Candidates come from the grid by bounding box; PostGIS decides, so the
-- answer is exactly what ST_Intersects says for the same points.
CREATE FUNCTION livetrack.drivers_within(area geometry, max_age interval DEFAULT '60 s')
RETURNS TABLE (driver_id bigint, lat float8, lon float8, ts timestamptz, status text)
LANGUAGE sql VOLATILE BEGIN ATOMIC
    SELECT c.driver_id, c.lat, c.lon, c.ts, c.status
    FROM livetrack._live_in_box(ST_YMin(area), ST_YMax(area), ST_XMin(area), ST_XMax(area), max_age,
                                ST_SRID(area), false) c
    WHERE ST_Intersects(area, ST_SetSRID(ST_MakePoint(c.lon, c.lat), ST_SRID(area)))
    ORDER BY c.driver_id;
END;

-- The same for geography areas, e.g. circles from ST_Buffer(geography, metres).
CREATE FUNCTION livetrack.drivers_within(area geography, max_age interval DEFAULT '60 s')
RETURNS TABLE (driver_id bigint, lat float8, lon float8, ts timestamptz, status text)
LANGUAGE sql VOLATILE BEGIN ATOMIC
    SELECT c.driver_id, c.lat, c.lon, c.ts, c.status
    FROM livetrack._live_in_box(ST_YMin(area::geometry), ST_YMax(area::geometry), ST_XMin(area::geometry),
                                ST_XMax(area::geometry), max_age, 4326, true) c
    WHERE ST_Intersects(area, ST_SetSRID(ST_MakePoint(c.lon, c.lat), 4326)::geography)
    ORDER BY c.driver_id;
END;

-- Operations -----------------------------------------------------------------

CREATE FUNCTION livetrack._stats() RETURNS TABLE (metric text, value bigint)
AS 'MODULE_PATHNAME', 'livetrack_stats_rows' LANGUAGE C VOLATILE;

CREATE VIEW livetrack.stats AS SELECT metric, value FROM livetrack._stats();

-- Counters and latency figures start again from zero (gauges are untouched).
-- Like pg_stat_reset(), for superusers unless granted.
CREATE FUNCTION livetrack.reset_stats() RETURNS void
AS 'MODULE_PATHNAME', 'livetrack_reset_stats' LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE EXECUTE ON FUNCTION livetrack.reset_stats() FROM PUBLIC;
