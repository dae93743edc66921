//! The `weight_trend` aggregation plugin: a user's weight over the 7 local
//! days ending on each day (the job's `window_days = 7` gives it those rows).
//! Only `weight` readings count, accepted and converted to kg by the vitals
//! rules (`vitals-rules`); one row when the window holds one at least.

use plugin_kit::ColumnType::{Float, Integer, Text};
use plugin_kit::units::Latest;
use plugin_kit::{Day, Error, Output, Plugin, Schema};
use vitals_rules::Ranges;

pub struct WeightTrend;

/// One accepted weight reading: when, its id, and its value in kg.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weight {
    pub at: i64,
    pub id: i64,
    pub kg: f64,
}

/// The window's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub readings: i32,
    pub avg_kg: f64,
    pub min_kg: f64,
    pub max_kg: f64,
    /// Latest − earliest (latest: greatest time, ties to the greatest id;
    /// earliest: least time, ties to the least id); 0 with one reading.
    pub change_kg: f64,
}

/// The trend of the accepted readings, or `None` when there are none.
pub fn trend(weights: &[Weight]) -> Option<Trend> {
    let first = weights.first()?;
    let (mut sum, mut min, mut max) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
    let mut latest = Latest::default();
    let mut earliest = *first;
    for w in weights {
        sum += w.kg;
        min = min.min(w.kg);
        max = max.max(w.kg);
        latest.offer(w.at, w.id, w.kg);
        if (w.at, w.id) < (earliest.at, earliest.id) {
            earliest = *w;
        }
    }
    let latest = latest.into_inner().unwrap_or(first.kg);
    Some(Trend {
        readings: weights.len() as i32,
        avg_kg: sum / weights.len() as f64,
        min_kg: min,
        max_kg: max,
        change_kg: latest - earliest.kg,
    })
}

impl Plugin for WeightTrend {
    fn schema() -> Schema {
        Schema::new("weight_trend", env!("CARGO_PKG_VERSION"))
            .input("metric", Text)
            .input("value", Float)
            .input("unit", Text)
            .output("readings", Integer)
            .output("avg_kg", Float)
            .output("min_kg", Float)
            .output("max_kg", Float)
            .output("change_kg", Float)
    }

    fn aggregate(day: &Day<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        let ranges = Ranges::default();
        let mut weights = Vec::new();
        let mut rejected = 0;
        for r in day.rows() {
            if r.text_opt("metric")? != Some("weight") {
                continue;
            }
            let unit = r.text_opt("unit")?.unwrap_or("");
            match vitals_rules::canonical("weight", r.float("value")?, unit, &ranges) {
                Some(kg) => weights.push(Weight { at: r.at(), id: r.id(), kg }),
                None => rejected += 1,
            }
        }
        if let Some(t) = trend(&weights) {
            out.row(|r| {
                r.set("readings", t.readings)
                    .set("avg_kg", t.avg_kg)
                    .set("min_kg", t.min_kg)
                    .set("max_kg", t.max_kg)
                    .set("change_kg", t.change_kg);
            });
        }
        out.reject(rejected);
        Ok(())
    }
}

plugin_kit::export_plugin!(WeightTrend);

#[cfg(test)]
mod tests {
    use plugin_kit::testing::{Group, ts};

    use super::*;

    fn reading(metric: &str, value: f64, unit: &str) -> [plugin_kit::Value; 3] {
        [metric.into(), value.into(), unit.into()]
    }

    #[test]
    fn the_window_gives_count_average_bounds_and_change_in_kg() {
        let out = Group::new(1, "2026-03-07")
            .row(ts("2026-03-01T08:00:00Z"), reading("weight", 80.0, "kg"))
            .row(ts("2026-03-04T08:00:00Z"), reading("weight", 176.0, "lb"))
            .row(ts("2026-03-07T08:00:00Z"), reading("weight", 78.0, "KG"))
            .row(ts("2026-03-07T09:00:00Z"), reading("heart_rate", 60.0, "bpm"))
            .run::<WeightTrend>()
            .unwrap();
        assert_eq!(out.rows.len(), 1);
        let row = &out.rows[0];
        assert_eq!(row.integer("readings"), Some(3));
        let lb = 176.0 * 0.45359237;
        assert!((row.float("avg_kg").unwrap() - (80.0 + lb + 78.0) / 3.0).abs() < 1e-9);
        assert_eq!(row.float("min_kg"), Some(78.0));
        assert_eq!(row.float("max_kg"), Some(80.0));
        assert_eq!(row.float("change_kg"), Some(78.0 - 80.0));
    }

    #[test]
    fn rejected_readings_are_counted_and_no_accepted_one_gives_no_row() {
        let out = Group::new(1, "2026-03-07")
            .row(ts("2026-03-07T08:00:00Z"), reading("weight", 900.0, "kg"))
            .row(ts("2026-03-07T08:01:00Z"), reading("weight", 70.0, "stone"))
            .row(ts("2026-03-07T08:02:00Z"), [plugin_kit::Value::Null, 70.0.into(), "kg".into()])
            .run::<WeightTrend>()
            .unwrap();
        assert!(out.rows.is_empty());
        assert_eq!(out.rejected, 2, "the NULL metric is not a weight reading");
        let out = Group::new(1, "2026-03-07")
            .row(ts("2026-03-07T08:00:00Z"), [plugin_kit::Value::from("weight"), plugin_kit::Value::Null, "kg".into()])
            .run::<WeightTrend>()
            .unwrap();
        assert!(out.rows.is_empty() && out.rejected == 1);
    }

    #[test]
    fn latest_and_earliest_break_ties_by_id_and_one_reading_changes_nothing() {
        let at = ts("2026-03-07T08:00:00Z");
        let weights = [
            Weight { at, id: 5, kg: 70.0 },
            Weight { at, id: 2, kg: 71.0 },
            Weight { at: at + 1, id: 1, kg: 72.0 },
            Weight { at: at + 1, id: 9, kg: 73.0 },
        ];
        assert_eq!(trend(&weights).unwrap().change_kg, 73.0 - 71.0);
        assert_eq!(trend(&weights[..1]).unwrap().change_kg, 0.0);
        assert_eq!(trend(&[]), None);
    }
}
