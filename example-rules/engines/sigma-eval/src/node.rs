//! The condition as the evaluator runs it: a program's [`Expr`], with every run of consecutive
//! pattern tests of one automaton under one `and` or `or` made one test of that automaton's found
//! bits against a mask.
//!
//! A Sigma value list (`CommandLine|contains:` with 500 emoji, say) compiles to an `or` of one
//! [`Expr::Match`] per value, all of one automaton. Walked as a tree, a list whose values are all
//! absent costs one visit per value on every event it is evaluated on (about 180 fuel each in the
//! sandbox: 90,000 per event for such a list). As a mask it costs one `and` per 64 values.
//!
//! The rewrite changes nothing an evaluation observes: only *consecutive* operands in increasing
//! pattern order are merged, so the short-circuit order of the scans (run lazily on their first
//! test) and the order in which a detection reports the fields the condition matched stay those
//! of the tree.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use rulebox_sdk::EventKinds;

use crate::program::{Check, Expr};

/// One node of a condition (see the module docs).
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Always true.
    True,
    /// Always false.
    False,
    /// Every operand holds.
    And(Vec<Node>),
    /// Some operand holds.
    Or(Vec<Node>),
    /// The operand does not hold.
    Not(Box<Node>),
    /// The event is of one of these kinds.
    Kind(EventKinds),
    /// Pattern `pattern` of automaton `scan` matched.
    Match {
        /// The automaton.
        scan: u16,
        /// The pattern.
        pattern: u16,
    },
    /// Some (`all: false`) or every (`all: true`) pattern of `mask` of automaton `scan` matched.
    Matches {
        /// The automaton.
        scan: u16,
        /// Every pattern, or some.
        all: bool,
        /// The patterns.
        mask: Mask,
    },
    /// A check of one field that is not a text pattern.
    Check {
        /// The field.
        field: u16,
        /// The check.
        check: Check,
    },
}

/// A set of pattern numbers as bits: words `first..first + words.len()` of a found-bit array.
#[derive(Debug, Clone)]
pub(crate) struct Mask {
    first: usize,
    words: Vec<u64>,
}

impl Mask {
    /// The mask of `patterns` (not empty).
    fn of(patterns: &[u16]) -> Mask {
        let lo = patterns.iter().copied().min().map_or(0, usize::from) / 64;
        let hi = patterns.iter().copied().max().map_or(0, usize::from) / 64;
        let mut words = vec![0u64; hi - lo + 1];
        for &p in patterns {
            let p = usize::from(p);
            words[p / 64 - lo] |= 1 << (p % 64);
        }
        Mask { first: lo, words }
    }

    /// Whether some pattern of the mask is set in `found`.
    pub(crate) fn any(&self, found: &[u64]) -> bool {
        let have = found.get(self.first..).unwrap_or_default();
        self.words.iter().zip(have).any(|(m, f)| m & f != 0)
    }

    /// Whether every pattern of the mask is set in `found`.
    pub(crate) fn all(&self, found: &[u64]) -> bool {
        let have = found.get(self.first..).unwrap_or_default();
        self.words
            .iter()
            .enumerate()
            .all(|(k, m)| have.get(k).is_some_and(|f| f & m == *m))
    }

    /// The patterns of the mask set in `found`, in increasing order.
    pub(crate) fn each_found(&self, found: &[u64], mut each: impl FnMut(u16)) {
        let have = found.get(self.first..).unwrap_or_default();
        for (k, (m, f)) in self.words.iter().zip(have).enumerate() {
            let mut bits = m & f;
            while bits != 0 {
                let p = (self.first + k) * 64 + bits.trailing_zeros() as usize;
                if let Ok(p) = u16::try_from(p) {
                    each(p);
                }
                bits &= bits - 1;
            }
        }
    }
}

impl Node {
    /// The node of `expr` (a checked program's, so at most [`MAX_DEPTH`](crate::MAX_DEPTH) deep).
    pub(crate) fn of(expr: Expr) -> Node {
        match expr {
            Expr::True => Node::True,
            Expr::False => Node::False,
            Expr::And(v) => merged(v, true),
            Expr::Or(v) => merged(v, false),
            Expr::Not(e) => Node::Not(Box::new(Node::of(*e))),
            Expr::Kind(k) => Node::Kind(k),
            Expr::Match { scan, pattern } => Node::Match { scan, pattern },
            Expr::Check { field, check } => Node::Check { field, check },
        }
    }
}

/// The `and` (`all`) or `or` of `operands`, runs of two or more consecutive matches of one
/// automaton in increasing pattern order merged into one [`Node::Matches`].
fn merged(operands: Vec<Expr>, all: bool) -> Node {
    let mut out: Vec<Node> = Vec::with_capacity(operands.len());
    let mut run: Vec<u16> = Vec::new();
    let mut run_scan = 0u16;
    let flush = |out: &mut Vec<Node>, run: &mut Vec<u16>, scan: u16| {
        match run.as_slice() {
            [] => {}
            [pattern] => out.push(Node::Match {
                scan,
                pattern: *pattern,
            }),
            patterns => out.push(Node::Matches {
                scan,
                all,
                mask: Mask::of(patterns),
            }),
        }
        run.clear();
    };
    for e in operands {
        match e {
            Expr::Match { scan, pattern }
                if run.is_empty() || (scan == run_scan && run.last() < Some(&pattern)) =>
            {
                run_scan = scan;
                run.push(pattern);
            }
            Expr::Match { scan, pattern } => {
                flush(&mut out, &mut run, run_scan);
                run_scan = scan;
                run.push(pattern);
            }
            other => {
                flush(&mut out, &mut run, run_scan);
                out.push(Node::of(other));
            }
        }
    }
    flush(&mut out, &mut run, run_scan);
    match (out.len(), all) {
        (1, _) => out.pop().unwrap_or(Node::True),
        (_, true) => Node::And(out),
        (_, false) => Node::Or(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(scan: u16, pattern: u16) -> Expr {
        Expr::Match { scan, pattern }
    }

    #[test]
    fn consecutive_increasing_matches_of_one_scan_merge() {
        let node = Node::of(Expr::Or((0..130).map(|p| m(0, p)).collect()));
        let Node::Matches {
            scan: 0,
            all: false,
            mask,
        } = &node
        else {
            panic!("not merged: {node:?}");
        };
        assert!(!mask.any(&[0, 0, 0]));
        assert!(mask.any(&[0, 0, 1 << 1])); // pattern 129
        assert!(!mask.any(&[0, 0, 1 << 2])); // pattern 130: not in the list
        assert!(!mask.any(&[])); // a scan with fewer words finds nothing of it
        let mut seen = Vec::new();
        mask.each_found(&[1 | 1 << 5, 0, 1 << 1], |p| seen.push(p));
        assert_eq!(seen, [0, 5, 129]);
    }

    #[test]
    fn all_needs_every_pattern() {
        let node = Node::of(Expr::And(vec![m(1, 3), m(1, 70)]));
        let Node::Matches {
            all: true, mask, ..
        } = &node
        else {
            panic!("not merged: {node:?}");
        };
        assert!(!mask.all(&[1 << 3]));
        assert!(!mask.all(&[1 << 3, 0]));
        assert!(mask.all(&[1 << 3, 1 << 6]));
        assert!(mask.all(&[u64::MAX, u64::MAX]));
    }

    #[test]
    fn order_and_other_scans_break_runs() {
        // A decreasing pattern, another scan and a check in between each end a run, so the
        // operands keep their order.
        let node = Node::of(Expr::Or(vec![
            m(0, 1),
            m(0, 2),
            m(0, 0),
            m(1, 5),
            Expr::Check {
                field: 0,
                check: Check::Null,
            },
            m(1, 6),
            m(1, 7),
        ]));
        let Node::Or(v) = &node else {
            panic!("{node:?}")
        };
        let shape: Vec<&str> = v
            .iter()
            .map(|n| match n {
                Node::Match { .. } => "match",
                Node::Matches { .. } => "matches",
                Node::Check { .. } => "check",
                _ => "other",
            })
            .collect();
        assert_eq!(shape, ["matches", "match", "match", "check", "matches"]);
    }
}
