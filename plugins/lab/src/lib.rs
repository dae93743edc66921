//! The `lab` aggregation plugin: per test code and day, the results in the
//! code's canonical unit, their range, the latest result and its flag, and
//! how many were abnormal.

use plugin_kit::ColumnType::{Float, Integer, Text};
use plugin_kit::units::{self, Latest};
use plugin_kit::{Day, Error, Output, Plugin, Schema};

/// One lab result.
#[derive(Debug, Clone, Copy)]
pub struct LabResult<'a> {
    pub id: i64,
    pub at: i64,
    pub code: &'a str,
    pub value: Option<f64>,
    pub unit: &'a str,
    pub ref_low: Option<f64>,
    pub ref_high: Option<f64>,
}

/// How another unit converts to the canonical one.
#[derive(Debug, Clone, Copy)]
enum Factor {
    Times(f64),
    DividedBy(f64),
}

impl Factor {
    fn apply(self, v: f64) -> f64 {
        match self {
            Factor::Times(f) => v * f,
            Factor::DividedBy(f) => v / f,
        }
    }
}

/// A test code the spec knows: its canonical unit and other accepted units.
struct Analyte {
    code: &'static str,
    canonical: &'static str,
    others: &'static [(&'static str, Factor)],
}

const KNOWN: &[Analyte] = &[
    Analyte { code: "2345-7", canonical: "mg/dL", others: &[("mmol/L", Factor::Times(18.016))] },
    Analyte { code: "2093-3", canonical: "mg/dL", others: &[("mmol/L", Factor::Times(38.67))] },
    Analyte {
        code: "2160-0",
        canonical: "mg/dL",
        others: &[("umol/L", Factor::DividedBy(88.42)), ("µmol/L", Factor::DividedBy(88.42))],
    },
    Analyte { code: "718-7", canonical: "g/dL", others: &[("g/L", Factor::DividedBy(10.0))] },
];

/// One test code's daily figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Daily {
    pub code: String,
    pub unit: String,
    pub result_count: u32,
    pub rejected_count: u32,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    pub latest_value: Option<f64>,
    pub flag: Option<&'static str>,
    pub abnormal_count: u32,
}

/// `L` below `ref_low`, `H` above `ref_high`, else `N`; `None` without bounds.
pub fn flag(value: f64, low: Option<f64>, high: Option<f64>) -> Option<&'static str> {
    match (low, high) {
        (None, None) => None,
        (Some(l), _) if value < l => Some("L"),
        (_, Some(h)) if value > h => Some("H"),
        _ => Some("N"),
    }
}

/// The canonical unit of a code, and how a result's unit converts to it
/// (`None`: the result's unit is not accepted).
struct UnitRule<'a> {
    canonical: &'a str,
    known: Option<&'static [(&'static str, Factor)]>,
}

impl UnitRule<'_> {
    fn conversion(&self, unit: &str) -> Option<Option<Factor>> {
        if units::matches(unit, self.canonical) {
            return Some(None);
        }
        self.known?.iter().find(|(u, _)| units::matches(unit, u)).map(|(_, f)| Some(*f))
    }
}

/// The spec's lab rules for one day: one row per test code present.
pub fn aggregate(results: &[LabResult<'_>]) -> (Vec<Daily>, u32) {
    let mut codes: Vec<&str> = Vec::new();
    for r in results {
        if !codes.contains(&r.code) {
            codes.push(r.code);
        }
    }
    let mut total_rejected = 0;
    let out = codes
        .into_iter()
        .map(|code| {
            let of_code: Vec<&LabResult<'_>> = results.iter().filter(|r| r.code == code).collect();
            let rule = match KNOWN.iter().find(|a| a.code == code) {
                Some(a) => UnitRule { canonical: a.canonical, known: Some(a.others) },
                None => {
                    // Unknown code: the unit of its latest finite result, else of its latest result.
                    let (mut finite, mut any) = (Latest::default(), Latest::default());
                    for r in &of_code {
                        any.offer(r.at, r.id, r.unit);
                        if r.value.is_some_and(f64::is_finite) {
                            finite.offer(r.at, r.id, r.unit);
                        }
                    }
                    let unit = finite.into_inner().or(any.into_inner()).unwrap_or_default();
                    UnitRule { canonical: unit.trim(), known: None }
                }
            };
            let mut d = Daily {
                code: code.to_string(),
                unit: rule.canonical.to_string(),
                result_count: 0,
                rejected_count: 0,
                min_value: None,
                max_value: None,
                latest_value: None,
                flag: None,
                abnormal_count: 0,
            };
            let mut latest = Latest::default();
            for r in of_code {
                let accepted = r.value.filter(|v| v.is_finite()).zip(rule.conversion(r.unit));
                let Some((value, factor)) = accepted else {
                    d.rejected_count += 1;
                    continue;
                };
                let convert = |v: f64| factor.map_or(v, |f| f.apply(v));
                let value = convert(value);
                let f = flag(value, r.ref_low.map(convert), r.ref_high.map(convert));
                d.result_count += 1;
                d.abnormal_count += u32::from(matches!(f, Some("L" | "H")));
                d.min_value = Some(d.min_value.map_or(value, |m| m.min(value)));
                d.max_value = Some(d.max_value.map_or(value, |m| m.max(value)));
                latest.offer(r.at, r.id, (value, f));
            }
            if let Some((value, f)) = latest.into_inner() {
                d.latest_value = Some(value);
                d.flag = f;
            }
            total_rejected += d.rejected_count;
            d
        })
        .collect();
    (out, total_rejected)
}

pub struct Lab;

impl Plugin for Lab {
    fn schema() -> Schema {
        Schema::new("lab", env!("CARGO_PKG_VERSION"))
            .input("test_code", Text)
            .input("value", Float)
            .input("unit", Text)
            .input("ref_low", Float)
            .input("ref_high", Float)
            .output("test_code", Text)
            .output("unit", Text)
            .output("result_count", Integer)
            .output("rejected_count", Integer)
            .output("min_value", Float)
            .output("max_value", Float)
            .output("latest_value", Float)
            .output("flag", Text)
            .output("abnormal_count", Integer)
            .key("test_code")
    }

    fn aggregate(day: &Day<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        let results = day
            .rows()
            .map(|r| {
                Ok(LabResult {
                    id: r.id(),
                    at: r.at(),
                    code: r.text("test_code")?,
                    value: r.float("value")?,
                    unit: r.text("unit")?,
                    ref_low: r.float("ref_low")?,
                    ref_high: r.float("ref_high")?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let (daily, rejected) = aggregate(&results);
        for d in daily {
            out.row(|r| {
                r.set("test_code", d.code)
                    .set("unit", d.unit)
                    .set("result_count", d.result_count)
                    .set("rejected_count", d.rejected_count)
                    .set("min_value", d.min_value)
                    .set("max_value", d.max_value)
                    .set("latest_value", d.latest_value)
                    .set("flag", d.flag)
                    .set("abnormal_count", d.abnormal_count);
            });
        }
        out.reject(rejected);
        Ok(())
    }
}

plugin_kit::export_plugin!(Lab);

#[cfg(test)]
mod tests {
    use super::*;

    fn r(
        id: i64,
        at: i64,
        code: &'static str,
        value: Option<f64>,
        unit: &'static str,
        low: Option<f64>,
        high: Option<f64>,
    ) -> LabResult<'static> {
        LabResult { id, at, code, value, unit, ref_low: low, ref_high: high }
    }

    fn one(results: &[LabResult<'_>]) -> Daily {
        let (rows, _) = aggregate(results);
        assert_eq!(rows.len(), 1, "{rows:?}");
        rows.into_iter().next().unwrap()
    }

    #[test]
    fn known_code_converts_value_and_bounds() {
        let d = one(&[r(1, 0, "2345-7", Some(5.0), "mmol/l", Some(3.9), Some(5.5))]);
        assert_eq!(d.unit, "mg/dL");
        assert!((d.latest_value.unwrap() - 90.08).abs() < 1e-9);
        assert_eq!(d.flag, Some("N"));
        let d = one(&[r(1, 0, "2160-0", Some(176.84), "µmol/L", None, Some(1.2))]);
        assert!((d.latest_value.unwrap() - 2.0).abs() < 1e-9);
        assert_eq!((d.flag, d.abnormal_count), (Some("H"), 1));
        let d = one(&[r(1, 0, "718-7", Some(120.0), "g/L", Some(130.0), None)]);
        assert_eq!((d.latest_value, d.flag), (Some(12.0), Some("L")));
    }

    #[test]
    fn known_code_rejects_other_units_and_bad_values() {
        let d = one(&[
            r(1, 0, "2093-3", Some(200.0), "mg/dL", None, None),
            r(2, 1, "2093-3", Some(5.0), "g/L", None, None),
            r(3, 2, "2093-3", None, "mg/dL", None, None),
            r(4, 3, "2093-3", Some(f64::NAN), "mg/dL", None, None),
        ]);
        assert_eq!((d.result_count, d.rejected_count), (1, 3));
        assert_eq!((d.latest_value, d.flag), (Some(200.0), None));
        let d = one(&[r(5, 4, "2160-0", Some(1.0), "ΜMOL/L", None, None)]);
        assert_eq!(d.rejected_count, 1, "non-ASCII letters match only exactly");
    }

    #[test]
    fn unknown_code_takes_the_unit_of_its_latest_finite_result() {
        let d = one(&[
            r(1, 10, "XYZ", Some(1.0), "ng/mL", None, None),
            r(2, 20, "XYZ", Some(2.0), " NG/ML", None, None),
            r(3, 30, "XYZ", Some(3.0), "pg/mL", None, None),
            r(4, 40, "XYZ", Some(f64::NAN), "mIU/L", None, None),
        ]);
        assert_eq!(d.unit, "pg/mL");
        assert_eq!((d.result_count, d.rejected_count, d.latest_value), (1, 3, Some(3.0)));
        let d = one(&[r(1, 10, "XYZ", None, "a", None, None), r(2, 20, "XYZ", None, "b", None, None)]);
        assert_eq!((d.unit.as_str(), d.result_count, d.rejected_count), ("b", 0, 2));
        assert_eq!((d.min_value, d.latest_value, d.flag, d.abnormal_count), (None, None, None, 0));
    }

    #[test]
    fn flags_check_only_present_bounds() {
        assert_eq!(flag(5.0, None, None), None);
        assert_eq!(flag(5.0, Some(6.0), None), Some("L"));
        assert_eq!(flag(5.0, None, Some(4.0)), Some("H"));
        assert_eq!(flag(5.0, None, Some(5.0)), Some("N"));
        assert_eq!(flag(5.0, Some(5.0), Some(5.0)), Some("N"));
    }

    #[test]
    fn latest_and_abnormal_count() {
        let d = one(&[
            r(1, 10, "2345-7", Some(60.0), "mg/dL", Some(70.0), Some(100.0)),
            r(3, 20, "2345-7", Some(150.0), "mg/dL", Some(70.0), Some(100.0)),
            r(2, 20, "2345-7", Some(80.0), "mg/dL", Some(70.0), Some(100.0)),
        ]);
        assert_eq!((d.result_count, d.abnormal_count, d.min_value, d.max_value), (3, 2, Some(60.0), Some(150.0)));
        assert_eq!((d.latest_value, d.flag), (Some(150.0), Some("H")), "tie on time goes to the greatest id");
    }
}
