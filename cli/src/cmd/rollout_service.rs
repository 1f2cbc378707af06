//! `rulebox rollout start | status | watch | halt | resume | audit | dashboard`: the operator's
//! side of the controller service, with table or JSON output and exit codes a script can use:
//!
//! | exit | meaning |
//! |---|---|
//! | 0 | done; for `status` and `watch`, the rollout is complete |
//! | 1 | an error: usage, network, or the controller failed |
//! | 2 | `status`, `watch`: the rollout is halted |
//! | 3 | the controller refused the request (conflict, validation, no such rollout) |
//! | 4 | the operator credential was refused |
//! | 5 | `status`: the rollout is in progress; `watch`: still in progress at `--timeout` |

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use rulebox_controller::{HaltRequest, ResumeRequest, RolloutView, StartRequest};
use rulebox_rollout::{Phase, RolloutPlan};
use serde_json::Value;

use crate::table::{Align, Table};

/// Exit status: the rollout is halted (`status`).
pub const EXIT_HALTED: u8 = 2;
/// Exit status: the controller refused the request.
pub const EXIT_REFUSED: u8 = 3;
/// Exit status: the operator credential was refused.
pub const EXIT_UNAUTHORIZED: u8 = 4;
/// Exit status: the rollout is in progress (`status`).
pub const EXIT_ROLLING: u8 = 5;

/// Where the controller is and who asks.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The controller's URL (default: `$RULEBOX_CONTROLLER`, else http://127.0.0.1:8750).
    #[arg(long)]
    controller: Option<String>,
    /// A file holding the operator's bearer token (`rulebox controller add-operator`; default:
    /// `$RULEBOX_TOKEN_FILE`).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Print the controller's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `rulebox rollout start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    #[command(flatten)]
    conn: Connection,
    /// The release (published in the controller's repository); with `--plan`, must match it.
    #[arg(long)]
    release: Option<u64>,
    /// The release it replaces (what a revert goes back to); without `--plan`.
    #[arg(long)]
    previous: Option<u64>,
    /// The emergency plan (shorter bakes, never below the floors); without `--plan`.
    #[arg(long)]
    emergency: bool,
    /// A plan file (JSON, as `rulebox rollout plan` prints it) instead of the standard plan.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Why, for the audit.
    #[arg(long)]
    reason: String,
}

/// Arguments of `rulebox rollout status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    conn: Connection,
    /// The rollout's id (default: the current rollout).
    id: Option<i64>,
}

/// Arguments of `rulebox rollout halt`.
#[derive(Debug, clap::Args)]
pub struct HaltArgs {
    #[command(flatten)]
    conn: Connection,
    /// The rollout's id.
    id: i64,
    /// Why, for the audit.
    #[arg(long)]
    reason: String,
    /// Also publish a signed revert: hosts that took the release go back, and the release can
    /// never resume.
    #[arg(long)]
    revert: bool,
}

/// Arguments of `rulebox rollout resume`.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    conn: Connection,
    /// The rollout's id.
    id: i64,
    /// Why, for the audit.
    #[arg(long)]
    reason: String,
}

/// Arguments of `rulebox rollout watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    conn: Connection,
    /// The rollout's id (default: the current rollout).
    id: Option<i64>,
    /// Seconds between two looks.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    interval: u64,
    /// Give up after this many seconds (exit 5 if still in progress); default: never.
    #[arg(long)]
    timeout: Option<u64>,
}

/// Arguments of `rulebox rollout dashboard`.
#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    conn: Connection,
}

/// Arguments of `rulebox rollout audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    conn: Connection,
    /// Only this rollout's records.
    id: Option<i64>,
    /// Only records of this kind (gate_evaluation, ring_opened, offer, halt, resume, revert,
    /// revert_published, complete, rollout_started).
    #[arg(long)]
    kind: Option<String>,
    /// Records after this id.
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// At most this many.
    #[arg(long, default_value_t = 1000)]
    limit: i64,
}

/// An answer of the controller.
enum Answer {
    Ok(Value),
    Refused(u16, Value),
}

impl Connection {
    fn url(&self) -> String {
        self.controller
            .clone()
            .or_else(|| std::env::var("RULEBOX_CONTROLLER").ok())
            .unwrap_or_else(|| "http://127.0.0.1:8750".to_owned())
    }

    fn token_file(&self) -> anyhow::Result<PathBuf> {
        self.token_file
            .clone()
            .or_else(|| std::env::var_os("RULEBOX_TOKEN_FILE").map(PathBuf::from))
            .ok_or_else(|| anyhow::anyhow!("--token-file (or RULEBOX_TOKEN_FILE) is required"))
    }
}

fn client(conn: &Connection) -> anyhow::Result<(ureq::Agent, String)> {
    let path = conn.token_file()?;
    let token = rulebox_runtime::content::read_capped_following_links(&path, 4096)
        .map_err(|e| anyhow::anyhow!("cannot read the token file {}: {e}", path.display()))?;
    let token = String::from_utf8(token)
        .context("the token file is not text")?
        .trim()
        .to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    Ok((agent, format!("Bearer {token}")))
}

fn call(
    conn: &Connection,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Answer> {
    let (agent, auth) = client(conn)?;
    let base = conn.url();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let response = match body {
        Some(body) => agent
            .post(&url)
            .header("Authorization", &auth)
            .content_type("application/json")
            .send(serde_json::to_vec(&body)?),
        None if method == "GET" => agent.get(&url).header("Authorization", &auth).call(),
        None => bail!("{method} without a body"),
    };
    let mut response =
        response.with_context(|| format!("cannot reach the controller at {base}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .context("cannot read the controller's answer")?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("the controller's answer (status {status}) is not JSON"))?;
    Ok(if (200..300).contains(&status) {
        Answer::Ok(value)
    } else {
        Answer::Refused(status, value)
    })
}

/// Prints a refusal and gives its exit status.
fn refused(status: u16, body: &Value) -> ExitCode {
    let text = |k: &str| body[k].as_str().unwrap_or("").to_owned();
    eprintln!(
        "rulebox: the controller refused ({status} {}): {}",
        rulebox_cases::printable(&text("error")),
        rulebox_cases::printable(&text("message"))
    );
    match status {
        401 | 403 => ExitCode::from(EXIT_UNAUTHORIZED),
        500..=599 => ExitCode::from(super::EXIT_ERROR),
        _ => ExitCode::from(EXIT_REFUSED),
    }
}

/// `rulebox rollout start`.
pub fn start(args: StartArgs) -> anyhow::Result<ExitCode> {
    let plan = match &args.plan {
        Some(path) => {
            if args.previous.is_some() || args.emergency {
                bail!("--previous and --emergency go with the standard plan, not --plan");
            }
            let plan: RolloutPlan =
                serde_json::from_slice(&super::store::read_operator_file(path, "plan")?)
                    .with_context(|| format!("{} is not a plan", path.display()))?;
            if let Some(r) = args.release
                && r != plan.release
            {
                bail!(
                    "--release {r} but the plan rolls out release {}",
                    plan.release
                );
            }
            plan
        }
        None => {
            let Some(release) = args.release else {
                bail!("--release (or --plan) is required");
            };
            if args.emergency {
                RolloutPlan::emergency(release, args.previous)
            } else {
                RolloutPlan::standard(release, args.previous)
            }
        }
    };
    let body = serde_json::to_value(StartRequest {
        plan,
        reason: args.reason,
    })?;
    match call(&args.conn, "POST", "/v1/rollouts", Some(body))? {
        Answer::Ok(v) => show(&args.conn, &v, false),
        Answer::Refused(s, v) => Ok(refused(s, &v)),
    }
}

/// `rulebox rollout status`.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let path = match args.id {
        Some(id) => format!("/v1/rollouts/{id}"),
        None => "/v1/rollouts/current".to_owned(),
    };
    match call(&args.conn, "GET", &path, None)? {
        Answer::Ok(v) => show(&args.conn, &v, true),
        Answer::Refused(s, v) => Ok(refused(s, &v)),
    }
}

/// A progress bar of `done` out of `of`, `width` cells.
fn bar(done: usize, of: usize, width: usize) -> String {
    let filled = (done.min(of) * width).checked_div(of).unwrap_or(0);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// One line per ring and the phase: what `watch` prints when it changes.
fn progress(view: &RolloutView) -> Vec<String> {
    let mut lines = vec![format!(
        "rollout {} release {}: {}",
        view.id,
        view.release,
        match &view.status.phase {
            Phase::Rolling { ring, .. } => format!("rolling, ring {ring} open"),
            Phase::Halted {
                ring, by, reverted, ..
            } => format!(
                "HALTED in ring {ring} by {}{}",
                rulebox_cases::printable(by),
                if *reverted { ", reverted" } else { "" }
            ),
            Phase::Complete { .. } => "complete".to_owned(),
            _ => "unknown phase".to_owned(),
        }
    )];
    if let Phase::Halted { failures, .. } = &view.status.phase {
        for f in failures {
            lines.push(format!("  failed gate: {}", rulebox_cases::printable(f)));
        }
    }
    for (i, r) in view.status.rings.iter().enumerate() {
        let share = (r.good * 100).checked_div(r.hosts).unwrap_or(0);
        lines.push(format!(
            "  ring {i} {} {share:>3}% GOOD ({} of {}){}: took {}, silent {}, refused {}, reverted {}, quarantined {}",
            bar(r.good, r.hosts, 20),
            r.good,
            r.hosts,
            if r.opened { "" } else { ", not opened" },
            r.took,
            r.silent,
            r.refused,
            r.reverted,
            r.quarantined
        ));
    }
    lines
}

/// `rulebox rollout watch`: prints the rings' progress whenever it changes, until the rollout
/// completes (exit 0) or halts (exit 2), or `--timeout` passes (exit 5). A failed look is
/// reported and retried at the next interval.
pub fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let path = match args.id {
        Some(id) => format!("/v1/rollouts/{id}"),
        None => "/v1/rollouts/current".to_owned(),
    };
    let started = std::time::Instant::now();
    let mut last: Option<Vec<String>> = None;
    let mut failures = 0u32;
    loop {
        match call(&args.conn, "GET", &path, None) {
            Ok(Answer::Ok(v)) => {
                failures = 0;
                let view: RolloutView = serde_json::from_value(v.clone())
                    .context("the controller's answer is not a rollout")?;
                let lines = progress(&view);
                if last.as_ref() != Some(&lines) {
                    if args.conn.json {
                        println!("{}", serde_json::to_string(&v)?);
                    } else {
                        for line in &lines {
                            println!("{line}");
                        }
                    }
                    last = Some(lines);
                }
                match view.status.phase {
                    Phase::Complete { .. } => return Ok(ExitCode::from(super::EXIT_OK)),
                    Phase::Halted { .. } => return Ok(ExitCode::from(EXIT_HALTED)),
                    _ => {}
                }
            }
            Ok(Answer::Refused(s, v)) => return Ok(refused(s, &v)),
            Err(e) => {
                failures += 1;
                eprintln!("warning: cannot reach the controller (attempt {failures}): {e:#}");
            }
        }
        if args
            .timeout
            .is_some_and(|t| started.elapsed() >= Duration::from_secs(t))
        {
            eprintln!("still in progress after {} s", started.elapsed().as_secs());
            return Ok(ExitCode::from(EXIT_ROLLING));
        }
        std::thread::sleep(Duration::from_secs(args.interval));
    }
}

/// `rulebox rollout dashboard`: prints a one-time sign-in link to the controller's dashboard
/// (valid a minute, usable once).
pub fn dashboard(args: DashboardArgs) -> anyhow::Result<ExitCode> {
    match call(
        &args.conn,
        "POST",
        "/v1/ui/signin-codes",
        Some(serde_json::json!({})),
    )? {
        Answer::Ok(v) => {
            let path = v["path"]
                .as_str()
                .context("the controller gave no sign-in path")?;
            if args.conn.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}{path}", args.conn.url().trim_end_matches('/'));
                eprintln!("(a one-time link, valid for a minute; it signs the browser in as you)");
            }
            Ok(ExitCode::from(super::EXIT_OK))
        }
        Answer::Refused(s, v) => Ok(refused(s, &v)),
    }
}

/// `rulebox rollout halt`.
pub fn halt(args: HaltArgs) -> anyhow::Result<ExitCode> {
    let body = serde_json::to_value(HaltRequest {
        reason: args.reason,
        revert: args.revert,
    })?;
    match call(
        &args.conn,
        "POST",
        &format!("/v1/rollouts/{}/halt", args.id),
        Some(body),
    )? {
        Answer::Ok(v) => show(&args.conn, &v, false),
        Answer::Refused(s, v) => Ok(refused(s, &v)),
    }
}

/// `rulebox rollout resume`.
pub fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let body = serde_json::to_value(ResumeRequest {
        reason: args.reason,
    })?;
    match call(
        &args.conn,
        "POST",
        &format!("/v1/rollouts/{}/resume", args.id),
        Some(body),
    )? {
        Answer::Ok(v) => show(&args.conn, &v, false),
        Answer::Refused(s, v) => Ok(refused(s, &v)),
    }
}

/// `rulebox rollout audit`.
pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let mut path = format!("/v1/audit?after={}&limit={}", args.after, args.limit);
    if let Some(id) = args.id {
        path.push_str(&format!("&rollout={id}"));
    }
    if let Some(kind) = &args.kind {
        if !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            bail!("--kind is a record kind such as `halt` or `gate_evaluation`");
        }
        path.push_str(&format!("&kind={kind}"));
    }
    let v = match call(&args.conn, "GET", &path, None)? {
        Answer::Ok(v) => v,
        Answer::Refused(s, v) => return Ok(refused(s, &v)),
    };
    if args.conn.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::from(super::EXIT_OK));
    }
    let mut table = Table::new(&[
        ("id", Align::Right),
        ("at", Align::Right),
        ("rollout", Align::Right),
        ("kind", Align::Left),
        ("who", Align::Left),
        ("why", Align::Left),
    ]);
    for e in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        let s = |k: &str| match &e[k] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        table.row(vec![
            s("id"),
            s("at"),
            s("rollout_id"),
            s("kind"),
            s("actor"),
            s("reason"),
        ]);
    }
    for line in table.lines() {
        println!("{line}");
    }
    Ok(ExitCode::from(super::EXIT_OK))
}

/// Prints a rollout (table or JSON); with `phase_exit`, the exit status says where it is.
fn show(conn: &Connection, v: &Value, phase_exit: bool) -> anyhow::Result<ExitCode> {
    let view: RolloutView =
        serde_json::from_value(v.clone()).context("the controller's answer is not a rollout")?;
    if conn.json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        for line in describe(&view) {
            println!("{line}");
        }
    }
    let code = match (&view.status.phase, phase_exit) {
        (_, false) | (Phase::Complete { .. }, true) => super::EXIT_OK,
        (Phase::Halted { .. }, true) => EXIT_HALTED,
        _ => EXIT_ROLLING,
    };
    Ok(ExitCode::from(code))
}

/// The rollout for people.
fn describe(view: &RolloutView) -> Vec<String> {
    let p = |s: &str| rulebox_cases::printable(s).into_owned();
    let status = &view.status;
    let previous = status
        .previous
        .map_or_else(|| "the baseline".to_owned(), |r| format!("release {r}"));
    let phase = match &status.phase {
        Phase::Rolling { ring, since } => format!(
            "rolling: ring {ring} open for {} s",
            view.now.saturating_sub(*since)
        ),
        Phase::Halted {
            ring,
            by,
            reason,
            reverted,
            ..
        } => format!(
            "HALTED in ring {ring} by {}: {}{}",
            p(by),
            p(reason),
            if *reverted {
                " (signed revert published)"
            } else {
                " (no revert; resumable)"
            }
        ),
        Phase::Complete { at } => format!("complete ({} s ago)", view.now.saturating_sub(*at)),
        _ => "unknown phase".to_owned(),
    };
    let mut lines = vec![
        format!(
            "rollout {}: release {} (replacing {previous}), started by {}",
            view.id,
            status.release,
            p(&view.created_by)
        ),
        phase,
    ];
    let mut table = Table::new(&[
        ("ring", Align::Right),
        ("hosts", Align::Right),
        ("open", Align::Left),
        ("offered", Align::Right),
        ("took", Align::Right),
        ("good", Align::Right),
        ("silent", Align::Right),
        ("refused", Align::Right),
        ("reverted", Align::Right),
        ("fetch failed", Align::Right),
    ]);
    for (i, r) in status.rings.iter().enumerate() {
        table.row(vec![
            i.to_string(),
            r.hosts.to_string(),
            if r.opened { "yes" } else { "no" }.to_owned(),
            view.offered.get(i).copied().unwrap_or(0).to_string(),
            r.took.to_string(),
            r.good.to_string(),
            r.silent.to_string(),
            r.refused.to_string(),
            r.reverted.to_string(),
            r.fetch_failed.to_string(),
        ]);
    }
    lines.extend(table.lines());
    if view.offered_late > 0 {
        lines.push(format!(
            "{} host(s) enrolled after the start and were offered the release on completion",
            view.offered_late
        ));
    }
    if let Some(e) = &view.last_evaluation {
        lines.push(format!("last evaluation: {}", p(&e.reason)));
    }
    lines
}
