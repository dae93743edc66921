//! Synthetic raw rows for the demo and the tests: realistic readings in the
//! order live ingestion delivers them (by time across users, not sorted by
//! user), with a small share of the bad input the spec rejects.

use chrono::NaiveDate;
use tokio_postgres::GenericClient;

/// Inserts `users × days × 34` vitals readings starting at `start` (UTC):
/// hourly heart rate, blood pressure twice a day (once in kPa), SpO2 four
/// times (once as a fraction), a temperature (sometimes in °F) and a weight.
/// About 1 % are rejected by the spec (NULL, implausible, unknown unit).
/// `random()` is seeded, so the same arguments give the same rows.
pub async fn vitals(
    client: &impl GenericClient,
    users: i32,
    days: i32,
    start: NaiveDate,
) -> Result<u64, tokio_postgres::Error> {
    client.execute("SELECT setseed(0.42)", &[]).await?;
    client
        .execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
             SELECT user_id, at, metric,
                    CASE WHEN r < 0.004 THEN NULL WHEN r < 0.008 THEN value * 50 ELSE value END,
                    CASE WHEN r >= 0.008 AND r < 0.012 THEN 'furlongs' ELSE unit END
             FROM (
                SELECT u AS user_id,
                       $3::date::timestamp AT TIME ZONE 'UTC' + make_interval(days => d) + s.at
                         + make_interval(secs => floor(random() * 1800)::int) AS at,
                       s.metric, round((s.base + random() * s.spread)::numeric, 2)::float8 AS value, s.unit,
                       random() AS r
                FROM generate_series(1, $1) u, generate_series(0, $2 - 1) d,
                     (SELECT 'heart_rate', make_interval(hours => h), 55.0, 40.0, 'bpm' FROM generate_series(0, 23) h
                      UNION ALL VALUES
                        ('systolic_bp', interval '8 hours', 105.0, 35.0, 'mmHg'),
                        ('systolic_bp', interval '20 hours', 14.0, 4.5, 'kPa'),
                        ('diastolic_bp', interval '8 hours', 65.0, 25.0, 'mmHg'),
                        ('diastolic_bp', interval '20 hours', 65.0, 25.0, 'mmHg'),
                        ('spo2', interval '2 hours', 94.0, 5.0, '%'),
                        ('spo2', interval '8 hours', 94.0, 5.0, '%'),
                        ('spo2', interval '14 hours', 0.94, 0.05, 'fraction'),
                        ('spo2', interval '20 hours', 94.0, 5.0, '%'),
                        ('temperature', interval '7 hours', 97.3, 2.5, 'F'),
                        ('weight', interval '7 hours 30 minutes', 55.0, 50.0, 'kg')
                     ) s(metric, at, base, spread, unit)
             ) x
             ORDER BY at, user_id",
            &[&users, &days, &start],
        )
        .await
}
