//! History: raw rows already in the table and aggregated long ago (inserted
//! with the change triggers off, so nothing is queued for them), as a table
//! that has been aggregated for years holds. They belong to the
//! same users, on the days before the seeded ones, so they sit in the same
//! index ranges the runner reads; their metric (`steps`) is one vitals
//! ignores, so the daily rows to compare stay the same.

/// The statement adding `rows` completed rows for users `1..=users`.
pub fn insert(rows: i64, users: i32) -> String {
    format!(
        "SET session_replication_role = replica;
         INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
         SELECT 1 + g % {users}, timestamptz '{start}' - (g / {users} + 1) * interval '10 minutes',
                'steps', 100, 'count'
         FROM generate_series(0, {last}) g;
         RESET session_replication_role;",
        start = "2024-01-01 00:00Z",
        last = rows - 1
    )
}
