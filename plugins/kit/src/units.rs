//! Small helpers the aggregation rules share.

/// Unit (and meal) names match ASCII-case-insensitively after trimming
/// spaces; non-ASCII letters (such as `µ`) match only exactly.
pub fn matches(given: &str, accepted: &str) -> bool {
    given.trim().eq_ignore_ascii_case(accepted.trim())
}

/// What each distinct text of a group resolves to (a metric's index, a
/// unit's conversion), computed once per text rather than once per row.
///
/// The kit hands out one `&str` per distinct value of a group's text
/// column, and two borrowed `&str` at the same address with the same
/// length hold the same text, so a row's text is found by its address,
/// without comparing bytes. A text seen at another address (built by the
/// plugin, or a native test's own strings) is resolved again, which only
/// costs time. Beyond [`Memo::CAP`] texts the rest are resolved each time,
/// so a group of many distinct texts costs no more than without it.
pub struct Memo<'a, K, T> {
    seen: Vec<((K, &'a str), T)>,
}

impl<K, T> Default for Memo<'_, K, T> {
    fn default() -> Self {
        // Room for a vitals day's texts in one allocation.
        Memo { seen: Vec::with_capacity(8) }
    }
}

impl<'a, K: Copy + PartialEq, T: Copy> Memo<'a, K, T> {
    /// Distinct texts remembered; a vitals day has about seven of each.
    pub const CAP: usize = 32;

    /// What `text` (under `key`, e.g. the metric a unit belongs to)
    /// resolves to, asking `resolve` only the first time.
    pub fn get(&mut self, key: K, text: &'a str, resolve: impl FnOnce(&str) -> T) -> T {
        if let Some((_, v)) = self.seen.iter().find(|((k, t), _)| *k == key && std::ptr::eq(*t, text)) {
            return *v;
        }
        let v = resolve(text);
        if self.seen.len() < Self::CAP {
            self.seen.push(((key, text), v));
        }
        v
    }
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
    fn a_memo_resolves_each_borrowed_text_once_and_equal_texts_alike() {
        let (a, b) = (String::from("bpm"), String::from("bpm"));
        let mut asked = 0;
        let mut memo = Memo::default();
        let mut get = |key: u8, text| {
            memo.get(key, text, |t: &str| {
                asked += 1;
                t.len() + usize::from(key)
            })
        };
        assert_eq!([get(0, &a), get(0, &a), get(0, &b), get(1, &a)], [3, 3, 3, 4]);
        assert_eq!(asked, 3, "the same address and key is not resolved again");
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
