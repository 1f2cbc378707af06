//! The compiled form of one Sigma rule, as the compiler writes it and the evaluator reads it.
//!
//! A program is self-contained: its metadata, the event fields it reads (with the other spellings
//! sources use for them), the automata that answer its text patterns (each runs over one field's
//! value, once per event, answering every pattern of the rule on that field), and the boolean
//! condition over their answers and the few checks that are not patterns (numbers, networks,
//! presence, field references).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use rulebox_sdk::{EventKinds, Severity};
use serde::{Deserialize, Serialize};

use crate::dfa::{Dfa, DfaError};

/// The version of the program encoding; the evaluator refuses any other.
pub const FORMAT_VERSION: u32 = 4;

/// The 16 bytes that mark the evaluator's program locator in its data section. The compiler finds
/// them, then writes the program's address and length into the 8 bytes that follow.
pub const LOCATOR_MAGIC: [u8; 16] = *b"rulebox-sigma-p1";

/// Nesting deeper than this is refused by [`Program::from_bytes`] (the compiler stays far below it).
pub const MAX_DEPTH: usize = 64;

/// At most this many fields, automata or reported fields in one program.
pub const MAX_ITEMS: usize = u16::MAX as usize;

/// One compiled Sigma rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Program<'a> {
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
    /// The event fields the program reads; [`Expr`], [`Scan`] and [`Program::report`] refer to them by
    /// index.
    pub fields: Vec<FieldSpec>,
    /// The automata: each runs over one field's value (or over every field's, for Sigma keywords) and
    /// answers all of its patterns in that one pass.
    #[serde(borrow)]
    pub scans: Vec<Scan<'a>>,
    /// What the `logsource` requires beyond the kind (a channel, a provider, an event id). Its fields
    /// are not reported as matched.
    pub guard: Expr,
    /// The detection condition.
    pub condition: Expr,
    /// The fields a detection reports, when the rule lists them (Sigma `fields:`). Empty: a detection
    /// reports the fields the condition matched.
    pub report: Vec<u16>,
    /// Literals the condition cannot hold without (the compiler derives them): when the event
    /// lacks them, the rule does not match and nothing else is scanned. A few literals, so it costs
    /// a fast pass where the condition's own scans would not.
    pub gate: Option<Gate>,
    /// What an event must contain for the condition to hold, for the pack's cross-rule prefilter
    /// (`crate::Prefilter`): for every clause, one of its literals. Empty: the compiler could not
    /// bound the rule (a negation, `exists: false`, keywords only, a regular expression without a
    /// literal it needs), and it runs on every event of its kinds.
    pub needs: Vec<Vec<Need>>,
}

/// One literal of a [`Program::needs`] clause: a text that occurs, ignoring ASCII case, in a value
/// of the field (as the program reads it: its names in order, its elements), or of any field (as a
/// keyword scan reads them), of every event the clause holds for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    /// The field (index into [`Program::fields`]), or `None` for every field of the event, read as
    /// a keyword [`Scan`] reads them (Sigma keywords).
    pub field: Option<u16>,
    /// The text (ASCII letters compare without case; every other byte as it is).
    pub text: String,
}

/// What a [`Program::gate`] requires: in the values its scan reads, for every clause, one of the
/// clause's patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    /// The scan (index into [`Program::scans`]).
    pub scan: u16,
    /// The clauses: pattern numbers of the scan.
    pub clauses: Vec<Vec<u16>>,
}

/// One event field a program reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// The names to look the field up by, in order: the first the event has is the field. The first
    /// is the Sigma name (`ThreatName`), the others how sources spell it (`Threat Name`).
    pub names: Vec<String>,
    /// Whether the elements of a list the source flattened under one of the names (`Data[0]`,
    /// `Data[1]`, ...) are values of the field too: the field then matches when any value does.
    pub elements: bool,
}

/// An automaton over the values of one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan<'a> {
    /// The field (index into [`Program::fields`]), or `None` for every field of the event (Sigma
    /// keywords: a pattern matches when it matches some field's value).
    pub field: Option<u16>,
    /// The automaton; its pattern numbers are what [`Expr::Match`] names.
    #[serde(borrow)]
    pub dfa: Dfa<'a>,
}

/// Why a program could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgramError {
    /// The bytes are not a postcard [`Program`].
    Decode,
    /// The program was written for another [`FORMAT_VERSION`].
    Format(u32),
    /// An automaton is malformed.
    Dfa(DfaError),
    /// An expression names a field, automaton or pattern that does not exist.
    BadIndex,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_ITEMS`] fields, automata or reported fields.
    TooMany,
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
            ProgramError::Dfa(e) => write!(f, "an automaton is malformed: {e}"),
            ProgramError::BadIndex => {
                f.write_str("an expression names a field, automaton or pattern that does not exist")
            }
            ProgramError::TooDeep => write!(f, "nesting deeper than {MAX_DEPTH}"),
            ProgramError::TooMany => write!(f, "more than {MAX_ITEMS} fields or automata"),
        }
    }
}

impl From<DfaError> for ProgramError {
    fn from(e: DfaError) -> ProgramError {
        ProgramError::Dfa(e)
    }
}

impl<'a> Program<'a> {
    /// Encodes the program (postcard).
    pub fn to_bytes(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(self)
    }

    /// Turns every borrowed table into an owned one.
    pub fn into_owned(self) -> Program<'static> {
        Program {
            scans: self
                .scans
                .into_iter()
                .map(|s| Scan {
                    field: s.field,
                    dfa: s.dfa.into_owned(),
                })
                .collect(),
            format: self.format,
            id: self.id,
            title: self.title,
            version: self.version,
            severity: self.severity,
            kinds: self.kinds,
            fields: self.fields,
            guard: self.guard,
            condition: self.condition,
            report: self.report,
            gate: self.gate,
            needs: self.needs,
        }
    }

    /// Decodes and checks a program: its format version, then [`check`](Self::check). The
    /// automata's transition tables borrow from `bytes`.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Program<'a>, ProgramError> {
        // The format version comes first, so an old or new evaluator says so instead of misreading.
        let (format, _) =
            postcard::take_from_bytes::<u32>(bytes).map_err(|_| ProgramError::Decode)?;
        if format != FORMAT_VERSION {
            return Err(ProgramError::Format(format));
        }
        let program: Program<'a> = postcard::from_bytes(bytes).map_err(|_| ProgramError::Decode)?;
        program.check()?;
        Ok(program)
    }

    /// Checks everything the evaluator relies on: the format version, every automaton (see
    /// [`Dfa::check`]), every index an expression, automaton or report holds, and the nesting depth.
    pub fn check(&self) -> Result<(), ProgramError> {
        if self.format != FORMAT_VERSION {
            return Err(ProgramError::Format(self.format));
        }
        if self.fields.len() > MAX_ITEMS
            || self.scans.len() > MAX_ITEMS
            || self.report.len() > MAX_ITEMS
        {
            return Err(ProgramError::TooMany);
        }
        let field_ok = |f: u16| usize::from(f) < self.fields.len();
        for scan in &self.scans {
            scan.dfa.check()?;
            if scan.field.is_some_and(|f| !field_ok(f)) {
                return Err(ProgramError::BadIndex);
            }
        }
        if self.needs.len() > MAX_ITEMS || self.needs.iter().any(|c| c.len() > MAX_ITEMS) {
            return Err(ProgramError::TooMany);
        }
        if !self.report.iter().all(|&f| field_ok(f))
            || !self
                .needs
                .iter()
                .flatten()
                .all(|n| n.field.is_none_or(field_ok))
            || self.gate.as_ref().is_some_and(|g| {
                self.scans
                    .get(usize::from(g.scan))
                    .is_none_or(|s| g.clauses.iter().flatten().any(|&p| p >= s.dfa.patterns))
            })
        {
            return Err(ProgramError::BadIndex);
        }
        self.guard.check(self, 0)?;
        self.condition.check(self, 0)
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
    /// Pattern `pattern` of automaton `scan` matched its field's value. A field the event does not
    /// have matches no pattern.
    Match {
        /// The automaton (index into [`Program::scans`]).
        scan: u16,
        /// The pattern number within it.
        pattern: u16,
    },
    /// A check of one field that is not a text pattern.
    Check {
        /// The field (index into [`Program::fields`]).
        field: u16,
        /// What its value must satisfy.
        check: Check,
    },
}

impl Expr {
    fn check(&self, program: &Program<'_>, depth: usize) -> Result<(), ProgramError> {
        if depth > MAX_DEPTH {
            return Err(ProgramError::TooDeep);
        }
        let field_ok = |f: u16| usize::from(f) < program.fields.len();
        match self {
            Expr::And(v) | Expr::Or(v) => v.iter().try_for_each(|e| e.check(program, depth + 1)),
            Expr::Not(e) => e.check(program, depth + 1),
            Expr::Match { scan, pattern } => match program.scans.get(usize::from(*scan)) {
                Some(s) if *pattern < s.dfa.patterns => Ok(()),
                _ => Err(ProgramError::BadIndex),
            },
            Expr::Check { field, check } => {
                let other_ok = match check {
                    Check::FieldRef { other, .. } => field_ok(*other),
                    _ => true,
                };
                if field_ok(*field) && other_ok {
                    Ok(())
                } else {
                    Err(ProgramError::BadIndex)
                }
            }
            Expr::True | Expr::False | Expr::Kind(_) => Ok(()),
        }
    }
}

/// What a field value must satisfy, for tests that are not text patterns. A field the event does
/// not have fails every check but [`Check::Null`] and `Check::Exists(false)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Check {
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
        /// The other field (index into [`Program::fields`]).
        other: u16,
        /// How the two compare.
        how: RefOp,
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

/// How a field's value compares to another field's (Sigma `fieldref`, with `contains`, `startswith`
/// or `endswith`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefOp {
    /// The values are equal.
    Equal,
    /// The value contains the other.
    Contains,
    /// The value starts with the other.
    Prefix,
    /// The value ends with the other.
    Suffix,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn program(condition: Expr) -> Program<'static> {
        Program {
            format: FORMAT_VERSION,
            id: "x".into(),
            title: "t".into(),
            version: "1".into(),
            severity: Severity::Low,
            kinds: EventKinds(1),
            fields: vec![FieldSpec {
                names: vec!["Image".into()],
                elements: false,
            }],
            scans: Vec::new(),
            guard: Expr::True,
            condition,
            report: Vec::new(),
            gate: None,
            needs: Vec::new(),
        }
    }

    #[test]
    fn decode_refuses_other_formats_and_garbage() {
        let p = Program {
            format: FORMAT_VERSION + 1,
            ..program(Expr::True)
        };
        let bytes = p.to_bytes().unwrap();
        assert_eq!(
            Program::from_bytes(&bytes),
            Err(ProgramError::Format(FORMAT_VERSION + 1))
        );
        assert_eq!(
            Program::from_bytes(&[u8::try_from(FORMAT_VERSION).unwrap(), 0xff]),
            Err(ProgramError::Decode)
        );
        let ok = program(Expr::True);
        assert_eq!(Program::from_bytes(&ok.to_bytes().unwrap()), Ok(ok));
    }

    #[test]
    fn decode_refuses_dangling_indices_and_deep_nesting() {
        let bad = [
            Expr::Match {
                scan: 0,
                pattern: 0,
            },
            Expr::Check {
                field: 1,
                check: Check::Null,
            },
            Expr::Check {
                field: 0,
                check: Check::FieldRef {
                    other: 9,
                    how: RefOp::Equal,
                    cased: false,
                },
            },
        ];
        for e in bad {
            let bytes = program(e.clone()).to_bytes().unwrap();
            assert_eq!(
                Program::from_bytes(&bytes),
                Err(ProgramError::BadIndex),
                "{e:?}"
            );
        }
        let mut deep = Expr::True;
        for _ in 0..=MAX_DEPTH + 1 {
            deep = Expr::Not(Box::new(deep));
        }
        let bytes = program(deep).to_bytes().unwrap();
        assert_eq!(Program::from_bytes(&bytes), Err(ProgramError::TooDeep));
        let mut p = program(Expr::True);
        p.report = vec![3];
        assert_eq!(
            Program::from_bytes(&p.to_bytes().unwrap()),
            Err(ProgramError::BadIndex)
        );
        let mut p = program(Expr::True);
        p.needs = vec![vec![Need {
            field: Some(1),
            text: "x".into(),
        }]];
        assert_eq!(
            Program::from_bytes(&p.to_bytes().unwrap()),
            Err(ProgramError::BadIndex),
            "a needed literal on a field the program does not have"
        );
    }
}
