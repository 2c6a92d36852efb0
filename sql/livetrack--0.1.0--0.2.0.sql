-- livetrack 0.1.0 -> 0.2.0: the HTTP edge (SPEC 6): tokens, one message
-- shape for every order message.
\echo Use "ALTER EXTENSION livetrack UPDATE" to load this file. \quit

-- One message shape ---------------------------------------------------------

-- Every message of an order (position, status, near) as the one text that
-- NOTIFY, livetrack.events.payload, SSE and WebSocket all carry: jsonb's key
-- order and spacing, lat/lon to 1e-7 degrees, distance_m and eta_s to 0.1
-- (core/push.hpp). The flushers' position messages use the same code.
CREATE FUNCTION livetrack._order_message(type text, order_id bigint, driver_id bigint, status text, lat float8,
                                         lon float8, ts timestamptz, target text, distance_m float8, eta_s float8)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'livetrack_order_message' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION livetrack._status_event(id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    t record;
BEGIN
    SELECT * INTO STRICT t FROM livetrack._track(id);
    PERFORM livetrack._draft_event(id, t.driver_id, 'status',
        livetrack._order_message('status', id, t.driver_id, t.status, t.driver_lat, t.driver_lon,
                                 coalesce(t.driver_ts, now()), t.target, t.distance_m, t.eta_s));
    PERFORM livetrack._order_changed();
END $$;

CREATE OR REPLACE FUNCTION livetrack._near_event(id bigint, driver bigint, target text, lat float8, lon float8,
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
        livetrack._order_message('near', id, driver, st, lat, lon, ts, target, distance_m, eta_s));
END $$;

-- Events recorded by 0.1.0 take the same shape, so that a client resuming
-- across the upgrade reads one kind of message.
UPDATE livetrack.events e
SET payload = livetrack._order_message(e.payload->>'type', e.order_id, (e.payload->>'driver_id')::bigint,
                                       e.payload->>'status', (e.payload->>'lat')::float8, (e.payload->>'lon')::float8,
                                       (e.payload->>'ts')::timestamptz, e.payload->>'target',
                                       (e.payload->>'distance_m')::float8, (e.payload->>'eta_s')::float8)
              || jsonb_build_object('event_id', e.event_id)
WHERE e.event_id > 0;

-- The HTTP worker streams events from this table: a commit that published
-- one wakes it (livetrack._event_published() sets a flag at commit).
CREATE FUNCTION livetrack._event_published() RETURNS void
AS 'MODULE_PATHNAME', 'livetrack_event_published' LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE OR REPLACE FUNCTION livetrack._publish_event() RETURNS trigger
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
    PERFORM livetrack._event_published();
    RETURN NULL;
END $$;

-- Tokens (SPEC 6) ---------------------------------------------------------------

-- The HS256 secret every token is signed with; for the extension owner only.
-- The HTTP worker reads it at start and whenever rotate_token_secret() commits.
CREATE TABLE livetrack.token_secret (
    id         int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    secret     bytea NOT NULL CHECK (length(secret) = 32),
    rotated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON livetrack.token_secret FROM PUBLIC;
INSERT INTO livetrack.token_secret (secret) VALUES (livetrack._random_secret());

-- header.payload.signature of a JSON payload (core/jwt.hpp).
CREATE FUNCTION livetrack._jwt(payload text, secret bytea) RETURNS text
AS 'MODULE_PATHNAME', 'livetrack_jwt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION livetrack._tokens_changed() RETURNS void
AS 'MODULE_PATHNAME', 'livetrack_tokens_changed' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Signs claims with the current secret, valid for ttl from now.
CREATE FUNCTION livetrack._token(claims jsonb, ttl interval) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    now_s bigint := floor(extract(epoch FROM now()));
    ttl_s bigint := floor(extract(epoch FROM ttl));
    t text;
BEGIN
    IF ttl IS NULL OR ttl_s <= 0 THEN
        RAISE EXCEPTION 'a token needs a positive ttl' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT livetrack._jwt((jsonb_build_object('iss', 'livetrack', 'iat', now_s, 'exp', now_s + ttl_s) || claims)::text,
                          s.secret)
    INTO STRICT t FROM livetrack.token_secret s;
    IF length(t) > 4096 THEN
        RAISE EXCEPTION 'the token would be % bytes long (at most 4096)', length(t)
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Simplify the area, e.g. with ST_Simplify(area, 0.0005) or ST_Envelope(area).';
    END IF;
    RETURN t;
END $$;

-- May read that one order's stream (GET /v1/orders/{id}, .../stream, WebSocket).
CREATE FUNCTION livetrack.watch_token(order_id bigint, ttl interval DEFAULT '4 h') RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM livetrack._require_order(watch_token.order_id);
    RETURN livetrack._token(jsonb_build_object('scope', 'watch', 'order_id', watch_token.order_id), ttl);
END $$;

-- A dispatch area in WGS 84 and what a token needs of it. PostGIS is
-- resolved here, when the extension script runs.
CREATE FUNCTION livetrack._area_claim(area geometry, OUT kind text, OUT points int, OUT coordinates jsonb)
LANGUAGE sql IMMUTABLE PARALLEL SAFE BEGIN ATOMIC
    SELECT GeometryType(g), ST_NPoints(g), (ST_AsGeoJSON(ST_Multi(g), 7)::jsonb)->'coordinates'
    FROM (SELECT CASE ST_SRID(area) WHEN 0 THEN ST_SetSRID(area, 4326) WHEN 4326 THEN area
                                    ELSE ST_Transform(area, 4326) END AS g) a;
END;

-- May read every driver inside area (NULL: everywhere), and every order
-- (with an area: the orders whose pickup is inside it).
CREATE FUNCTION livetrack.dispatch_token(area geometry DEFAULT NULL, ttl interval DEFAULT '12 h') RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    c record;
BEGIN
    IF area IS NULL THEN
        RETURN livetrack._token(jsonb_build_object('scope', 'dispatch'), ttl);
    END IF;
    c := livetrack._area_claim(area);
    IF c.kind NOT IN ('POLYGON', 'MULTIPOLYGON') OR c.points < 4 THEN
        RAISE EXCEPTION 'a dispatch area must be a polygon or multipolygon, not %', c.kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For a circle: ST_Buffer(ST_MakePoint(lon, lat)::geography, metres)::geometry.';
    END IF;
    IF c.points > 120 THEN
        RAISE EXCEPTION 'a dispatch area may have at most 120 points, this one has %', c.points
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Simplify it, e.g. with ST_Simplify(area, 0.0005).';
    END IF;
    RETURN livetrack._token(jsonb_build_object('scope', 'dispatch', 'area', c.coordinates), ttl);
END $$;

-- May post fixes of that one driver (POST /v1/pings, /v1/osmand).
CREATE FUNCTION livetrack.device_token(driver_id bigint, ttl interval DEFAULT '30 days') RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF driver_id IS NULL OR driver_id <= 0 THEN
        RAISE EXCEPTION 'driver_id % is out of range', driver_id USING ERRCODE = 'numeric_value_out_of_range',
            DETAIL = 'A driver id is 1 to 9223372036854775807.';
    END IF;
    RETURN livetrack._token(jsonb_build_object('scope', 'device', 'driver_id', device_token.driver_id), ttl);
END $$;

-- A new secret: every token issued before is refused from the moment this
-- commits (open streams that used one are closed).
CREATE FUNCTION livetrack.rotate_token_secret() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    UPDATE livetrack.token_secret SET secret = livetrack._random_secret(), rotated_at = now();
    PERFORM livetrack._tokens_changed();
END $$;

REVOKE EXECUTE ON FUNCTION livetrack.watch_token(bigint, interval), livetrack.dispatch_token(geometry, interval),
    livetrack.device_token(bigint, interval), livetrack.rotate_token_secret(), livetrack._token(jsonb, interval),
    livetrack._jwt(text, bytea), livetrack._tokens_changed(), livetrack._event_published(),
    livetrack._area_claim(geometry),
    livetrack._order_message(text, bigint, bigint, text, float8, float8, timestamptz, text, float8, float8)
    FROM PUBLIC;
