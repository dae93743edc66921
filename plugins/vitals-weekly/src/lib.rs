//! The `vitals_weekly` aggregation plugin: a week of `vitals_daily` rows
//! (the job's `period = "week"` on the daily table) rolled up per metric.
//! A rollup of a rollup: its input is another job's output, so a corrected
//! raw reading reaches the weekly row through both jobs, with no command.

use std::collections::BTreeMap;

use plugin_kit::ColumnType::{Float, Integer, Text};
use plugin_kit::{Day, Error, Output, Plugin, Schema};

pub struct VitalsWeekly;

/// One `vitals_daily` row, as the week's input gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Daily<'a> {
    /// The day (its midnight, microseconds since the epoch).
    pub at: i64,
    pub metric: &'a str,
    pub unit: Option<&'a str>,
    pub sample_count: i64,
    pub rejected_count: i64,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    pub avg_value: Option<f64>,
    pub last_value: Option<f64>,
}

/// One metric's week.
#[derive(Debug, Clone, PartialEq)]
pub struct Weekly<'a> {
    pub metric: &'a str,
    pub unit: Option<&'a str>,
    pub days_with_data: i32,
    pub sample_count: i64,
    pub rejected_count: i64,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    pub avg_value: Option<f64>,
    pub last_value: Option<f64>,
}

/// One row per metric with a daily row in the week, in metric order.
pub fn roll_up<'a>(days: &[Daily<'a>]) -> Vec<Weekly<'a>> {
    let mut metrics: BTreeMap<&str, Vec<&Daily<'a>>> = BTreeMap::new();
    for d in days {
        metrics.entry(d.metric).or_default().push(d);
    }
    metrics
        .into_iter()
        .map(|(metric, days)| {
            let with_data: Vec<&&Daily<'a>> = days.iter().filter(|d| d.sample_count > 0).collect();
            let samples: i64 = with_data.iter().map(|d| d.sample_count).sum();
            let weighted: f64 = with_data.iter().map(|d| d.avg_value.unwrap_or(0.0) * d.sample_count as f64).sum();
            let fold = |pick: fn(&Daily<'a>) -> Option<f64>, keep: fn(f64, f64) -> f64| {
                with_data.iter().filter_map(|d| pick(d)).reduce(keep)
            };
            let latest = with_data.iter().max_by_key(|d| d.at);
            let valued = samples > 0;
            Weekly {
                metric,
                unit: days.iter().find_map(|d| d.unit),
                days_with_data: with_data.len() as i32,
                sample_count: days.iter().map(|d| d.sample_count).sum(),
                rejected_count: days.iter().map(|d| d.rejected_count).sum(),
                min_value: fold(|d| d.min_value, f64::min).filter(|_| valued),
                max_value: fold(|d| d.max_value, f64::max).filter(|_| valued),
                avg_value: valued.then(|| weighted / samples as f64),
                last_value: latest.and_then(|d| d.last_value).filter(|_| valued),
            }
        })
        .collect()
}

impl Plugin for VitalsWeekly {
    fn schema() -> Schema {
        Schema::new("vitals_weekly", env!("CARGO_PKG_VERSION"))
            .input("metric", Text)
            .input("unit", Text)
            .input("sample_count", Integer)
            .input("rejected_count", Integer)
            .input("min_value", Float)
            .input("max_value", Float)
            .input("avg_value", Float)
            .input("last_value", Float)
            .output("metric", Text)
            .output("unit", Text)
            .output("days_with_data", Integer)
            .output("sample_count", Integer)
            .output("rejected_count", Integer)
            .output("min_value", Float)
            .output("max_value", Float)
            .output("avg_value", Float)
            .output("last_value", Float)
            .key("metric")
    }

    fn aggregate(day: &Day<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        let days = day
            .rows()
            .map(|r| {
                Ok(Daily {
                    at: r.at(),
                    metric: r.text("metric")?,
                    unit: r.text_opt("unit")?,
                    sample_count: r.integer("sample_count")?.unwrap_or(0),
                    rejected_count: r.integer("rejected_count")?.unwrap_or(0),
                    min_value: r.float("min_value")?,
                    max_value: r.float("max_value")?,
                    avg_value: r.float("avg_value")?,
                    last_value: r.float("last_value")?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        for w in roll_up(&days) {
            out.row(|r| {
                r.set("metric", w.metric)
                    .set("unit", w.unit.map_or(plugin_kit::Value::Null, Into::into))
                    .set("days_with_data", w.days_with_data)
                    .set("sample_count", w.sample_count)
                    .set("rejected_count", w.rejected_count)
                    .set("min_value", w.min_value)
                    .set("max_value", w.max_value)
                    .set("avg_value", w.avg_value)
                    .set("last_value", w.last_value);
            });
        }
        Ok(())
    }
}

plugin_kit::export_plugin!(VitalsWeekly);

#[cfg(test)]
mod tests {
    use plugin_kit::Value;
    use plugin_kit::testing::{Group, ts};

    use super::*;

    fn daily(metric: &str, samples: i64, rejected: i64, min: f64, max: f64, avg: f64, last: f64) -> Vec<Value> {
        vec![
            metric.into(),
            "bpm".into(),
            samples.into(),
            rejected.into(),
            min.into(),
            max.into(),
            avg.into(),
            last.into(),
        ]
    }

    #[test]
    fn a_week_weights_averages_by_samples_and_takes_the_latest_days_last_value() {
        let out = Group::new(1, "2026-03-02")
            .row(ts("2026-03-02T00:00:00Z"), daily("heart_rate", 2, 0, 60.0, 70.0, 65.0, 70.0))
            .row(ts("2026-03-04T00:00:00Z"), daily("heart_rate", 6, 1, 50.0, 90.0, 75.0, 55.0))
            .row(ts("2026-03-05T00:00:00Z"), daily("spo2", 1, 0, 97.0, 97.0, 97.0, 97.0))
            .run::<VitalsWeekly>()
            .unwrap();
        let hr = out.find("metric", "heart_rate");
        assert_eq!(hr.integer("days_with_data"), Some(2));
        assert_eq!(hr.integer("sample_count"), Some(8));
        assert_eq!(hr.integer("rejected_count"), Some(1));
        assert_eq!(hr.float("min_value"), Some(50.0));
        assert_eq!(hr.float("max_value"), Some(90.0));
        assert_eq!(hr.float("avg_value"), Some((2.0 * 65.0 + 6.0 * 75.0) / 8.0));
        assert_eq!(hr.float("last_value"), Some(55.0));
        assert_eq!(out.rows.len(), 2);
    }

    #[test]
    fn days_with_only_rejected_readings_count_but_give_no_values() {
        let rejected_only = vec![
            "weight".into(),
            "kg".into(),
            Value::from(0i64),
            Value::from(3i64),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ];
        let out =
            Group::new(1, "2026-03-02").row(ts("2026-03-03T00:00:00Z"), rejected_only).run::<VitalsWeekly>().unwrap();
        let w = out.find("metric", "weight");
        assert_eq!(
            (w.integer("days_with_data"), w.integer("sample_count"), w.integer("rejected_count")),
            (Some(0), Some(0), Some(3))
        );
        assert_eq!((w.float("avg_value"), w.float("last_value"), w.float("min_value")), (None, None, None));
    }

    #[test]
    fn the_latest_day_with_data_gives_the_last_value() {
        let days = [
            Daily {
                at: 1,
                metric: "m",
                unit: None,
                sample_count: 1,
                rejected_count: 0,
                min_value: Some(1.0),
                max_value: Some(1.0),
                avg_value: Some(1.0),
                last_value: Some(1.0),
            },
            Daily {
                at: 3,
                metric: "m",
                unit: None,
                sample_count: 0,
                rejected_count: 2,
                min_value: None,
                max_value: None,
                avg_value: None,
                last_value: None,
            },
            Daily {
                at: 2,
                metric: "m",
                unit: Some("kg"),
                sample_count: 1,
                rejected_count: 0,
                min_value: Some(2.0),
                max_value: Some(2.0),
                avg_value: Some(2.0),
                last_value: Some(2.0),
            },
        ];
        let w = &roll_up(&days)[0];
        assert_eq!((w.last_value, w.unit, w.days_with_data), (Some(2.0), Some("kg"), 2));
    }
}
