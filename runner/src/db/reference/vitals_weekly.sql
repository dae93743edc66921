CREATE TABLE IF NOT EXISTS vitals_weekly (
    user_id bigint NOT NULL,
    week date NOT NULL,
    metric text NOT NULL,
    unit text,
    days_with_data int,
    sample_count int,
    rejected_count int,
    min_value double precision,
    max_value double precision,
    avg_value double precision,
    last_value double precision,
    plugin_version text,
    updated_at timestamptz,
    PRIMARY KEY (user_id, week, metric)
);
