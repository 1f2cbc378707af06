//! `rulebox replay`: re-run a quarantine record against its module, or against a rebuilt module to
//! check a fix.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use rulebox_runtime::text::printable;
use rulebox_runtime::{QuarantineRecord, ReplayOutcome, Runtime, RuntimeConfig, content_hash};

/// Largest record file read (a record holds one event of at most 16 MiB, in base64, twice).
const MAX_RECORD_BYTES: u64 = 64 << 20;

/// Arguments of `rulebox replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A quarantine record (JSON), as written by `rulebox run` and `rulebox validate`.
    record: PathBuf,
    /// The module to replay against. By default the record's own module, found from its `source`
    /// path (an absolute one as it is; a relative one relative to the record's folder, to that
    /// folder's parent, where `run` and `validate` were started when they wrote the default
    /// `rulebox-quarantine/`, and to the current folder): the first whose SHA-256 is the record's
    /// content hash.
    /// A module with another hash (the rule rebuilt after a fix) runs the record's event under the
    /// record's limits to check the fix: the result is `fixed` when it no longer faults.
    #[arg(long)]
    module: Option<PathBuf>,
    /// The rule data of a rule pack loaded with data (an engine's rules); its SHA-256 must match the
    /// record's data hash.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Runs `rulebox replay`. With the record's own module: exits 0 when the recorded fault is
/// reproduced, 2 when it is not. With a rebuilt module (`--module`, another hash): exits 0 when the
/// event runs without a fault (fixed), 2 when it still faults.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = crate::load::read_capped(&args.record, MAX_RECORD_BYTES, "a quarantine record")?;
    let record: QuarantineRecord = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a quarantine record", args.record.display()))?;
    let (module_path, module) = match &args.module {
        Some(path) => (path.clone(), crate::load::read_module(path)?),
        None => find_module(&args.record, &record)?,
    };
    let hash = content_hash(&module);
    let checking_fix = hash != record.content_hash;
    let data = match &args.data {
        Some(path) => crate::load::read_module(path)
            .with_context(|| format!("the rule data {}", path.display()))?,
        None => Vec::new(),
    };
    let runtime = Runtime::new(RuntimeConfig::default())?;
    println!("record:   {}", args.record.display());
    println!(
        "rule:     {} {} ({})",
        printable(&record.rule_id),
        printable(&record.rule_version),
        printable(&record.content_hash)
    );
    if let Some(pack) = &record.pack {
        let which = pack
            .rule_index
            .map_or_else(|| "the pack itself".to_owned(), |i| format!("rule {i}"));
        println!(
            "pack:     {} {} ({which} of {}; rule data {})",
            printable(&pack.id),
            printable(&pack.version),
            pack.rules,
            printable(&pack.data_hash)
        );
    }
    println!(
        "recorded: {}: {}",
        record.reason,
        printable(&record.message)
    );
    if checking_fix {
        println!(
            "module:   {} ({hash}), not the recorded module: checking a fix",
            module_path.display()
        );
    } else {
        println!("module:   {}", module_path.display());
    }
    // The runtime replays a record only against the module it names (by hash); to check a fix the
    // record is pointed at the new module, keeping its event, limits, stack and tick.
    let mut replayed = record.clone();
    replayed.content_hash = hash;
    let rt = runtime.clone();
    let outcome = runtime.run_sandboxed(move |thread| {
        rulebox_runtime::replay_with_data(&rt, thread, &replayed, &module, &data)
    })?;
    let (fault, detections) = match &outcome {
        ReplayOutcome::Reproduced(f) | ReplayOutcome::DifferentFault(f) => (Some(f), 0),
        ReplayOutcome::NoFault(d) => (None, d.len()),
        _ => bail!("replay gave an outcome this version of rulebox does not know"),
    };
    match fault {
        Some(f) => {
            println!("replayed: {}: {}", f.reason, printable(&f.message));
            if let Some(bt) = &f.backtrace {
                println!("backtrace:\n{}", printable(bt).replace("\\u{a}", "\n"));
            }
        }
        None => println!("replayed: no fault ({detections} detections)"),
    }
    let (result, ok) = match (&outcome, checking_fix) {
        (ReplayOutcome::Reproduced(_), false) => ("reproduced", true),
        (ReplayOutcome::DifferentFault(_), false) => ("a different fault", false),
        (ReplayOutcome::NoFault(_), false) => (
            "not reproduced (a stateful rule may need the events before this one)",
            false,
        ),
        (ReplayOutcome::NoFault(_), true) => (
            "fixed: the new module runs the recorded event without a fault",
            true,
        ),
        (ReplayOutcome::Reproduced(_), true) => ("still faults, for the same reason", false),
        (_, true) => ("still faults, for another reason", false),
        _ => ("unknown", false),
    };
    println!("result:   {result}");
    Ok(ExitCode::from(if ok {
        super::EXIT_OK
    } else {
        super::EXIT_QUARANTINE
    }))
}

/// The record's own module: its `source` looked for as written, next to the record, next to the
/// record's folder, and in the current folder; the first with the record's hash.
fn find_module(
    record_path: &Path,
    record: &QuarantineRecord,
) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let source = Path::new(&record.source);
    let mut tried: Vec<PathBuf> = Vec::new();
    if source.is_absolute() {
        tried.push(source.to_path_buf());
    } else {
        let dir = record_path.parent().unwrap_or(Path::new(""));
        tried.push(dir.join(source));
        if let Some(up) = dir.parent() {
            tried.push(up.join(source));
        }
        tried.push(source.to_path_buf());
    }
    let mut other = None;
    for path in &tried {
        if !path.is_file() {
            continue;
        }
        let bytes = crate::load::read_module(path)?;
        if content_hash(&bytes) == record.content_hash {
            return Ok((path.clone(), bytes));
        }
        other.get_or_insert(path.clone());
    }
    match other {
        Some(path) => bail!(
            "{} is not the recorded module (its SHA-256 differs from the record's {}): it was \
             rebuilt; to check a fix against it, run: rulebox replay {} --module {}",
            path.display(),
            printable(&record.content_hash),
            record_path.display(),
            path.display()
        ),
        None => bail!(
            "cannot find the record's module `{}` (looked at {}); pass --module PATH",
            printable(&record.source),
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
