//! A row's day: the one definition that the change triggers, every read of
//! a group's rows, `recompute`, `plugin diff` and the benchmark share.
//!
//! The day of a row is the calendar date of its timestamp in the job's zone
//! (`timezone`). A naive `timestamp` column holds wall times of
//! `timestamp_zone`: its day is that wall time's date read in the job's
//! zone, which is its own date when the two zones are the same.
//!
//! Reads stay index ranges on `(user_id, timestamp)`, filtered by that same
//! expression. The range cannot simply run from local midnight to local
//! midnight: where midnight is missing (a spring-forward gap) or happens
//! twice (a fall-back at midnight, as in America/Havana), Postgres picks one
//! reading of `day::timestamp AT TIME ZONE zone`, and rows of the day fall
//! outside it. So each bound is widened by the zone's offset change around
//! it: the zone's offset is sampled at the bound and a day either side (no
//! zone changes offset twice within two days), and the widest reading is
//! taken. The filter then keeps exactly the day's rows.

use crate::config;
use crate::db::schema::{SourceShape, ZoneKind};

/// How a job reads days from its source's timestamp column.
#[derive(Debug, Clone)]
pub struct Day {
    /// The timestamp column, quoted.
    column: String,
    /// The job's zone, as a SQL literal (zones are validated: no quotes).
    zone: String,
    /// A naive column's zone, as a SQL literal, when it is not the job's.
    naive: Naive,
    /// `window_days`: how many days, ending on its own, a group reads.
    window: u32,
    /// What a group spans, and its first weekday.
    period: config::Period,
    week_starts: config::WeekStart,
    /// Where each row's own zone comes from, if it has one.
    row_zone: Option<RowZone>,
    /// The known zone names (`runner_zone_names`), schema-qualified where
    /// the search path is empty (the capture function).
    zone_names: String,
}

/// A row's own zone.
#[derive(Debug, Clone)]
enum RowZone {
    /// A column of the row (`zone_column`, quoted) and how it is written.
    Column(String, ZoneKind),
    /// The user's entry in a table (`user_zones`; names quoted; the table
    /// schema-qualified where the search path is empty).
    User { table: String, user: String, zone: String, from: Option<String> },
}

#[derive(Debug, Clone)]
enum Naive {
    /// `timestamptz`: an instant.
    No,
    /// `timestamp` of wall times in the job's own zone.
    SameZone,
    /// `timestamp` of wall times in another zone (a SQL literal).
    Zone(String),
    /// `date`: the day itself (a daily table as a source), in no zone.
    Date,
}

impl Day {
    pub fn new(job: &config::Job, shape: &SourceShape) -> Day {
        let literal = |zone: &str| format!("'{zone}'");
        let naive = match &shape.naive_zone {
            _ if shape.dated => Naive::Date,
            None => Naive::No,
            Some(zone) if *zone == job.timezone => Naive::SameZone,
            Some(zone) => Naive::Zone(literal(zone)),
        };
        Day {
            column: job.timestamp_column.quoted(),
            zone: literal(&job.timezone),
            naive,
            window: job.window_days.max(1),
            period: job.period,
            week_starts: job.week_starts,
            row_zone: match (&job.zone_column, shape.zone, &job.user_zones) {
                (Some(column), Some(kind), _) => Some(RowZone::Column(column.quoted(), kind)),
                (_, _, Some(u)) => Some(RowZone::User {
                    table: u.table.quoted(),
                    user: u.user_column.quoted(),
                    zone: u.zone_column.quoted(),
                    from: u.from_column.as_ref().map(|f| f.quoted()),
                }),
                _ => None,
            },
            zone_names: "runner_zone_names".to_string(),
        }
    }

    /// Every row in the job's zone, as a bound of a partition (an instant,
    /// not a row) is read.
    pub fn in_job_zone(self) -> Day {
        Day { row_zone: None, ..self }
    }

    /// Whether the job's rows have zones of their own (a column, or the user's).
    pub fn has_row_zones(&self, job: &config::Job, shape: &SourceShape) -> bool {
        shape.zone.is_some() || job.user_zones.is_some()
    }

    /// Whether an insert is captured by its rows' UTC days, which the
    /// runner widens to local days when it next peeks: rows with zones of
    /// their own (an instant each), whose zone lookup per row cost ingest
    /// 15–30 % (docs/performance.md, round 12); the runner pays it instead.
    pub fn captures_utc(&self) -> bool {
        matches!(self.naive, Naive::No) && self.row_zone.is_some()
    }

    /// Row `t`'s UTC day (see [`Day::captures_utc`]).
    pub fn utc_of(&self, t: &str) -> String {
        format!("({t}{} AT TIME ZONE 'UTC')::pg_catalog.date", self.column)
    }

    /// Reads the known zone names from `schema` (a quoted name), and the
    /// users' zones from `user_zones` (schema-qualified): for the capture
    /// function, which runs with an empty search path.
    pub fn in_capture(self, schema: &str, user_zones: Option<&str>) -> Day {
        let row_zone = match (self.row_zone, user_zones) {
            (Some(RowZone::User { user, zone, from, .. }), Some(table)) => {
                Some(RowZone::User { table: table.to_string(), user, zone, from })
            }
            (other, _) => other,
        };
        Day { zone_names: format!("{schema}.runner_zone_names"), row_zone, ..self }
    }

    /// Row `t`'s zone as `AT TIME ZONE` takes it: its own when known,
    /// else the job's. A lookup, never a cast that could fail: an unknown
    /// name must not fail the application's statement in the trigger.
    /// The zone of row `t` as text (an IANA name, or an offset as
    /// `+05:30`), the job's when it has none or an unknown one; `None`
    /// when the job reads no zones per row. What a plugin is told (WIT 0.3).
    pub fn zone_text(&self, t: &str) -> Option<String> {
        let tz = &self.zone;
        Some(match self.row_zone.as_ref()? {
            RowZone::Column(column, ZoneKind::Offset) => format!(
                "(CASE WHEN {t}{column} BETWEEN -1080 AND 1080 THEN \
                 (CASE WHEN {t}{column} < 0 THEN '-' ELSE '+' END) \
                 || pg_catalog.lpad((abs({t}{column}::int4) / 60)::text, 2, '0') || ':' \
                 || pg_catalog.lpad((abs({t}{column}::int4) % 60)::text, 2, '0') ELSE {tz} END)"
            ),
            _ => format!("({})::text", self.zone_of(t)),
        })
    }

    fn zone_of(&self, t: &str) -> String {
        let (tz, names) = (&self.zone, &self.zone_names);
        match &self.row_zone {
            None => tz.clone(),
            Some(RowZone::Column(column, ZoneKind::Name)) => {
                // A probe of the names' key per row: for a statement of a
                // few rows much cheaper than hashing all ~1,200 names,
                // which is what Postgres chooses for an `EXISTS` here
                // (its hashed alternative); a scalar subquery has none.
                format!("COALESCE((SELECT n.name FROM {names} n WHERE n.name = {t}{column}), {tz})")
            }
            // Minutes east of UTC: the interval form of AT TIME ZONE.
            Some(RowZone::Column(column, ZoneKind::Offset)) => format!(
                "(CASE WHEN {t}{column} BETWEEN -1080 AND 1080 \
                 THEN pg_catalog.make_interval(mins => {t}{column}::int4) END)"
            ),
            // The user's entry (the latest in effect at the row's time);
            // none, or an unknown name: the job's zone.
            Some(RowZone::User { table, user, zone, from }) => {
                let (when, latest) = match from {
                    Some(f) => (format!(" AND z.{f} <= {t}{}", self.column), format!(" ORDER BY z.{f} DESC")),
                    None => (String::new(), String::new()),
                };
                format!(
                    "COALESCE((SELECT (SELECT n.name FROM {names} n WHERE n.name = z.{zone}) \
                     FROM {table} z WHERE z.{user} = {t}user_id{when}{latest} LIMIT 1), {tz})"
                )
            }
        }
    }

    /// The group's date of a row of day `day` (a SQL `date`): the day, or
    /// the first day of its week or month. Arithmetic on the date alone:
    /// no cast through a `timestamptz`, whose day would depend on the
    /// session's zone.
    pub fn key_of(&self, day: &str) -> String {
        use config::{Period, WeekStart};
        match (self.period, self.week_starts) {
            (Period::Day, _) => day.to_string(),
            (Period::Week, WeekStart::Monday) => format!("({day} - (EXTRACT(isodow FROM {day})::int - 1))"),
            (Period::Week, WeekStart::Sunday) => format!("({day} - EXTRACT(dow FROM {day})::int)"),
            (Period::Month, _) => format!("({day} - (EXTRACT(day FROM {day})::int - 1))"),
        }
    }

    /// The last day of the group of date `key` (a SQL `date`).
    pub fn last_day(&self, key: &str) -> String {
        match self.period {
            config::Period::Day => key.to_string(),
            config::Period::Week => format!("({key}::pg_catalog.date + 6)"),
            config::Period::Month => {
                format!("(({key}::pg_catalog.date + interval '1 month')::pg_catalog.date - 1)")
            }
        }
    }

    /// Whether a group spans more than its own day (a week or a month).
    pub fn is_period(&self) -> bool {
        self.period != config::Period::Day
    }

    /// The days a group reads, ending on its own (1: the day alone).
    pub fn window(&self) -> u32 {
        self.window
    }

    /// The first day of input of the group of day `key` (a SQL `date`
    /// expression): the day itself, or the window's first day.
    pub fn first_day(&self, key: &str) -> String {
        match self.window {
            0 | 1 => key.to_string(),
            n => format!("({key}::pg_catalog.date - {})", n - 1),
        }
    }

    /// The days a row of day `day` (a SQL `date`) is input of, as a
    /// `FROM`-list item and the day expression it gives: the day alone, or
    /// it and the `window − 1` days after it.
    pub fn due_days(&self, day: &str) -> (String, String) {
        match self.window {
            0 | 1 => (String::new(), day.to_string()),
            n => (format!(" CROSS JOIN pg_catalog.generate_series(0, {}) AS w(n)", n - 1), format!("{day} + w.n")),
        }
    }

    /// The day of the row aliased `t` (its alias and a dot, or ""): a `date`.
    pub fn of(&self, t: &str) -> String {
        let (ts, tz) = (format!("{t}{}", self.column), &self.zone);
        match &self.naive {
            Naive::Date => ts,
            // An offset: its interval, else (NULL, beyond ±18 h) the job's zone.
            Naive::No if matches!(self.row_zone, Some(RowZone::Column(_, ZoneKind::Offset))) => format!(
                "COALESCE(({ts} AT TIME ZONE {zone})::pg_catalog.date, ({ts} AT TIME ZONE {tz})::pg_catalog.date)",
                zone = self.zone_of(t)
            ),
            Naive::No => format!("({ts} AT TIME ZONE {})::pg_catalog.date", self.zone_of(t)),
            Naive::SameZone => format!("{ts}::pg_catalog.date"),
            Naive::Zone(zone) => format!("(({ts} AT TIME ZONE {zone}) AT TIME ZONE {tz})::pg_catalog.date"),
        }
    }

    /// The condition that row `t`'s day lies in `[from, to]` (SQL `date`
    /// expressions): an index range on the timestamp column, then the day.
    pub fn between(&self, t: &str, from: &str, to: &str) -> String {
        let ts = format!("{t}{}", self.column);
        if let Naive::Date = self.naive {
            // The day itself: the range is the condition.
            return match from == to {
                true => format!("{ts} = {from}::pg_catalog.date"),
                false => format!("{ts} BETWEEN {from}::pg_catalog.date AND {to}::pg_catalog.date"),
            };
        }
        let (first, end) =
            (format!("{from}::pg_catalog.date::timestamp"), format!("({to}::pg_catalog.date + 1)::timestamp"));
        let (low, high) = match &self.naive {
            // Wall times of the job's zone: the range is exact.
            Naive::SameZone | Naive::Date => (first, end),
            // Each row's own zone: a day either side of the UTC day holds
            // every zone's (offsets stay within ±18 h), the filter the rest.
            Naive::No if self.row_zone.is_some() => (
                format!("(({first} AT TIME ZONE 'UTC') - interval '1 day')"),
                format!("(({end} AT TIME ZONE 'UTC') + interval '1 day')"),
            ),
            Naive::No => (widened(&first, &self.zone, Widest::Earliest), widened(&end, &self.zone, Widest::Latest)),
            // The instants, then as wall times of the column's zone.
            Naive::Zone(zone) => (
                widened(&widened(&first, &self.zone, Widest::Earliest), zone, Widest::Earliest),
                widened(&widened(&end, &self.zone, Widest::Latest), zone, Widest::Latest),
            ),
        };
        let day = self.of(t);
        let days = if from == to {
            format!("{day} = {from}::pg_catalog.date")
        } else {
            format!("{day} BETWEEN {from} AND {to}")
        };
        format!("{ts} >= {low} AND {ts} < {high} AND {days}")
    }
}

/// The group's date of day `day` (as [`Day::key_of`] says it in SQL).
pub fn period_start(job: &config::Job, day: chrono::NaiveDate) -> chrono::NaiveDate {
    use chrono::Datelike as _;
    let back = match (job.period, job.week_starts) {
        (config::Period::Day, _) => 0,
        (config::Period::Week, config::WeekStart::Monday) => day.weekday().num_days_from_monday(),
        (config::Period::Week, config::WeekStart::Sunday) => day.weekday().num_days_from_sunday(),
        (config::Period::Month, _) => day.day0(),
    };
    day - chrono::Days::new(u64::from(back))
}

/// Which reading of a bound to keep.
#[derive(Clone, Copy)]
enum Widest {
    Earliest,
    Latest,
}

impl Widest {
    fn function(self) -> &'static str {
        match self {
            Widest::Earliest => "LEAST",
            Widest::Latest => "GREATEST",
        }
    }
}

/// `value AT TIME ZONE zone` (a wall time to an instant, or an instant to
/// a wall time: Postgres's operator goes both ways), read with the zone's
/// offsets at it and a day either side, and the widest kept.
fn widened(value: &str, zone: &str, widest: Widest) -> String {
    if is_utc(zone) {
        // No offset ever changes: the plain reading is exact.
        return format!("({value} AT TIME ZONE {zone})");
    }
    format!(
        "{f}({value} AT TIME ZONE {zone}, ({value} - interval '1 day') AT TIME ZONE {zone} + interval '1 day', \
         ({value} + interval '1 day') AT TIME ZONE {zone} - interval '1 day')",
        f = widest.function()
    )
}

/// Whether `zone` (a SQL literal) names UTC, whose offset never changes.
fn is_utc(zone: &str) -> bool {
    const UTC: &[&str] = &["UTC", "UCT", "GMT", "Zulu", "Universal", "Greenwich"];
    let name = zone.trim_matches('\'');
    let name = name.strip_prefix("Etc/").unwrap_or(name);
    UTC.iter().any(|u| u.eq_ignore_ascii_case(name))
}
