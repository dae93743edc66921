-- Where each `runner recompute` run has got to, so an interrupted one resumes.
CREATE TABLE IF NOT EXISTS runner_recompute_progress (
    job text NOT NULL,
    from_day date NOT NULL,
    to_day date NOT NULL,
    -- The `--users` filter, sorted and comma-separated; '' for every user.
    users text NOT NULL,
    -- The last group done, in (day, user_id) order.
    last_day date,
    last_user bigint,
    groups_done bigint NOT NULL DEFAULT 0,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, from_day, to_day, users)
);
