//! Test-only hooks, compiled with the `fault-injection` feature only: never in a shipped build.

use rulebox_runtime::Content;

/// The variable naming a rule id whose presence in content makes the agent abort right before it
/// activates that content: a stand-in for "this content crashes the host at start-up".
pub const CRASH_ON_RULE_ENV: &str = "RULEBOX_TEST_CRASH_ON_RULE";

/// Aborts the process if [`CRASH_ON_RULE_ENV`] names a rule of `content`.
pub(crate) fn crash_if_asked(content: &Content) {
    if let Ok(id) = std::env::var(CRASH_ON_RULE_ENV)
        && content
            .rules()
            .iter()
            .any(|r| r.compiled().source().ends_with(&format!(":{id}")))
    {
        eprintln!("rulebox agent: fault injection: crashing on start-up with rule {id}");
        std::process::abort();
    }
}
