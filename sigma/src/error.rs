//! What can go wrong compiling a Sigma rule.

/// Why a Sigma rule was refused. Every variant names the construct, so a rule author knows what to
/// change; a rule is never compiled into something that matches differently from what it says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigmaError {
    /// The text is not YAML.
    #[error("the rule is not valid YAML: {0}")]
    Yaml(String),
    /// The file holds several YAML documents (a Sigma rule collection), or none.
    #[error("expected exactly one YAML document (one rule), found {0}")]
    Documents(usize),
    /// A required key is missing.
    #[error("the rule has no `{0}`")]
    Missing(&'static str),
    /// A key has the wrong type or an invalid value.
    #[error("`{key}` {problem}")]
    Invalid {
        /// Where (`detection.selection.Image|endswith`, `level`, ...).
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A Sigma construct this compiler does not support (correlations, aggregations, `near`, ...).
    #[error("unsupported {0}")]
    Unsupported(String),
    /// A field modifier this compiler does not support, or a combination it cannot honour.
    #[error("unsupported modifier `|{modifier}` on `{field}`{detail}")]
    UnsupportedModifier {
        /// The field (with its modifiers) as the rule wrote it.
        field: String,
        /// The modifier.
        modifier: String,
        /// More about why, if any (starts with `: `).
        detail: String,
    },
    /// A `logsource` that maps onto no rulebox event kind.
    #[error("unsupported logsource {0}: no rulebox event kind carries these events")]
    Logsource(String),
    /// The condition does not parse.
    #[error("condition `{condition}`: {problem}")]
    Condition {
        /// The condition text.
        condition: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A regular expression this compiler cannot run (or that does not parse).
    #[error("regular expression `{pattern}` on `{field}`: {problem}")]
    Regex {
        /// The field.
        field: String,
        /// The expression.
        pattern: String,
        /// What is unsupported or wrong.
        problem: String,
    },
    /// The rule expands past a size limit (wildcard alternatives, regex instructions, program bytes).
    #[error("{what} is too large: {size} (limit {limit})")]
    TooLarge {
        /// What grew.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The evaluator module given to [`build_module`](crate::build_module) is not one the compiler
    /// can embed a program into.
    #[error("the evaluator module cannot take a program: {0}")]
    Evaluator(String),
}

impl SigmaError {
    /// What kind of refusal this is, without the parts that name one rule (its keys, values and
    /// patterns): the line a summary of many refusals groups them by, such as `unsupported
    /// logsource `product: windows, service: dns-server``, `unsupported modifier `|expand``,
    /// `regular expression: its automaton needs more than 2097152 transitions`.
    pub fn reason(&self) -> String {
        match self {
            SigmaError::Yaml(_) => "not valid YAML".into(),
            SigmaError::Documents(_) => "not exactly one YAML document (a rule collection)".into(),
            SigmaError::Missing(what) => format!("no `{what}`"),
            SigmaError::Invalid { problem, .. } => format!("invalid: {problem}"),
            SigmaError::Unsupported(what) => format!("unsupported {what}"),
            SigmaError::UnsupportedModifier { modifier, .. } => {
                format!("unsupported modifier `|{modifier}`")
            }
            SigmaError::Logsource(what) => format!("unsupported logsource {what}"),
            SigmaError::Condition { problem, .. } => format!("condition: {problem}"),
            SigmaError::Regex { problem, .. } => format!("regular expression: {problem}"),
            SigmaError::TooLarge { what, limit, .. } => format!("{what} over {limit}"),
            SigmaError::Evaluator(_) => "the evaluator module cannot take a program".into(),
        }
    }

    pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> SigmaError {
        SigmaError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}
