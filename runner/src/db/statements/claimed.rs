//! The rows `claim`, `claim_many` and `read_day` return, read by column
//! name: `id`, `at`, the plugin's input columns, then (a claim) `taken`,
//! `locked` and (several groups) `n`. The names are looked up once per
//! result, so a column added to a statement moves nothing here.

use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use tokio_postgres::Row;

use crate::db::sql;
use crate::rows::{GroupKey, InputRow, days_since_epoch};

/// Where a result's columns are.
#[derive(Debug, Clone)]
struct Layout {
    id: usize,
    at: usize,
    /// The plugin's input columns.
    values: Range<usize>,
    /// Each row's local day, and its zone when the job reads one per row.
    local_day: Option<usize>,
    zone: Option<usize>,
    taken: Option<usize>,
    attempts: Option<usize>,
    locked: Option<usize>,
    /// The group (1-based, in the order of the keys) of each row: `claim_many` only.
    group: Option<usize>,
}

impl Layout {
    fn of(row: &Row) -> Layout {
        let find = |name: &str| row.columns().iter().position(|c| c.name() == name);
        let (taken, attempts, locked, group) = (find("taken"), find("attempts"), find("locked"), find("n"));
        let (local_day, zone) = (find("local_day"), find("zone"));
        let at = find("at").unwrap_or(1);
        // The input columns run from `at` to the columns after them.
        let end = [local_day, zone, taken, attempts, locked, group].into_iter().flatten().min().unwrap_or(row.len());
        Layout { id: find("id").unwrap_or(0), at, values: at + 1..end, local_day, zone, taken, attempts, locked, group }
    }
}

/// A statement's rows with their layout.
pub struct Read {
    rows: Vec<Row>,
    layout: Option<Layout>,
}

/// One group as a claim left it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub key: GroupKey,
    /// The group's advisory lock was free: it is this transaction's.
    pub locked: bool,
    /// Keys (and a failure record due for a retry) the claim took.
    pub taken: i64,
    /// The attempts of the failure record the claim took (0: none): a
    /// failure recorded in the same transaction counts on from them.
    pub attempts: i32,
    /// The group's input rows in the claim's; empty when it has none (or
    /// was not locked).
    rows: Range<usize>,
}

impl Read {
    pub(super) fn new(rows: Vec<Row>) -> Read {
        let layout = rows.first().map(Layout::of);
        Read { rows, layout }
    }

    /// The groups of a claim of `keys`, in their order; a group the
    /// statement left out (it cannot, but a key is not trusted) is absent.
    pub fn groups(&self, keys: &[GroupKey]) -> Vec<Claimed> {
        let Some(layout) = &self.layout else { return Vec::new() };
        let group_of = |r: &Row| layout.group.map_or(Some(1), |i| r.try_get::<_, i64>(i).ok());
        let mut groups = Vec::with_capacity(keys.len());
        let mut start = 0;
        while start < self.rows.len() {
            let n = group_of(&self.rows[start]);
            let end = start + self.rows[start..].iter().take_while(|r| group_of(r) == n).count();
            let (rows, range) = (&self.rows[start..end], start..end);
            start = end;
            let Some(&key) = n.and_then(|n| usize::try_from(n - 1).ok()).and_then(|i| keys.get(i)) else { continue };
            let first = &rows[0];
            let flag = |i: Option<usize>| i.and_then(|i| first.try_get::<_, bool>(i).ok()).unwrap_or(false);
            let taken = layout.taken.and_then(|i| first.try_get::<_, i64>(i).ok()).unwrap_or(0);
            let attempts = layout.attempts.and_then(|i| first.try_get::<_, i32>(i).ok()).unwrap_or(0);
            // A NULL id: the group has no input rows.
            let has_input = first.try_get::<_, Option<i64>>(layout.id).ok().flatten().is_some();
            groups.push(Claimed {
                key,
                locked: flag(layout.locked),
                taken,
                attempts,
                rows: if has_input { range } else { 0..0 },
            });
        }
        groups
    }

    /// A day's rows (`read_day`) as a plugin's input.
    pub fn input(&self, max: u32) -> Result<Vec<InputRow>, String> {
        match &self.layout {
            Some(layout) => input_rows(&self.rows, layout, max),
            None => Ok(Vec::new()),
        }
    }

    /// A claimed group's rows as a plugin's input (blocking work for a
    /// large group: call it off the async threads).
    pub fn input_of(&self, group: &Claimed, max: u32) -> Result<Vec<InputRow>, String> {
        match &self.layout {
            Some(layout) => input_rows(&self.rows[group.rows.clone()], layout, max),
            None => Ok(Vec::new()),
        }
    }
}

impl Claimed {
    /// Raw rows read for the group.
    pub fn read(&self) -> usize {
        self.rows.len()
    }
}

/// Rows as a plugin's input, refused past `max_group_rows`.
fn input_rows(raw: &[Row], layout: &Layout, max: u32) -> Result<Vec<InputRow>, String> {
    // The read stopped one row past `max_group_rows`: a day this large is
    // refused before anything more is built from it.
    if raw.len() > max as usize {
        return Err(format!(
            "the day has more than {max} raw rows (max_group_rows); the read stopped there: raise max_group_rows \
             (and memory_limit_mb) if such days are real"
        ));
    }
    let mut rows = Vec::with_capacity(raw.len());
    // A group's rows share a zone or two: one allocation each.
    let mut last_zone: Option<Arc<str>> = None;
    for r in raw {
        let at: DateTime<Utc> = r.try_get(layout.at).map_err(|e| e.to_string())?;
        let values =
            layout.values.clone().map(|i| sql::read(r, i)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        let day = match layout.local_day {
            Some(i) => r.try_get::<_, Option<NaiveDate>>(i).map_err(|e| e.to_string())?.map(days_since_epoch),
            None => None,
        };
        let zone = match layout.zone {
            Some(i) => match r.try_get::<_, Option<&str>>(i).map_err(|e| e.to_string())? {
                Some(z) if last_zone.as_deref() == Some(z) => last_zone.clone(),
                Some(z) => {
                    last_zone = Some(Arc::from(z));
                    last_zone.clone()
                }
                None => None,
            },
            None => None,
        };
        let mut row = InputRow::new(r.try_get(layout.id).map_err(|e| e.to_string())?, at.timestamp_micros(), values);
        row.day = day.unwrap_or(row.day);
        row.zone = zone;
        rows.push(row);
    }
    Ok(rows)
}
