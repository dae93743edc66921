//! The vitals rules of the aggregation spec, as plain Rust so they can be
//! unit-tested natively: unit conversion, plausibility, and the daily
//! figures. One home for both plugins that read `vitals_raw` (vitals,
//! weight_trend): a reading is accepted and converted the same way in each.

use plugin_kit::units::{self, Latest, Memo};

/// One raw reading, borrowed from the group's input.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    pub id: i64,
    /// Microseconds since the Unix epoch.
    pub at: i64,
    pub metric: &'a str,
    pub value: Option<f64>,
    pub unit: &'a str,
}

/// The daily figures of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Daily {
    pub metric: &'static str,
    pub unit: &'static str,
    pub sample_count: i32,
    pub rejected_count: i32,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    pub avg_value: Option<f64>,
    pub last_value: Option<f64>,
}

/// How an accepted unit converts to the canonical one.
#[derive(Debug, Clone, Copy)]
enum Conversion {
    Identity,
    Factor(f64),
    FahrenheitToCelsius,
}

impl Conversion {
    fn apply(self, v: f64) -> f64 {
        match self {
            Conversion::Identity => v,
            Conversion::Factor(f) => v * f,
            Conversion::FahrenheitToCelsius => (v - 32.0) * 5.0 / 9.0,
        }
    }
}

struct Metric {
    name: &'static str,
    canonical: &'static str,
    units: &'static [(&'static str, Conversion)],
    range: (f64, f64),
}

use Conversion::{Factor, FahrenheitToCelsius as F2C, Identity};

const KPA_TO_MMHG: f64 = 7.50062;
const LB_TO_KG: f64 = 0.45359237;

/// The spec's metric table, in output order.
const METRICS: &[Metric] = &[
    Metric { name: "heart_rate", canonical: "bpm", units: &[("bpm", Identity)], range: (20.0, 300.0) },
    Metric {
        name: "systolic_bp",
        canonical: "mmHg",
        units: &[("mmHg", Identity), ("kPa", Factor(KPA_TO_MMHG))],
        range: (50.0, 300.0),
    },
    Metric {
        name: "diastolic_bp",
        canonical: "mmHg",
        units: &[("mmHg", Identity), ("kPa", Factor(KPA_TO_MMHG))],
        range: (20.0, 200.0),
    },
    Metric {
        name: "spo2",
        canonical: "%",
        units: &[("%", Identity), ("fraction", Factor(100.0))],
        range: (50.0, 100.0),
    },
    Metric {
        name: "temperature",
        canonical: "C",
        units: &[("C", Identity), ("celsius", Identity), ("F", F2C), ("fahrenheit", F2C)],
        range: (25.0, 45.0),
    },
    Metric {
        name: "weight",
        canonical: "kg",
        units: &[("kg", Identity), ("lb", Factor(LB_TO_KG)), ("lbs", Factor(LB_TO_KG))],
        range: (1.0, 500.0),
    },
    Metric {
        name: "respiratory_rate",
        canonical: "breaths/min",
        units: &[("breaths/min", Identity)],
        range: (1.0, 100.0),
    },
];

/// The plausible range of each metric, in canonical units (inclusive):
/// the spec's by default, narrowed or widened by a job's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranges([(f64, f64); METRICS.len()]);

impl Default for Ranges {
    fn default() -> Self {
        Ranges(std::array::from_fn(|i| METRICS[i].range))
    }
}

impl Ranges {
    /// Every metric with its canonical unit and default range, in output order.
    pub fn metrics() -> impl Iterator<Item = (&'static str, &'static str, (f64, f64))> {
        METRICS.iter().map(|m| (m.name, m.canonical, m.range))
    }

    /// Sets a metric's range; an unknown metric or an empty range is an error.
    pub fn set(&mut self, metric: &str, low: f64, high: f64) -> Result<(), String> {
        let i = METRICS.iter().position(|m| m.name == metric).ok_or_else(|| format!("no metric `{metric}`"))?;
        if low.is_nan() || high.is_nan() || low > high {
            return Err(format!(
                "{metric}_min ({low}) is above {metric}_max ({high}): every reading would be rejected"
            ));
        }
        self.0[i] = (low, high);
        Ok(())
    }
}

impl Metric {
    /// How a reading in `unit` converts, or `None` when the unit is not accepted.
    fn conversion(&self, unit: &str) -> Option<Conversion> {
        self.units.iter().find(|(u, _)| units::matches(unit, u)).map(|(_, c)| *c)
    }

    /// The canonical value of an acceptable reading, or `None` when the
    /// reading is rejected (missing or non-finite value, unit not accepted,
    /// implausible value).
    fn canonical_value(&self, value: Option<f64>, unit: Option<Conversion>, (low, high): (f64, f64)) -> Option<f64> {
        let value = value.filter(|v| v.is_finite())?;
        let canonical = unit?.apply(value);
        (low..=high).contains(&canonical).then_some(canonical)
    }
}

/// The canonical value of a reading of `metric` (e.g. `weight` in kg), or
/// `None` when it is rejected (missing or non-finite value, unit not
/// accepted, implausible value) or the metric is unknown.
pub fn canonical(metric: &str, value: Option<f64>, unit: &str, ranges: &Ranges) -> Option<f64> {
    let i = METRICS.iter().position(|m| m.name == metric)?;
    METRICS[i].canonical_value(value, METRICS[i].conversion(unit), ranges.0[i])
}

/// Aggregates one group's readings into one row per known metric seen that
/// day. Readings of unknown metrics are ignored, not counted.
///
/// One pass over the readings; each distinct metric and unit text of the
/// group is matched against the table once ([`Memo`]), not once per row:
/// trimming and folding a unit per row was a tenth of a group in the
/// sandbox (docs/performance.md, round 16).
pub fn aggregate(readings: &[Reading<'_>], ranges: &Ranges) -> (Vec<Daily>, u32) {
    struct Sums {
        seen: bool,
        sum: f64,
        last: Latest<f64>,
        daily: Daily,
    }
    let mut sums: [Sums; METRICS.len()] = std::array::from_fn(|i| Sums {
        seen: false,
        sum: 0.0,
        last: Latest::default(),
        daily: Daily {
            metric: METRICS[i].name,
            unit: METRICS[i].canonical,
            sample_count: 0,
            rejected_count: 0,
            min_value: None,
            max_value: None,
            avg_value: None,
            last_value: None,
        },
    });
    let mut metrics = Memo::default();
    let mut units = Memo::default();
    for r in readings {
        let Some(i) = metrics.get((), r.metric, |name| METRICS.iter().position(|m| m.name == name)) else {
            continue;
        };
        let (metric, s) = (&METRICS[i], &mut sums[i]);
        s.seen = true;
        let conversion = units.get(i, r.unit, |unit| metric.conversion(unit));
        let Some(v) = metric.canonical_value(r.value, conversion, ranges.0[i]) else {
            s.daily.rejected_count += 1;
            continue;
        };
        s.daily.sample_count += 1;
        s.sum += v;
        s.daily.min_value = Some(s.daily.min_value.map_or(v, |m| m.min(v)));
        s.daily.max_value = Some(s.daily.max_value.map_or(v, |m| m.max(v)));
        s.last.offer(r.at, r.id, v);
    }
    let mut rejected_total = 0;
    let mut out = Vec::with_capacity(METRICS.len());
    for Sums { seen, sum, last, mut daily } in sums {
        if !seen {
            continue;
        }
        if daily.sample_count > 0 {
            daily.avg_value = Some(sum / f64::from(daily.sample_count));
        }
        daily.last_value = last.into_inner();
        rejected_total += daily.rejected_count as u32;
        out.push(daily);
    }
    (out, rejected_total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: i64, at: i64, metric: &'static str, value: Option<f64>, unit: &'static str) -> Reading<'static> {
        Reading { id, at, metric, value, unit }
    }

    fn one(readings: &[Reading<'_>]) -> Daily {
        let (rows, _) = aggregate(readings, &Ranges::default());
        assert_eq!(rows.len(), 1, "{rows:?}");
        rows.into_iter().next().unwrap()
    }

    #[test]
    fn converts_units_to_canonical() {
        let cases = [
            ("systolic_bp", 16.0, "kPa", 16.0 * 7.50062),
            ("diastolic_bp", 10.0, " KPA ", 75.0062),
            ("spo2", 0.97, "fraction", 97.0),
            ("temperature", 98.6, "F", 37.0),
            ("temperature", 212.0 - 180.0 + 68.0, "Fahrenheit", 37.77777777777778),
            ("temperature", 36.6, "celsius", 36.6),
            ("weight", 150.0, "lbs", 150.0 * 0.45359237),
            ("weight", 150.0, "LB", 150.0 * 0.45359237),
            ("heart_rate", 60.0, "BPM", 60.0),
            ("respiratory_rate", 14.0, "Breaths/Min", 14.0),
        ];
        for (metric, value, unit, expected) in cases {
            let d = one(&[r(1, 0, metric, Some(value), unit)]);
            assert_eq!(d.sample_count, 1, "{metric} {unit}");
            assert!((d.avg_value.unwrap() - expected).abs() < 1e-9, "{metric} {unit}: {d:?}");
        }
    }

    #[test]
    fn rejects_bad_units_values_and_implausible_readings() {
        let d = one(&[
            r(1, 0, "heart_rate", None, "bpm"),
            r(2, 1, "heart_rate", Some(f64::NAN), "bpm"),
            r(3, 2, "heart_rate", Some(f64::INFINITY), "bpm"),
            r(4, 3, "heart_rate", Some(70.0), "mmHg"),
            r(5, 4, "heart_rate", Some(19.999), "bpm"),
            r(6, 5, "heart_rate", Some(300.001), "bpm"),
            r(7, 6, "heart_rate", Some(20.0), "bpm"),
            r(8, 7, "heart_rate", Some(300.0), "bpm"),
        ]);
        assert_eq!((d.sample_count, d.rejected_count), (2, 6));
        assert_eq!((d.min_value, d.max_value, d.avg_value), (Some(20.0), Some(300.0), Some(160.0)));
    }

    #[test]
    fn non_ascii_units_match_only_exactly() {
        // "°c" is not "C": only ASCII letters fold.
        let d = one(&[r(1, 0, "temperature", Some(37.0), "°C")]);
        assert_eq!(d.rejected_count, 1);
    }

    #[test]
    fn latest_is_greatest_timestamp_then_greatest_id() {
        let d = one(&[
            r(5, 100, "weight", Some(70.0), "kg"),
            r(9, 200, "weight", Some(71.0), "kg"),
            r(7, 200, "weight", Some(72.0), "kg"),
            r(3, 50, "weight", Some(73.0), "kg"),
            r(10, 300, "weight", Some(9999.0), "kg"), // latest, but rejected
        ]);
        assert_eq!(d.last_value, Some(71.0));
    }

    #[test]
    fn all_rejected_gives_counts_and_null_figures() {
        let d = one(&[r(1, 0, "spo2", Some(120.0), "%")]);
        assert_eq!((d.sample_count, d.rejected_count), (0, 1));
        assert_eq!((d.min_value, d.max_value, d.avg_value, d.last_value), (None, None, None, None));
    }

    #[test]
    fn unknown_metrics_are_ignored_and_not_counted() {
        let (rows, rejected) = aggregate(
            &[r(1, 0, "steps", Some(1000.0), "count"), r(2, 0, "Heart_Rate", Some(60.0), "bpm")],
            &Ranges::default(),
        );
        assert!(rows.is_empty());
        assert_eq!(rejected, 0);
    }

    #[test]
    fn one_row_per_metric_seen() {
        let (rows, rejected) = aggregate(
            &[
                r(1, 0, "weight", Some(70.0), "kg"),
                r(2, 0, "heart_rate", Some(60.0), "bpm"),
                r(3, 0, "heart_rate", Some(80.0), "bpm"),
                r(4, 0, "heart_rate", Some(8.0), "bpm"),
            ],
            &Ranges::default(),
        );
        let names: Vec<_> = rows.iter().map(|d| d.metric).collect();
        assert_eq!(names, ["heart_rate", "weight"]);
        assert_eq!(rows[0].avg_value, Some(70.0));
        assert_eq!(rejected, 1);
    }

    #[test]
    fn ranges_come_from_settings() {
        let mut ranges = Ranges::default();
        ranges.set("heart_rate", 30.0, 200.0).unwrap();
        let readings = [r(1, 0, "heart_rate", Some(25.0), "bpm"), r(2, 0, "heart_rate", Some(210.0), "bpm")];
        let (rows, rejected) = aggregate(&readings, &ranges);
        assert_eq!((rows[0].sample_count, rejected), (0, 2));
        let (rows, rejected) = aggregate(&readings, &Ranges::default());
        assert_eq!((rows[0].sample_count, rejected), (2, 0));
        assert!(ranges.set("heart_rate", 200.0, 30.0).unwrap_err().contains("heart_rate_min (200) is above"));
        assert!(ranges.set("heart_rate", f64::NAN, 30.0).is_err());
        assert!(ranges.set("steps", 1.0, 2.0).is_err());
    }
}
