//! The literals a rule needs, across fields, for the pack's cross-rule prefilter
//! ([`rulebox_sigma_eval::Program::needs`]): clauses, each a list of (field, text) alternatives,
//! such that every event the condition holds for has, for every clause, one of its texts
//! (case-folded) in a value of its field.
//!
//! As [`crate::gate`] derives them for one field, but an `or` may mix fields (`Image|endswith`
//! or `OriginalFileName`, the commonest shape in SigmaHQ): a pattern needs its literal text; an
//! `and` needs the cheapest clauses of its operands; an `or` needs, clause by clause, the union of
//! what each operand needs; a keyword needs its text in any field; a `not` or a check needs
//! nothing that can be named, and an `or` with such an operand needs nothing either.

use rulebox_sigma_eval::fold_case;

use crate::gate::required;
use crate::ir::Node;

/// One alternative of a clause: a field (as the rule names it; `None`: any field, a keyword's) and
/// a folded text.
pub type Lit = (Option<String>, String);

/// An `and` keeps this many of its operands' clauses.
pub const MAX_CLAUSES: usize = 3;

/// A clause of more alternatives than this is not worth checking (it is dropped; dropping a
/// clause only lets more events through).
pub const MAX_ALTERNATIVES: usize = 256;

/// Cheaper is: no text too short to search for well, then fewer texts, then longer ones.
fn cost(clause: &[Lit]) -> (bool, usize, usize) {
    let shortest = clause.iter().map(|(_, t)| t.len()).min().unwrap_or(0);
    (shortest < 3, clause.len(), usize::MAX - shortest)
}

/// What `node` needs (`None`: nothing can be named).
pub fn needs(node: &Node) -> Option<Vec<Vec<Lit>>> {
    match node {
        Node::Text { field, pattern } => {
            let text = required(pattern)?;
            let folded = fold_case(&text, &mut String::new()).to_owned();
            Some(vec![vec![(field.clone(), folded)]])
        }
        Node::And(v) => {
            let mut clauses: Vec<Vec<Lit>> = v.iter().filter_map(needs).flatten().collect();
            if clauses.is_empty() {
                return None;
            }
            clauses.sort_by_key(|c| cost(c));
            clauses.dedup();
            clauses.truncate(MAX_CLAUSES);
            Some(clauses)
        }
        Node::Or(v) => {
            let each: Vec<Vec<Vec<Lit>>> = v.iter().map(needs).collect::<Option<_>>()?;
            let width = each.iter().map(Vec::len).min()?;
            let mut clauses: Vec<Vec<Lit>> = vec![Vec::new(); width];
            for n in &each {
                for (k, clause) in clauses.iter_mut().enumerate() {
                    for lit in &n[k.min(n.len() - 1)] {
                        if !clause.contains(lit) {
                            clause.push(lit.clone());
                        }
                    }
                }
            }
            clauses.retain(|c| c.len() <= MAX_ALTERNATIVES);
            (!clauses.is_empty()).then_some(clauses)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Pattern, Position};

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

    fn l(field: &str, text: &str) -> Lit {
        (Some(field.into()), text.into())
    }

    #[test]
    fn an_or_across_fields_needs_one_of_each_operands_literals() {
        let n = needs(&Node::And(vec![
            Node::Or(vec![
                lit("Image", "\\wmic.exe"),
                lit("OriginalFileName", "wmic.exe"),
            ]),
            lit("CommandLine", "shadowcopy"),
        ]))
        .unwrap();
        assert_eq!(
            n,
            [
                vec![l("CommandLine", "shadowcopy")],
                vec![l("Image", "\\wmic.exe"), l("OriginalFileName", "wmic.exe")],
            ]
        );
        assert_eq!(
            needs(&Node::Or(vec![lit("A", "x"), lit("B", "y")])).unwrap(),
            [vec![l("A", "x"), l("B", "y")]]
        );
    }

    #[test]
    fn negations_and_checks_need_nothing_and_a_keyword_any_field() {
        assert_eq!(needs(&Node::Not(Box::new(lit("C", "x")))), None);
        assert_eq!(
            needs(&Node::Or(vec![
                lit("C", "abc"),
                Node::Not(Box::new(lit("C", "x")))
            ])),
            None,
            "an or with an operand that needs nothing"
        );
        let n = needs(&Node::And(vec![
            Node::Not(Box::new(lit("C", "x"))),
            lit("D", "abc"),
        ]));
        assert_eq!(
            n.unwrap(),
            [vec![l("D", "abc")]],
            "an and needs what its operands need"
        );
        let keyword = Node::Text {
            field: None,
            pattern: Pattern::Literal {
                position: Position::Contains,
                text: "mimikatz".into(),
                cased: false,
            },
        };
        assert_eq!(needs(&keyword), Some(vec![vec![(None, "mimikatz".into())]]));
        assert_eq!(
            needs(&Node::Or(vec![keyword, lit("CommandLine", "perfc")])).unwrap(),
            [vec![(None, "mimikatz".into()), l("CommandLine", "perfc")]],
            "an or of a keyword and a field's pattern"
        );
    }

    #[test]
    fn literals_are_folded_and_clauses_are_capped() {
        let n = needs(&lit("C", "MiMi")).unwrap();
        assert_eq!(n, [vec![l("C", "mimi")]]);
        let many: Vec<Node> = (0..10).map(|i| lit("C", &format!("word{i}"))).collect();
        let n = needs(&Node::And(many)).unwrap();
        assert_eq!(n.len(), MAX_CLAUSES);
        let wide: Vec<Node> = (0..=MAX_ALTERNATIVES)
            .map(|i| lit("C", &format!("w{i}")))
            .collect();
        assert_eq!(
            needs(&Node::Or(wide)),
            None,
            "a clause too wide to be worth checking"
        );
    }
}
