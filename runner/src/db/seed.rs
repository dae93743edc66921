//! Synthetic raw rows for the demo, `runner seed`, benchmarks and tests:
//! realistic readings in the order live ingestion delivers them (by time
//! across users, not sorted by user), with a small share of the bad input
//! the spec rejects. Rows are generated inside Postgres (`generate_series`),
//! one day per statement: nothing crosses the network, which beats COPY, and
//! each day's random numbers are seeded, so the same arguments give the
//! same rows.

use chrono::NaiveDate;
use tokio_postgres::GenericClient;

/// A kind of raw data the reference schema holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Vitals,
    Nutrition,
    Lab,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Vitals, Kind::Nutrition, Kind::Lab];

    pub fn table(self) -> &'static str {
        match self {
            Kind::Vitals => "vitals_raw",
            Kind::Nutrition => "nutrition_raw",
            Kind::Lab => "lab_raw",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Kind::Vitals => VITALS,
            Kind::Nutrition => NUTRITION,
            Kind::Lab => LAB,
        }
    }
}

/// Inserts `days` days of `kind` for `users` users from `start` (UTC), day
/// by day in time order; `progress(rows)` is called after each day.
pub async fn seed(
    client: &impl GenericClient,
    kind: Kind,
    users: i32,
    days: i32,
    start: NaiveDate,
    mut progress: impl FnMut(u64),
) -> Result<u64, tokio_postgres::Error> {
    let statement = client.prepare(kind.sql()).await?;
    let mut total = 0;
    for d in 0..days {
        let day = start + chrono::Days::new(d as u64);
        // A seed per kind and calendar day: reproducible, no two days alike,
        // and the same rows whether days are seeded one by one or together.
        let n = (day - NaiveDate::default()).num_days();
        let seed = ((n * 7919 + kind as i64 * 104_729) % 10_000) as f64 / 10_000.0;
        client.execute("SELECT setseed($1)", &[&seed]).await?;
        let rows = client.execute(&statement, &[&users, &day]).await?;
        total += rows;
        progress(rows);
    }
    Ok(total)
}

/// `users × days × 34` vitals readings (see `VITALS`).
pub async fn vitals(
    client: &impl GenericClient,
    users: i32,
    days: i32,
    start: NaiveDate,
) -> Result<u64, tokio_postgres::Error> {
    seed(client, Kind::Vitals, users, days, start, |_| {}).await
}

/// Hourly heart rate, blood pressure twice a day (once in kPa), SpO2 four
/// times (once as a fraction), a temperature in °F and a weight: 34 a day.
/// About 1 % are rejected by the spec (NULL, implausible, unknown unit).
const VITALS: &str = "
    INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
    SELECT user_id, at, metric,
           CASE WHEN r < 0.004 THEN NULL WHEN r < 0.008 THEN value * 50 ELSE value END,
           CASE WHEN r >= 0.008 AND r < 0.012 THEN 'furlongs' ELSE unit END
    FROM (
       SELECT u AS user_id,
              $2::date::timestamp AT TIME ZONE 'UTC' + s.at + make_interval(secs => floor(random() * 1800)::int) AS at,
              s.metric, round((s.base + random() * s.spread)::numeric, 2)::float8 AS value, s.unit,
              random() AS r
       FROM generate_series(1, $1) u,
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
    ORDER BY at, user_id";

/// 3–4 meals a day per user (a snack on about half the days); about 2 %
/// are rejected (unknown meal, negative nutrient).
const NUTRITION: &str = "
    INSERT INTO nutrition_raw (user_id, consumed_at, meal, calories, protein_g, carbs_g, fat_g, fiber_g, sugar_g, sodium_mg, water_ml)
    SELECT user_id, at,
           CASE WHEN r < 0.01 THEN 'brunch' ELSE meal END,
           CASE WHEN r >= 0.01 AND r < 0.02 THEN -calories ELSE calories END,
           round((calories * 0.05 * (0.5 + random()))::numeric, 1)::float8,
           round((calories * 0.12 * (0.5 + random()))::numeric, 1)::float8,
           round((calories * 0.035 * (0.5 + random()))::numeric, 1)::float8,
           CASE WHEN random() < 0.3 THEN NULL ELSE round((random() * 8)::numeric, 1)::float8 END,
           round((random() * 25)::numeric, 1)::float8,
           round((random() * 900)::numeric)::float8,
           CASE WHEN random() < 0.5 THEN NULL ELSE round((random() * 500)::numeric)::float8 END
    FROM (
       SELECT u AS user_id,
              $2::date::timestamp AT TIME ZONE 'UTC' + m.at + make_interval(mins => floor(random() * 90)::int) AS at,
              m.meal, round((m.kcal * (0.6 + random() * 0.8))::numeric)::float8 AS calories, random() AS r
       FROM generate_series(1, $1) u,
            (VALUES ('breakfast', interval '7 hours', 450.0), ('lunch', interval '12 hours', 700.0),
                    ('dinner', interval '18 hours 30 minutes', 800.0), ('snack', interval '15 hours', 200.0)) m(meal, at, kcal)
       WHERE m.meal <> 'snack' OR random() < 0.5
    ) x
    ORDER BY at, user_id";

/// Lab panels for about one user in five each day: glucose (in mmol/L and
/// mg/dL), cholesterol, creatinine (µmol/L), hemoglobin (g/L) and a code the
/// spec does not know; about 2 % are rejected (wrong unit, no value).
const LAB: &str = "
    INSERT INTO lab_raw (user_id, collected_at, test_code, value, unit, ref_low, ref_high)
    SELECT user_id, at, code,
           CASE WHEN r < 0.01 THEN NULL ELSE round((base + random() * spread)::numeric, 2)::float8 END,
           CASE WHEN r >= 0.01 AND r < 0.02 THEN 'furlongs' ELSE unit END, low, high
    FROM (
       SELECT u AS user_id,
              $2::date::timestamp AT TIME ZONE 'UTC' + interval '8 hours' + make_interval(mins => floor(random() * 120)::int) AS at,
              t.*, random() AS r
       FROM generate_series(1, $1) u,
            (VALUES ('2345-7', 4.0, 3.5, 'mmol/L', 3.9, 5.5), ('2345-7', 70.0, 60.0, 'mg/dL', 70.0, 100.0),
                    ('2093-3', 150.0, 100.0, 'mg/dL', NULL, 200.0), ('2160-0', 60.0, 60.0, 'µmol/L', 53.0, 106.0),
                    ('718-7', 120.0, 50.0, 'g/L', 120.0, 170.0), ('1989-3', 15.0, 40.0, 'ng/mL', 30.0, 100.0)
            ) t(code, base, spread, unit, low, high)
       WHERE (hashint4(u * 7919 + ($2::date - date '2000-01-01')) % 5) = 0
    ) x
    ORDER BY at, user_id";
