//! The `vitals` aggregation plugin: daily min/max/avg/last per metric, with
//! unit conversion and plausibility checks. The rules live in `rules.rs`;
//! this file maps columns and settings to them. Settings: `<metric>_min`
//! and `<metric>_max` for every metric, the plausible range in canonical
//! units (default: the spec's).

pub use vitals_rules as rules;

use plugin_kit::ColumnType::{Float, Integer, Text};
use plugin_kit::{Day, Error, Output, Plugin, Schema, SettingType};

pub struct Vitals;

impl Plugin for Vitals {
    fn schema() -> Schema {
        let schema = Schema::new("vitals", env!("CARGO_PKG_VERSION"))
            .input("metric", Text)
            .input("value", Float)
            .input("unit", Text)
            .output("metric", Text)
            .output("unit", Text)
            .output("sample_count", Integer)
            .output("rejected_count", Integer)
            .output("min_value", Float)
            .output("max_value", Float)
            .output("avg_value", Float)
            .output("last_value", Float)
            .key("metric");
        // Names and docs joined with `concat`, not `format!`: every new
        // instance builds them, and the formatting machinery was a tenth of
        // a fresh instance's first call (docs/performance.md, round 16).
        rules::Ranges::metrics().fold(schema, |schema, (metric, unit, (low, high))| {
            schema
                .setting(
                    &[metric, "_min"].concat(),
                    SettingType::Float,
                    low,
                    &["lowest plausible ", metric, ", ", unit].concat(),
                )
                .setting(
                    &[metric, "_max"].concat(),
                    SettingType::Float,
                    high,
                    &["highest plausible ", metric, ", ", unit].concat(),
                )
        })
    }

    fn aggregate(day: &Day<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        let mut readings = Vec::with_capacity(day.len());
        for r in day.rows() {
            readings.push(rules::Reading {
                id: r.id(),
                at: r.at(),
                metric: r.text("metric")?,
                value: r.float("value")?,
                unit: r.text("unit")?,
            });
        }
        // The bounds are read from fourteen settings once an instance, not each group.
        let ranges = day.settings().derived(|settings| {
            let mut ranges = rules::Ranges::default();
            for (metric, _, _) in rules::Ranges::metrics() {
                let low = settings.float(&[metric, "_min"].concat())?;
                let high = settings.float(&[metric, "_max"].concat())?;
                ranges.set(metric, low, high)?;
            }
            Ok(ranges)
        })?;
        let (daily, rejected) = rules::aggregate(&readings, &ranges);
        for d in daily {
            out.row(|r| {
                r.set("metric", d.metric)
                    .set("unit", d.unit)
                    .set("sample_count", d.sample_count)
                    .set("rejected_count", d.rejected_count)
                    .set("min_value", d.min_value)
                    .set("max_value", d.max_value)
                    .set("avg_value", d.avg_value)
                    .set("last_value", d.last_value);
            });
        }
        out.reject(rejected);
        Ok(())
    }
}

plugin_kit::export_plugin!(Vitals);
