//! `rulebox demo`: the whole story on built-in content.
//!
//! Eight real detection rules run next to a bad content update (one rule per fault class, including
//! the 21-fields-for-20-values read of July 2024). The bad rules are refused or quarantined one by one;
//! the host stays up, every event is processed, and every good rule still detects its attack.

use std::io::{BufReader, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use rulebox_example_artifacts::{ALL, ArtifactKind};
use rulebox_runtime::events::EventReader;
use rulebox_runtime::{Alert, Outcome, RuleSet, RuleState, Runtime, RuntimeConfig};

/// The demo's events: an intrusion on one workstation, benign activity, and one record cut short.
const EVENTS: &str = rulebox_example_artifacts::DEMO_EVENTS;

/// Arguments of `rulebox demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also print every detection and alert as a JSON line (the `rulebox run` format).
    #[arg(long)]
    json: bool,
}

/// Runs the demo. Exits non-zero if any part of the story does not hold.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let records_dir = std::env::temp_dir().join(format!("rulebox-demo-{}", std::process::id()));
    let rt = runtime.clone();
    let dir = records_dir.clone();
    runtime.run_sandboxed(move |thread| story(&rt, thread, &dir, args.json))
}

fn story(
    rt: &Runtime,
    thread: &rulebox_runtime::SandboxThread,
    records_dir: &std::path::Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut say = std::io::stdout().lock();
    writeln!(
        say,
        "rulebox demo: detection content as sandboxed WebAssembly\n"
    )?;
    writeln!(
        say,
        "1. Loading content: {} detection rules and a bad content update of {} rules,",
        ALL.iter().filter(|a| a.kind == ArtifactKind::Good).count(),
        ALL.iter()
            .filter(|a| a.kind == ArtifactKind::Faulty)
            .count()
    )?;
    writeln!(
        say,
        "   each in its own sandbox (fuel, memory, stack and time limits)."
    )?;
    let mut set = RuleSet::new(rt);
    let mut good_ids = Vec::new();
    let mut faulty_ids = Vec::new();
    let mut rejected = 0;
    for artifact in ALL
        .iter()
        .filter(|a| matches!(a.kind, ArtifactKind::Good | ArtifactKind::Faulty))
    {
        let source = format!("builtin:{}", artifact.name);
        match set.load(thread, artifact.bytes, &source) {
            Ok(info) => {
                let kinds: Vec<_> = info.subscriptions.iter().map(|k| k.name()).collect();
                writeln!(
                    say,
                    "   loaded    {:<28} {:<6} {:>6} bytes  on {}",
                    info.id,
                    info.version,
                    artifact.bytes.len(),
                    kinds.join(", ")
                )?;
                match artifact.kind {
                    ArtifactKind::Good => good_ids.push(info.id.clone()),
                    _ => faulty_ids.push(info.id.clone()),
                }
            }
            Err(record) => {
                rejected += 1;
                writeln!(
                    say,
                    "   REFUSED   {:<28} {}: {}",
                    artifact.name, record.reason, record.message
                )?;
                if artifact.kind == ArtifactKind::Good {
                    bail!("a good rule was refused: {}", record.message);
                }
            }
        }
    }

    writeln!(
        say,
        "\n2. Streaming the events of an intrusion (and ordinary activity) through every rule:"
    )?;
    let mut reader = EventReader::new(BufReader::new(EVENTS.as_bytes()));
    let mut outcome = Outcome::default();
    let (mut events, mut unreadable) = (0u64, 0u64);
    let mut detected: Vec<String> = Vec::new();
    let mut quarantined = Vec::new();
    for item in &mut reader {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                unreadable += 1;
                writeln!(
                    say,
                    "   [input]     unreadable record, counted and skipped: {e}"
                )?;
                continue;
            }
        };
        events += 1;
        set.process_into(thread, &item.event, &mut outcome)
            .context("processing a demo event")?;
        let event_ref = crate::output::event_ref(&item.event, item.line);
        for d in &outcome.detections {
            writeln!(
                say,
                "   [detection] {:<8} {:<26} {} (line {}, {} pid {})",
                d.detection.severity.name(),
                d.rule.id,
                d.detection.title,
                item.line,
                item.event.host,
                item.event.pid
            )?;
            if json {
                crate::output::line(&mut say, &crate::output::detection(d, &event_ref))?;
            }
            if !detected.contains(&d.rule.id) {
                detected.push(d.rule.id.clone());
            }
        }
        for alert in &outcome.alerts {
            if let Alert::RuleQuarantined(record) = alert {
                let path = crate::output::write_record(records_dir, record).ok();
                writeln!(
                    say,
                    "   [ALERT]     rule quarantined: {:<20} {}: {}",
                    record.rule_id,
                    record.reason,
                    first_line(&record.message)
                )?;
                if json {
                    crate::output::line(
                        &mut say,
                        &crate::output::alert(alert, &event_ref, path.as_deref()),
                    )?;
                }
                quarantined.push((record.clone(), path));
            }
        }
    }

    writeln!(say, "\n3. What happened:")?;
    let all_detected = good_ids.iter().all(|id| detected.contains(id));
    let all_contained = faulty_ids.iter().all(|id| !set.is_active(id));
    writeln!(
        say,
        "   the host is alive: {events} events processed, {unreadable} unreadable record reported, none dropped"
    )?;
    writeln!(
        say,
        "   {} of {} good rules detected their attack; all still active: {}",
        good_ids.iter().filter(|id| detected.contains(id)).count(),
        good_ids.len(),
        good_ids.iter().all(|id| set.is_active(id))
    )?;
    writeln!(
        say,
        "   bad content contained: {rejected} refused at load, {} quarantined at run time, each alone:",
        quarantined.len()
    )?;
    for (info, state, _) in set.rules() {
        if let RuleState::Quarantined(r) = state {
            writeln!(say, "     {:<22} {}", info.id, r.reason)?;
        }
    }
    writeln!(
        say,
        "   every quarantine raised an alert with the event that triggered it (a silenced rule is never silent)"
    )?;

    if let Some((record, Some(path))) = quarantined
        .iter()
        .find(|(r, _)| r.rule_id.contains("field-count"))
        .or(quarantined.first())
    {
        writeln!(
            say,
            "\n4. Replaying the record of `{}` ({}):",
            record.rule_id,
            path.display()
        )?;
        let module = ALL
            .iter()
            .find(|a| rulebox_runtime::content_hash(a.bytes) == record.content_hash)
            .map(|a| a.bytes)
            .context("the quarantined module is built in")?;
        let outcome = rulebox_runtime::replay(rt, thread, record, module)?;
        match &outcome {
            rulebox_runtime::ReplayOutcome::Reproduced(f) => writeln!(
                say,
                "   reproduced: {}: {}",
                f.reason,
                first_line(&f.message)
            )?,
            other => writeln!(say, "   NOT reproduced: {other:?}")?,
        }
        writeln!(
            say,
            "   (records are in {}; `rulebox replay <record> --module <wasm>` does the same)",
            records_dir.display()
        )?;
        if !outcome.reproduced() {
            bail!("the replay did not reproduce the fault");
        }
    }

    if !all_detected
        || !all_contained
        || good_ids.is_empty()
        || faulty_ids.is_empty() && rejected == 0
    {
        writeln!(say, "\nthe story did not hold: detected {detected:?}")?;
        return Ok(ExitCode::from(super::EXIT_ERROR));
    }
    writeln!(
        say,
        "\nBad content stopped one rule at a time; the machine never noticed."
    )?;
    Ok(ExitCode::from(super::EXIT_OK))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
