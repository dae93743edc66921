-- The reference schema of the aggregation spec: three raw tables and their
-- daily tables. The runner only reads the raw tables (change capture is
-- installed per job by `runner migrate`); each has the (user_id, timestamp)
-- index a group's read needs. (Databases migrated before change capture
-- keep the old aggregation_status columns, which the runner ignores.)

CREATE TABLE IF NOT EXISTS vitals_raw (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    recorded_at timestamptz NOT NULL,
    metric text NOT NULL,
    value double precision,
    unit text NOT NULL
);

CREATE INDEX IF NOT EXISTS vitals_raw_user_time_idx ON vitals_raw (user_id, recorded_at);

CREATE TABLE IF NOT EXISTS vitals_daily (
    user_id bigint NOT NULL,
    day date NOT NULL,
    metric text NOT NULL,
    unit text,
    sample_count int,
    rejected_count int,
    min_value double precision,
    max_value double precision,
    avg_value double precision,
    last_value double precision,
    plugin_version text,
    updated_at timestamptz,
    PRIMARY KEY (user_id, day, metric)
);

CREATE TABLE IF NOT EXISTS nutrition_raw (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    consumed_at timestamptz NOT NULL,
    meal text NOT NULL,
    calories double precision,
    protein_g double precision,
    carbs_g double precision,
    fat_g double precision,
    fiber_g double precision,
    sugar_g double precision,
    sodium_mg double precision,
    water_ml double precision
);

CREATE INDEX IF NOT EXISTS nutrition_raw_user_time_idx ON nutrition_raw (user_id, consumed_at);

CREATE TABLE IF NOT EXISTS nutrition_daily (
    user_id bigint NOT NULL,
    day date NOT NULL,
    entry_count int,
    rejected_count int,
    meals_logged int,
    calories double precision,
    protein_g double precision,
    carbs_g double precision,
    fat_g double precision,
    fiber_g double precision,
    sugar_g double precision,
    sodium_mg double precision,
    water_ml double precision,
    protein_pct double precision,
    carbs_pct double precision,
    fat_pct double precision,
    plugin_version text,
    updated_at timestamptz,
    PRIMARY KEY (user_id, day)
);

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
