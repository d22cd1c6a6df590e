-- The service's role, with the three server-side timeouts that DATABASE_TIMEOUT=5 asks
-- for (a statement 5 s, a lock wait half of it, an idle transaction twice it), so that
-- every session PgBouncer opens has them and the service need not set them on each
-- transaction (docs/operations.md, "Through PgBouncer"). Run as a superuser:
--   psql -v ON_ERROR_STOP=1 -d app -f database.sql
-- then `RECONNECT` on PgBouncer's console (or restart it): a role's settings reach only
-- sessions that start after them. tests/test_cluster.py runs this file.
ALTER ROLE app SET statement_timeout = '5s';
ALTER ROLE app SET lock_timeout = '2500ms';
ALTER ROLE app SET idle_in_transaction_session_timeout = '10s';
