//! Small helpers the aggregation rules share.

/// Unit (and meal) names match ASCII-case-insensitively after trimming
/// spaces; non-ASCII letters (such as `µ`) match only exactly.
pub fn matches(given: &str, accepted: &str) -> bool {
    given.trim().eq_ignore_ascii_case(accepted.trim())
}

/// Keeps the value of the latest row seen: greatest timestamp, ties to the greatest id.
#[derive(Debug, Clone)]
pub struct Latest<T> {
    key: Option<(i64, i64)>,
    value: Option<T>,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest { key: None, value: None }
    }
}

impl<T> Latest<T> {
    /// Offers the value of the row with timestamp `at` and id `id`.
    pub fn offer(&mut self, at: i64, id: i64, value: T) {
        if self.key.is_none_or(|k| (at, id) > k) {
            self.key = Some((at, id));
            self.value = Some(value);
        }
    }

    pub fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    pub fn into_inner(self) -> Option<T> {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_fold_ascii_case_and_trim() {
        assert!(matches(" MMHG ", "mmHg"));
        assert!(!matches("µmol/L", "umol/L"));
        assert!(matches("µmol/l", "µmol/L"));
        assert!(!matches("ΜMOL/L", "µmol/L"));
    }

    #[test]
    fn latest_breaks_ties_by_id() {
        let mut l = Latest::default();
        l.offer(10, 5, "a");
        l.offer(10, 7, "b");
        l.offer(10, 6, "c");
        l.offer(9, 99, "d");
        assert_eq!(l.get(), Some(&"b"));
    }
}
