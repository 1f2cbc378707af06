//! Rate-limited logging for rules: the `rulebox.log` import and WASI stdout/stderr (written through
//! the host's own `fd_write`, `crate::wasi`).
//!
//! A rule cannot flood the host's log: each rule has a token bucket; messages past it are counted
//! and reported: when suppression starts (one warning per run of suppressed messages, naming the
//! rule), with the next message that gets through (its `suppressed` field), and in the rule's
//! statistics ([`RuleStats::log_suppressed`](crate::RuleStats::log_suppressed)). A message is
//! rule-chosen text: it is logged escaped ([`Escaped`]), so that no newline, carriage return or
//! escape sequence in it reaches an operator's terminal or forges a log line.

use std::sync::Arc;
use std::time::Instant;

use crate::text::Escaped;

/// Longest message logged; longer ones are truncated.
pub const MAX_LOG_MESSAGE: usize = 1024;

/// A token bucket shared by everything one rule logs.
#[derive(Debug)]
pub(crate) struct LogBudget {
    rule: Arc<str>,
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    suppressed: u64,
    pub(crate) suppressed_total: u64,
}

impl LogBudget {
    pub(crate) fn new(rule: Arc<str>, per_second: u32, burst: u32) -> LogBudget {
        LogBudget {
            rule,
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
            suppressed: 0,
            suppressed_total: 0,
        }
    }

    pub(crate) fn set_rule(&mut self, rule: Arc<str>) {
        self.rule = rule;
    }

    /// Logs `message` from `source` at `level` if the budget allows, else counts it.
    pub(crate) fn log(&mut self, source: &'static str, level: u32, message: &str) {
        let rule = self.rule.clone();
        self.log_for(&rule, source, level, message);
    }

    /// Like [`log`](Self::log), naming `rule` (a rule of the pack this budget belongs to) as the
    /// author. The budget is the pack's: its rules share it.
    pub(crate) fn log_for(&mut self, rule: &str, source: &'static str, level: u32, message: &str) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens < 1.0 {
            if self.suppressed == 0 {
                tracing::warn!(
                    target: "rulebox::decision",
                    decision = "log_suppressed",
                    rule = %Escaped(rule),
                    suppressed_total = self.suppressed_total + 1,
                    "rule log messages over the rate limit are suppressed (counted in the rule's \
                     statistics) until one gets through again"
                );
            }
            self.suppressed += 1;
            self.suppressed_total += 1;
            return;
        }
        self.tokens -= 1.0;
        let message = Escaped(truncate(message, MAX_LOG_MESSAGE));
        let suppressed = std::mem::take(&mut self.suppressed);
        match level {
            0 => {
                tracing::error!(target: "rulebox::guest", rule = %Escaped(rule), source, suppressed, "{message}")
            }
            1 => {
                tracing::warn!(target: "rulebox::guest", rule = %Escaped(rule), source, suppressed, "{message}")
            }
            2 => {
                tracing::info!(target: "rulebox::guest", rule = %Escaped(rule), source, suppressed, "{message}")
            }
            3 => {
                tracing::debug!(target: "rulebox::guest", rule = %Escaped(rule), source, suppressed, "{message}")
            }
            _ => {
                tracing::trace!(target: "rulebox::guest", rule = %Escaped(rule), source, suppressed, "{message}")
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_suppresses_floods_and_counts_them() {
        let mut budget = LogBudget::new("r".into(), 1, 3);
        for _ in 0..100 {
            budget.log("log", 2, "hello");
        }
        // 3 from the burst, perhaps one more from refill during the loop.
        assert!(budget.suppressed_total >= 96, "{}", budget.suppressed_total);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(600);
        let t = truncate(&s, MAX_LOG_MESSAGE);
        assert!(t.len() <= MAX_LOG_MESSAGE);
        assert!(s.starts_with(t));
    }
}
