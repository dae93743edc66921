-- A group that failed on a limit (memory, time, max_group_rows) is not
-- recomputed at full cost on every new change while its backoff holds: new
-- rows only make such a day larger. The peek moves such a group's new
-- changes into its failure record (`changed`), so the queue still holds only
-- work to do now; the group is due again when its backoff ends, failed or not.
ALTER TABLE runner_group_failures
    ADD COLUMN on_limit boolean NOT NULL DEFAULT false,
    ADD COLUMN changed boolean NOT NULL DEFAULT false;
-- Failed groups with changes held back: due when their backoff ends.
CREATE INDEX IF NOT EXISTS runner_group_failures_changed_idx ON runner_group_failures (job, not_before)
    WHERE failed AND changed;
-- Held groups, looked up by the peek on every turn.
CREATE INDEX IF NOT EXISTS runner_group_failures_held_idx ON runner_group_failures (job)
    WHERE on_limit;
