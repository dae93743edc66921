//! The set-based reference: the spec's vitals rules as one `INSERT … SELECT
//! … GROUP BY … ON CONFLICT` over every day — the fastest way Postgres
//! itself knows, with no per-group commits and no plugin. With change
//! capture nothing marks raw rows, so neither does the reference.

/// The statement, with `day` the day of a raw row (`runner::db::day`: the
/// runner's own definition, so both count the same days).
pub fn aggregate(day: &str) -> String {
    AGGREGATE.replace("{day}", day)
}

const AGGREGATE: &str = "
INSERT INTO vitals_daily (user_id, day, metric, unit, sample_count, rejected_count,
                          min_value, max_value, avg_value, last_value, plugin_version, updated_at)
SELECT user_id, day, metric, max(canonical_unit),
       count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok),
       min(v) FILTER (WHERE ok), max(v) FILTER (WHERE ok), avg(v) FILTER (WHERE ok),
       (array_agg(v ORDER BY recorded_at DESC, id DESC) FILTER (WHERE ok))[1],
       'set-based', now()
FROM (
    SELECT id, user_id, {day} AS day, metric, recorded_at, v, canonical_unit,
           v IS NOT NULL AND v BETWEEN lo AND hi AS ok
    FROM (
        SELECT r.*, m.canonical_unit, m.lo, m.hi,
               CASE WHEN r.value IS NULL OR r.value IN ('NaN', 'Infinity', '-Infinity') THEN NULL
                    WHEN lower(trim(r.unit)) = ANY(m.same) THEN r.value
                    WHEN lower(trim(r.unit)) = ANY(m.scaled) THEN r.value * m.factor
                    WHEN lower(trim(r.unit)) = ANY(m.fahrenheit) THEN (r.value - 32) * 5 / 9
               END AS v
        FROM vitals_raw r
        JOIN (VALUES
            ('heart_rate', 'bpm', 20.0::float8, 300.0::float8, '{bpm}'::text[], '{}'::text[], 1.0::float8, '{}'::text[]),
            ('systolic_bp', 'mmHg', 50, 300, '{mmhg}', '{kpa}', 7.50062, '{}'),
            ('diastolic_bp', 'mmHg', 20, 200, '{mmhg}', '{kpa}', 7.50062, '{}'),
            ('spo2', '%', 50, 100, '{%}', '{fraction}', 100, '{}'),
            ('temperature', 'C', 25, 45, '{c,celsius}', '{}', 1, '{f,fahrenheit}'),
            ('weight', 'kg', 1, 500, '{kg}', '{lb,lbs}', 0.45359237, '{}'),
            ('respiratory_rate', 'breaths/min', 1, 100, '{breaths/min}', '{}', 1, '{}')
        ) m(metric, canonical_unit, lo, hi, same, scaled, factor, fahrenheit) ON m.metric = r.metric
    ) converted
) readings
GROUP BY user_id, day, metric
ON CONFLICT (user_id, day, metric) DO UPDATE SET
    unit = excluded.unit, sample_count = excluded.sample_count, rejected_count = excluded.rejected_count,
    min_value = excluded.min_value, max_value = excluded.max_value, avg_value = excluded.avg_value,
    last_value = excluded.last_value, plugin_version = excluded.plugin_version, updated_at = excluded.updated_at";
