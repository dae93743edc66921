CREATE TABLE IF NOT EXISTS lab_daily (
    user_id bigint NOT NULL,
    day date NOT NULL,
    test_code text NOT NULL,
    unit text,
    result_count int,
    rejected_count int,
    min_value double precision,
    max_value double precision,
    latest_value double precision,
    flag text,
    abnormal_count int,
    plugin_version text,
    updated_at timestamptz,
    PRIMARY KEY (user_id, day, test_code)
);
