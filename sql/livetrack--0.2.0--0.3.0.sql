-- livetrack 0.2.0 -> 0.3.0: history in two layouts (SPEC 3, issue 28). Fixes
-- are appended in arrival order to a hot log of one-minute partitions with
-- no per-driver index; the compactor turns each closed minute into one
-- segment row per driver, its fixes encoded in a few bytes each
-- (core/segment.cpp). livetrack.pings is now a view over both, and over the
-- history written before this version, which stays where it is until
-- livetrack.history_retention drops it.
\echo Use "ALTER EXTENSION livetrack UPDATE" to load this file. \quit

-- History before 0.3.0: the daily partitions keep their rows and indexes.
ALTER TABLE livetrack.pings RENAME TO pings_0_2;
ALTER INDEX livetrack.pings_driver_ts RENAME TO pings_0_2_driver_ts;
ALTER INDEX livetrack.pings_ts_brin RENAME TO pings_0_2_ts_brin;

-- The hot log: one row per fix as the flushers write it, in one-minute
-- partitions of ts (UTC), created ahead of need and dropped once compacted.
-- The wire's units, not the SPEC's: positions in 1e-7 degrees and speed,
-- heading and accuracy as the wire's 16-bit values (their bits in a
-- smallint; -1 is 0xFFFF, unknown), so a row is 68 bytes. The only index is
-- a BRIN on driver_id: each flusher batch is written sorted by driver, so
-- one driver's rows of a batch sit on one or two pages, which the BRIN finds.
CREATE TABLE livetrack.hot (
    driver_id   bigint NOT NULL,
    ts          timestamptz NOT NULL,
    lat_e7      integer NOT NULL,
    lon_e7      integer NOT NULL,
    speed       smallint NOT NULL,  -- cm/s
    heading     smallint NOT NULL,  -- hundredths of a degree
    accuracy    smallint NOT NULL,  -- decimetres
    received_at timestamptz NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX hot_driver_brin ON livetrack.hot USING brin (driver_id) WITH (pages_per_range = 1);

-- Fixes for a minute that is already closed (livetrack.compaction_delay
-- after its end): a device that was offline, a late resend. The compactor
-- turns them into further segment rows of their minutes.
-- No autovacuum here or on the minutes: rows are never updated or deleted,
-- the compactor empties them with TRUNCATE, and a vacuum would only take
-- locks the flushers' BRIN summaries and the compactor then wait for.
CREATE TABLE livetrack.hot_late (LIKE livetrack.hot) WITH (autovacuum_enabled = false);

-- Segments: one row per driver per minute (more when late fixes came after
-- the minute was compacted), in daily partitions of `period`. One driver's
-- minute is one probe of (driver_id, period); a time range over everyone
-- reads the BRIN on period.
CREATE TABLE livetrack.segments (
    driver_id bigint NOT NULL,
    period    timestamptz NOT NULL,  -- the minute's start
    t_min     timestamptz NOT NULL,  -- first and last fix
    t_max     timestamptz NOT NULL,
    fixes     integer NOT NULL,
    lat_min   integer NOT NULL,      -- bounding box, 1e-7 degrees
    lat_max   integer NOT NULL,
    lon_min   integer NOT NULL,
    lon_max   integer NOT NULL,
    data      bytea NOT NULL         -- core/segment.hpp
) PARTITION BY RANGE (period);
CREATE INDEX segments_driver_period ON livetrack.segments (driver_id, period);
-- autosummarize: a range is summarized as soon as it fills (an autovacuum work
-- item), so a recent time window does not read every page added since the
-- last vacuum.
CREATE INDEX segments_period_brin ON livetrack.segments USING brin (period) WITH (autosummarize = on);

-- What the compactor keeps per day: fixes and rows in segments, for
-- livetrack.stats without counting billions of rows.
CREATE TABLE livetrack.segment_totals (
    day   date PRIMARY KEY,
    rows  bigint NOT NULL,
    fixes bigint NOT NULL
);

-- Decoding -------------------------------------------------------------------

CREATE FUNCTION livetrack._point(lat_e7 integer, lon_e7 integer) RETURNS geography
AS 'MODULE_PATHNAME', 'livetrack_point' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- A wire unit back to the SPEC's: NULL for unknown (0xFFFF), else value/scale
-- as a real, computed in float8 as the flushers always have.
CREATE FUNCTION livetrack._unit(v smallint, scale float8) RETURNS real
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE WHEN v = -1 THEN NULL ELSE ((v::integer & 65535)::float8 / scale)::real END;

CREATE FUNCTION livetrack._segment_fixes(data bytea)
RETURNS TABLE (ts timestamptz, geog geography, speed_mps real, heading_deg real, accuracy_m real,
               received_at timestamptz)
AS 'MODULE_PATHNAME', 'livetrack_segment_fixes' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE ROWS 60;

-- Every accepted fix, wherever it is (SPEC 3). Filters on driver_id reach
-- every part; filters on ts prune the hot log's and the old history's
-- partitions, and livetrack's planner hook adds the matching conditions on
-- the segments' period and time range (docs/architecture.md, History).
CREATE VIEW livetrack.pings AS
SELECT h.driver_id, h.ts, livetrack._point(h.lat_e7, h.lon_e7)::geography(Point, 4326) AS geog,
       livetrack._unit(h.speed, 100) AS speed_mps,
       livetrack._unit(h.heading, 100) AS heading_deg, livetrack._unit(h.accuracy, 10) AS accuracy_m, h.received_at
FROM livetrack.hot h
UNION ALL
SELECT l.driver_id, l.ts, livetrack._point(l.lat_e7, l.lon_e7)::geography(Point, 4326), livetrack._unit(l.speed, 100),
       livetrack._unit(l.heading, 100), livetrack._unit(l.accuracy, 10), l.received_at
FROM livetrack.hot_late l
UNION ALL
SELECT o.driver_id, o.ts, o.geog, o.speed_mps, o.heading_deg, o.accuracy_m, o.received_at
FROM livetrack.pings_0_2 o
UNION ALL
SELECT s.driver_id, f.ts, f.geog::geography(Point, 4326), f.speed_mps, f.heading_deg, f.accuracy_m, f.received_at
FROM livetrack.segments s CROSS JOIN LATERAL livetrack._segment_fixes(s.data) f;

-- Partitions -------------------------------------------------------------------

CREATE FUNCTION livetrack._hot_name(minute timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'hot_' || to_char(minute AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI');

-- The minute a hot partition's name stands for (hot_YYYYMMDD_HHMI, UTC).
CREATE FUNCTION livetrack._hot_minute(name text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN make_timestamptz(substr(name, 5, 4)::int, substr(name, 9, 2)::int, substr(name, 11, 2)::int,
                        substr(name, 14, 2)::int, substr(name, 16, 2)::int, 0, 'UTC');

-- Finds or creates the hot partition of the minute that starts at `minute`.
-- Created apart and attached: ATTACH takes only SHARE UPDATE EXCLUSIVE on
-- the parent, so it never waits for (or blocks) readers of livetrack.pings.
CREATE FUNCTION livetrack._hot_partition(minute timestamptz) RETURNS regclass
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    name text := livetrack._hot_name(minute);
    rel regclass := to_regclass(format('livetrack.%I', name));
BEGIN
    IF rel IS NOT NULL THEN
        RETURN rel;
    END IF;
    LOCK TABLE ONLY livetrack.hot IN SHARE UPDATE EXCLUSIVE MODE;
    rel := to_regclass(format('livetrack.%I', name));
    IF rel IS NULL THEN
        EXECUTE format('CREATE TABLE livetrack.%I (LIKE livetrack.hot) WITH (autovacuum_enabled = false)', name);
        EXECUTE format('ALTER TABLE livetrack.hot ATTACH PARTITION livetrack.%I FOR VALUES FROM (%L) TO (%L)',
                       name, minute, minute + interval '1 minute');
        rel := format('livetrack.%I', name)::regclass;
    END IF;
    RETURN rel;
END $$;

-- Finds or creates the segments partition of a day (UTC).
CREATE FUNCTION livetrack._segment_partition(day date) RETURNS regclass
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    name text := 'segments_' || to_char(day, 'YYYYMMDD');
    rel regclass := to_regclass(format('livetrack.%I', name));
BEGIN
    IF rel IS NOT NULL THEN
        RETURN rel;
    END IF;
    LOCK TABLE ONLY livetrack.segments IN SHARE UPDATE EXCLUSIVE MODE;
    rel := to_regclass(format('livetrack.%I', name));
    IF rel IS NULL THEN
        EXECUTE format('CREATE TABLE livetrack.%I (LIKE livetrack.segments)', name);
        -- Encoded fixes barely compress, and TOAST would cost a second probe:
        -- keep them in the row (MAIN), compressed only if that saves room.
        EXECUTE format('ALTER TABLE livetrack.%I ALTER COLUMN data SET STORAGE MAIN', name);
        EXECUTE format('ALTER TABLE livetrack.segments ATTACH PARTITION livetrack.%I FOR VALUES FROM (%L) TO (%L)',
                       name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
        rel := format('livetrack.%I', name)::regclass;
    END IF;
    RETURN rel;
END $$;

-- Run by a flusher once a minute: hot partitions for the next minutes,
-- segment partitions for today and tomorrow, and retention, which drops
-- whole days of segments and of the history from before 0.3.0 (and hot
-- partitions that old, were there any). A lock timeout keeps it from waiting
-- behind long queries; what it could not do it does next time.
CREATE FUNCTION livetrack._maintain_history(retention_minutes int, OUT created int, OUT dropped int)
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    minute timestamptz := date_trunc('minute', now());
    today date := (now() AT TIME ZONE 'UTC')::date;
    cutoff timestamptz := now() - make_interval(mins => retention_minutes);
    part record;
BEGIN
    created := 0;
    dropped := 0;
    PERFORM set_config('lock_timeout', '2s', true);
    FOR m IN 0..5 LOOP
        IF to_regclass(format('livetrack.%I', livetrack._hot_name(minute + make_interval(mins => m)))) IS NULL THEN
            PERFORM livetrack._hot_partition(minute + make_interval(mins => m));
            created := created + 1;
        END IF;
    END LOOP;
    FOR d IN 0..1 LOOP
        IF to_regclass(format('livetrack.segments_%s', to_char(today + d, 'YYYYMMDD'))) IS NULL THEN
            PERFORM livetrack._segment_partition(today + d);
            created := created + 1;
        END IF;
    END LOOP;
    IF retention_minutes > 0 THEN
        FOR part IN
            SELECT c.oid::regclass AS rel, i.inhparent::regclass AS parent,
                   to_date(substring(c.relname from '([0-9]{8})'), 'YYYYMMDD') AS day
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent IN ('livetrack.segments'::regclass, 'livetrack.pings_0_2'::regclass,
                                  'livetrack.hot'::regclass)
              AND c.relname ~ '^(segments|pings|hot)_[0-9]{8}'
        LOOP
            -- A day is dropped once all of it is older than the retention;
            -- a hot minute once it is (compacted or not: it is past keeping).
            IF (part.parent = 'livetrack.hot'::regclass
                    AND livetrack._hot_minute(substring(part.rel::text from 'hot_[0-9]{8}_[0-9]{4}'))
                    + interval '1 minute' <= cutoff)
               OR (part.parent <> 'livetrack.hot'::regclass
                   AND (part.day + 1)::timestamp AT TIME ZONE 'UTC' <= cutoff) THEN
                EXECUTE format('DROP TABLE %s', part.rel);
                IF part.parent = 'livetrack.segments'::regclass THEN
                    DELETE FROM livetrack.segment_totals WHERE day = part.day;
                END IF;
                dropped := dropped + 1;
            END IF;
        END LOOP;
    END IF;
END $$;

-- Drops a compacted hot partition, only if it is empty and its locks are
-- free at once (dropping a partition locks livetrack.hot itself: readers
-- must not queue behind it). False means: not now.
CREATE FUNCTION livetrack._drop_compacted(rel regclass) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    empty boolean;
BEGIN
    PERFORM set_config('lock_timeout', '100ms', true);
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', rel);
    EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %s)', rel) INTO STRICT empty;
    IF empty THEN
        EXECUTE format('DROP TABLE %s', rel);
    END IF;
    RETURN empty;
EXCEPTION WHEN lock_not_available THEN
    RETURN false;
END $$;

DROP FUNCTION livetrack._maintain_partitions(int);
DROP FUNCTION livetrack._ensure_partition(date);
DROP FUNCTION livetrack._partition_name(date);

-- Compaction -------------------------------------------------------------------

-- Compacts every closed minute now (the compactor does it on its own a
-- little after each minute closes), and the late fixes; returns the number
-- of fixes it moved into segments. Needs READ COMMITTED.
CREATE FUNCTION livetrack.compact_history() RETURNS bigint
AS 'MODULE_PATHNAME', 'livetrack_compact_history' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION livetrack.compact_history() FROM PUBLIC;

-- trail() and the live-state rebuild read segments directly -------------------

CREATE OR REPLACE FUNCTION livetrack.trail(driver_id bigint, since timestamptz, until timestamptz DEFAULT now())
RETURNS geometry(LineString, 4326)
AS 'MODULE_PATHNAME', 'livetrack_trail' LANGUAGE C STABLE PARALLEL SAFE;

-- Candidates for each driver's newest fix; the listener keeps the newest of
-- a driver's rows. The hot log's minutes are newer than any compacted one
-- (minutes are compacted in order): a driver there needs nothing else. The
-- others get their newest segments and their newest old-layout fix, one
-- index probe each. Late fixes come from one pass over hot_late.
CREATE OR REPLACE FUNCTION livetrack._rebuild_source()
RETURNS TABLE (driver_id bigint, status text, ts timestamptz, geog geography, speed_mps real,
               heading_deg real, accuracy_m real, received_at timestamptz)
LANGUAGE sql STABLE BEGIN ATOMIC
    WITH recent AS (
        SELECT DISTINCT ON (h.driver_id) h.driver_id, h.ts, h.lat_e7, h.lon_e7, h.speed, h.heading, h.accuracy,
               h.received_at
        FROM livetrack.hot h ORDER BY h.driver_id, h.ts DESC),
    late AS (
        SELECT DISTINCT ON (l.driver_id) l.driver_id, l.ts, l.lat_e7, l.lon_e7, l.speed, l.heading, l.accuracy,
               l.received_at
        FROM livetrack.hot_late l ORDER BY l.driver_id, l.ts DESC),
    rows AS (SELECT * FROM recent UNION ALL SELECT * FROM late)
    SELECT d.driver_id, d.status, r.ts, livetrack._point(r.lat_e7, r.lon_e7), livetrack._unit(r.speed, 100),
           livetrack._unit(r.heading, 100), livetrack._unit(r.accuracy, 10), r.received_at
    FROM livetrack.drivers d JOIN rows r ON r.driver_id = d.driver_id
    UNION ALL
    SELECT d.driver_id, d.status, p.ts, p.geog, p.speed_mps, p.heading_deg, p.accuracy_m, p.received_at
    FROM livetrack.drivers d
    CROSS JOIN LATERAL (
        SELECT x.ts, x.geog, x.speed_mps, x.heading_deg, x.accuracy_m, x.received_at
        FROM (
            SELECT f.ts, f.geog, f.speed_mps, f.heading_deg, f.accuracy_m, f.received_at
            FROM (SELECT s.data FROM livetrack.segments s WHERE s.driver_id = d.driver_id
                  ORDER BY s.period DESC LIMIT 4) s
            CROSS JOIN LATERAL livetrack._segment_fixes(s.data) f
            UNION ALL
            (SELECT q.ts, q.geog, q.speed_mps, q.heading_deg, q.accuracy_m, q.received_at
             FROM livetrack.pings_0_2 q WHERE q.driver_id = d.driver_id ORDER BY q.ts DESC LIMIT 1)
        ) x
        ORDER BY x.ts DESC
        LIMIT 1) p
    WHERE NOT EXISTS (SELECT 1 FROM recent r WHERE r.driver_id = d.driver_id);
END;

REVOKE ALL ON FUNCTION livetrack._hot_partition(timestamptz), livetrack._segment_partition(date),
    livetrack._drop_compacted(regclass),
    livetrack._maintain_history(int), livetrack._rebuild_source() FROM PUBLIC;

-- BRIN ranges of the open minutes' partitions, summarized as they fill (a
-- flusher calls this every second): unsummarized ranges would be read
-- whole by every lookup of a driver.
CREATE FUNCTION livetrack._summarize_hot() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    minute timestamptz := date_trunc('minute', now());
    delay interval := current_setting('livetrack.compaction_delay')::interval;
    idx regclass;
BEGIN
    FOR m IN -2..0 LOOP
        -- Closed minutes are the compactor's (it locks them against this).
        CONTINUE WHEN minute + make_interval(mins => m + 1) + delay <= now();
        FOR idx IN
            SELECT i.indexrelid::regclass FROM pg_index i
            WHERE i.indrelid = to_regclass(format('livetrack.%I', livetrack._hot_name(minute + make_interval(mins => m))))
        LOOP
            BEGIN
                PERFORM brin_summarize_new_values(idx);
            EXCEPTION WHEN lock_not_available OR undefined_table THEN
                NULL; -- being compacted or dropped: no longer open
            END;
        END LOOP;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION livetrack._summarize_hot() FROM PUBLIC;
