//! The `nutrition` aggregation plugin: one row per day with nutrient sums,
//! the meals logged, and the macro-energy percentages.

use plugin_kit::ColumnType::{Float, Integer, Text};
use plugin_kit::units;
use plugin_kit::{Day, Error, Output, Plugin, Schema};

/// The nutrient columns, in input and output order.
pub const NUTRIENTS: [&str; 8] =
    ["calories", "protein_g", "carbs_g", "fat_g", "fiber_g", "sugar_g", "sodium_mg", "water_ml"];
const MEALS: [&str; 4] = ["breakfast", "lunch", "dinner", "snack"];

/// One entry: its meal and nutrients (NULL is 0).
pub struct Entry<'a> {
    pub meal: &'a str,
    pub nutrients: [Option<f64>; 8],
}

/// The day's figures.
#[derive(Debug, Default, PartialEq)]
pub struct Daily {
    pub entry_count: u32,
    pub rejected_count: u32,
    pub meals_logged: u32,
    /// Sums over accepted entries, in `NUTRIENTS` order.
    pub sums: [f64; 8],
    /// (protein, carbs, fat) percent of macro energy; `None` when it is 0.
    pub pct: Option<(f64, f64, f64)>,
}

/// The spec's nutrition rules for one day.
pub fn aggregate(entries: &[Entry<'_>]) -> Daily {
    let mut daily = Daily::default();
    let mut meals = [false; 4];
    for e in entries {
        let meal = MEALS.iter().position(|m| units::matches(e.meal, m));
        let valid = e.nutrients.iter().flatten().all(|v| v.is_finite() && *v >= 0.0);
        let Some(meal) = meal.filter(|_| valid) else {
            daily.rejected_count += 1;
            continue;
        };
        daily.entry_count += 1;
        meals[meal] = true;
        for (sum, v) in daily.sums.iter_mut().zip(e.nutrients) {
            *sum += v.unwrap_or(0.0);
        }
    }
    daily.meals_logged = meals.iter().filter(|m| **m).count() as u32;
    let [_, protein, carbs, fat, ..] = daily.sums;
    let energy = 4.0 * protein + 4.0 * carbs + 9.0 * fat;
    if energy != 0.0 {
        daily.pct = Some((100.0 * 4.0 * protein / energy, 100.0 * 4.0 * carbs / energy, 100.0 * 9.0 * fat / energy));
    }
    daily
}

pub struct Nutrition;

impl Plugin for Nutrition {
    fn schema() -> Schema {
        let mut schema = Schema::new("nutrition", env!("CARGO_PKG_VERSION")).input("meal", Text);
        for n in NUTRIENTS {
            schema = schema.input(n, Float);
        }
        schema =
            schema.output("entry_count", Integer).output("rejected_count", Integer).output("meals_logged", Integer);
        for n in NUTRIENTS.iter().chain(&["protein_pct", "carbs_pct", "fat_pct"]) {
            schema = schema.output(n, Float);
        }
        schema
    }

    fn aggregate(day: &Day<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        let mut entries = Vec::with_capacity(day.len());
        for row in day.rows() {
            let mut nutrients = [None; 8];
            for (slot, name) in nutrients.iter_mut().zip(NUTRIENTS) {
                *slot = row.float(name)?;
            }
            entries.push(Entry { meal: row.text("meal")?, nutrients });
        }
        let d = aggregate(&entries);
        out.row(|r| {
            r.set("entry_count", d.entry_count)
                .set("rejected_count", d.rejected_count)
                .set("meals_logged", d.meals_logged);
            for (name, sum) in NUTRIENTS.iter().zip(d.sums) {
                r.set(name, sum);
            }
            r.set("protein_pct", d.pct.map(|p| p.0))
                .set("carbs_pct", d.pct.map(|p| p.1))
                .set("fat_pct", d.pct.map(|p| p.2));
        });
        out.reject(d.rejected_count);
        Ok(())
    }
}

plugin_kit::export_plugin!(Nutrition);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_kit::Value;
    use plugin_kit::testing::{Group, ts};

    fn entry(meal: &str, n: [Option<f64>; 8]) -> Vec<Value> {
        std::iter::once(meal.into()).chain(n.into_iter().map(Value::from)).collect()
    }

    #[test]
    fn sums_meals_and_percentages() {
        let out = Group::new(1, "2024-03-10")
            .row(
                ts("2024-03-10T08:00:00Z"),
                entry("Breakfast ", [Some(400.0), Some(20.0), Some(50.0), Some(10.0), None, None, None, Some(250.0)]),
            )
            .row(
                ts("2024-03-10T12:00:00Z"),
                entry("lunch", [Some(600.0), Some(30.0), Some(70.0), Some(20.0), Some(5.0), None, Some(800.0), None]),
            )
            .row(
                ts("2024-03-10T15:00:00Z"),
                entry("LUNCH", [Some(100.0), None, Some(20.0), None, None, Some(15.0), None, None]),
            )
            .run::<Nutrition>()
            .unwrap();
        let r = &out.rows[0];
        assert_eq!(
            (r.integer("entry_count"), r.integer("rejected_count"), r.integer("meals_logged")),
            (Some(3), Some(0), Some(2))
        );
        assert_eq!(
            (r.float("calories"), r.float("protein_g"), r.float("carbs_g"), r.float("fat_g")),
            (Some(1100.0), Some(50.0), Some(140.0), Some(30.0))
        );
        assert_eq!(
            (r.float("fiber_g"), r.float("sugar_g"), r.float("sodium_mg"), r.float("water_ml")),
            (Some(5.0), Some(15.0), Some(800.0), Some(250.0))
        );
        let energy = 4.0 * 50.0 + 4.0 * 140.0 + 9.0 * 30.0;
        assert_eq!(r.float("protein_pct"), Some(100.0 * 200.0 / energy));
        assert_eq!(r.float("fat_pct"), Some(100.0 * 270.0 / energy));
    }

    #[test]
    fn rejects_unknown_meals_and_bad_nutrients() {
        let ok = [Some(100.0), Some(10.0), None, None, None, None, None, None];
        let out = Group::new(1, "2024-03-10")
            .row(0, entry("brunch", ok))
            .row(1, entry("snack", [Some(-1.0), None, None, None, None, None, None, None]))
            .row(2, entry("snack", [None, Some(f64::NAN), None, None, None, None, None, None]))
            .row(3, entry("snack", [None, None, Some(f64::INFINITY), None, None, None, None, None]))
            .row(4, entry("dinner", ok))
            .run::<Nutrition>()
            .unwrap();
        let r = &out.rows[0];
        assert_eq!(
            (r.integer("entry_count"), r.integer("rejected_count"), r.integer("meals_logged")),
            (Some(1), Some(4), Some(1))
        );
        assert_eq!(out.rejected, 4);
        assert_eq!(r.float("protein_pct"), Some(100.0));
    }

    #[test]
    fn every_entry_rejected_still_gives_one_row_with_null_percentages() {
        let out = Group::new(1, "2024-03-10").row(0, entry("elevenses", [None; 8])).run::<Nutrition>().unwrap();
        assert_eq!(out.rows.len(), 1);
        let r = &out.rows[0];
        assert_eq!(
            (r.integer("entry_count"), r.integer("rejected_count"), r.integer("meals_logged")),
            (Some(0), Some(1), Some(0))
        );
        assert_eq!(
            (r.float("calories"), r.float("protein_pct"), r.float("carbs_pct"), r.float("fat_pct")),
            (Some(0.0), None, None, None)
        );
    }

    #[test]
    fn zero_macro_energy_gives_null_percentages() {
        let out = Group::new(1, "2024-03-10")
            .row(0, entry("snack", [Some(5.0), None, None, None, None, None, None, Some(500.0)]))
            .run::<Nutrition>()
            .unwrap();
        assert_eq!(out.rows[0].float("protein_pct"), None);
        assert_eq!(out.rows[0].float("water_ml"), Some(500.0));
    }
}
