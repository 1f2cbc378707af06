//! `rulebox replay`: re-run a quarantine record against its module.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rulebox_runtime::{QuarantineRecord, ReplayOutcome, Runtime, RuntimeConfig};

/// Arguments of `rulebox replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A quarantine record (JSON), as written by `rulebox run`.
    record: PathBuf,
    /// The module to replay against; by default the record's `source`. Its SHA-256 must match the
    /// record's content hash.
    #[arg(long)]
    module: Option<PathBuf>,
    /// The rule data of a rule pack loaded with data (an engine's rules); its SHA-256 must match the
    /// record's data hash.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Runs `rulebox replay`. Exits 0 when the recorded fault is reproduced, 2 when it is not.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.record)
        .with_context(|| format!("cannot read record {}", args.record.display()))?;
    let record: QuarantineRecord = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a quarantine record", args.record.display()))?;
    let module_path = args.module.unwrap_or_else(|| PathBuf::from(&record.source));
    let module = crate::load::read_module(&module_path).with_context(|| {
        format!(
            "the record's module ({}); pass --module PATH",
            module_path.display()
        )
    })?;
    let data = match &args.data {
        Some(path) => crate::load::read_module(path)
            .with_context(|| format!("the rule data {}", path.display()))?,
        None => Vec::new(),
    };
    let runtime = Runtime::new(RuntimeConfig::default())?;
    println!("record:   {}", args.record.display());
    println!(
        "rule:     {} {} ({})",
        record.rule_id, record.rule_version, record.content_hash
    );
    if let Some(pack) = &record.pack {
        let which = pack
            .rule_index
            .map_or_else(|| "the pack itself".to_owned(), |i| format!("rule {i}"));
        println!(
            "pack:     {} {} ({which} of {}; rule data {})",
            pack.id.escape_debug(),
            pack.version.escape_debug(),
            pack.rules,
            pack.data_hash.escape_debug()
        );
    }
    println!("recorded: {}: {}", record.reason, record.message);
    let rt = runtime.clone();
    let outcome = runtime.run_sandboxed(move |thread| {
        rulebox_runtime::replay_with_data(&rt, thread, &record, &module, &data)
    })?;
    match outcome {
        ReplayOutcome::Reproduced(fault) => {
            println!("replayed: {}: {}", fault.reason, fault.message);
            if let Some(bt) = &fault.backtrace {
                println!("backtrace:\n{bt}");
            }
            println!("result:   reproduced");
            Ok(ExitCode::from(super::EXIT_OK))
        }
        ReplayOutcome::DifferentFault(fault) => {
            println!("replayed: {}: {}", fault.reason, fault.message);
            println!("result:   a different fault");
            Ok(ExitCode::from(super::EXIT_QUARANTINE))
        }
        ReplayOutcome::NoFault(detections) => {
            println!("replayed: no fault ({} detections)", detections.len());
            println!(
                "result:   not reproduced (a stateful rule may need the events before this one)"
            );
            Ok(ExitCode::from(super::EXIT_QUARANTINE))
        }
        _ => Ok(ExitCode::from(super::EXIT_QUARANTINE)),
    }
}
