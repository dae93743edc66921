-- The notify payload is the trigger's argument when it has one: a row
-- trigger cloned onto the partitions of a partitioned raw table fires with
-- the partition's name, but runners listen for the table they were given.
CREATE OR REPLACE FUNCTION runner_notify_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('runner_pending', coalesce(TG_ARGV[0], TG_TABLE_NAME));
    RETURN NULL;
END
$$;

-- Recompute progress is kept per plugin version: a new version starts over.
ALTER TABLE runner_recompute_progress ADD COLUMN IF NOT EXISTS plugin_version text NOT NULL DEFAULT '';
ALTER TABLE runner_recompute_progress ADD COLUMN IF NOT EXISTS groups_failed bigint NOT NULL DEFAULT 0;
ALTER TABLE runner_recompute_progress DROP CONSTRAINT IF EXISTS runner_recompute_progress_pkey;
ALTER TABLE runner_recompute_progress ADD PRIMARY KEY (job, from_day, to_day, users, plugin_version);

-- The groups a recompute run could not do, so that a rerun retries them.
CREATE TABLE IF NOT EXISTS runner_recompute_failures (
    job text NOT NULL,
    from_day date NOT NULL,
    to_day date NOT NULL,
    users text NOT NULL,
    plugin_version text NOT NULL,
    user_id bigint NOT NULL,
    day date NOT NULL,
    error text NOT NULL,
    PRIMARY KEY (job, from_day, to_day, users, plugin_version, day, user_id)
);
