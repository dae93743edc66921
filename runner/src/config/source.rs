//! Where in the file a problem is: lines of keys and byte offsets, and
//! toml's errors turned into one line each, every section's at once.

use std::ops::Range;

use super::{Database, Http, Job, Log, Plugins, Runner};

/// The line where `key` is written in the table `section` (`jobs.vitals`,
/// `jobs.vitals.user_zones`), as the TOML parser saw it: under a
/// `[section]` header, as a dotted key or in an inline table alike. `None`
/// when it is not written (the caller then points at the table's header).
pub(super) fn key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    fn entry<'a, 'i>(table: &'a DeTable<'i>, name: &str) -> Option<(Range<usize>, &'a DeValue<'i>)> {
        table.iter().find(|(k, _)| k.get_ref() == name).map(|(k, v)| (k.span(), v.get_ref()))
    }
    let document = DeTable::parse(text).ok()?;
    let mut table = document.get_ref();
    for part in section.split('.') {
        match entry(table, part)?.1 {
            DeValue::Table(inner) => table = inner,
            _ => return None,
        }
    }
    Some(line_number(text, entry(table, key)?.0.start))
}

/// The 1-based line of byte offset `at`.
pub(super) fn line_number(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// serde stops at a file's first bad value; to show every problem at once,
/// each `[section]` is then read on its own, so that a bad value in one does
/// not hide a bad value in another. Returns the first error when sections
/// cannot be told apart (a syntax error, dotted keys).
pub(super) fn every_section_error(text: &str, first: &toml::de::Error) -> Vec<String> {
    fn section<T: serde::de::DeserializeOwned>(body: &str, offset: usize, text: &str) -> Option<String> {
        let e = toml::from_str::<T>(body).err()?;
        // Missing keys are the whole file's business (the first pass says so).
        if e.message().starts_with("missing field") {
            return None;
        }
        Some(positioned(text, e.span().map(|s| s.start + offset), e.message()))
    }
    let first = describe_toml_error(first, text);
    if toml::from_str::<toml::Table>(text).is_err() {
        return vec![first];
    }
    // Sections by their header lines: (name, header start, body start).
    let mut starts: Vec<(String, usize, usize)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') && !t.starts_with("[[") {
            let name = t.trim_start_matches('[').trim_end_matches(']').trim().to_string();
            starts.push((name, offset, offset + line.len()));
        }
        offset += line.len();
    }
    let mut problems = Vec::new();
    for (i, (name, _, start)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(text.len(), |next| next.1);
        let body = &text[*start..end];
        let error = match name.as_str() {
            "database" => section::<Database>(body, *start, text),
            "runner" => section::<Runner>(body, *start, text),
            "http" => section::<Http>(body, *start, text),
            "log" => section::<Log>(body, *start, text),
            "plugins" => section::<Plugins>(body, *start, text),
            job if job.starts_with("jobs.") => section::<Job>(body, *start, text),
            _ => None,
        };
        problems.extend(error);
    }
    if !problems.contains(&first) {
        problems.insert(0, first);
    }
    problems
}

/// Turns toml's error (which already names the line, column and key) into one
/// compact line: `line 3, column 1: unknown field `foo`, expected ...`.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    positioned(text, e.span().map(|s| s.start), e.message())
}

/// `message` at byte offset `at` of `text`: `line L, column C: message (in `the line`)`.
fn positioned(text: &str, at: Option<usize>, message: &str) -> String {
    let message = message.trim_end();
    let Some(at) = at.map(|a| a.min(text.len())) else { return message.to_string() };
    let line = line_number(text, at);
    let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
    format!("line {line}, column {column}: {message} (in `{snippet}`)")
}
