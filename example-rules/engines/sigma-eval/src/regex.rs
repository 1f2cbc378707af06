//! Regular expressions as a Pike VM runs them: linear in the text, whatever the pattern.
//!
//! The compiler parses a Sigma `re` value with `regex-syntax` and lowers it to [`Inst`]s over
//! characters; this module runs them. A set of threads (one per instruction at most) advances one
//! character at a time, so there is no backtracking and no pattern can take more than
//! O(text × instructions) steps.

use alloc::vec;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::program::ProgramError;

/// A compiled regular expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Regex {
    /// The instructions; execution starts at 0.
    pub insts: Vec<Inst>,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Inst {
    /// Consume one character inside one of these inclusive ranges (sorted, as code points).
    Ranges(Vec<(u32, u32)>),
    /// Continue at both targets.
    Split(u32, u32),
    /// Continue at the target.
    Jmp(u32),
    /// Continue only if the assertion holds here.
    Assert(Look),
    /// A match.
    Match,
}

/// A zero-width assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Look {
    /// Start of the text.
    Start,
    /// End of the text.
    End,
    /// Start of a line (`(?m)^`).
    StartLine,
    /// End of a line (`(?m)$`).
    EndLine,
    /// A word boundary (`\b`), word characters being ASCII letters, digits and `_`.
    Word,
    /// Not a word boundary (`\B`).
    NotWord,
}

/// A word character as PCRE defines it without Unicode properties: ASCII letters, digits, `_`.
fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Look {
    fn holds(self, prev: Option<char>, next: Option<char>) -> bool {
        match self {
            Look::Start => prev.is_none(),
            Look::End => next.is_none(),
            Look::StartLine => prev.is_none() || prev == Some('\n'),
            Look::EndLine => next.is_none() || next == Some('\n'),
            Look::Word => is_word(prev) != is_word(next),
            Look::NotWord => is_word(prev) == is_word(next),
        }
    }
}

/// A set of instruction indices with O(1) insert and clear, in insertion order.
struct Threads {
    dense: Vec<u32>,
    sparse: Vec<u32>,
}

impl Threads {
    fn new(n: usize) -> Threads {
        Threads {
            dense: Vec::with_capacity(n),
            sparse: vec![0; n],
        }
    }

    fn contains(&self, pc: u32) -> bool {
        let i = self.sparse[pc as usize] as usize;
        i < self.dense.len() && self.dense[i] == pc
    }

    fn insert(&mut self, pc: u32) {
        // Fewer threads than instructions, so the index fits the instruction count's type.
        self.sparse[pc as usize] = u32::try_from(self.dense.len()).unwrap_or(u32::MAX);
        self.dense.push(pc);
    }
}

impl Regex {
    /// Checks that every jump lands inside the program (so running it cannot index out of range).
    pub fn check(&self) -> Result<(), ProgramError> {
        let n = self.insts.len();
        let ok = |t: u32| (t as usize) < n;
        let fine = n > 0
            && u32::try_from(n).is_ok()
            && self.insts.iter().enumerate().all(|(i, inst)| match inst {
                Inst::Split(a, b) => ok(*a) && ok(*b),
                Inst::Jmp(t) => ok(*t),
                // Falls through to the next instruction.
                Inst::Ranges(_) | Inst::Assert(_) => i + 1 < n,
                Inst::Match => true,
            });
        if fine {
            Ok(())
        } else {
            Err(ProgramError::BadRegex)
        }
    }

    /// Whether the expression matches somewhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        let n = self.insts.len();
        if n == 0 {
            return false;
        }
        let mut current = Threads::new(n);
        let mut next = Threads::new(n);
        let mut stack: Vec<u32> = Vec::new();
        let mut chars = text.chars();
        let mut prev: Option<char> = None;
        let mut cur = chars.next();
        loop {
            // Unanchored search: a new thread starts at every position.
            self.add(&mut current, &mut stack, 0, prev, cur);
            for &pc in &current.dense {
                match &self.insts[pc as usize] {
                    Inst::Match => return true,
                    Inst::Ranges(ranges) => {
                        if let Some(c) = cur
                            && in_ranges(ranges, c)
                        {
                            stack.push(pc + 1);
                        }
                    }
                    _ => {}
                }
            }
            let Some(c) = cur else { return false };
            let after = chars.next();
            let stepped = core::mem::take(&mut stack);
            for pc in stepped.iter().copied() {
                self.add(&mut next, &mut stack, pc, Some(c), after);
            }
            stack = stepped;
            stack.clear();
            core::mem::swap(&mut current, &mut next);
            next.dense.clear();
            prev = Some(c);
            cur = after;
        }
    }

    /// Adds `pc` and everything reachable from it without consuming a character.
    fn add(
        &self,
        set: &mut Threads,
        stack: &mut Vec<u32>,
        pc: u32,
        prev: Option<char>,
        next: Option<char>,
    ) {
        let base = stack.len();
        stack.push(pc);
        while stack.len() > base {
            let Some(pc) = stack.pop() else { break };
            if set.contains(pc) {
                continue;
            }
            set.insert(pc);
            match &self.insts[pc as usize] {
                Inst::Jmp(t) => stack.push(*t),
                Inst::Split(a, b) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Inst::Assert(look) => {
                    if look.holds(prev, next) {
                        stack.push(pc + 1);
                    }
                }
                Inst::Ranges(_) | Inst::Match => {}
            }
        }
    }
}

fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                core::cmp::Ordering::Less
            } else if lo > c {
                core::cmp::Ordering::Greater
            } else {
                core::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(c: char) -> Inst {
        Inst::Ranges(vec![(c as u32, c as u32)])
    }

    #[test]
    fn a_plus_b() {
        // a+b
        let re = Regex {
            insts: vec![ch('a'), Inst::Split(0, 2), ch('b'), Inst::Match],
        };
        re.check().unwrap();
        assert!(re.is_match("xxaab"));
        assert!(re.is_match("ab"));
        assert!(!re.is_match("b"));
        assert!(!re.is_match("aaaa"));
    }

    #[test]
    fn anchors_and_words() {
        // ^a$
        let re = Regex {
            insts: vec![
                Inst::Assert(Look::Start),
                ch('a'),
                Inst::Assert(Look::End),
                Inst::Match,
            ],
        };
        assert!(re.is_match("a"));
        assert!(!re.is_match("ba"));
        assert!(!re.is_match("ab"));
        // \bx\b
        let re = Regex {
            insts: vec![
                Inst::Assert(Look::Word),
                ch('x'),
                Inst::Assert(Look::Word),
                Inst::Match,
            ],
        };
        assert!(re.is_match("a x b"));
        assert!(!re.is_match("axb"));
    }

    #[test]
    fn pathological_pattern_is_linear() {
        // (a|a)*b on a long run of a's: exponential for a backtracker, linear here.
        let re = Regex {
            insts: vec![
                Inst::Split(1, 6),
                Inst::Split(2, 4),
                ch('a'),
                Inst::Jmp(0),
                ch('a'),
                Inst::Jmp(0),
                ch('b'),
                Inst::Match,
            ],
        };
        re.check().unwrap();
        let text: alloc::string::String = core::iter::repeat_n('a', 5000).collect();
        assert!(!re.is_match(&text));
    }

    #[test]
    fn check_refuses_wild_jumps() {
        let re = Regex {
            insts: vec![Inst::Jmp(7)],
        };
        assert_eq!(re.check(), Err(ProgramError::BadRegex));
        let re = Regex {
            insts: vec![ch('a')],
        };
        assert_eq!(re.check(), Err(ProgramError::BadRegex));
    }
}
