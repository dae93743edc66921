-- Change capture: the runner no longer writes raw tables. Triggers on each
-- job's source (installed per job by `runner migrate`, see db/capture.rs)
-- append the (user, day) keys a statement touched to `runner_changes`; the
-- runner takes a group's keys in the transaction that writes its daily rows.

-- Append-only for ingest: no unique key an API insert could wait on (ids
-- come from an identity, never equal). Duplicates of one key collapse when
-- the runner takes them. `day` leads the key index so that one index serves
-- taking a group's keys and dropping a frozen horizon's.
CREATE TABLE IF NOT EXISTS runner_changes (
    job text NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    user_id bigint NOT NULL,
    day date NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS runner_changes_order_idx ON runner_changes (job, id);
CREATE INDEX IF NOT EXISTS runner_changes_key_idx ON runner_changes (job, day, user_id);

-- Groups that failed: attempts, backoff, `failed` after max_attempts, the
-- error and the plugin version. Written by the runner only. A failing
-- group's queued keys move into its record, so `runner_changes` holds only
-- work due now; the group is due again when its backoff ends (unless
-- failed), when its rows change, or when an operator retries it.
CREATE TABLE IF NOT EXISTS runner_group_failures (
    job text NOT NULL,
    user_id bigint NOT NULL,
    day date NOT NULL,
    attempts int NOT NULL,
    not_before timestamptz NOT NULL,
    failed boolean NOT NULL,
    error text NOT NULL,
    plugin_version text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, user_id, day)
);
CREATE INDEX IF NOT EXISTS runner_group_failures_failed_idx ON runner_group_failures (job) WHERE failed;
CREATE INDEX IF NOT EXISTS runner_group_failures_due_idx ON runner_group_failures (job, not_before) WHERE NOT failed;

-- Source tables adopted from the seed's worker (aggregation_status
-- columns): their pending groups are queued once, recorded here.
CREATE TABLE IF NOT EXISTS runner_adopted_sources (
    job text NOT NULL,
    source text NOT NULL,
    groups_queued bigint NOT NULL,
    adopted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, source)
);

-- The notify-only trigger function of the first design; change capture
-- notifies from its own functions.
DROP FUNCTION IF EXISTS runner_notify_pending() CASCADE;
