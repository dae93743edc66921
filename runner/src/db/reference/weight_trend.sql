CREATE TABLE IF NOT EXISTS weight_trend (
    user_id bigint NOT NULL,
    day date NOT NULL,
    readings int,
    avg_kg double precision,
    min_kg double precision,
    max_kg double precision,
    change_kg double precision,
    plugin_version text,
    updated_at timestamptz,
    PRIMARY KEY (user_id, day)
);
