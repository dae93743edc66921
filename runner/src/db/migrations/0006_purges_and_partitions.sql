-- Purges: "every day of this job that has daily rows is due", from
-- `from_day` to `to_day` (NULL: open). A TRUNCATE of a source or of one of
-- its partitions records one in its own transaction, and so does the
-- runner when a partition is detached or dropped; the runner expands it
-- into keys with its own snapshot (the truncating transaction's snapshot
-- may predate daily rows committed since, under REPEATABLE READ).
CREATE TABLE IF NOT EXISTS runner_purges (
    job text NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    -- The table truncated (the source or a partition), when a TRUNCATE.
    relid oid,
    from_day date,
    to_day date,
    reason text NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS runner_purges_job_idx ON runner_purges (job);

-- The leaf partitions of each job's partitioned source that carry the
-- job's change capture, with the days their bounds hold (NULL: open). A
-- partition that leaves the source (DETACH, DROP) is found missing here
-- and its days are purged; one that joins it (CREATE, ATTACH) is found new.
CREATE TABLE IF NOT EXISTS runner_partitions (
    job text NOT NULL,
    relid oid NOT NULL,
    name text NOT NULL,
    from_day date,
    to_day date,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, relid)
);

-- A job's purges turned into the keys of the days they cover that have
-- daily rows in `target` (a quoted table name), returned for the peek that
-- calls it. A truncated partition covers the days of its bounds; the
-- source itself, every day. The daily table is named only when there is a
-- purge: a lock another session holds on it never stalls a plain peek.
-- It runs with its caller's rights (not SECURITY DEFINER): a role without
-- rights on the runner's tables can do nothing through it.
CREATE OR REPLACE FUNCTION runner_expand_purges(job_name text, target text)
RETURNS TABLE (user_id bigint, day date, id bigint) LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM runner_purges p WHERE p.job = job_name) THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'WITH purged AS (
            DELETE FROM runner_purges p WHERE p.job = $1 RETURNING p.relid, p.from_day, p.to_day
         ), purged_days AS (
            SELECT coalesce(t.from_day, p.from_day) AS from_day, coalesce(t.to_day, p.to_day) AS to_day,
                   t.relid IS NOT NULL OR p.relid IS NULL AS bounded
            FROM purged p LEFT JOIN runner_partitions t ON t.job = $1 AND t.relid = p.relid
         ), queued AS (
            INSERT INTO runner_changes (job, user_id, day)
            SELECT DISTINCT $1, d.user_id::int8, d.day FROM %s d JOIN purged_days b
            ON NOT b.bounded OR ((b.from_day IS NULL OR d.day >= b.from_day) AND (b.to_day IS NULL OR d.day <= b.to_day))
            RETURNING user_id, day, id
         )
         SELECT user_id, day, id FROM queued', target) USING job_name;
END
$$;
