-- Local days: the zone names Postgres knows, as a table, so that a row's
-- zone (a `zone_column` value) is checked by a lookup that never fails the
-- application's statement: an unknown name is grouped in the job's zone.
-- Postgres's own list (`pg_timezone_names`) is a function that reads the
-- zone files on every call; this copy is made once, by this migration.
CREATE TABLE IF NOT EXISTS runner_zone_names (
    name text PRIMARY KEY
);
INSERT INTO runner_zone_names (name) SELECT name FROM pg_catalog.pg_timezone_names ON CONFLICT DO NOTHING;
