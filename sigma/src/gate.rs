//! The literals a rule needs: a field and a few texts, one of which occurs (case-insensitively) in
//! the field's value of every event the rule's condition holds for. The evaluator scans for them
//! first ([`rulebox_sigma_eval::Program::gate`]): a rule with a long list of patterns, most of
//! which only matter once a rarer one is there, then costs one fast pass on most events.
//!
//! From the condition tree: a pattern needs its literal text (a wildcard pattern its longest
//! literal piece, a regular expression the longest literal it cannot match without); an `and`
//! needs what its cheapest operand needs; an `or` the union of what each operand needs, on one
//! field; a `not`, a keyword or a check needs nothing that can be named.

use regex_syntax::hir::{Class, Hir, HirKind};
use rulebox_sigma_eval::fold_case;

use crate::ir::{Glob, Node, Pattern};

/// What a condition needs: on `field`, for each clause, one of its texts (case-folded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The field, as the rule names it.
    pub field: String,
    /// The clauses (at most [`MAX_CLAUSES`]): each a list of texts, folded, not empty.
    pub clauses: Vec<Vec<String>>,
}

/// An `and` keeps this many of its operands' clauses.
pub const MAX_CLAUSES: usize = 2;

/// A pattern whose required text is shorter than this (in characters) needs nothing that can be
/// named: a space or a `/` is in nearly every long value, so it gates nothing, and its scan would
/// stop at every few bytes of the field.
pub const MIN_TEXT: usize = 3;

/// Cheaper is fewer texts, then longer ones.
fn cost(clause: &[String]) -> (usize, usize) {
    let shortest = clause.iter().map(String::len).min().unwrap_or(0);
    (clause.len(), usize::MAX - shortest)
}

fn union(a: &mut Vec<String>, b: &[String]) {
    for t in b {
        if !a.contains(t) {
            a.push(t.clone());
        }
    }
}

/// What `node` needs, if anything can be named.
pub fn need(node: &Node) -> Option<Need> {
    match node {
        Node::Text {
            field: Some(field),
            pattern,
        } => {
            let text = required(pattern).filter(|t| t.chars().count() >= MIN_TEXT)?;
            let folded = fold_case(&text, &mut String::new()).to_owned();
            Some(Need {
                field: field.clone(),
                clauses: vec![vec![folded]],
            })
        }
        // Every operand holds: the cheapest clauses of those on the most named field.
        Node::And(v) => {
            let needs: Vec<Need> = v.iter().filter_map(need).collect();
            let field = needs
                .iter()
                .min_by_key(|n| n.clauses.iter().map(|c| cost(c)).min())?
                .field
                .clone();
            let mut clauses: Vec<Vec<String>> = needs
                .into_iter()
                .filter(|n| n.field == field)
                .flat_map(|n| n.clauses)
                .collect();
            clauses.sort_by_key(|c| cost(c));
            clauses.dedup();
            clauses.truncate(MAX_CLAUSES);
            Some(Need { field, clauses })
        }
        // Some operand holds: clause k is the union of each operand's clause k (its last one when
        // it has fewer), which every operand implies.
        Node::Or(v) => {
            let needs: Vec<Need> = v.iter().map(need).collect::<Option<_>>()?;
            let field = needs.first()?.field.clone();
            if needs.iter().any(|n| n.field != field) {
                return None;
            }
            let width = needs.iter().map(|n| n.clauses.len()).min()?;
            let mut clauses = vec![Vec::new(); width];
            for n in &needs {
                for (k, clause) in clauses.iter_mut().enumerate() {
                    union(clause, &n.clauses[k.min(n.clauses.len() - 1)]);
                }
            }
            Some(Need { field, clauses })
        }
        _ => None,
    }
}

/// A text every match of `pattern` contains.
pub(crate) fn required(pattern: &Pattern) -> Option<String> {
    let text = match pattern {
        Pattern::Literal { text, .. } => text.clone(),
        Pattern::Glob { parts, .. } => parts
            .iter()
            .filter_map(|g| match g {
                Glob::Lit(s) => Some(s.clone()),
                _ => None,
            })
            .max_by_key(String::len)?,
        Pattern::Regex { hir, .. } => literal_in(hir)?,
    };
    (!text.is_empty()).then_some(text)
}

/// One character a class stands for, if it is one character or one letter in both cases.
fn class_char(class: &Class) -> Option<char> {
    let Class::Unicode(c) = class else {
        return None;
    };
    let chars: Vec<char> = c
        .ranges()
        .iter()
        .flat_map(|r| (r.start()..=r.end()).take(3))
        .collect();
    match chars.as_slice() {
        [one] => Some(*one),
        [a, b] if a.eq_ignore_ascii_case(b) => Some(a.to_ascii_lowercase()),
        _ => None,
    }
}

/// The longest literal every match of `hir` contains.
fn literal_in(hir: &Hir) -> Option<String> {
    match hir.kind() {
        HirKind::Literal(lit) => std::str::from_utf8(&lit.0).ok().map(str::to_owned),
        HirKind::Class(c) => class_char(c).map(String::from),
        HirKind::Capture(c) => literal_in(&c.sub),
        HirKind::Repetition(r) if r.min > 0 => literal_in(&r.sub),
        HirKind::Concat(items) => {
            // Runs of adjacent literals and one-character classes, and whatever the other items
            // need: the longest.
            let mut best: Option<String> = None;
            let mut run = String::new();
            let keep = |s: &str, best: &mut Option<String>| {
                if best.as_ref().is_none_or(|b| s.len() > b.len()) && !s.is_empty() {
                    *best = Some(s.to_owned());
                }
            };
            for item in items {
                let piece = match item.kind() {
                    HirKind::Literal(lit) => std::str::from_utf8(&lit.0).ok().map(str::to_owned),
                    HirKind::Class(c) => class_char(c).map(String::from),
                    _ => None,
                };
                match piece {
                    Some(p) => run.push_str(&p),
                    None => {
                        keep(&run, &mut best);
                        run.clear();
                        if let Some(inner) = literal_in(item) {
                            keep(&inner, &mut best);
                        }
                    }
                }
            }
            keep(&run, &mut best);
            best
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Position;

    fn lit(field: &str, text: &str) -> Node {
        Node::Text {
            field: Some(field.into()),
            pattern: Pattern::Literal {
                position: Position::Contains,
                text: text.into(),
                cased: false,
            },
        }
    }

    #[test]
    fn ands_take_the_cheapest_ors_the_union() {
        let list = Node::Or(vec![lit("C", "aaa"), lit("C", "bbb"), lit("C", "ccc")]);
        let n = need(&Node::And(vec![list.clone(), lit("C", "wmic")])).unwrap();
        assert_eq!(n.clauses, [vec!["wmic"], vec!["aaa", "bbb", "ccc"]]);
        let n = need(&Node::Or(vec![
            Node::And(vec![lit("C", "wmic"), lit("C", "xyz")]),
            Node::And(vec![lit("C", "process "), list.clone()]),
        ]))
        .unwrap();
        assert_eq!(
            n.clauses,
            [vec!["wmic", "process "], vec!["xyz", "aaa", "bbb", "ccc"]]
        );
        assert_eq!(
            need(&Node::Or(vec![lit("A", "xyz"), lit("B", "yzw")])),
            None
        );
        assert_eq!(need(&Node::Not(Box::new(lit("C", "xyz")))), None);
    }

    /// A gate of a one-character text (a regular expression's ` [0-7]{7,13}` needs only its
    /// space) would stop its scan at every space of a long command line and reject nothing.
    #[test]
    fn texts_shorter_than_three_characters_gate_nothing() {
        assert_eq!(need(&lit("C", " ")), None);
        assert_eq!(need(&lit("C", "0x")), None);
        let list = Node::Or(vec![lit("C", " 0x"), lit("C", " ")]);
        assert_eq!(
            need(&list),
            None,
            "an `or` with an operand that needs nothing"
        );
        let n = need(&Node::And(vec![list, lit("C", "iwr ")])).unwrap();
        assert_eq!(n.clauses, [vec!["iwr "]], "the `and`'s other operand gates");
    }

    #[test]
    fn regular_expressions_need_their_literals() {
        let re = |p: &str| crate::regex::compile_regex("F", p, (false, false, false)).unwrap();
        assert_eq!(
            literal_in(&re(r"\w+`(?:\w+|-|.)`[\w+|\s]")).as_deref(),
            Some("`")
        );
        assert_eq!(
            literal_in(&re(r"(?i)\$\{`?e`?n`?v")).as_deref(),
            Some("${"),
            "a letter in both cases is a letter"
        );
        assert_eq!(literal_in(&re(r"net\s+user")).as_deref(), Some("user"));
        assert_eq!(literal_in(&re(r"[a-f]{4}")), None);
        assert_eq!(literal_in(&re(r"(?:ab|cd)x+")).as_deref(), Some("x"));
    }
}
