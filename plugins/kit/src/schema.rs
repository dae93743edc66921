//! A plugin's self-description, built fluently.

use crate::bindings::health::aggregation::types::{
    Column, ColumnType, Description, RowFields, Setting, SettingType, Value,
};

/// What a plugin reads and writes. Input values arrive in the order of the
/// `input` calls; output rows are built by name and sent in `output` order.
#[derive(Debug, Clone)]
pub struct Schema {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) input: Vec<(String, ColumnType)>,
    pub(crate) output: Vec<(String, ColumnType)>,
    pub(crate) key: Vec<String>,
    pub(crate) settings: Vec<Setting>,
}

impl Schema {
    /// `name` appears in logs and `plugin_version`; `version` is semver
    /// (use `env!("CARGO_PKG_VERSION")`).
    pub fn new(name: &str, version: &str) -> Self {
        Schema {
            name: name.into(),
            version: version.into(),
            input: Vec::new(),
            output: Vec::new(),
            key: Vec::new(),
            settings: Vec::new(),
        }
    }

    /// A raw-table column the plugin reads (besides `id`, `user_id` and the timestamp).
    pub fn input(mut self, column: &str, kind: ColumnType) -> Self {
        self.input.push((column.into(), kind));
        self
    }

    /// A daily-table column the plugin writes (besides `user_id`, `day`,
    /// `plugin_version` and `updated_at`, which the runner fills).
    pub fn output(mut self, column: &str, kind: ColumnType) -> Self {
        self.output.push((column.into(), kind));
        self
    }

    /// An output column that, with `user_id` and `day`, keys the daily table.
    pub fn key(mut self, column: &str) -> Self {
        self.key.push(column.into());
        self
    }

    /// A setting operators may set in `[jobs.<name>.settings]`, with the
    /// value used when they do not. Read it with `day.settings()`.
    pub fn setting(mut self, name: &str, kind: SettingType, default: impl Into<Value>, doc: &str) -> Self {
        self.settings.push(Setting { name: name.into(), kind, default: Some(default.into()), doc: doc.into() });
        self
    }

    /// A setting every job must set: the runner refuses a job without it.
    pub fn required_setting(mut self, name: &str, kind: SettingType, doc: &str) -> Self {
        self.settings.push(Setting { name: name.into(), kind, default: None, doc: doc.into() });
        self
    }

    pub(crate) fn input_index(&self, column: &str) -> Option<usize> {
        self.input.iter().position(|(c, _)| same_name(c, column))
    }

    /// The output column `column`, looked for first at `guess` (a row's
    /// columns are usually set in their declared order).
    pub(crate) fn output_index(&self, column: &str, guess: usize) -> Option<usize> {
        match self.output.get(guess) {
            Some((c, _)) if same_name(c, column) => Some(guess),
            _ => self.output.iter().position(|(c, _)| same_name(c, column)),
        }
    }

    pub(crate) fn to_description(&self) -> Description {
        let columns = |cols: &[(String, ColumnType)]| {
            cols.iter().map(|(name, kind)| Column { name: name.clone(), kind: *kind }).collect()
        };
        Description {
            name: self.name.clone(),
            version: self.version.clone(),
            input: columns(&self.input),
            output: columns(&self.output),
            key: self.key.clone(),
            settings: self.settings.clone(),
            // Three lists of numbers a group: nothing to a compiled plugin,
            // and `Row` offers them all.
            row_fields: RowFields::IDS | RowFields::ATS | RowFields::DAYS,
        }
    }
}

/// `a == b` for the short names of columns and settings, a word at a time.
/// In WebAssembly `==` on strings calls wasi-libc's `memcmp`, a loop over
/// bytes behind a call: the kit's lookups by name spent 9 % of a vitals
/// group there (docs/performance.md, round 16).
#[inline(always)]
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or_default());
    match n {
        // Words from the front, and one ending at the end (overlapping).
        8.. => (0..n - 8).step_by(8).all(|at| word(a, at) == word(b, at)) && word(a, n - 8) == word(b, n - 8),
        4.. => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => a.iter().zip(b).all(|(x, y)| x == y),
    }
}

#[cfg(test)]
mod tests {
    use super::same_name;

    #[test]
    fn names_compare_equal_exactly_when_their_bytes_do() {
        let names = ["", "a", "ab", "abc", "unit", "value", "metric", "min_value", "max_value", "sample_count"];
        let longer = ["respiratory_rate_min", "respiratory_rate_max", "respiratory_rate_mix", "xespiratory_rate_max"];
        for a in names.iter().chain(&longer) {
            for b in names.iter().chain(&longer) {
                assert_eq!(same_name(a, b), a == b, "{a:?} vs {b:?}");
            }
        }
        // A difference at every position of every length.
        for n in 1..40 {
            let a: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            for at in 0..n {
                let mut b = a.clone().into_bytes();
                b[at] = b'_';
                assert!(!same_name(&a, std::str::from_utf8(&b).unwrap()), "{a} at {at}");
            }
            assert!(same_name(&a, &a.clone()));
        }
    }
}
