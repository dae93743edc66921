CREATE TABLE IF NOT EXISTS vitals_raw (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    recorded_at timestamptz NOT NULL,
    metric text NOT NULL,
    value double precision,
    unit text NOT NULL
);

CREATE INDEX IF NOT EXISTS vitals_raw_user_time_idx ON vitals_raw (user_id, recorded_at);
