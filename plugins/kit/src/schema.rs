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
        self.input.iter().position(|(c, _)| c == column)
    }

    pub(crate) fn output_index(&self, column: &str) -> Option<usize> {
        self.output.iter().position(|(c, _)| c == column)
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
