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
