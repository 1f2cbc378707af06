//! The compiled form of one Sigma rule, as the compiler writes it and the evaluator reads it.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use rulebox_sdk::{EventKinds, Severity};
use serde::{Deserialize, Serialize};

use crate::regex::Regex;

/// The version of the program encoding; the evaluator refuses any other.
pub const FORMAT_VERSION: u32 = 1;

/// The 16 bytes that mark the evaluator's program locator in its data section. The compiler finds
/// them, then writes the program's address and length into the 8 bytes that follow.
pub const LOCATOR_MAGIC: [u8; 16] = *b"rulebox-sigma-p1";

/// Nesting deeper than this is refused by [`Program::from_bytes`] (the compiler stays far below it).
pub const MAX_DEPTH: usize = 64;

/// One compiled Sigma rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// The rule id (the Sigma `id`, else its title).
    pub id: String,
    /// The rule title, used as the detection title.
    pub title: String,
    /// The rule version (the Sigma `modified` or `date`).
    pub version: String,
    /// From the Sigma `level`.
    pub severity: Severity,
    /// The event kinds the rule's `logsource` maps to.
    pub kinds: EventKinds,
    /// The whole rule: logsource guard and detection condition.
    pub condition: Expr,
}

/// Why a program could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgramError {
    /// The bytes are not a postcard [`Program`].
    Decode,
    /// The program was written for another [`FORMAT_VERSION`].
    Format(u32),
    /// A regular expression jumps outside its instruction list.
    BadRegex,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl core::fmt::Display for ProgramError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProgramError::Decode => f.write_str("the program does not decode"),
            ProgramError::Format(v) => {
                write!(
                    f,
                    "program format {v}, the evaluator reads {FORMAT_VERSION}"
                )
            }
            ProgramError::BadRegex => f.write_str("a regular expression jumps out of range"),
            ProgramError::TooDeep => write!(f, "nesting deeper than {MAX_DEPTH}"),
        }
    }
}

impl Program {
    /// Encodes the program (postcard).
    pub fn to_bytes(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(self)
    }

    /// Decodes and checks a program: its format version, its nesting depth and every regex jump.
    pub fn from_bytes(bytes: &[u8]) -> Result<Program, ProgramError> {
        // The format version comes first, so an old or new evaluator says so instead of misreading.
        let (format, _) =
            postcard::take_from_bytes::<u32>(bytes).map_err(|_| ProgramError::Decode)?;
        if format != FORMAT_VERSION {
            return Err(ProgramError::Format(format));
        }
        let program: Program = postcard::from_bytes(bytes).map_err(|_| ProgramError::Decode)?;
        program.condition.check(0)?;
        Ok(program)
    }
}

/// A boolean expression over an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    /// Always true.
    True,
    /// Always false.
    False,
    /// Every operand holds (true when empty).
    And(Vec<Expr>),
    /// Some operand holds (false when empty).
    Or(Vec<Expr>),
    /// The operand does not hold.
    Not(Box<Expr>),
    /// The event is of one of these kinds.
    Kind(EventKinds),
    /// A test of one field, or of every field (keywords).
    Test(Test),
}

impl Expr {
    fn check(&self, depth: usize) -> Result<(), ProgramError> {
        if depth > MAX_DEPTH {
            return Err(ProgramError::TooDeep);
        }
        match self {
            Expr::And(v) | Expr::Or(v) => v.iter().try_for_each(|e| e.check(depth + 1)),
            Expr::Not(e) => e.check(depth + 1),
            Expr::Test(Test {
                check: Check::Regex(re),
                ..
            }) => re.check(),
            _ => Ok(()),
        }
    }
}

/// One field test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Test {
    /// The field (an event-schema name such as `Image`), or `None` for a keyword: any field's value.
    pub field: Option<String>,
    /// What the value must satisfy.
    pub check: Check,
}

/// What a field value must satisfy. A field the event does not have fails every check but
/// [`Check::Null`] and `Check::Exists(false)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Check {
    /// The value as text matches `pattern`; unless `cased`, the pattern is already case-folded and
    /// the value is folded before the comparison.
    Text {
        /// The pattern.
        pattern: Pattern,
        /// Case-sensitive (the Sigma `cased` modifier).
        cased: bool,
    },
    /// The value as text matches a regular expression somewhere (unanchored unless it anchors itself).
    Regex(Regex),
    /// The value is an IP address inside a network.
    Cidr {
        /// The network address, IPv4 addresses in the first 4 bytes.
        network: [u8; 16],
        /// The prefix length in bits.
        prefix: u8,
        /// Whether the network is IPv4.
        v4: bool,
    },
    /// The value is a whole number (decimal or `0x` hex text, or a number field) comparing to `value`.
    Num {
        /// The comparison.
        op: NumOp,
        /// The right-hand side.
        value: i64,
    },
    /// The field is absent or empty (a Sigma `null` value).
    Null,
    /// The field is present and not empty (`true`), or absent or empty (`false`).
    Exists(bool),
    /// The value compares to another field's value (Sigma `fieldref`).
    FieldRef {
        /// The other field.
        other: String,
        /// How the two compare: [`Pattern`] kinds other than `Glob`, the literal being ignored.
        how: Pattern,
        /// Case-sensitive.
        cased: bool,
    },
}

/// A numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NumOp {
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

/// A text pattern (already case-folded by the compiler unless the check is case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pattern {
    /// The whole value equals the text.
    Exact(String),
    /// The value contains the text.
    Contains(String),
    /// The value starts with the text.
    Prefix(String),
    /// The value ends with the text.
    Suffix(String),
    /// A wildcard pattern (Sigma `*` and `?`).
    Glob(Vec<Glob>),
}

/// One piece of a wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Glob {
    /// Literal text.
    Lit(String),
    /// `*`: any text, possibly empty.
    Any,
    /// `?`: exactly one character.
    One,
}

impl Pattern {
    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Exact(p) => text == p,
            Pattern::Contains(p) => text.contains(p.as_str()),
            Pattern::Prefix(p) => text.starts_with(p.as_str()),
            Pattern::Suffix(p) => text.ends_with(p.as_str()),
            Pattern::Glob(g) => glob_match(g, text),
        }
    }
}

/// The length in bytes of the character starting at byte `i` of `s`.
fn char_len(s: &str, i: usize) -> usize {
    s[i..].chars().next().map_or(1, char::len_utf8)
}

/// Wildcard matching with the classic last-star backtracking: O(pattern × text), no recursion.
fn glob_match(toks: &[Glob], s: &str) -> bool {
    let (mut ti, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(tok) = toks.get(ti) {
            match tok {
                Glob::Any => {
                    star = Some((ti + 1, si));
                    ti += 1;
                    continue;
                }
                Glob::One if si < s.len() => {
                    si += char_len(s, si);
                    ti += 1;
                    continue;
                }
                Glob::Lit(l) if s[si..].starts_with(l.as_str()) => {
                    si += l.len();
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        } else if si == s.len() {
            return true;
        }
        match star {
            Some((t, r)) if r < s.len() => {
                let r = r + char_len(s, r);
                star = Some((t, r));
                ti = t;
                si = r;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn lit(s: &str) -> Glob {
        Glob::Lit(s.into())
    }

    #[test]
    fn globs() {
        let g = vec![lit("a"), Glob::Any, lit("b"), Glob::One, lit("c")];
        assert!(glob_match(&g, "abxc"));
        assert!(glob_match(&g, "a__b_c"));
        assert!(glob_match(&g, "abbbbéc"));
        assert!(!glob_match(&g, "abc"));
        assert!(!glob_match(&g, "xabxc"));
        assert!(glob_match(&[Glob::Any], ""));
        assert!(!glob_match(&[Glob::One], ""));
        assert!(glob_match(&[Glob::Any, lit("x"), Glob::Any], "aaxaa"));
        assert!(!glob_match(&[Glob::Any, lit("x")], "aaxaa"));
    }

    #[test]
    fn decode_refuses_other_formats_and_garbage() {
        let p = Program {
            format: FORMAT_VERSION + 1,
            id: "x".into(),
            title: "t".into(),
            version: "1".into(),
            severity: Severity::Low,
            kinds: EventKinds(1),
            condition: Expr::True,
        };
        let bytes = p.to_bytes().unwrap();
        assert_eq!(
            Program::from_bytes(&bytes),
            Err(ProgramError::Format(FORMAT_VERSION + 1))
        );
        assert_eq!(Program::from_bytes(&[1, 0xff]), Err(ProgramError::Decode));
        let ok = Program {
            format: FORMAT_VERSION,
            ..p
        };
        assert_eq!(Program::from_bytes(&ok.to_bytes().unwrap()), Ok(ok));
    }
}
