-- Local days at ingest's price: an insert into the source of a job whose
-- rows have zones of their own (`zone_column`, `user_zones`) queues here
-- its rows' UTC days, as fixed-zone capture does, with no per-row zone
-- lookup. The runner turns each key into the local days of the user's rows
-- of that UTC day when it next peeks (`db/statements`), and takes it from
-- here in the same statement. Updates and deletes still queue their exact
-- local days in `runner_changes`.
CREATE TABLE IF NOT EXISTS runner_changes_utc (
    job text NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    user_id bigint NOT NULL,
    day date NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS runner_changes_utc_order_idx ON runner_changes_utc (job, id);
