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

-- Text (WKT, EWKT, hex EWKB), and so untyped literals and parameters: with
-- only the two above, drivers_within('POLYGON(...)') or drivers_within($1)
-- would match both and fail as ambiguous (PostGIS has ST_AsText(text) for
-- the same reason). Read as geometry.
CREATE FUNCTION livetrack.drivers_within(area text, max_age interval DEFAULT '60 s')
RETURNS TABLE (driver_id bigint, lat float8, lon float8, ts timestamptz, status text)
LANGUAGE sql VOLATILE BEGIN ATOMIC
    SELECT * FROM livetrack.drivers_within(area::geometry, max_age);
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

-- Orders and their events ----------------------------------------------------

-- created -> assigned -> picked_up -> delivered; cancelled from any open state.
CREATE TABLE livetrack.orders (
    order_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status       text NOT NULL DEFAULT 'created'
                 CHECK (status IN ('created', 'assigned', 'picked_up', 'delivered', 'cancelled')),
    driver_id    bigint,
    pickup       geography(Point, 4326) NOT NULL,
    dropoff      geography(Point, 4326) NOT NULL,
    meta         jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    assigned_at  timestamptz,
    picked_up_at timestamptz,
    delivered_at timestamptz,
    cancelled_at timestamptz,
    CHECK (CASE status WHEN 'created' THEN driver_id IS NULL
                       WHEN 'assigned' THEN driver_id IS NOT NULL
                       WHEN 'picked_up' THEN driver_id IS NOT NULL
                       ELSE true END)
);
-- A driver carries at most one open order. This index is what keeps two
-- concurrent assign_order() calls from taking the same driver: the second
-- waits for the first to commit, then fails and tries its next candidate.
CREATE UNIQUE INDEX orders_open_driver ON livetrack.orders (driver_id) WHERE status IN ('assigned', 'picked_up');

-- Every status and near message, committed with the change that caused it.
-- A change records its event under a draft id (negative) and the payload
-- without event_id; at commit a deferred trigger gives it its real id and
-- rings the channels. The real ids are drawn under a lock that is held from
-- then until the commit ends, so they are handed out in commit order: a
-- consumer that has read up to N never finds a smaller id appearing later.
-- Taking the lock only at commit, when every other lock of the transaction
-- is held, means it can neither deadlock nor make anyone wait for a user's
-- open transaction.
CREATE TABLE livetrack.events (
    event_id   bigint PRIMARY KEY,
    order_id   bigint NOT NULL,
    driver_id  bigint,
    type       text NOT NULL CHECK (type IN ('status', 'near')),
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_order ON livetrack.events (order_id, event_id);
CREATE SEQUENCE livetrack.events_event_id_seq;
CREATE SEQUENCE livetrack._event_draft_seq;
CREATE TABLE livetrack._event_clock (); -- a lock, nothing more

CREATE FUNCTION livetrack._draft_event(order_id bigint, driver_id bigint, type text, payload jsonb) RETURNS bigint
LANGUAGE sql BEGIN ATOMIC
    INSERT INTO livetrack.events (event_id, order_id, driver_id, type, payload)
    VALUES (-nextval('livetrack._event_draft_seq'), order_id, driver_id, type, payload)
    RETURNING event_id;
END;

-- SECURITY DEFINER: it fires at commit, outside the order function that
-- drafted the event, as whichever role commits.
CREATE FUNCTION livetrack._publish_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    id bigint;
    p jsonb;
BEGIN
    LOCK TABLE livetrack._event_clock IN EXCLUSIVE MODE;
    id := nextval('livetrack.events_event_id_seq');
    p := NEW.payload || jsonb_build_object('event_id', id);
    UPDATE livetrack.events SET event_id = id, payload = p WHERE event_id = NEW.event_id;
    -- NOTIFY is the doorbell, the row is the record: with the notification
    -- queue half full (a LISTENer that stopped reading) the row still
    -- commits, and the commit does not fail on a full queue.
    IF pg_notification_queue_usage() < 0.5 THEN
        PERFORM livetrack._notify('livetrack_order_' || NEW.order_id, p::text);
        PERFORM livetrack._notify('livetrack_events', p::text);
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER events_publish AFTER INSERT ON livetrack.events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION livetrack._publish_event();

-- NOTIFY, counted in livetrack.stats (notifications) when the transaction commits.
CREATE FUNCTION livetrack._notify(channel text, payload text) RETURNS void
AS 'MODULE_PATHNAME', 'livetrack_notify' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

-- Waits (up to a second) until the listener has applied the status changes
-- this session committed.
CREATE FUNCTION livetrack._await_own_status() RETURNS void
AS 'MODULE_PATHNAME', 'livetrack_await_own_status' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Sets a driver's live status when the calling transaction commits.
CREATE FUNCTION livetrack._set_driver_status(driver_id bigint, status text) RETURNS void
AS 'MODULE_PATHNAME', 'livetrack_set_driver_status' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

-- Tells the flushers, when the calling transaction commits, that an open
-- order changed (driver or target), so they reload the orders they follow.
CREATE FUNCTION livetrack._order_changed() RETURNS void
AS 'MODULE_PATHNAME', 'livetrack_order_changed' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- A crude ETA: straight-line distance at the driver's reported speed, but no
-- slower than 3 m/s, so a driver waiting at a light still has one. The
-- flusher's position messages use the same rule (core/push.hpp).
CREATE FUNCTION livetrack._eta_s(distance_m float8, speed_mps real) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN distance_m / greatest(coalesce(speed_mps, 0), 3.0);

CREATE FUNCTION livetrack._utc(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');

-- The order, its driver's live position (while the order is open) and the
-- distance to the current target.
CREATE FUNCTION livetrack._track(id bigint)
RETURNS TABLE (order_id bigint, status text, driver_id bigint, driver_lat float8, driver_lon float8,
               driver_ts timestamptz, target text, distance_m float8, eta_s float8, driver_speed real)
LANGUAGE sql VOLATILE BEGIN ATOMIC
    SELECT o.order_id, o.status, o.driver_id, p.lat, p.lon, p.ts, t.target,
           ST_Distance(p.geog, CASE t.target WHEN 'pickup' THEN o.pickup WHEN 'dropoff' THEN o.dropoff END),
           livetrack._eta_s(ST_Distance(p.geog, CASE t.target WHEN 'pickup' THEN o.pickup
                                                              WHEN 'dropoff' THEN o.dropoff END), p.speed_mps),
           p.speed_mps
    FROM livetrack.orders o
    CROSS JOIN LATERAL (SELECT CASE o.status WHEN 'assigned' THEN 'pickup' WHEN 'picked_up' THEN 'dropoff' END
                        AS target) t
    LEFT JOIN LATERAL (SELECT l.lat, l.lon, l.ts, l.geog, l.speed_mps FROM livetrack.driver_position(o.driver_id) l
                       WHERE t.target IS NOT NULL) p ON true
    WHERE o.order_id = id;
END;

CREATE FUNCTION livetrack._require_order(id bigint) RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM livetrack.orders o WHERE o.order_id = id) THEN
        RAISE EXCEPTION 'order % does not exist', id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN id;
END $$;

CREATE FUNCTION livetrack.track_order(order_id bigint)
RETURNS TABLE (order_id bigint, status text, driver_id bigint, driver_lat float8, driver_lon float8,
               driver_ts timestamptz, target text, distance_m float8, eta_s float8)
LANGUAGE sql VOLATILE BEGIN ATOMIC
    SELECT t.order_id, t.status, t.driver_id, t.driver_lat, t.driver_lon, t.driver_ts, t.target, t.distance_m,
           t.eta_s
    FROM livetrack._track(livetrack._require_order(track_order.order_id)) t;
END;

-- Records a status event of an order that has just changed (same
-- transaction) and rings both channels.
CREATE FUNCTION livetrack._status_event(id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    t record;
BEGIN
    SELECT * INTO STRICT t FROM livetrack._track(id);
    PERFORM livetrack._draft_event(id, t.driver_id, 'status',
        jsonb_build_object('type', 'status', 'order_id', id, 'driver_id', t.driver_id, 'status', t.status,
                           'lat', t.driver_lat, 'lon', t.driver_lon,
                           'ts', livetrack._utc(coalesce(t.driver_ts, now())),
                           'distance_m', t.distance_m, 'eta_s', t.eta_s, 'target', t.target));
    PERFORM livetrack._order_changed();
END $$;

-- Called by the flusher, in the transaction that commits the fix: the
-- driver has come within livetrack.near_radius of the order's target. NULL
-- when the order has moved on meanwhile.
CREATE FUNCTION livetrack._near_event(id bigint, driver bigint, target text, lat float8, lon float8,
                                      ts timestamptz, distance_m float8, eta_s float8)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    st text;
BEGIN
    SELECT o.status INTO st FROM livetrack.orders o WHERE o.order_id = id AND o.driver_id = driver;
    IF st IS DISTINCT FROM (CASE target WHEN 'pickup' THEN 'assigned' ELSE 'picked_up' END) THEN
        RETURN NULL;
    END IF;
    RETURN livetrack._draft_event(id, driver, 'near',
        jsonb_build_object('type', 'near', 'order_id', id, 'driver_id', driver, 'status', st, 'lat', lat,
                           'lon', lon, 'ts', livetrack._utc(ts), 'distance_m', distance_m, 'eta_s', eta_s,
                           'target', target));
END $$;

-- What the flushers follow: open orders, their targets, and whether the near
-- message for the current target has gone out.
CREATE FUNCTION livetrack._open_orders()
RETURNS TABLE (order_id bigint, driver_id bigint, target text, lat float8, lon float8, near_sent boolean)
LANGUAGE sql STABLE BEGIN ATOMIC
    SELECT o.order_id, o.driver_id, t.target, ST_Y(t.g::geometry), ST_X(t.g::geometry),
           EXISTS (SELECT 1 FROM livetrack.events e
                   WHERE e.order_id = o.order_id AND e.type = 'near' AND e.payload->>'target' = t.target)
    FROM livetrack.orders o
    CROSS JOIN LATERAL (SELECT CASE o.status WHEN 'assigned' THEN 'pickup' ELSE 'dropoff' END AS target,
                               CASE o.status WHEN 'assigned' THEN o.pickup ELSE o.dropoff END AS g) t
    WHERE o.status IN ('assigned', 'picked_up');
END;

CREATE FUNCTION livetrack._point(lat float8, lon float8, what text) RETURNS geography
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog AS $$
BEGIN
    IF lat IS NULL OR lon IS NULL OR NOT (lat BETWEEN -90 AND 90) OR NOT (lon BETWEEN -180 AND 180) THEN
        RAISE EXCEPTION '% (%, %) is not a valid position', what, lat, lon
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = 'lat must be within -90 to 90 and lon within -180 to 180.';
    END IF;
    RETURN livetrack._make_point(lat, lon);
END $$;

CREATE FUNCTION livetrack._make_point(lat float8, lon float8) RETURNS geography
LANGUAGE sql IMMUTABLE PARALLEL SAFE BEGIN ATOMIC
    SELECT ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography;
END;

CREATE FUNCTION livetrack.create_order(pickup_lat float8, pickup_lon float8, dropoff_lat float8,
                                       dropoff_lon float8, meta jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    id bigint;
BEGIN
    INSERT INTO livetrack.orders (pickup, dropoff, meta)
    VALUES (livetrack._point(pickup_lat, pickup_lon, 'pickup'), livetrack._point(dropoff_lat, dropoff_lon, 'dropoff'),
            coalesce(meta, '{}'))
    RETURNING order_id INTO id;
    PERFORM livetrack._status_event(id);
    RETURN id;
END $$;

-- Locks the order and checks that it may move on from its current status.
CREATE FUNCTION livetrack._lock_order(id bigint, allowed text[], action text) RETURNS livetrack.orders
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    o livetrack.orders;
BEGIN
    SELECT * INTO o FROM livetrack.orders WHERE order_id = id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order % does not exist', id USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT o.status = ANY (allowed) THEN
        RAISE EXCEPTION 'cannot % order %: it is %', action, id, o.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Only an order that is %s can be %s.', array_to_string(allowed, ' or '),
                                CASE action WHEN 'assign' THEN 'assigned' WHEN 'pick up' THEN 'picked up'
                                            WHEN 'deliver' THEN 'delivered' ELSE 'cancelled' END);
    END IF;
    RETURN o;
END $$;

-- NULL driver: the nearest available driver within livetrack.assign_radius
-- of the pickup with a fix in the last minute. Returns the driver, who
-- becomes busy when the transaction commits.
CREATE FUNCTION livetrack.assign_order(order_id bigint, driver_id bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    id bigint := assign_order.order_id;
    o livetrack.orders := livetrack._lock_order(id, ARRAY['created'], 'assign');
    radius float8 := current_setting('livetrack.assign_radius')::float8;
    chosen bigint;
    st text;
    cand record;
    k int;
    seen int;
BEGIN
    -- This session's own status changes (a delivery just committed, say)
    -- are in the live state before we look at it.
    PERFORM livetrack._await_own_status();
    IF assign_order.driver_id IS NOT NULL THEN
        SELECT l.status INTO st FROM livetrack.driver_position(assign_order.driver_id) l;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'driver % is unknown', assign_order.driver_id USING ERRCODE = 'no_data_found',
                HINT = 'A driver is known once livetrack has received a fix from it.';
        END IF;
        IF st <> 'available' OR EXISTS (SELECT 1 FROM livetrack.orders x
                                        WHERE x.driver_id = assign_order.driver_id
                                          AND x.status IN ('assigned', 'picked_up')) THEN
            RAISE EXCEPTION 'driver % is not available', assign_order.driver_id USING ERRCODE = 'object_in_use',
                DETAIL = format('The driver is %s.', CASE WHEN st <> 'available' THEN st ELSE 'on another order' END);
        END IF;
        BEGIN
            UPDATE livetrack.orders SET status = 'assigned', driver_id = assign_order.driver_id, assigned_at = now()
            WHERE orders.order_id = id;
        EXCEPTION WHEN unique_violation THEN
            RAISE EXCEPTION 'driver % is not available', assign_order.driver_id USING ERRCODE = 'object_in_use',
                DETAIL = 'The driver has just been assigned another order.';
        END;
        chosen := assign_order.driver_id;
    ELSE
        -- Nearest first. A candidate another transaction is assigning right
        -- now makes our UPDATE wait for it; if it commits we take the next.
        -- Drivers the live state calls available may still be on an open
        -- order (a device's own status byte wins there): if all of the
        -- nearest k are, look again with a larger k.
        k := 64;
        LOOP
            seen := 0;
            FOR cand IN
                SELECT n.driver_id FROM livetrack.nearest_drivers(livetrack._lat(o.pickup), livetrack._lon(o.pickup),
                                                                  k, radius, 'available', '60 s') n
            LOOP
                seen := seen + 1;
                CONTINUE WHEN EXISTS (SELECT 1 FROM livetrack.orders x
                                      WHERE x.driver_id = cand.driver_id AND x.status IN ('assigned', 'picked_up'));
                BEGIN
                    UPDATE livetrack.orders SET status = 'assigned', driver_id = cand.driver_id, assigned_at = now()
                    WHERE orders.order_id = id;
                    chosen := cand.driver_id;
                    EXIT;
                EXCEPTION WHEN unique_violation THEN
                    NULL;
                END;
            END LOOP;
            EXIT WHEN chosen IS NOT NULL OR seen < k OR k >= 65536;
            k := k * 16;
        END LOOP;
        IF chosen IS NULL THEN
            RAISE EXCEPTION 'no available driver within % m of the pickup of order %', radius, id
                USING ERRCODE = 'no_data_found', HINT = 'See livetrack.assign_radius.';
        END IF;
    END IF;
    PERFORM livetrack._set_driver_status(chosen, 'busy');
    PERFORM livetrack._status_event(id);
    RETURN chosen;
END $$;

CREATE FUNCTION livetrack._lat(g geography) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE BEGIN ATOMIC SELECT ST_Y(g::geometry); END;
CREATE FUNCTION livetrack._lon(g geography) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE BEGIN ATOMIC SELECT ST_X(g::geometry); END;

CREATE FUNCTION livetrack.pickup_order(order_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM livetrack._lock_order(pickup_order.order_id, ARRAY['assigned'], 'pick up');
    UPDATE livetrack.orders SET status = 'picked_up', picked_up_at = now() WHERE orders.order_id = pickup_order.order_id;
    PERFORM livetrack._status_event(pickup_order.order_id);
END $$;

-- The driver becomes available again.
CREATE FUNCTION livetrack.deliver_order(order_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    o livetrack.orders := livetrack._lock_order(deliver_order.order_id, ARRAY['picked_up'], 'deliver');
BEGIN
    UPDATE livetrack.orders SET status = 'delivered', delivered_at = now() WHERE orders.order_id = o.order_id;
    PERFORM livetrack._set_driver_status(o.driver_id, 'available');
    PERFORM livetrack._status_event(o.order_id);
END $$;

-- A driver who had the order becomes available again.
CREATE FUNCTION livetrack.cancel_order(order_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    o livetrack.orders := livetrack._lock_order(cancel_order.order_id, ARRAY['created', 'assigned', 'picked_up'],
                                                'cancel');
BEGIN
    UPDATE livetrack.orders SET status = 'cancelled', cancelled_at = now() WHERE orders.order_id = o.order_id;
    IF o.driver_id IS NOT NULL THEN
        PERFORM livetrack._set_driver_status(o.driver_id, 'available');
    END IF;
    PERFORM livetrack._status_event(o.order_id);
END $$;

-- Order changes run as the extension owner; who may make them is granted:
-- GRANT EXECUTE ON FUNCTION livetrack.create_order(...) ... TO app (README).
ALTER FUNCTION livetrack.create_order(float8, float8, float8, float8, jsonb) SECURITY DEFINER;
ALTER FUNCTION livetrack.assign_order(bigint, bigint) SECURITY DEFINER;
ALTER FUNCTION livetrack.pickup_order(bigint) SECURITY DEFINER;
ALTER FUNCTION livetrack.deliver_order(bigint) SECURITY DEFINER;
ALTER FUNCTION livetrack.cancel_order(bigint) SECURITY DEFINER;
ALTER FUNCTION livetrack.track_order(bigint) SECURITY DEFINER;
REVOKE EXECUTE ON FUNCTION livetrack.create_order(float8, float8, float8, float8, jsonb),
    livetrack.assign_order(bigint, bigint), livetrack.pickup_order(bigint), livetrack.deliver_order(bigint),
    livetrack.cancel_order(bigint), livetrack.track_order(bigint),
    livetrack._near_event(bigint, bigint, text, float8, float8, timestamptz, float8, float8),
    livetrack._open_orders(), livetrack._notify(text, text), livetrack._set_driver_status(bigint, text),
    livetrack._order_changed(), livetrack._await_own_status(), livetrack._draft_event(bigint, bigint, text, jsonb),
    livetrack._status_event(bigint), livetrack._lock_order(bigint, text[], text), livetrack._track(bigint),
    livetrack._require_order(bigint), livetrack._publish_event() FROM PUBLIC;

-- Signing keys (SPEC 2.3) -----------------------------------------------------

-- Secrets are for the extension owner only. The listener checks tags against
-- the copy in shared memory: installed when create_key() commits, revoked
-- when revoke_key() does, reloaded from here after a server restart.
CREATE TABLE livetrack.keys (
    key_id     int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    driver_id  bigint CHECK (driver_id > 0), -- NULL: a gateway key, may sign for any driver
    secret     bytea NOT NULL CHECK (length(secret) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    last_seq   bigint -- the highest sequence number seen, saved every few seconds (anti-replay across restarts)
);
REVOKE ALL ON livetrack.keys FROM PUBLIC;

CREATE FUNCTION livetrack._random_secret() RETURNS bytea
AS 'MODULE_PATHNAME', 'livetrack_random_secret' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION livetrack._install_key(key_id int, driver_id bigint, secret bytea) RETURNS void
AS 'MODULE_PATHNAME', 'livetrack_install_key' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION livetrack._revoke_key(key_id int) RETURNS void
AS 'MODULE_PATHNAME', 'livetrack_revoke_key' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

-- A device key (driver_id given) may sign only that driver's records; a
-- gateway key (NULL) any driver's.
CREATE FUNCTION livetrack.create_key(driver_id bigint DEFAULT NULL) RETURNS TABLE (key_id int, secret bytea)
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    d bigint := create_key.driver_id;
    s bytea := livetrack._random_secret();
    id int;
BEGIN
    IF d <= 0 THEN
        RAISE EXCEPTION 'driver_id % is out of range', d USING ERRCODE = 'numeric_value_out_of_range',
            DETAIL = 'A driver id is 1 to 9223372036854775807; NULL makes a gateway key.';
    END IF;
    INSERT INTO livetrack.keys AS k (driver_id, secret) VALUES (d, s) RETURNING k.key_id INTO id;
    PERFORM livetrack._install_key(id, d, s);
    key_id := id;
    secret := s;
    RETURN NEXT;
END $$;

-- Takes effect when the transaction commits: the next message signed with
-- the key is refused.
CREATE FUNCTION livetrack.revoke_key(key_id int) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    UPDATE livetrack.keys k SET revoked_at = now() WHERE k.key_id = revoke_key.key_id AND k.revoked_at IS NULL;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM livetrack.keys k WHERE k.key_id = revoke_key.key_id) THEN
            RAISE EXCEPTION 'key % is already revoked', revoke_key.key_id
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        RAISE EXCEPTION 'key % does not exist', revoke_key.key_id USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM livetrack._revoke_key(revoke_key.key_id);
END $$;

REVOKE EXECUTE ON FUNCTION livetrack.create_key(bigint), livetrack.revoke_key(int), livetrack._random_secret(),
    livetrack._install_key(int, bigint, bytea), livetrack._revoke_key(int) FROM PUBLIC;
