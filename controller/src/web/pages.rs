//! The dashboard's pages, rendered on the server (maud escapes every text and attribute value it
//! is given; attribute values are always quoted). The pages carry no script: refresh is a
//! `<meta http-equiv=refresh>`, and a halt or resume asks for confirmation on a page of its own.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use rulebox_rollout::chart::duration_label;
use rulebox_rollout::{Evaluation, GateConfig, Phase};

use super::diff::RuleDiff;
use super::gates::{GateVerdict, rows};
use crate::operator_api::RolloutView;
use crate::store::{AuditEntry, RolloutSummary};

const STYLE: &str = "body{font-family:sans-serif;margin:1.2em;color:#222;max-width:1180px}\
table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #ccc;padding:3px 8px;\
text-align:left;font-size:13px}th{background:#f2f2f2}td.num{text-align:right}\
.banner{padding:.8em 1em;border-radius:4px;margin:.6em 0;font-size:17px}\
.rolling{background:#e8f0fb;border:2px solid #1f77b4}.halted{background:#fdeaea;border:2px solid #d62728}\
.complete{background:#e9f7ea;border:2px solid #2ca02c}.fail{color:#b00;font-weight:bold}\
.waiting{color:#a60}.pass{color:#1a7f1a}nav a{margin-right:1em}form.inline{display:inline}\
button{font-size:15px;padding:.35em 1em}button.danger{background:#d62728;color:white;border:0}\
.muted{color:#666;font-size:13px}code{font-size:12px}";

/// A wall-clock time (milliseconds since the Unix epoch) as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A page: head, navigation, body.
pub fn page(title: &str, refresh: Option<u64>, operator: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if let Some(secs) = refresh {
                    meta http-equiv="refresh" content=(secs.to_string());
                }
                title { (title) " · rulebox controller" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                nav {
                    a href="/ui" { "Rollouts" }
                    @if let Some(op) = operator {
                        span.muted { "signed in as " b { (op) } " " }
                        a href="/ui/logout" { "sign out" }
                    }
                }
                (body)
            }
        }
    }
}

/// The sign-in form.
pub fn login(next: &str, problem: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(p) = problem { p.fail { (p) } }
            p { "Paste your operator token (the one " code { "rulebox rollout" } " uses), or run "
                code { "rulebox rollout dashboard" } " for a one-time sign-in link." }
            form method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                input type="password" name="token" autocomplete="off" size="70" required;
                " "
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// A page that says what went wrong.
pub fn problem(title: &str, message: &str, operator: Option<&str>) -> Markup {
    page(
        title,
        None,
        operator,
        html! { h1 { (title) } p.fail { (message) } p { a href="/ui" { "Back to the rollouts" } } },
    )
}

/// The list of rollouts.
pub fn list(all: &[RolloutSummary], operator: &str, refresh: u64) -> Markup {
    page(
        "Rollouts",
        Some(refresh),
        Some(operator),
        html! {
            h1 { "Rollouts" }
            @if all.is_empty() { p { "No rollout yet." } }
            @else {
                table {
                    tr { th { "rollout" } th { "release" } th { "phase" } th { "open ring" }
                         th { "current" } th { "started by" } }
                    @for r in all {
                        tr {
                            td { a href=(format!("/ui/rollouts/{}", r.id)) { "rollout " (r.id) } }
                            td.num { (r.release) }
                            td class=(r.phase) { (r.phase) }
                            td.num { @if r.open_ring >= 0 { (r.open_ring) } @else { "-" } }
                            td { @if r.current { "yes" } }
                            td { (r.created_by) }
                        }
                    }
                }
            }
        },
    )
}

/// Everything the page of one rollout shows.
#[derive(Debug)]
pub struct RolloutPage {
    /// The rollout as the API shows it.
    pub view: RolloutView,
    /// Its plan's gates.
    pub gates: GateConfig,
    /// Its newest gate evaluations, newest first, with their audit record.
    pub evaluations: Vec<(AuditEntry, Option<Evaluation>)>,
    /// How many evaluations the rollout has in all.
    pub evaluations_total: usize,
    /// Its newest audit records other than gate evaluations, newest first.
    pub audit: Vec<AuditEntry>,
    /// The rule diff against the previous release (`None`: the plan names none).
    pub diff: Option<Result<RuleDiff, String>>,
    /// The timeline picture.
    pub svg: String,
    /// Per ring, the most hosts that reported GOOD at once (from the timeline).
    pub peak_good: Vec<usize>,
    /// The session's CSRF token.
    pub csrf: String,
}

fn banner(v: &RolloutView, last: Option<&Evaluation>) -> Markup {
    let rings = v.status.rings.len();
    let since = |at: u64| duration_label(at.saturating_sub(v.created_at));
    html! {
        @match &v.status.phase {
            Phase::Rolling { ring, since: s } => {
                div.banner.rolling id="phase" data-phase="rolling" {
                    b { "Rolling: ring " (ring) " of " (rings.saturating_sub(1)) } " open since T+" (since(*s))
                    @if let Some(e) = last { br; span.muted { "last tick: " (e.verdict.to_string()) } }
                }
            }
            Phase::Halted { at, ring, failures, by, reason, reverted } => {
                div.banner.halted id="phase" data-phase="halted" {
                    b { "HALTED in ring " (ring) } " at T+" (since(*at)) " by " b { (by) } ": " (reason)
                    @if !failures.is_empty() {
                        ul id="failing-gates" { @for f in failures { li.fail { (f) } } }
                    }
                    br;
                    @if *reverted { "A signed revert was issued: hosts that took the release go back; this rollout cannot resume." }
                    @else { "No revert issued: the rollout can resume." }
                }
            }
            Phase::Complete { at } => {
                div.banner.complete id="phase" data-phase="complete" {
                    b { "COMPLETE" } ": every ring passed, at T+" (since(*at))
                }
            }
            _ => { div.banner id="phase" { (v.status.phase.name()) } }
        }
    }
}

fn ring_table(v: &RolloutView, peak_good: &[usize]) -> Markup {
    html! {
        table id="rings" {
            tr { th { "ring" } th { "hosts" } th { "opened" } th { "offered" } th { "took" }
                 th { "GOOD" } th { "silent" } th { "refused" } th { "reverted" } th { "quarantined" }
                 th { "GOOD share" } th { "peak GOOD" } }
            @for (i, r) in v.status.rings.iter().enumerate() {
                @let share = if r.hosts == 0 { 0.0 } else { r.good as f64 / r.hosts as f64 * 100.0 };
                tr data-ring=(i) {
                    td { "ring " (i) }
                    td.num { (r.hosts) }
                    td { @match r.opened_at { Some(at) => { "T+" (duration_label(at.saturating_sub(v.created_at))) }, None => { "not opened" } } }
                    td.num { (v.offered.get(i).copied().unwrap_or(0)) }
                    td.num { (r.took) }
                    td.num { (r.good) }
                    td.num { (r.silent) }
                    td.num { (r.refused) }
                    td.num { (r.reverted) }
                    td.num { (r.quarantined) }
                    td.num.share { (format!("{share:.0}%")) }
                    @let peak = peak_good.get(i).copied().unwrap_or(0).max(r.good);
                    td.num.peak { (format!("{:.0}%", if r.hosts == 0 { 0.0 } else { peak as f64 / r.hosts as f64 * 100.0 })) }
                }
            }
        }
        @if v.offered_late > 0 {
            p.muted { (v.offered_late) " host(s) that enrolled after the start were offered the release after it completed." }
        }
    }
}

fn controls(v: &RolloutView) -> Markup {
    let id = v.id;
    html! {
        @match &v.status.phase {
            Phase::Rolling { .. } => {
                form.inline method="get" action=(format!("/ui/rollouts/{id}/halt")) {
                    button.danger type="submit" id="halt" { "Halt this rollout…" }
                }
            }
            Phase::Halted { reverted: false, .. } => {
                form.inline method="get" action=(format!("/ui/rollouts/{id}/resume")) {
                    button type="submit" id="resume" { "Resume…" }
                }
                " "
                form.inline method="get" action=(format!("/ui/rollouts/{id}/halt")) {
                    button.danger type="submit" id="revert" { "Revert…" }
                }
            }
            _ => {}
        }
    }
}

fn gate_tables(p: &RolloutPage) -> Markup {
    html! {
        h2 { "Gates, per tick" }
        p.muted { "The newest " (p.evaluations.len()) " of " (p.evaluations_total)
                  " evaluations; every one is in the audit (" code { "GET /v1/audit?rollout=" (p.view.id) "&kind=gate_evaluation" } ")." }
        table id="gates" {
            tr { th { "tick" } th { "ring" } th { "metric" } th { "new cohort" } th { "baseline" }
                 th { "threshold" } th { "verdict" } }
            @for (entry, evaluation) in &p.evaluations {
                @let when = format!("T+{}", duration_label(entry.at.saturating_sub(p.view.created_at)));
                @match evaluation {
                    Some(e) => {
                        @let table = rows(e, &p.gates);
                        @for (k, row) in table.iter().enumerate() {
                            tr {
                                @if k == 0 {
                                    td rowspan=(table.len()) { (when) br; span.muted { (e.verdict.to_string()) } }
                                    td rowspan=(table.len()) { (e.ring) }
                                }
                                td { (row.metric) }
                                td.num { (row.cohort) }
                                td.num { (row.baseline) }
                                td { (row.threshold) }
                                td class=(match row.verdict { GateVerdict::Pass => "pass", GateVerdict::Fail => "fail", GateVerdict::Waiting => "waiting" }) { (row.verdict.word()) }
                            }
                        }
                    }
                    None => { tr { td { (when) } td colspan="6" { "(record does not parse)" } } }
                }
            }
        }
    }
}

fn diff_table(diff: &Option<Result<RuleDiff, String>>) -> Markup {
    html! {
        h2 { "What changes" }
        @match diff {
            None => { p { "The plan names no previous release." } }
            Some(Err(e)) => { p.fail { (e) } }
            Some(Ok(d)) => {
                p { "Release " (d.release) " against release " (d.previous) ": "
                    (d.added.len()) " added, " (d.removed.len()) " removed, " (d.changed.len())
                    " changed, " (d.unchanged) " unchanged (manifests' signatures checked against the root)." }
                table id="diff" {
                    tr { th { "change" } th { "rule id" } th { "version before" } th { "version after" } th { "module" } }
                    @for r in &d.added { tr { td.pass { "added" } td { code { (r.id) } } td { "-" } td { (r.version) } td { code { (&r.sha256[..r.sha256.len().min(12)]) } } } }
                    @for r in &d.removed { tr { td.fail { "removed" } td { code { (r.id) } } td { (r.version) } td { "-" } td { "-" } } }
                    @for c in &d.changed {
                        tr { td.waiting { "changed" } td { code { (c.after.id) } } td { (c.before.version) } td { (c.after.version) }
                             td { code { (&c.after.sha256[..c.after.sha256.len().min(12)]) }
                                  @if c.before.version == c.after.version { " " span.fail { "(module changed, version did not)" } } } }
                    }
                }
            }
        }
    }
}

fn audit_table(p: &RolloutPage) -> Markup {
    html! {
        h2 { "Audit" }
        p.muted { "Newest first; gate evaluations are in the table above. Append-only; all of it: "
                  code { "GET /v1/audit?rollout=" (p.view.id) } "." }
        table id="audit" {
            tr { th { "#" } th { "when" } th { "what" } th { "who" } th { "why" } }
            @for a in &p.audit {
                tr { td.num { (a.id) } td { (utc(a.at_real_ms)) } td { (a.kind) } td { (a.actor) } td { (a.reason) } }
            }
        }
    }
}

/// The page of one rollout.
pub fn rollout(p: &RolloutPage, operator: &str, refresh: u64) -> Markup {
    let v = &p.view;
    let last = p.evaluations.first().and_then(|(_, e)| e.as_ref());
    page(
        &format!("Rollout {} (release {})", v.id, v.release),
        Some(refresh),
        Some(operator),
        html! {
            h1 { "Rollout " (v.id) ": release " (v.release)
                 @if let Some(prev) = v.status.previous { span.muted { " (previous: " (prev) ")" } } }
            p.muted { "started by " (v.created_by) "; manifest SHA-256 " code { (v.manifest_sha256) }
                      "; controller time T+" (duration_label(v.now.saturating_sub(v.created_at))) }
            (banner(v, last))
            (controls(v))
            h2 { "Rings" }
            (ring_table(v, &p.peak_good))
            h2 { "Timeline" }
            div id="timeline" { (PreEscaped(&p.svg)) }
            (gate_tables(p))
            (diff_table(&p.diff))
            (audit_table(p))
        },
    )
}

/// What a confirmation page asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Halt (optionally with a revert).
    Halt,
    /// Resume.
    Resume,
}

/// The confirmation page of `action` on `v`.
pub fn confirm(v: &RolloutView, action: Action, csrf: &str, operator: &str) -> Markup {
    let (verb, path) = match action {
        Action::Halt => ("Halt", format!("/ui/rollouts/{}/halt", v.id)),
        Action::Resume => ("Resume", format!("/ui/rollouts/{}/resume", v.id)),
    };
    page(
        &format!("{verb} rollout {}", v.id),
        None,
        Some(operator),
        html! {
            h1 { (verb) " rollout " (v.id) " (release " (v.release) ")?" }
            p { "Currently: " b { (v.status.phase.name()) } ". This is recorded in the audit with your name and reason." }
            form method="post" action=(path) {
                input type="hidden" name="csrf" value=(csrf);
                p { label { "Reason (required): " input type="text" name="reason" size="80" maxlength="1024" required; } }
                @if action == Action::Halt {
                    p { label { input type="checkbox" name="revert" value="yes";
                        " Also issue a signed revert: every host that took release " (v.release)
                        " goes back to the previous release, and this rollout can never resume." } }
                }
                button.danger[action == Action::Halt] type="submit" id="confirm" { "Yes, " (verb.to_lowercase()) }
                " "
                a href=(format!("/ui/rollouts/{}", v.id)) { "No, go back" }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::diff::{Changed, RuleDiff, RuleRef};
    use super::{diff_table, utc};

    #[test]
    fn hostile_rule_ids_and_versions_are_escaped_in_the_diff() {
        let rule = |id: &str, version: &str| RuleRef {
            id: id.to_owned(),
            version: version.to_owned(),
            sha256: "<b>".to_owned(),
        };
        let d = RuleDiff {
            previous: 41,
            release: 42,
            added: vec![rule("<script>alert(1)</script>", "1\" onmouseover=\"x")],
            removed: vec![rule("a&b", "<i>")],
            changed: vec![Changed {
                before: rule("c", "1"),
                after: rule("c", "1"),
            }],
            unchanged: 0,
        };
        let html = diff_table(&Some(Ok(d))).into_string();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("1&quot; onmouseover=&quot;x"));
        assert!(html.contains("a&amp;b") && html.contains("&lt;i&gt;"));
        assert!(!html.contains("<script") && !html.contains("<i>") && !html.contains("<b>"));
        assert!(html.contains("module changed, version did not"));
        let problem = diff_table(&Some(Err("release 41: <oops>".to_owned()))).into_string();
        assert!(problem.contains("&lt;oops&gt;"));
    }

    #[test]
    fn wall_clock_times_are_civil_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_135_829_000), "2026-12-01 14:37:09 UTC");
    }
}
