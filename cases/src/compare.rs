//! What a case saw, against what it expects.

use crate::file::Expected;
use rulebox_sdk::text::printable;

/// A detection as a case sees it: which event produced it, its title and matched fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Index of the event in the case.
    pub event: usize,
    /// Title.
    pub title: String,
    /// Matched fields, in order.
    pub fields: Vec<(String, String)>,
}

impl Seen {
    /// A detection as a case sees it, from event `event`.
    pub fn from_detection(event: usize, d: &rulebox_sdk::Detection<'_>) -> Seen {
        Seen {
            event,
            title: d.title.to_string(),
            fields: d
                .fields
                .iter()
                .map(|f| (f.name.to_string(), f.value.to_string()))
                .collect(),
        }
    }
}

/// Compares what a case saw with what it expects; `None` when they agree, else what differs. Text
/// from the rule (titles, field values) is escaped, so a detection cannot write control characters
/// to a terminal through a test report.
pub fn compare(expect: &[Expected], seen: &[Seen]) -> Option<String> {
    let list = |seen: &[Seen]| {
        seen.iter()
            .map(|s| format!("`{}` (event {})", printable(&s.title), s.event))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if expect.len() != seen.len() {
        return Some(if seen.is_empty() {
            format!("expected {} detection(s), got none", expect.len())
        } else {
            format!(
                "expected {} detection(s), got {}: {}",
                expect.len(),
                seen.len(),
                list(seen)
            )
        });
    }
    for (i, (e, s)) in expect.iter().zip(seen).enumerate() {
        if e.title != s.title {
            return Some(format!(
                "detection {i}: expected title `{}`, got `{}`",
                printable(&e.title),
                printable(&s.title)
            ));
        }
        if let Some(event) = e.event
            && event != s.event
        {
            return Some(format!(
                "detection {i} (`{}`): expected from event {event}, came from event {}",
                printable(&e.title),
                s.event
            ));
        }
        for (name, value) in &e.fields {
            match s.fields.iter().find(|(n, _)| n == name) {
                Some((_, v)) if v == value => {}
                Some((_, v)) => {
                    return Some(format!(
                        "detection {i} (`{}`): field {} is `{}`, expected `{}`",
                        printable(&e.title),
                        printable(name),
                        printable(v),
                        printable(value)
                    ));
                }
                None => {
                    return Some(format!(
                        "detection {i} (`{}`): has no matched field {}",
                        printable(&e.title),
                        printable(name)
                    ));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn seen(event: usize, title: &str) -> Seen {
        Seen {
            event,
            title: title.into(),
            fields: vec![("Image".into(), "a.exe".into())],
        }
    }

    #[test]
    fn compare_names_what_differs() {
        let want = |title: &str, event: Option<usize>| Expected {
            title: title.into(),
            event,
            fields: BTreeMap::new(),
        };
        assert_eq!(compare(&[], &[]), None);
        assert!(compare(&[], &[seen(0, "x")]).unwrap().contains("got 1"));
        assert!(
            compare(&[want("x", None)], &[])
                .unwrap()
                .contains("got none")
        );
        assert_eq!(compare(&[want("x", Some(2))], &[seen(2, "x")]), None);
        assert!(
            compare(&[want("x", Some(1))], &[seen(2, "x")])
                .unwrap()
                .contains("from event 1")
        );
        assert!(
            compare(&[want("y", None)], &[seen(0, "x")])
                .unwrap()
                .contains("expected title `y`")
        );
        let mut with_field = want("x", None);
        with_field.fields.insert("Image".into(), "b.exe".into());
        assert!(
            compare(&[with_field.clone()], &[seen(0, "x")])
                .unwrap()
                .contains("field Image is `a.exe`")
        );
        with_field.fields.clear();
        with_field.fields.insert("User".into(), "u".into());
        assert!(
            compare(&[with_field], &[seen(0, "x")])
                .unwrap()
                .contains("no matched field User")
        );
    }

    #[test]
    fn text_from_the_rule_is_escaped() {
        let problem = compare(&[], &[seen(0, "\u{1b}[2Jgone")]).unwrap();
        assert!(!problem.contains('\u{1b}'), "{problem}");
        assert!(problem.contains("\\u{1b}[2Jgone"), "{problem}");
    }
}
