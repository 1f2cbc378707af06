//! `rulebox validate`: the release gate. Runs every rule of a bundle (or loose modules) in the
//! production sandbox over its test cases, the recorded corpus, generated and boundary events, and
//! writes a report bound to the bundle's manifest hash and signed by the gate key, which `rulebox
//! bundle sign` requires.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rulebox_runtime::text::printable;
use rulebox_validate::{CorpusSource, FaultFound, ModuleInput, Options, Progress, Report};

use crate::table::{Align, Table};

/// Arguments of `rulebox validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A bundle folder (one with a manifest.json, signed or not), or module files and folders of
    /// modules.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// A runtime configuration file (JSON), as for `rulebox run`. A bundle's per-rule limits
    /// replace its limits for those rules.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Rule test files, or rule folders with a `tests/` folder, or folders of test files; each
    /// file's cases go to the rule it names. Repeatable.
    #[arg(long = "tests")]
    tests: Vec<PathBuf>,
    /// The recorded corpus (a folder with cases/*/event.json). Default: $RULEBOX_SIGMA_CORPUS, else
    /// ../shared/corpus/sigma if it exists; otherwise the report says the corpus was skipped.
    #[arg(long, conflicts_with = "no_corpus")]
    corpus: Option<PathBuf>,
    /// Do not run the recorded corpus (the report says so).
    #[arg(long)]
    no_corpus: bool,
    /// Fail a rule whose worst event uses more than this percentage of its fuel or memory budget.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
    headroom: u32,
    /// Generated events per event kind a rule subscribes to.
    #[arg(long, default_value_t = Options::default().generated_per_kind)]
    generated: u32,
    /// Seed of the event generator.
    #[arg(long, default_value_t = Options::default().seed)]
    seed: u64,
    /// Also write the report (plain JSON, for people) here. A bundle's report is always written
    /// beside the bundle folder, named after it and its manifest hash, signed by `--gate-key`
    /// (where `rulebox bundle sign` looks).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Where the faults found are written, for `rulebox replay`: a quarantine record (one JSON file)
    /// for the first fault of each reason and event source (test, corpus, generated, boundary) of
    /// each rule; an event file (`.jsonl`, for `rulebox run --events`) for a budget hit the rule's
    /// strikes allowed, which has no record.
    #[arg(long, default_value = "rulebox-quarantine")]
    quarantine_dir: PathBuf,
    /// Do not write fault records (the report still lists every fault).
    #[arg(long)]
    no_records: bool,
    /// The gate key (a key file from `rulebox keygen`, held by whoever runs the gate) that signs a
    /// bundle's report. `rulebox bundle sign` refuses a report not signed by a gate key it trusts
    /// (its own signing key, or one named with its `--gate-key`): a report edited by hand is refused.
    #[arg(long)]
    gate_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// The corpus the options ask for, or the reason it is skipped.
fn corpus_source(args: &Args) -> CorpusSource {
    if args.no_corpus {
        return CorpusSource::Skip("--no-corpus".to_owned());
    }
    if let Some(dir) = &args.corpus {
        return CorpusSource::Dir(dir.clone());
    }
    if let Some(dir) = std::env::var_os("RULEBOX_SIGMA_CORPUS") {
        return CorpusSource::Dir(dir.into());
    }
    let default = Path::new("../shared/corpus/sigma");
    if default.join("cases").is_dir() {
        return CorpusSource::Dir(default.to_path_buf());
    }
    CorpusSource::Skip(
        "no corpus found (give --corpus DIR or set RULEBOX_SIGMA_CORPUS; ../shared/corpus/sigma is absent)"
            .to_owned(),
    )
}

fn bundle_dir(paths: &[PathBuf]) -> anyhow::Result<Option<&Path>> {
    let bundles: Vec<&PathBuf> = paths
        .iter()
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    match (bundles.len(), paths.len()) {
        (0, _) => Ok(None),
        (1, 1) => Ok(Some(bundles[0])),
        _ => bail!("validate one bundle folder at a time, without other paths"),
    }
}

/// Runs `rulebox validate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = Options {
        config: crate::load::config(args.config.as_deref())?,
        headroom_percent: args.headroom,
        generated_per_kind: args.generated,
        seed: args.seed,
        corpus: corpus_source(&args),
        tests: args.tests.clone(),
    };
    let bar = if std::io::stderr().is_terminal() && args.format == Format::Text {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} events  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let bundle = bundle_dir(&args.paths)?;
    let mut records = Records::new(
        (!args.no_records).then(|| args.quarantine_dir.clone()),
        bundle,
    );
    let mut on_progress = |p: Progress| match p {
        Progress::Rule { name, events, .. } => {
            bar.inc_length(events);
            bar.set_message(printable(&name).into_owned());
        }
        Progress::Events(n) => bar.inc(n),
        Progress::Fault(found) => records.add(*found),
        _ => {}
    };

    let gate_key = match &args.gate_key {
        Some(path) => Some(
            rulebox_release::read_key_file(path)
                .with_context(|| format!("gate key {}", path.display()))?,
        ),
        None => None,
    };
    let (report, report_path) = match bundle {
        Some(dir) => {
            let report = rulebox_validate::validate_bundle(dir, &options, &mut on_progress)?;
            let path = rulebox_validate::report_path(
                dir,
                report.target.manifest_hash.as_deref().unwrap_or_default(),
            )?;
            let mut attested = rulebox_runtime::content::Signed {
                signed: report,
                signatures: Vec::new(),
            };
            if let Some(key) = &gate_key {
                rulebox_release::add_signature(&mut attested, key)?;
            }
            rulebox_validate::write_attested_report(&path, &attested)
                .with_context(|| format!("cannot write the report {}", path.display()))?;
            if gate_key.is_none() {
                eprintln!(
                    "rulebox validate: the report is not signed (no --gate-key): `rulebox bundle sign` will refuse it"
                );
            }
            (attested.signed, Some(path))
        }
        None => {
            let mut unreadable = Vec::new();
            let mut inputs = Vec::new();
            for file in crate::load::module_files(&args.paths)? {
                let source = file.path.display().to_string();
                match file.bytes {
                    // An engine with its rule data: one input per data file.
                    Ok(bytes) if !file.data.is_empty() => {
                        for data in file.data {
                            let source = format!("{source} + {}", data.path.display());
                            match data.bytes {
                                Ok(data) => inputs.push(ModuleInput {
                                    source,
                                    bytes: bytes.clone(),
                                    limits: None,
                                    declared: None,
                                    data,
                                }),
                                Err(message) => {
                                    unreadable.push(format!("{source}: unreadable: {message}"));
                                }
                            }
                        }
                    }
                    Ok(bytes) => inputs.push(ModuleInput {
                        source,
                        bytes,
                        limits: None,
                        declared: None,
                        data: Vec::new(),
                    }),
                    Err(message) => unreadable.push(format!("{source}: unreadable: {message}")),
                }
            }
            let mut report =
                rulebox_validate::validate_modules(inputs, &options, &mut on_progress)?;
            if !unreadable.is_empty() {
                report.problems.extend(unreadable);
                report.passed = false;
            }
            (report, None)
        }
    };
    bar.finish_and_clear();

    if let Some(path) = &args.report {
        rulebox_validate::write_report(path, &report)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    let report_path = report_path.or_else(|| args.report.clone());
    match args.format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            records.print(true);
        }
        Format::Text => {
            print_table(&report);
            records.print(false);
            print_footer(&report, report_path.as_deref());
        }
    }
    Ok(ExitCode::from(if report.passed {
        super::EXIT_OK
    } else {
        super::EXIT_QUARANTINE
    }))
}

/// `12.3k`, `4.5M`: short numbers for the table.
fn short(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

fn percent(part: u64, whole: u64) -> String {
    format!("{:.1}%", part as f64 * 100.0 / whole.max(1) as f64)
}

fn print_table(report: &Report) {
    let mut table = Table::new(&[
        ("RULE", Align::Left),
        ("SCHEMA", Align::Right),
        ("VERDICT", Align::Left),
        ("EVENTS", Align::Right),
        ("DETECT", Align::Right),
        ("TESTS", Align::Right),
        ("FUEL p50/p99/max (of budget)", Align::Left),
        ("MEMORY (of budget)", Align::Left),
    ]);
    for r in &report.rules {
        table.row(vec![
            r.rule_id.clone().unwrap_or_else(|| r.source.clone()),
            r.schema_version.to_string(),
            if r.passed { "pass" } else { "FAIL" }.to_owned(),
            r.events.total().to_string(),
            r.detections.total().to_string(),
            format!("{}/{}", r.tests.passed, r.tests.cases),
            format!(
                "{}/{}/{} ({})",
                short(r.fuel.p50),
                short(r.fuel.p99),
                short(r.fuel.max),
                percent(r.fuel.max, r.fuel.budget)
            ),
            format!(
                "{:.1} MiB ({})",
                r.memory.high_water as f64 / (1 << 20) as f64,
                percent(r.memory.high_water, r.memory.budget)
            ),
        ]);
    }
    let lines = table.lines();
    println!("{}", lines[0]);
    for (r, line) in report.rules.iter().zip(&lines[1..]) {
        println!("{line}");
        for f in &r.failures {
            println!("    fail: {}", printable(f));
        }
        for c in &r.tests.failed {
            println!("    test {}: {}", printable(&c.case), printable(&c.problem));
        }
        for n in &r.notes {
            println!("    note: {}", printable(n));
        }
    }
    for p in &report.problems {
        println!("problem: {}", printable(p));
    }
}

fn print_footer(report: &Report, report_path: Option<&Path>) {
    println!(
        "corpus: {} ({} events)",
        report.corpus.note, report.corpus.events
    );
    if let Some(path) = report_path {
        println!("report: {}", path.display());
    }
    let failed = report.rules.iter().filter(|r| !r.passed).count();
    println!(
        "rulebox validate: {} ({} of {} rule runs passed, headroom {}%)",
        if report.passed { "PASS" } else { "FAIL" },
        report.rules.len() - failed,
        report.rules.len(),
        report.settings.headroom_percent
    );
}

/// What a fault is written out once for: its rule, reason and event source, and whether it has a
/// record (a budget hit the strikes allowed has none, so it is kept apart: the record of a later
/// quarantine for the same reason is still written).
#[derive(Debug, PartialEq, Eq)]
struct FaultKey {
    rule: String,
    reason: String,
    origin: &'static str,
    record: bool,
}

/// One fault written out, and how many more of its kind were not.
struct Written {
    key: FaultKey,
    /// The first one's event label.
    event: String,
    /// Where it was written (`None` if writing failed).
    path: Option<PathBuf>,
    more: u64,
}

/// The faults found, written out for replay: the first of each rule, reason and event source.
struct Records<'a> {
    dir: Option<PathBuf>,
    bundle: Option<&'a Path>,
    written: Vec<Written>,
    errors: Vec<String>,
}

impl<'a> Records<'a> {
    fn new(dir: Option<PathBuf>, bundle: Option<&'a Path>) -> Records<'a> {
        Records {
            dir,
            bundle,
            written: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn add(&mut self, found: FaultFound) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        let key = FaultKey {
            rule: found.rule_id.clone(),
            reason: found.fault.reason.clone(),
            origin: found.origin,
            record: found.record.is_some(),
        };
        if let Some(w) = self.written.iter_mut().find(|w| w.key == key) {
            w.more += 1;
            return;
        }
        let path = match found.record {
            Some(mut record) => {
                // A bundle's module sources are relative to the bundle folder: make the record's
                // source a path `rulebox replay` can open.
                if let Some(bundle) = self.bundle {
                    record.source = bundle.join(&record.source).display().to_string();
                }
                serde_json::to_vec_pretty(&record)
                    .map_err(anyhow::Error::from)
                    .and_then(|mut bytes| {
                        bytes.push(b'\n');
                        let stem = format!("{}-{}", record.file_stem(), found.origin);
                        crate::output::write_new_file(&dir, &stem, "json", &bytes)
                    })
            }
            None => {
                let stem = format!(
                    "{}-{}-{}",
                    crate::output::file_stem_part(&found.rule_id),
                    found.fault.reason,
                    found.origin
                );
                serde_json::to_vec(&found.event)
                    .map_err(anyhow::Error::from)
                    .and_then(|mut line| {
                        line.push(b'\n');
                        crate::output::write_new_file(&dir, &stem, "jsonl", &line)
                    })
            }
        };
        let path = path.map_err(|e| self.errors.push(format!("{e:#}"))).ok();
        self.written.push(Written {
            key,
            event: found.fault.event,
            path,
            more: 0,
        });
    }

    /// The lines saying what was written, for the text output; with `--format json` they go to
    /// stderr, so that stdout stays one JSON document.
    fn print(&self, to_stderr: bool) {
        let mut lines = Vec::new();
        let written: Vec<(&Written, &PathBuf)> = self
            .written
            .iter()
            .filter_map(|w| w.path.as_ref().map(|p| (w, p)))
            .collect();
        if !written.is_empty() {
            lines.push(
                "faults written for replay (the first of each rule, reason and event source):"
                    .to_owned(),
            );
        }
        for (w, path) in written {
            lines.push(format!(
                "  {} {} on `{}`{}",
                printable(&w.key.rule),
                w.key.reason,
                printable(&w.event),
                if w.more > 0 {
                    format!(" (and {} more {} events)", w.more, w.key.origin)
                } else {
                    String::new()
                }
            ));
            let path = path.display();
            if w.key.record {
                lines.push(format!("    record: {path}"));
                lines.push(format!(
                    "    replay: rulebox replay {path}   (after a fix: --module NEW.wasm)"
                ));
            } else {
                lines.push(format!("    event:  {path}"));
                lines.push(format!(
                    "    rerun:  rulebox run --rules MODULE --events {path}"
                ));
            }
        }
        for line in lines {
            if to_stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
        for e in &self.errors {
            eprintln!("rulebox validate: warning: cannot write a fault record: {e}");
        }
    }
}
