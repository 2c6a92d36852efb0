-- Signing keys from SQL (SPEC 2.3): what create_key() returns, errors, and
-- who may see secrets. Messages signed with them: test/t/011_keys.pl.
\set SHOW_CONTEXT never
SELECT key_id AS gateway, length(secret) AS secret_bytes FROM livetrack.create_key() \gset
SELECT :secret_bytes AS secret_bytes;
SELECT key_id AS device FROM livetrack.create_key(42) \gset
SELECT key_id - :gateway AS nth, driver_id, length(secret), revoked_at IS NULL AS active
FROM livetrack.keys ORDER BY key_id;
SELECT count(DISTINCT secret) AS distinct_secrets FROM livetrack.keys;
SELECT value AS in_shared_memory FROM livetrack.stats WHERE metric = 'signing_keys';

SELECT livetrack.revoke_key(:gateway);
SELECT key_id - :gateway AS nth, revoked_at IS NOT NULL AS revoked FROM livetrack.keys ORDER BY key_id;

-- Errors carry a SQLSTATE.
SELECT livetrack.create_key(0);
\echo :LAST_ERROR_SQLSTATE
SELECT livetrack.revoke_key(:gateway);
\echo :LAST_ERROR_SQLSTATE
SELECT livetrack.revoke_key(999999);
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT livetrack.create_key() IS NOT NULL AS created;
PREPARE TRANSACTION 'k';
\echo :LAST_ERROR_SQLSTATE

-- Secrets are the extension owner's: an ordinary role sees neither the
-- table nor the functions.
CREATE ROLE livetrack_regress_app;
GRANT USAGE ON SCHEMA livetrack TO livetrack_regress_app;
SET ROLE livetrack_regress_app;
SELECT secret FROM livetrack.keys;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM livetrack.create_key();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE USAGE ON SCHEMA livetrack FROM livetrack_regress_app;
DROP ROLE livetrack_regress_app;
