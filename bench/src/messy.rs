//! `--data messy`: the seeded rows reshaped into what a field table looks
//! like after months of device syncs, instead of the tidy 34 readings per
//! user and day in time order:
//!
//! - **uneven groups**: a quarter of users send every reading, a quarter
//!   about half, a quarter about one in ten, a quarter about one in thirty
//!   (many one-row days, some days with none); one user in ten has a
//!   watch that sends each heart-rate reading five times over the hour;
//!   group sizes run from 1 to about 130 rows;
//! - **arrival by sync, shuffled**: a user's readings of a quarter day
//!   travel together, and the syncs of every user and day arrive in a
//!   random order (late uploads of old days included), so ids follow
//!   arrival, not time, user or day;
//! - the seed's share of bad input (NULL, implausible, unknown unit) stays.
//!
//! Deterministic: the same arguments give the same rows.

/// Rewrites `vitals_raw` (all pending) into the messy shape.
pub const RESHAPE: &str = "
SELECT setseed(0.4242);
CREATE TEMP TABLE arrived AS
SELECT user_id, recorded_at, metric, value, unit,
       md5(user_id::text || '/' || date_trunc('day', recorded_at) || '/' || floor(extract(hour FROM recorded_at) / 6)) AS sync
FROM (
    SELECT r.user_id, r.recorded_at + make_interval(mins => 12 * copy) AS recorded_at, r.metric, r.value, r.unit
    FROM vitals_raw r
    CROSS JOIN LATERAL generate_series(0, CASE WHEN r.user_id % 10 = 0 AND r.metric = 'heart_rate' THEN 4 ELSE 0 END) copy
    WHERE random() < CASE hashint8(r.user_id) & 3 WHEN 0 THEN 1.0 WHEN 1 THEN 0.5 WHEN 2 THEN 0.1 ELSE 0.03 END
) kept;
TRUNCATE vitals_raw;
DELETE FROM runner_changes;
INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
SELECT user_id, recorded_at, metric, value, unit FROM arrived ORDER BY sync, recorded_at;
DROP TABLE arrived;";
