-- Local days at ingest's price: an insert into the source of a job whose
-- rows have zones of their own (`zone_column`, `user_zones`) queues here
-- per user and UTC day the first and last instant it inserted, as cheaply
-- as fixed-zone capture queues a day, with no per-row zone lookup. The
-- runner turns each key into the local days of the user's rows between
-- those instants when it next peeks (`db/statements`), and takes it from
-- here in the same statement. Updates and deletes still queue their exact
-- local days in `runner_changes`.
CREATE TABLE IF NOT EXISTS runner_changes_utc (
    job text NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    user_id bigint NOT NULL,
    day date NOT NULL,
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS runner_changes_utc_order_idx ON runner_changes_utc (job, id);
