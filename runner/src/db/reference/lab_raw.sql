CREATE TABLE IF NOT EXISTS lab_raw (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    collected_at timestamptz NOT NULL,
    test_code text NOT NULL,
    value double precision,
    unit text NOT NULL,
    ref_low double precision,
    ref_high double precision
);

CREATE INDEX IF NOT EXISTS lab_raw_user_time_idx ON lab_raw (user_id, collected_at);
