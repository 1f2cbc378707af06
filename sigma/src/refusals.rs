//! Refusals of many rules, grouped by kind ([`SigmaError::reason`]): what `rulebox sigma compile`
//! summarises and the corpus tests count.

use std::collections::BTreeMap;

use crate::SigmaError;

/// Refusals grouped by reason: per reason, how many and the first rule refused for it.
#[derive(Debug, Clone, Default)]
pub struct Refusals {
    by_reason: BTreeMap<String, (usize, String)>,
}

impl Refusals {
    /// Counts `rule` (a path or a name, as the operator knows it) as refused for `reason`.
    pub fn add(&mut self, reason: String, rule: &str) {
        self.by_reason
            .entry(reason)
            .or_insert_with(|| (0, rule.to_owned()))
            .0 += 1;
    }

    /// Counts `rule` as refused with `error`.
    pub fn add_error(&mut self, error: &SigmaError, rule: &str) {
        self.add(error.reason(), rule);
    }

    /// How many refusals in all.
    pub fn total(&self) -> usize {
        self.by_reason.values().map(|(n, _)| n).sum()
    }

    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        self.by_reason.is_empty()
    }

    /// `(reason, count, first rule)`, most frequent first (then by reason).
    pub fn by_count(&self) -> Vec<(&str, usize, &str)> {
        let mut v: Vec<_> = self
            .by_reason
            .iter()
            .map(|(r, (n, first))| (r.as_str(), *n, first.as_str()))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_by_reason_most_frequent_first() {
        let mut r = Refusals::default();
        r.add("b".into(), "x.yml");
        r.add("a".into(), "y.yml");
        r.add("b".into(), "z.yml");
        r.add_error(&SigmaError::Missing("title"), "t.yml");
        assert_eq!(r.total(), 4);
        assert_eq!(
            r.by_count(),
            [
                ("b", 2, "x.yml"),
                ("a", 1, "y.yml"),
                ("no `title`", 1, "t.yml")
            ]
        );
    }
}
