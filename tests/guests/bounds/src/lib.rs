//! A test plugin that writes what the runner tells it of its group (WIT
//! 0.3, through the kit): one row with the group's first and last day, its
//! zone, how many rows it holds, their distinct local days and the
//! latest row's `metric`.

use plugin_kit::{ColumnType::*, Day, Error, Output, Plugin, Schema};

struct Bounds;

impl Plugin for Bounds {
    fn schema() -> Schema {
        Schema::new("bounds", env!("CARGO_PKG_VERSION"))
            .input("metric", Text)
            .output("first_day", Date)
            .output("last_day", Date)
            .output("zone", Text)
            .output("readings", Integer)
            .output("days", Text)
            .output("last_metric", Text)
    }

    fn aggregate(day: &Day<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        let mut days: Vec<i32> = day.rows().map(|r| r.day()).collect();
        days.dedup();
        let days: Vec<String> = days.iter().map(i32::to_string).collect();
        let last = day.rows().last().map(|r| r.text_opt("metric")).transpose()?.flatten().map(String::from);
        out.row(|r| {
            r.set("first_day", plugin_kit::Value::Date(day.first_day))
                .set("last_day", plugin_kit::Value::Date(day.last_day))
                .set("zone", day.zone.map(String::from))
                .set("readings", day.len() as i64)
                .set("days", days.join(","))
                .set("last_metric", last);
        });
        Ok(())
    }
}

plugin_kit::export_plugin!(Bounds);
