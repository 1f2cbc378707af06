//! A rule's detection as the compiler sees it before lowering: the condition over field tests,
//! every modifier applied, patterns still as text (literals, wildcards, regular expressions).
//!
//! Lowering ([`crate::lower`]) turns the text patterns of each field into automata. The literals a
//! pattern needs are plain here, so a cross-rule prefilter can be derived from the same tree.

use regex_syntax::hir::Hir;
use rulebox_sdk::EventKinds;
use rulebox_sigma_eval::{NumOp, RefOp};

/// A boolean expression over field tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
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
    /// A text pattern on a field, or on every field (`None`: Sigma keywords).
    Text {
        /// The field as the rule names it.
        field: Option<String>,
        /// The pattern its value must match.
        pattern: Pattern,
    },
    /// A test of a field that is not a text pattern.
    Check {
        /// The field as the rule names it.
        field: String,
        /// What its value must satisfy.
        check: Check,
    },
}

/// Where a literal must occur in the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// The whole value.
    Exact,
    /// At the start.
    Prefix,
    /// At the end.
    Suffix,
    /// Anywhere.
    Contains,
}

/// One piece of a wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Glob {
    /// Literal text.
    Lit(String),
    /// `*`: any text, possibly empty.
    Any,
    /// `?`: exactly one character.
    One,
}

/// A text pattern. Literal text is already case-folded unless `cased`.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// A literal at a position.
    Literal {
        /// Where.
        position: Position,
        /// The text.
        text: String,
        /// Case-sensitive (Sigma `cased`).
        cased: bool,
    },
    /// A wildcard pattern over the whole value (Sigma `*` and `?`).
    Glob {
        /// The pieces, never two `Any` in a row.
        parts: Vec<Glob>,
        /// Case-sensitive.
        cased: bool,
    },
    /// A regular expression, matching somewhere in the value unless it anchors itself.
    Regex {
        /// The expression as the rule wrote it (for messages).
        source: String,
        /// The parsed expression, over characters.
        hir: Hir,
    },
}

/// A test that is not a text pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// An IP address inside a network.
    Cidr {
        /// The network address, IPv4 addresses in the first 4 bytes.
        network: [u8; 16],
        /// The prefix length in bits.
        prefix: u8,
        /// Whether the network is IPv4.
        v4: bool,
    },
    /// A whole number comparing to `value`.
    Num {
        /// The comparison.
        op: NumOp,
        /// The right-hand side.
        value: i64,
    },
    /// Absent or empty.
    Null,
    /// Present and not empty (`true`), or absent or empty (`false`).
    Exists(bool),
    /// Compares to another field's value.
    FieldRef {
        /// The other field.
        other: String,
        /// How.
        how: RefOp,
        /// Case-sensitive.
        cased: bool,
    },
}

impl Node {
    /// `And` of `terms`, or the single term.
    pub fn all(mut terms: Vec<Node>) -> Node {
        if terms.len() == 1 {
            terms.remove(0)
        } else {
            Node::And(terms)
        }
    }

    /// `Or` of `terms`, or the single term.
    pub fn any(mut terms: Vec<Node>) -> Node {
        if terms.len() == 1 {
            terms.remove(0)
        } else {
            Node::Or(terms)
        }
    }
}
