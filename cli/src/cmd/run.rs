//! `rulebox run`: load every module in a folder, stream events through them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rulebox_runtime::events::EventReader;
use rulebox_runtime::text::printable;
use rulebox_runtime::{BatchOutcome, RuleSet, RuleState, Runtime};

use crate::output;
use crate::table::{Align, Table};

/// Events per batch handed to the rules when reading a file.
const BATCH: usize = 64;

/// Arguments of `rulebox run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A folder of rule modules (`*.wasm`), or module files; may be given more than once.
    #[arg(long, required = true, num_args = 1..)]
    rules: Vec<PathBuf>,
    /// The events: rulebox JSON lines or Windows event JSON (evtx_dump style), told apart per
    /// record. Several files are read one after another (`--events a.jsonl b.json`, or the flag
    /// repeated), and each output line's `event` then names its `file`; `-` reads standard input.
    #[arg(long, required = true, num_args = 1..)]
    events: Vec<PathBuf>,
    /// A runtime configuration file (JSON): limits for every rule and per rule id.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where quarantine records are written (one JSON file per record, for `rulebox replay`).
    #[arg(long, default_value = "rulebox-quarantine")]
    quarantine_dir: PathBuf,
    /// Do not write quarantine records to disk (alerts are still printed).
    #[arg(long)]
    no_records: bool,
}

/// Runs `rulebox run`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let modules = crate::load::module_files(&args.rules)?;
    let config = crate::load::config(args.config.as_deref())?;
    let runtime = Runtime::new(config).context("cannot start the runtime")?;
    if args.events.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        anyhow::bail!("standard input (`-`) can be given to --events only once");
    }
    // Every file is opened before any event runs, so a missing one is an error before any output.
    let mut inputs: Vec<(String, Box<dyn BufRead + Send>)> = Vec::new();
    for path in &args.events {
        if path.as_os_str() == "-" {
            inputs.push(("-".to_owned(), Box::new(BufReader::new(std::io::stdin()))));
        } else {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open events file {}", path.display()))?;
            inputs.push((path.display().to_string(), Box::new(BufReader::new(file))));
        }
    }
    let several = inputs.len() > 1;
    let records_dir = (!args.no_records).then_some(args.quarantine_dir);
    let rt = runtime.clone();
    runtime.run_sandboxed(move |thread| -> anyhow::Result<ExitCode> {
        let mut set = RuleSet::new(&rt);
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut rejected = Vec::new();
        let mut unreadable_modules = Vec::new();
        let sources: Vec<String> = modules
            .iter()
            .map(|m| m.path.display().to_string())
            .collect();
        let mut readable: Vec<(&[u8], &str)> = Vec::new();
        let mut engines: Vec<(&[u8], &str, &[crate::load::DataFile])> = Vec::new();
        for (module, source) in modules.iter().zip(&sources) {
            match &module.bytes {
                Ok(bytes) if !module.data.is_empty() => engines.push((bytes, source, &module.data)),
                Ok(bytes) => readable.push((bytes, source)),
                Err(message) => {
                    let alert = serde_json::json!({
                        "type": "alert", "alert": "module_unreadable", "severity": "high",
                        "path": source, "message": message,
                    });
                    output::line(&mut out, &alert)?;
                    unreadable_modules.push(message.clone());
                }
            }
        }
        // Loaded together: a rule id two files claim is refused for both (one alert naming both).
        let folder = set.load_folder(thread, &readable);
        for claim in &folder.duplicates {
            output::line(&mut out, &output::duplicate(claim))?;
        }
        for record in folder.refused {
            let path = save(records_dir.as_deref(), &record);
            if record.reason != rulebox_runtime::Reason::DuplicateId {
                let alert = rulebox_runtime::Alert::RuleQuarantined(record.clone());
                output::line(
                    &mut out,
                    &output::alert(&alert, &serde_json::Value::Null, path.as_deref()),
                )?;
            }
            rejected.push((record, path));
        }
        // Engines whose rules are data: compiled once, one pack per data file.
        for record in crate::load::load_engines(thread, &mut set, &engines, &mut |message| {
            let alert = serde_json::json!({
                "type": "alert", "alert": "module_unreadable", "severity": "high",
                "message": message,
            });
            output::line(&mut out, &alert)
        })? {
            let path = save(records_dir.as_deref(), &record);
            let alert = rulebox_runtime::Alert::RuleQuarantined(record.clone());
            output::line(
                &mut out,
                &output::alert(&alert, &serde_json::Value::Null, path.as_deref()),
            )?;
            rejected.push((record, path));
        }

        let mut batch_out = BatchOutcome::default();
        let (mut read, mut unreadable, mut refused) = (0u64, Capped::default(), Capped::default());
        let mut quarantined = Vec::new();
        for (name, input) in inputs {
            // Where a line is, in messages: `line 7`, or `b.jsonl line 7` when several files are read.
            let at = |line: usize| {
                if several {
                    format!("{name} line {line}")
                } else {
                    format!("line {line}")
                }
            };
            // Events are handed to the rules in batches (a rule pack is called once per batch);
            // from standard input one at a time, so that each detection is printed as its event
            // arrives.
            let batch = if name == "-" { 1 } else { BATCH };
            let mut reader = EventReader::new(input);
            let (mut events, mut lines) = (Vec::with_capacity(batch), Vec::with_capacity(batch));
            loop {
                events.clear();
                lines.clear();
                for item in reader.by_ref() {
                    match item {
                        Ok(item) => {
                            read += 1;
                            events.push(item.event);
                            lines.push(item.line);
                            if events.len() == batch {
                                break;
                            }
                        }
                        Err(e) => unreadable.push(if several {
                            format!("{name}: {e}")
                        } else {
                            e.to_string()
                        }),
                    }
                }
                if events.is_empty() {
                    break;
                }
                set.process_batch(thread, &events, &mut batch_out);
                for ((ev, &line), result) in events.iter().zip(&lines).zip(batch_out.iter()) {
                    let outcome = match result {
                        Ok(outcome) => outcome,
                        Err(e) => {
                            refused.push(format!("{}: {e}", at(line)));
                            continue;
                        }
                    };
                    if outcome.detections.is_empty() && outcome.alerts.is_empty() {
                        continue;
                    }
                    let mut event = output::event_ref(ev, line);
                    if several {
                        event["file"] = serde_json::Value::String(name.clone());
                    }
                    for d in &outcome.detections {
                        output::line(&mut out, &output::detection(d, &event))?;
                    }
                    for alert in &outcome.alerts {
                        let path = match alert {
                            rulebox_runtime::Alert::RuleQuarantined(record) => {
                                let path = save(records_dir.as_deref(), record);
                                quarantined.push((record.clone(), at(line), path.clone()));
                                path
                            }
                            _ => None,
                        };
                        output::line(&mut out, &output::alert(alert, &event, path.as_deref()))?;
                    }
                }
                out.flush()?;
            }
        }
        out.flush()?;
        drop(out);

        // The summary, for people, on stderr.
        let stats = set.stats();
        let mut err = std::io::stderr().lock();
        writeln!(
            err,
            "rulebox run: {read} events read, {} unreadable, {} refused; {} detections",
            unreadable.count, refused.count, stats.detections
        )?;
        writeln!(
            err,
            "rules: {} loaded, {} active, {} quarantined, {} rejected at load",
            set.rules().count(),
            set.active_count(),
            quarantined.len(),
            rejected.len()
        )?;
        match set.index_status() {
            rulebox_runtime::IndexStatus::None => {}
            rulebox_runtime::IndexStatus::Current { packs, rules } => writeln!(
                err,
                "shared prefilter index: in use for {packs} packs ({rules} rules), {} events scanned",
                stats.index_scans
            )?,
            rulebox_runtime::IndexStatus::Stale(why) => writeln!(
                err,
                "shared prefilter index: not used, each pack ran its own prefilter: {}",
                rulebox_runtime::text::Escaped(&why)
            )?,
            rulebox_runtime::IndexStatus::Stopped(why) => writeln!(
                err,
                "shared prefilter index: stopped after {} events, each pack ran its own prefilter: {}",
                stats.index_scans,
                rulebox_runtime::text::Escaped(&why)
            )?,
            _ => {}
        }
        let mut table = Table::new(&[
            ("  RULE", Align::Left),
            ("VERSION", Align::Left),
            ("STATE", Align::Left),
            ("EVENTS", Align::Right),
            ("DETECTIONS", Align::Right),
        ]);
        for (info, state, rs) in set.rules() {
            let state = match state {
                RuleState::Active => "active".to_owned(),
                RuleState::Quarantined(r) => format!("QUARANTINED ({})", r.reason),
                _ => "unknown".to_owned(),
            };
            table.row(vec![
                format!("  {}", info.id),
                info.version.clone(),
                state,
                rs.events.to_string(),
                rs.detections.to_string(),
            ]);
        }
        if set.rules().next().is_some() {
            for line in table.lines() {
                writeln!(err, "{line}")?;
            }
        }
        for (record, at, path) in &quarantined {
            writeln!(
                err,
                "quarantined {} {} at event {at}: {}: {}",
                printable(&record.rule_id),
                printable(&record.rule_version),
                record.reason,
                printable(&record.message)
            )?;
            if let Some(p) = path {
                writeln!(
                    err,
                    "  record: {} (replay with: rulebox replay {})",
                    p.display(),
                    p.display()
                )?;
            }
        }
        for (record, path) in &rejected {
            writeln!(
                err,
                "rejected {}: {}: {}",
                printable(&record.source),
                record.reason,
                printable(&record.message)
            )?;
            if let Some(p) = path {
                writeln!(err, "  record: {}", p.display())?;
            }
        }
        unreadable.print(&mut err, "unreadable input")?;
        refused.print(&mut err, "refused events")?;
        for message in &unreadable_modules {
            writeln!(err, "unreadable module: {}", printable(message))?;
        }
        Ok(ExitCode::from(
            if quarantined.is_empty() && rejected.is_empty() && unreadable_modules.is_empty() {
                super::EXIT_OK
            } else {
                super::EXIT_QUARANTINE
            },
        ))
    })
}

/// A count of problems, with the first few messages kept for the summary (the count is exact; the
/// memory used does not grow with the input).
#[derive(Default)]
struct Capped {
    count: u64,
    first: Vec<String>,
}

impl Capped {
    const SHOWN: usize = 20;

    fn push(&mut self, message: String) {
        self.count += 1;
        if self.first.len() < Self::SHOWN {
            self.first.push(message);
        }
    }

    fn print(&self, err: &mut impl Write, what: &str) -> std::io::Result<()> {
        for item in &self.first {
            writeln!(err, "{what}: {}", printable(item))?;
        }
        let shown = u64::try_from(self.first.len()).unwrap_or(u64::MAX);
        if self.count > shown {
            writeln!(err, "{what}: ... and {} more", self.count - shown)?;
        }
        Ok(())
    }
}

fn save(dir: Option<&Path>, record: &rulebox_runtime::QuarantineRecord) -> Option<PathBuf> {
    let dir = dir?;
    match output::write_record(dir, record) {
        Ok(path) => Some(path),
        Err(e) => {
            eprintln!("rulebox: warning: cannot write quarantine record: {e:#}");
            None
        }
    }
}
