-- Orders (SPEC 3): the state machine, assignment, track_order(), and the
-- events each transition records (SPEC 4). Pushes themselves are in TAP
-- (test/t/010_orders.pl): LISTEN output carries process ids.
-- Drivers around Nairobi (-1.29, 36.82), far from other tests.
SELECT livetrack.ingest(6001, -1.2900, 36.8200, now(), 8, NULL, NULL, 'available');  -- at the pickup
SELECT livetrack.ingest(6002, -1.2950, 36.8200, now(), NULL, NULL, NULL, 'available'); -- 550 m south
SELECT livetrack.ingest(6003, -1.2905, 36.8200, now(), NULL, NULL, NULL, 'busy');      -- nearer, but busy
SELECT livetrack.ingest(6004, -1.3500, 36.8200, now(), NULL, NULL, NULL, 'available'); -- 6.6 km away
SELECT livetrack.wait_flushed();
SELECT value AS notifications_before FROM livetrack.stats WHERE metric = 'notifications' \gset

CREATE FUNCTION pg_temp.fails(call text, OUT code text, OUT message text) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE call;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END $$;

SELECT livetrack.create_order(-1.2901, 36.8201, -1.3000, 36.8300, '{"ref": "A-1"}') AS a \gset
SELECT status, driver_id, meta->>'ref' AS ref, ST_AsText(pickup) AS pickup, ST_AsText(dropoff) AS dropoff,
       created_at IS NOT NULL AS created, assigned_at IS NULL AS not_assigned
FROM livetrack.orders WHERE order_id = :a;
SELECT order_id = :a AS same, status, driver_id, driver_lat, target, distance_m, eta_s
FROM livetrack.track_order(:a);

-- NULL: the nearest available driver (6003 is nearer, but busy). It becomes
-- busy once the transaction commits.
SELECT livetrack.assign_order(:a) AS driver;
SELECT livetrack.wait_flushed();
SELECT driver_id, status FROM livetrack.live WHERE driver_id BETWEEN 6001 AND 6004 ORDER BY 1;
SELECT status FROM livetrack.drivers WHERE driver_id = 6001;

-- While assigned, the target is the pickup: distance from the driver's live
-- position (PostGIS's own geodesic), ETA at its 8 m/s.
SELECT status, driver_id, driver_lat, driver_lon, driver_ts > now() - interval '1 min' AS fresh, target,
       round(distance_m::numeric, 3) = round(ST_Distance(ST_MakePoint(36.82, -1.29)::geography,
                                                         ST_MakePoint(36.8201, -1.2901)::geography)::numeric, 3)
           AS distance_ok,
       round((eta_s * 8)::numeric, 6) = round(distance_m::numeric, 6) AS eta_ok
FROM livetrack.track_order(:a);

-- The next order gets the next nearest available driver; a third finds no
-- one within livetrack.assign_radius until it is widened.
SELECT livetrack.create_order(-1.2901, 36.8201, -1.2800, 36.8100) AS b \gset
SELECT livetrack.assign_order(:b) AS driver;
SELECT livetrack.create_order(-1.2901, 36.8201, -1.2800, 36.8100) AS c \gset
SELECT * FROM pg_temp.fails(format('SELECT livetrack.assign_order(%s)', :c));
SET livetrack.assign_radius = 10000;
SELECT livetrack.assign_order(:c) AS driver;
RESET livetrack.assign_radius;

-- Picked up: the target is the dropoff; delivered: the driver is available again.
SELECT livetrack.pickup_order(:a);
SELECT status, target, round(distance_m) AS metres FROM livetrack.track_order(:a);
SELECT livetrack.deliver_order(:a);
SELECT livetrack.wait_flushed();
SELECT status, driver_id, target, driver_lat, distance_m FROM livetrack.track_order(:a);
SELECT status FROM livetrack.live WHERE driver_id = 6001;
SELECT picked_up_at >= assigned_at AND delivered_at >= picked_up_at AS in_order FROM livetrack.orders
WHERE order_id = :a;

-- A driver can be named; cancelling frees the driver again.
SELECT livetrack.cancel_order(:b);
SELECT livetrack.wait_flushed();
SELECT status FROM livetrack.live WHERE driver_id = 6002;
SELECT livetrack.create_order(-1.2901, 36.8201, -1.2800, 36.8100) AS d \gset
SELECT livetrack.assign_order(:d, 6002) AS driver;
SELECT livetrack.create_order(-1.2901, 36.8201, -1.2800, 36.8100) AS e \gset
SELECT livetrack.cancel_order(:e);

-- A rolled-back assignment changes nothing, the driver's status included.
BEGIN;
SELECT livetrack.create_order(-1.2901, 36.8201, -1.2800, 36.8100) AS f \gset
SELECT livetrack.assign_order(:f, 6001) AS driver;
ROLLBACK;
SELECT livetrack.wait_flushed();
SELECT status FROM livetrack.live WHERE driver_id = 6001;
SELECT count(*) AS orders_of_6001 FROM livetrack.orders WHERE driver_id = 6001 AND status <> 'delivered';

-- A rolled-back savepoint takes its status change with it.
BEGIN;
SELECT livetrack.create_order(-1.2901, 36.8201, -1.2800, 36.8100) AS g \gset
SAVEPOINT s;
SELECT livetrack.assign_order(:g, 6001) AS driver;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT livetrack.wait_flushed();
SELECT o.status AS order_status, l.status AS driver_status
FROM livetrack.orders o, livetrack.live l WHERE o.order_id = :g AND l.driver_id = 6001;

-- A delivery's driver can take the next order at once, in the same session:
-- its own status changes are applied before assign_order() looks.
SELECT livetrack.assign_order(:g, 6001) AS driver;
SELECT livetrack.pickup_order(:g);
SELECT livetrack.deliver_order(:g);
SELECT livetrack.create_order(-1.2901, 36.8201, -1.2800, 36.8100) AS h \gset
SELECT livetrack.assign_order(:h, 6001) AS driver;
SELECT livetrack.cancel_order(:h);

-- Errors carry a SQLSTATE.
SELECT call, f.* FROM (VALUES
    ('SELECT livetrack.track_order(999999)'),
    ('SELECT livetrack.pickup_order(999999)'),
    (format('SELECT livetrack.assign_order(%s)', :a)),
    (format('SELECT livetrack.pickup_order(%s)', :a)),
    (format('SELECT livetrack.deliver_order(%s)', :d)),
    (format('SELECT livetrack.cancel_order(%s)', :e)),
    (format('SELECT livetrack.cancel_order(%s)', :a)),
    (format('SELECT livetrack.assign_order(%s, 6002)', :c)),
    ('SELECT livetrack.assign_order(livetrack.create_order(0, 0, 0, 0), 6003)'),
    ('SELECT livetrack.assign_order(livetrack.create_order(0, 0, 0, 0), 987654)'),
    ('SELECT livetrack.create_order(91, 0, 0, 0)'),
    ('SELECT livetrack.create_order(0, 0, 0, 181)'),
    ('SELECT livetrack.create_order(NULL, 0, 0, 0)')
) t(call), pg_temp.fails(call) f
ORDER BY call COLLATE "C";

-- Every transition is an event: in commit order, with the event id in its
-- payload; the rolled-back ones are not there.
SELECT order_id - :a AS nth_order, type, driver_id, payload->>'status' AS status, payload->>'target' AS target,
       (payload->>'event_id')::bigint = event_id AS id_in_payload
FROM livetrack.events ORDER BY event_id;
SELECT bool_and(event_id > 0) AND count(DISTINCT event_id) = count(*) AS ids_unique,
       (SELECT last_value FROM livetrack.events_event_id_seq) = max(event_id) AS from_the_sequence
FROM livetrack.events;
SELECT payload ?& ARRAY['type', 'order_id', 'driver_id', 'status', 'lat', 'lon', 'ts', 'distance_m', 'eta_s']
           AS spec_fields,
       payload->>'ts' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$' AS utc_ts
FROM livetrack.events WHERE order_id = :a AND payload->>'status' = 'assigned';
-- Each event rang two channels; the rolled-back ones rang none.
SELECT s.value - :notifications_before = 2 * (SELECT count(*) FROM livetrack.events) AS notifications_counted
FROM livetrack.stats s WHERE s.metric = 'notifications';

-- Order functions are granted, not open to everyone; granted, they work
-- without privileges on the tables behind them.
CREATE ROLE livetrack_regress_dispatch;
GRANT USAGE ON SCHEMA livetrack TO livetrack_regress_dispatch;
SET ROLE livetrack_regress_dispatch;
SELECT livetrack.create_order(0, 0, 0, 0);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION livetrack.create_order, livetrack.track_order TO livetrack_regress_dispatch;
SET ROLE livetrack_regress_dispatch;
SELECT status FROM livetrack.track_order(livetrack.create_order(0, 0, 0, 0));
SELECT count(*) FROM livetrack.orders;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE ALL ON FUNCTION livetrack.create_order, livetrack.track_order FROM livetrack_regress_dispatch;
REVOKE USAGE ON SCHEMA livetrack FROM livetrack_regress_dispatch;
DROP ROLE livetrack_regress_dispatch;

-- Cancelled after pickup: the driver is freed as well.
SELECT livetrack.create_order(-1.2901, 36.8201, -1.2800, 36.8100) AS i \gset
SELECT livetrack.assign_order(:i, 6001) AS driver;
SELECT livetrack.pickup_order(:i);
SELECT livetrack.cancel_order(:i);
SELECT livetrack.wait_flushed();
SELECT o.status AS order_status, o.cancelled_at >= o.picked_up_at AS in_order, l.status AS driver_status
FROM livetrack.orders o, livetrack.live l WHERE o.order_id = :i AND l.driver_id = 6001;

-- assign_order(id, NULL) looks past the nearest 64 when all of them are on
-- open orders although their devices say available. Around Kampala: 70
-- drivers at the pickup, each given an order, whose devices then report
-- available again, and one free driver 1 km north.
SELECT count(livetrack.ingest(d, 0.3476 + (d - 6100) * 1e-6, 32.5825, now(), NULL, NULL, NULL, 'available'))
FROM generate_series(6101, 6170) d;
SELECT livetrack.ingest(6199, 0.3566, 32.5825, now(), NULL, NULL, NULL, 'available');
SELECT livetrack.wait_flushed();
SELECT count(livetrack.assign_order(livetrack.create_order(0.3476, 32.5825, 0.35, 32.59), d)) AS assigned
FROM generate_series(6101, 6170) d;
SELECT livetrack.wait_flushed();
SELECT count(livetrack.ingest(d, 0.3476 + (d - 6100) * 1e-6, 32.5825, now(), NULL, NULL, NULL, 'available'))
FROM generate_series(6101, 6170) d;
SELECT livetrack.wait_flushed();
SELECT count(*) AS available_on_orders FROM livetrack.nearest_drivers(0.3476, 32.5825, 100, 500);
SELECT livetrack.assign_order(livetrack.create_order(0.3476, 32.5825, 0.35, 32.59)) AS driver;
