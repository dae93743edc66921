-- Where a shadow candidate plugin's output differs from the live one's.
CREATE TABLE IF NOT EXISTS runner_shadow_diffs (
    id bigserial PRIMARY KEY,
    job text NOT NULL,
    user_id bigint NOT NULL,
    day date NOT NULL,
    live_version text NOT NULL,
    candidate_version text NOT NULL,
    -- Rows only the live plugin produced, and rows only the candidate produced.
    live_only jsonb NOT NULL,
    candidate_only jsonb NOT NULL,
    -- Set when the candidate failed on the group instead.
    candidate_error text,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS runner_shadow_diffs_job_idx ON runner_shadow_diffs (job, recorded_at);
