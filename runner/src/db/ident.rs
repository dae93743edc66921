//! SQL names: the one type for a table or column name from the config or
//! a plugin, the one quoter (which escapes), and job names, whose derived
//! trigger and function names must fit Postgres's 63 bytes.

use std::fmt;

use serde::Deserialize;

/// Postgres cuts longer names (NAMEDATALEN - 1).
const MAX_NAME: usize = 63;

/// `part` quoted as one SQL identifier, `"` doubled.
pub fn quote(part: &str) -> String {
    format!("\"{}\"", part.replace('"', "\"\""))
}

/// `[a-z_][a-z0-9_]*`: a name that needs no quoting to mean itself.
fn plain(part: &str, max: usize) -> bool {
    !part.is_empty()
        && part.len() <= max
        && part.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A SQL identifier (`name` or `schema.name`), checked when parsed so a
/// hostile or mistyped name never reaches SQL unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier(String);

impl Identifier {
    /// Accepts `name` or `schema.name`, each part `[a-z_][a-z0-9_]*`, at most 63 bytes.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() <= 2 && parts.iter().all(|p| plain(p, MAX_NAME)) {
            Ok(Identifier(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not a valid table or column name: expected lower-case letters, digits and `_`, optionally `schema.name`"
            ))
        }
    }

    /// The name as written, e.g. `public.vitals_raw`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last part: the table's own name without its schema.
    pub fn name(&self) -> &str {
        self.0.rsplit('.').next().unwrap_or(&self.0)
    }

    /// The name quoted for SQL, each part escaped, e.g. `"public"."vitals_raw"`.
    pub fn quoted(&self) -> String {
        self.0.split('.').map(quote).collect::<Vec<_>>().join(".")
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Identifier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Identifier::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The longest name derived from a job's: `runner_capture_<job>_truncate`.
const LONGEST_DERIVED: (&str, &str) = ("runner_capture_", "_truncate");

/// A job's name: one plain part, short enough that every trigger and
/// function name made from it fits Postgres's 63 bytes (a longer one would
/// be cut, and two jobs' triggers could then collide, or no longer match
/// what `check` looks up).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct JobName(String);

impl JobName {
    /// At most this many bytes.
    pub const MAX: usize = MAX_NAME - LONGEST_DERIVED.0.len() - LONGEST_DERIVED.1.len();

    pub fn parse(s: &str) -> Result<Self, String> {
        if !plain(s, usize::MAX) {
            return Err(
                "a job name must be lower-case letters, digits and `_` (no `.`), starting with a letter or `_`"
                    .to_string(),
            );
        }
        if s.len() > Self::MAX {
            return Err(format!(
                "a job name may have at most {} bytes ({} has {}), so that its trigger names fit Postgres's {MAX_NAME}",
                Self::MAX,
                s,
                s.len()
            ));
        }
        Ok(JobName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_quote_and_escape_each_part() {
        assert_eq!(Identifier::parse("public.vitals_raw").unwrap().quoted(), "\"public\".\"vitals_raw\"");
        assert!(Identifier::parse("a.b.c").is_err());
        assert!(Identifier::parse("Vitals").is_err());
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn a_job_name_has_no_dot_and_fits_its_trigger_names() {
        assert_eq!(JobName::MAX, 39);
        assert!(JobName::parse("a.b").unwrap_err().contains("no `.`"));
        let longest = "j".repeat(39);
        assert!(JobName::parse(&longest).is_ok());
        assert_eq!(format!("{}{longest}{}", LONGEST_DERIVED.0, LONGEST_DERIVED.1).len(), MAX_NAME);
        assert!(JobName::parse(&"j".repeat(40)).unwrap_err().contains("at most 39 bytes"));
    }
}
