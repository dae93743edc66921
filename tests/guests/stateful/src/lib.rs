//! A test plugin with the classic bug of a reused instance: a module-level
//! tally of readings per metric that is never cleared, so a group's count
//! includes the groups the instance served before. On a fresh instance per
//! group it is correct: one row per metric with its reading count. With
//! feature `late` the tally carries over only from an instance's sixth
//! group on. A group with a reading of metric `trap_when_reused` traps from
//! an instance's fourth group on (and is right on a fresh one): past the
//! probe at load's three groups.

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "aggregator" });

use std::cell::RefCell;
use std::collections::BTreeMap;

use health::aggregation::types::{Column, ColumnType, Value};

/// Groups until the tally carries over.
const CARRIES_AFTER: u32 = if cfg!(feature = "late") { 5 } else { 0 };

thread_local! {
    static TALLY: RefCell<BTreeMap<String, i64>> = const { RefCell::new(BTreeMap::new()) };
    static CALLS: RefCell<u32> = const { RefCell::new(0) };
}

struct Stateful;

impl Guest for Stateful {
    fn describe() -> Description {
        Description {
            name: "stateful".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            input: vec![Column { name: "metric".into(), kind: ColumnType::Text }],
            output: vec![
                Column { name: "metric".into(), kind: ColumnType::Text },
                Column { name: "sample_count".into(), kind: ColumnType::Integer },
            ],
            key: vec!["metric".into()],
        }
    }

    fn aggregate(group: Group) -> Result<Output, PluginError> {
        let calls = CALLS.with(|c| {
            *c.borrow_mut() += 1;
            *c.borrow()
        });
        let metrics = group.rows.iter().filter_map(|r| match r.values.first() {
            Some(Value::Text(m)) => Some(m.clone()),
            _ => None,
        });
        let metrics: Vec<String> = metrics.collect();
        if calls > 3 && metrics.iter().any(|m| m == "trap_when_reused") {
            panic!("an instance that served three groups before");
        }
        let carries_over = calls > CARRIES_AFTER;
        if !carries_over {
            TALLY.with(|t| t.borrow_mut().clear());
        }
        let rows = TALLY.with(|t| {
            let mut tally = t.borrow_mut();
            let mut mine = BTreeMap::new();
            for m in metrics {
                *tally.entry(m.clone()).or_insert(0) += 1;
                mine.insert(m.clone(), tally[&m]);
            }
            mine.into_iter().map(|(m, n)| vec![Value::Text(m), Value::Integer(n)]).collect()
        });
        Ok(Output { rows, rejected: 0 })
    }
}

export!(Stateful);
