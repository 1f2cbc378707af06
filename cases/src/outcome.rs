//! The outcome of one test case, as the native runner and `rulebox test` report it.

use std::fmt;

use crate::file::{Case, CaseFile};
use rulebox_sdk::text::printable;

/// The outcome of one test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    /// The test file's name.
    pub file: String,
    /// The rule id the file names.
    pub rule: String,
    /// The case's name.
    pub case: String,
    /// What differed, or `None` when the case passed.
    pub problem: Option<String>,
    /// Detections the case produced.
    pub detections: u64,
}

impl CaseOutcome {
    /// The outcome of `case` of `file` before it runs: passed, no detections.
    pub fn new(file: &CaseFile, case: &Case) -> CaseOutcome {
        CaseOutcome {
            file: file.file_name(),
            rule: file.rule.clone(),
            case: case.name.clone(),
            problem: None,
            detections: 0,
        }
    }

    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.problem.is_none()
    }
}

/// One line: `ok   <rule> <file>: <case>` or `FAIL <rule> <file>: <case>: <problem>`, with the
/// file's text escaped (a case name cannot move a terminal's cursor).
impl fmt::Display for CaseOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (rule, file, case) = (
            printable(&self.rule),
            printable(&self.file),
            printable(&self.case),
        );
        match &self.problem {
            None => write!(f, "ok   {rule} {file}: {case}"),
            Some(p) => write!(f, "FAIL {rule} {file}: {case}: {}", printable(p)),
        }
    }
}
