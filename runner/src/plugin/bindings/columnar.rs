//! Rows by column, both ways: the group of WIT 0.3 and 0.4 (one list per
//! column, built from the runner's rows) and the output of 0.4 (one list
//! per output column, turned back into rows and checked for shape first).

/// Distinct texts of a column looked for one by one below this many (a
/// vitals day's metrics and units are a handful: comparing them is cheaper
/// than hashing each row's), by hash from then on.
const SCAN_DISTINCT: usize = 16;

/// The index of `text` among a text column's `distinct` values, added if new.
fn intern(distinct: &mut Vec<String>, index: &mut std::collections::HashMap<String, u32>, text: String) -> u32 {
    let scanning = distinct.len() < SCAN_DISTINCT;
    let found = match scanning {
        true => distinct.iter().position(|d| *d == text).map(|i| i as u32),
        false => index.get(&text).copied(),
    };
    if let Some(i) = found {
        return i;
    }
    let i = distinct.len() as u32;
    if !scanning {
        index.insert(text.clone(), i);
    }
    distinct.push(text);
    if distinct.len() == SCAN_DISTINCT {
        index.extend(distinct.iter().cloned().zip(0..));
    }
    i
}

/// A version's `group`, built from a group's rows: the two versions'
/// types are alike but distinct, so one body serves both.
macro_rules! columnar_group {
    ($version:ident) => {
        pub mod $version {
            use std::collections::HashMap;

            use crate::plugin::bindings::$version::health::aggregation::types as wit;
            use crate::rows::{self, ColumnType, Value};

            /// Index of a text entry that names no string (a NULL's).
            const NO_TEXT: u32 = u32::MAX;

            /// One column being built, row by row.
            enum Column {
                Boolean(Vec<bool>),
                Integer(Vec<i64>),
                Float(Vec<f64>),
                Text { distinct: Vec<String>, index: HashMap<String, u32>, row: Vec<u32> },
                Timestamp(Vec<i64>),
                Date(Vec<i32>),
            }

            impl Column {
                fn new(kind: ColumnType, n: usize) -> Column {
                    match kind {
                        ColumnType::Boolean => Column::Boolean(Vec::with_capacity(n)),
                        ColumnType::Integer => Column::Integer(Vec::with_capacity(n)),
                        ColumnType::Float => Column::Float(Vec::with_capacity(n)),
                        ColumnType::Text => {
                            Column::Text { distinct: Vec::new(), index: HashMap::new(), row: Vec::with_capacity(n) }
                        }
                        ColumnType::Timestamp => Column::Timestamp(Vec::with_capacity(n)),
                        ColumnType::Date => Column::Date(Vec::with_capacity(n)),
                    }
                }

                /// Adds a row's value; `false`: it is NULL (or, which the table
                /// check rules out, of another type).
                fn push(&mut self, v: Value) -> bool {
                    match (self, v) {
                        (Column::Boolean(c), Value::Boolean(b)) => c.push(b),
                        (Column::Integer(c), Value::Integer(i)) => c.push(i),
                        (Column::Float(c), Value::Float(f)) => c.push(f),
                        (Column::Float(c), Value::Integer(i)) => c.push(i as f64),
                        (Column::Text { distinct, index, row }, Value::Text(s)) => {
                            row.push(super::intern(distinct, index, s))
                        }
                        (Column::Timestamp(c), Value::Timestamp(t)) => c.push(t),
                        (Column::Date(c), Value::Date(d)) => c.push(d),
                        (column, _) => {
                            column.push_empty();
                            return false;
                        }
                    }
                    true
                }

                fn push_empty(&mut self) {
                    match self {
                        Column::Boolean(c) => c.push(false),
                        Column::Integer(c) | Column::Timestamp(c) => c.push(0),
                        Column::Float(c) => c.push(0.0),
                        Column::Text { row, .. } => row.push(NO_TEXT),
                        Column::Date(c) => c.push(0),
                    }
                }

                fn finish(self, nulls: Vec<u32>) -> wit::InputColumn {
                    let values = match self {
                        Column::Boolean(c) => wit::ColumnValues::Boolean(c),
                        Column::Integer(c) => wit::ColumnValues::Integer(c),
                        Column::Float(c) => wit::ColumnValues::Float(c),
                        Column::Text { distinct, row, .. } => {
                            wit::ColumnValues::Text(wit::TextColumn { distinct, row })
                        }
                        Column::Timestamp(c) => wit::ColumnValues::Timestamp(c),
                        Column::Date(c) => wit::ColumnValues::Date(c),
                    };
                    wit::InputColumn { values, nulls }
                }
            }

            /// The group of `key`'s rows: its bounds and zone, the per-row
            /// fields `fields` names (the others empty), and `input`'s columns.
            pub fn group(
                key: rows::GroupKey,
                rows: Vec<rows::InputRow>,
                frame: &rows::Frame,
                input: &[rows::Column],
                fields: rows::RowFields,
            ) -> wit::Group {
                let (first, last) = frame.bounds(key.day);
                let zone = frame.zone_of(&rows).map(|z| z.to_string());
                let n = rows.len();
                let (mut ids, mut ats, mut days) = (
                    Vec::with_capacity(if fields.ids { n } else { 0 }),
                    Vec::with_capacity(if fields.ats { n } else { 0 }),
                    Vec::with_capacity(if fields.days { n } else { 0 }),
                );
                let mut columns: Vec<(Column, Vec<u32>)> =
                    input.iter().map(|c| (Column::new(c.kind, n), Vec::new())).collect();
                for (i, row) in rows.into_iter().enumerate() {
                    if fields.ids {
                        ids.push(row.id);
                    }
                    if fields.ats {
                        ats.push(row.at);
                    }
                    if fields.days {
                        days.push(row.day);
                    }
                    let mut values = row.values.into_iter();
                    for (column, nulls) in &mut columns {
                        if !column.push(values.next().unwrap_or(Value::Null)) {
                            nulls.push(i as u32);
                        }
                    }
                }
                wit::Group {
                    user_id: key.user_id,
                    day: rows::days_since_epoch(key.day),
                    first_day: rows::days_since_epoch(first),
                    last_day: rows::days_since_epoch(last),
                    zone,
                    ids,
                    ats,
                    days,
                    columns: columns.into_iter().map(|(c, nulls)| c.finish(nulls)).collect(),
                }
            }
        }
    };
}

columnar_group!(v0_3);
columnar_group!(v0_4);

/// A 0.4 output, by column, as rows. A shape the rows cannot be read from
/// (a list longer or shorter than its columns need, NULL cells out of
/// order or out of range, a date beyond 32 bits) becomes `malformed`,
/// which the output check reports before anything else; nothing is
/// allocated before the lengths are checked against what the plugin
/// returned.
pub fn output(
    o: super::v0_4::health::aggregation::types::Output,
    declared: &[crate::rows::Column],
) -> crate::rows::Output {
    use crate::rows::{ColumnType as T, Output, Value};

    let malformed = |problem: String| Output { rows: Vec::new(), rejected: o.rejected, malformed: Some(problem) };
    let n = o.rows as usize;
    let count = |kinds: &[T]| declared.iter().filter(|c| kinds.contains(&c.kind)).count() as u64 * o.rows as u64;
    let lists = [
        ("booleans", o.booleans.len(), count(&[T::Boolean])),
        ("integers", o.integers.len(), count(&[T::Integer, T::Timestamp, T::Date])),
        ("floats", o.floats.len(), count(&[T::Float])),
        ("texts", o.texts.len(), count(&[T::Text])),
    ];
    for (name, len, wanted) in lists {
        if len as u64 != wanted {
            return malformed(format!("output `{name}` holds {len} values but its columns of {n} rows need {wanted}"));
        }
    }
    if declared.is_empty() && o.rows > 1 {
        // No list to measure the rows by: each would be an empty row.
        return malformed(format!("output has {n} rows of no columns; with no key a day has at most one row"));
    }
    let cells = declared.len() as u64 * o.rows as u64;
    let mut next = 0u64;
    for &cell in &o.nulls {
        if u64::from(cell) < next || u64::from(cell) >= cells {
            return malformed(format!(
                "output `nulls` lists cell {cell}: cells must ascend, each once, below {cells} (columns × rows)"
            ));
        }
        next = u64::from(cell) + 1;
    }
    let mut rows: Vec<Vec<Value>> = (0..n).map(|_| Vec::with_capacity(declared.len())).collect();
    let (mut booleans, mut integers, mut floats, mut texts) =
        (o.booleans.into_iter(), o.integers.into_iter(), o.floats.into_iter(), o.texts.into_iter());
    let mut nulls = o.nulls.into_iter().peekable();
    let mut cell = 0u32;
    for column in declared {
        for row in &mut rows {
            // The lengths were checked: every `next` below has a value.
            let value = match column.kind {
                T::Boolean => booleans.next().map(Value::Boolean),
                T::Integer => integers.next().map(Value::Integer),
                T::Timestamp => integers.next().map(Value::Timestamp),
                T::Date => match integers.next().map(i32::try_from) {
                    Some(Ok(d)) => Some(Value::Date(d)),
                    Some(Err(_)) if nulls.peek() != Some(&cell) => {
                        return malformed(format!("output column `{}`: a date beyond 32 bits", column.name));
                    }
                    _ => Some(Value::Null),
                },
                T::Float => floats.next().map(Value::Float),
                T::Text => texts.next().map(Value::Text),
            };
            row.push(if nulls.next_if_eq(&cell).is_some() { Value::Null } else { value.unwrap_or(Value::Null) });
            cell += 1;
        }
    }
    Output { rows, rejected: o.rejected, malformed: None }
}

#[cfg(test)]
mod tests {
    use super::super::v0_4::health::aggregation::types::Output;
    use super::output;
    use crate::rows::{Column, ColumnType, Value};

    fn declared() -> Vec<Column> {
        [
            ("metric", ColumnType::Text),
            ("count", ColumnType::Integer),
            ("min", ColumnType::Float),
            ("max", ColumnType::Float),
            ("day", ColumnType::Date),
        ]
        .into_iter()
        .map(|(name, kind)| Column { name: name.into(), kind })
        .collect()
    }

    fn two_rows() -> Output {
        Output {
            rows: 2,
            booleans: vec![],
            integers: vec![7, 0, 19_000, 19_001],
            floats: vec![1.5, 0.0, 2.5, 0.0],
            texts: vec!["hr".into(), "bp".into()],
            // count of row 1; min and max of row 1.
            nulls: vec![3, 5, 7],
            rejected: 3,
        }
    }

    #[test]
    fn texts_are_numbered_once_each_before_and_after_hashing_takes_over() {
        let (mut distinct, mut index) = (Vec::new(), std::collections::HashMap::new());
        let texts: Vec<String> = (0..3 * super::SCAN_DISTINCT).map(|i| format!("t{}", i % 40)).collect();
        let numbered: Vec<u32> = texts.iter().map(|t| super::intern(&mut distinct, &mut index, t.clone())).collect();
        assert_eq!(distinct.len(), 40);
        for (text, i) in texts.iter().zip(numbered) {
            assert_eq!(&distinct[i as usize], text);
        }
    }

    #[test]
    fn per_row_fields_cross_only_when_declared() {
        use crate::rows::{Frame, GroupKey, InputRow, RowFields};
        let key = GroupKey { user_id: 7, day: chrono::NaiveDate::from_ymd_opt(2024, 3, 10).unwrap() };
        let rows = || (1..=3).map(|i| InputRow::new(i, 1_710_028_800_000_000 + i, vec![Value::Float(1.0)])).collect();
        let input = [Column { name: "value".into(), kind: ColumnType::Float }];
        let only_ats = RowFields { ids: false, ats: true, days: false };
        let g = super::v0_4::group(key, rows(), &Frame::default(), &input, only_ats);
        assert!(g.ids.is_empty() && g.days.is_empty());
        assert_eq!(g.ats.len(), 3);
        assert_eq!(g.columns.len(), 1);
        let g = super::v0_4::group(key, rows(), &Frame::default(), &input, RowFields::ALL);
        assert_eq!((g.ids.len(), g.ats.len(), g.days.len()), (3, 3, 3));
    }

    #[test]
    fn columns_become_rows_with_their_nulls() {
        let out = output(two_rows(), &declared());
        assert_eq!(out.malformed, None);
        assert_eq!(out.rejected, 3);
        let text = |s: &str| Value::Text(s.into());
        assert_eq!(
            out.rows,
            vec![
                vec![text("hr"), Value::Integer(7), Value::Float(1.5), Value::Float(2.5), Value::Date(19_000)],
                vec![text("bp"), Value::Null, Value::Null, Value::Null, Value::Date(19_001)],
            ]
        );
    }

    #[test]
    fn a_shape_rows_cannot_be_read_from_is_named() {
        let problem = |o| output(o, &declared()).malformed.unwrap();
        assert_eq!(
            problem(Output { floats: vec![1.0], ..two_rows() }),
            "output `floats` holds 1 values but its columns of 2 rows need 4"
        );
        for nulls in [vec![5, 3], vec![3, 3], vec![10]] {
            let message = problem(Output { nulls, ..two_rows() });
            assert!(message.starts_with("output `nulls` lists cell"), "{message}");
        }
        let message = problem(Output { integers: vec![7, 0, 1 << 40, 1], ..two_rows() });
        assert_eq!(message, "output column `day`: a date beyond 32 bits");
        // A huge row count with no values: refused before any allocation.
        let message = problem(Output { rows: u32::MAX, ..two_rows() });
        assert!(message.contains("need"), "{message}");
        // No columns declared, no rows: not a problem.
        let none = Output {
            rows: 0,
            booleans: vec![],
            integers: vec![],
            floats: vec![],
            texts: vec![],
            nulls: vec![],
            rejected: 0,
        };
        assert_eq!(output(none.clone(), &[]).malformed, None);
        assert!(output(Output { rows: u32::MAX, ..none }, &[]).malformed.is_some());
    }
}
