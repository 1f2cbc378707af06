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

use rulebox_sigma_eval::{fold_case, probes_past_ascii};

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

/// Values most Windows events hold somewhere (folded): a text found in one of them (`.exe`,
/// `\\windows\\`, `\\system32\\`, `cmd.exe`) lets most events through, so a clause with such
/// a text is a poor one to check when a rarer one is at hand. Which clause is kept only decides how
/// many events reach the rule, never whether it matches.
const COMMON_VALUES: &[&str] = &[
    "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe",
    "c:\\windows\\syswow64\\cmd.exe",
    "c:\\windows\\system32\\svchost.exe -k netsvcs -p",
    "c:\\windows\\system32\\rundll32.exe",
    "c:\\windows\\system32\\conhost.exe 0xffffffff -forcev1",
    "c:\\windows\\explorer.exe",
    "c:\\program files (x86)\\microsoft\\edge\\application\\msedge.exe",
    "c:\\program files\\windows defender\\msmpeng.exe",
    "c:\\programdata\\microsoft\\windows\\start menu\\programs\\",
    "c:\\users\\user\\appdata\\local\\temp\\setup.tmp",
    "c:\\users\\user\\appdata\\roaming\\microsoft\\windows\\",
    "hklm\\software\\microsoft\\windows\\currentversion\\",
    "hkcu\\software\\microsoft\\windows nt\\currentversion\\",
    "hklm\\system\\currentcontrolset\\services\\",
    "nt authority\\system",
    "microsoft windows operating system",
    "microsoft corporation",
    "sha1=,md5=,sha256=,imphash=",
    ".dll",
];

/// Whether `text` (folded) is part of a value most events hold ([`COMMON_VALUES`]).
fn common(text: &str) -> bool {
    COMMON_VALUES.iter().any(|v| v.contains(text))
}

/// Cheaper is: no text too short to search for well, then no text most events hold, then fewer
/// texts, then longer ones.
fn cost(clause: &[Lit]) -> (bool, bool, usize, usize) {
    let shortest = clause.iter().map(|(_, t)| t.len()).min().unwrap_or(0);
    let common = clause.iter().any(|(_, t)| common(t));
    (shortest < 3, common, clause.len(), usize::MAX - shortest)
}

/// Keeps, of the texts of `clause` in one field that the prefilter searches for by the test for a
/// byte past ASCII ([`probes_past_ascii`]: emoji, Cyrillic look-alikes), the first: the others are
/// the same test. A list of 500 emoji is one alternative, not a clause too wide to keep.
fn same_probes_once(clause: &mut Vec<Lit>) {
    let mut fields: Vec<Option<String>> = Vec::new();
    clause.retain(|(field, text)| {
        if !probes_past_ascii(text) {
            return true;
        }
        if fields.contains(field) {
            return false;
        }
        fields.push(field.clone());
        true
    });
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
            for clause in &mut clauses {
                same_probes_once(clause);
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
    fn an_and_prefers_a_clause_most_events_do_not_satisfy() {
        // proc_creation_win_hktl_edr_freeze: `Image|contains` one of two names and
        // `Image|endswith: .exe`, or one of the import hashes.
        let selection_img = Node::And(vec![
            Node::Or(vec![
                lit("Image", "\\EDR-Freeze"),
                lit("Image", "\\EDRFreeze"),
            ]),
            lit("Image", ".exe"),
        ]);
        let n = needs(&selection_img).unwrap();
        assert_eq!(
            n[0],
            [l("Image", "\\edr-freeze"), l("Image", "\\edrfreeze")],
            "not `.exe`, which nearly every process start has"
        );
        let n = needs(&Node::Or(vec![
            selection_img,
            lit("Hashes", "IMPHASH=1195F79"),
        ]))
        .unwrap();
        assert_eq!(
            n[0],
            [
                l("Image", "\\edr-freeze"),
                l("Image", "\\edrfreeze"),
                l("Hashes", "imphash=1195f79")
            ]
        );
        for text in [".exe", "\\windows\\", "\\system32\\", "cmd.exe", "imphash="] {
            assert!(common(text), "{text}");
        }
        for text in ["\\..\\windows\\", "mimikatz", "\\edrfreeze", ".exe\\..\\"] {
            assert!(!common(text), "{text}");
        }
    }

    #[test]
    fn characters_never_ascii_in_one_field_are_one_alternative() {
        let emoji: Vec<Node> = (0..400)
            .map(|i| {
                lit(
                    "CommandLine",
                    &char::from_u32(0x1F600 + i).unwrap().to_string(),
                )
            })
            .chain([lit("CommandLine", "[u+202e]"), lit("Image", "\u{0410}")])
            .collect();
        let n = needs(&Node::Or(emoji)).unwrap();
        assert_eq!(
            n,
            [vec![
                l("CommandLine", "\u{1F600}"),
                l("CommandLine", "[u+202e]"),
                l("Image", "\u{0430}")
            ]],
            "400 emoji are one test of CommandLine, the ASCII text and the other field stay"
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
