//! `rulebox bench`: per-event latency and throughput of a user's own content, in the production
//! sandbox with every limit on.

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rulebox_runtime::events::EventReader;
use rulebox_runtime::{BatchOutcome, LoadedRule, Outcome, RuleSet, Runtime};
use rulebox_sdk::EventKind;

use crate::table::{Align, Table};

/// Arguments of `rulebox bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A folder of rule modules (`*.wasm`), or module files; may be given more than once.
    #[arg(long, required = true, num_args = 1..)]
    rules: Vec<PathBuf>,
    /// The events to replay: rulebox JSON lines or Windows event JSON (evtx_dump style).
    #[arg(long)]
    events: PathBuf,
    /// A runtime configuration file (JSON); the limits used are the production ones it gives.
    #[arg(long)]
    config: Option<PathBuf>,
    /// How long to measure each rule, and the whole set, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    millis: u64,
    /// Print the results as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Events per batch in the batched figure.
const BATCH: usize = 64;

/// The figures of the rule pack `compiled` alone over the events of the kinds its rules subscribe
/// to, one call per event.
fn pack_figures(
    rt: &Runtime,
    thread: &rulebox_runtime::SandboxThread,
    compiled: &rulebox_runtime::CompiledRule,
    name: &str,
    events: &[(EventKind, Vec<u8>)],
    budget: Duration,
) -> anyhow::Result<Figures> {
    let mut pack = RuleSet::new(rt);
    let rules = pack
        .add_module(thread, compiled, &[], None)
        .map_err(|r| anyhow::anyhow!("{name} refused: {}", r.message))?;
    let kinds = rules.iter().fold(rulebox_sdk::EventKinds::NONE, |k, r| {
        rulebox_sdk::EventKinds(k.0 | r.subscriptions.0)
    });
    let label = match rules[0].pack.as_ref() {
        Some(p) => format!("pack {} ({} rules) ({name})", p.id, rules.len()),
        None => name.to_owned(),
    };
    let mine: Vec<&(EventKind, Vec<u8>)> =
        events.iter().filter(|(k, _)| kinds.contains(*k)).collect();
    let (mut times, mut outcome) = (Vec::new(), Outcome::default());
    let start = Instant::now();
    while !mine.is_empty() && start.elapsed() < budget {
        for (kind, bytes) in &mine {
            let t = Instant::now();
            pack.process_encoded(thread, *kind, bytes, &mut outcome)
                .context("an event over the runtime's limits")?;
            times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
    }
    let quarantined = pack.records().len();
    let fault = (quarantined > 0).then(|| format!("{quarantined} rule(s) quarantined"));
    Ok(figures(label, mine.len(), times, fault))
}

/// Latency figures of one measured subject.
#[derive(Debug, serde::Serialize)]
struct Figures {
    name: String,
    events: usize,
    calls: usize,
    mean_ns: f64,
    p50_ns: f64,
    p99_ns: f64,
    events_per_second: f64,
    /// Set when the rule faulted during the run (its figures then stop at the fault).
    fault: Option<String>,
}

fn figures(name: String, events: usize, mut times: Vec<u64>, fault: Option<String>) -> Figures {
    times.sort_unstable();
    let calls = times.len();
    let pick = |per_mille: usize| {
        if times.is_empty() {
            return 0.0;
        }
        times[(calls - 1) * per_mille / 1000] as f64
    };
    let total: u64 = times.iter().sum();
    let mean = if calls == 0 {
        0.0
    } else {
        total as f64 / calls as f64
    };
    Figures {
        name,
        events,
        calls,
        mean_ns: mean,
        p50_ns: pick(500),
        p99_ns: pick(990),
        events_per_second: if mean > 0.0 { 1e9 / mean } else { 0.0 },
        fault,
    }
}

/// Runs `rulebox bench`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let modules = crate::load::module_files(&args.rules)?;
    let config = crate::load::config(args.config.as_deref())?;
    let runtime = Runtime::new(config).context("cannot start the runtime")?;
    let file = std::fs::File::open(&args.events)
        .with_context(|| format!("cannot open events file {}", args.events.display()))?;
    let mut events: Vec<(EventKind, Vec<u8>)> = Vec::new();
    let mut skipped = 0usize;
    for record in EventReader::new(BufReader::new(file)) {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                // Counted and reported, never silent; the rest of the file is still measured.
                eprintln!("rulebox bench: {}: {e}", args.events.display());
                skipped += 1;
                continue;
            }
        };
        let bytes = record.event.to_bytes().context("cannot encode an event")?;
        events.push((record.event.kind(), bytes));
    }
    if events.is_empty() {
        bail!("{} holds no events", args.events.display());
    }
    let budget = Duration::from_millis(args.millis.max(1));
    let rt = runtime.clone();
    let (rules, set, batched) = runtime.run_sandboxed(move |thread| -> anyhow::Result<_> {
        let mut results = Vec::new();
        let mut set = RuleSet::new(&rt);
        for module in &modules {
            let name = module.path.display().to_string();
            let bytes = match &module.bytes {
                Ok(b) => b,
                Err(e) => bail!("{name}: {e}"),
            };
            let compiled = rt
                .compile(bytes, &name)
                .with_context(|| format!("{name} refused"))?;
            set.add(thread, &compiled)
                .map_err(|r| anyhow::anyhow!("{name} refused: {}", r.message))?;
            if compiled.is_pack() {
                // A rule pack: measured as one subject, in a set of its own.
                results.push(pack_figures(
                    &rt, thread, &compiled, &name, &events, budget,
                )?);
                continue;
            }
            let mut rule = LoadedRule::load(&rt, thread, &compiled)
                .with_context(|| format!("{name} refused"))?;
            let mine: Vec<&[u8]> = events
                .iter()
                .filter(|(k, _)| rule.info().subscriptions.contains(*k))
                .map(|(_, b)| b.as_slice())
                .collect();
            let label = format!("{} ({})", rule.info().id, name);
            if mine.is_empty() {
                results.push(figures(label, 0, Vec::new(), None));
                continue;
            }
            let mut out = Vec::new();
            let mut times = Vec::new();
            let mut fault = None;
            let start = Instant::now();
            'outer: while start.elapsed() < budget {
                for bytes in &mine {
                    out.clear();
                    let t = Instant::now();
                    let r = rule.evaluate(bytes, &mut out);
                    times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                    if let Err(f) = r {
                        fault = Some(format!("{}: {}", f.reason, f.message));
                        break 'outer;
                    }
                }
            }
            results.push(figures(label, mine.len(), times, fault));
        }
        // The whole set, dispatching each event to the rules subscribed to it.
        let mut outcome = Outcome::default();
        let mut times = Vec::new();
        let start = Instant::now();
        while start.elapsed() < budget {
            for (kind, bytes) in &events {
                let t = Instant::now();
                set.process_encoded(thread, *kind, bytes, &mut outcome)
                    .context("an event over the runtime's limits")?;
                times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
        }
        // The whole set again, in batches (a rule pack is called once per batch).
        let mut batched = BatchOutcome::default();
        let mut batch_times = Vec::new();
        let start = Instant::now();
        while start.elapsed() < budget {
            for chunk in events.chunks(BATCH) {
                let t = Instant::now();
                set.process_encoded_batch(thread, chunk, &mut batched);
                let per = t.elapsed().as_nanos() / chunk.len() as u128;
                batch_times
                    .extend((0..chunk.len()).map(|_| u64::try_from(per).unwrap_or(u64::MAX)));
            }
        }
        let quarantined = set.records().len();
        let fault = (quarantined > 0).then(|| format!("{quarantined} rule(s) quarantined"));
        let batched = figures(
            format!("whole set, in batches of {BATCH}"),
            events.len(),
            batch_times,
            fault.clone(),
        );
        Ok((
            results,
            figures("whole set".to_owned(), events.len(), times, fault),
            batched,
        ))
    })?;

    if args.json {
        println!(
            "{}",
            serde_json::json!({ "rules": rules, "set": set, "set_batched": batched,
                "skipped_records": skipped, "limits": "production (fuel, memory, deadline on)" })
        );
    } else {
        println!("per-event latency in the production sandbox (fuel, memory cap and deadline on)");
        if skipped > 0 {
            println!("{skipped} unreadable event record(s) skipped (listed on stderr)");
        }
        let mut table = Table::new(&[
            ("rule (module)", Align::Left),
            ("events", Align::Right),
            ("mean ns", Align::Right),
            ("p50 ns", Align::Right),
            ("p99 ns", Align::Right),
            ("events/s", Align::Right),
            ("", Align::Left),
        ]);
        for f in rules.iter().chain([&set, &batched]) {
            table.row(vec![
                f.name.clone(),
                f.events.to_string(),
                format!("{:.0}", f.mean_ns),
                format!("{:.0}", f.p50_ns),
                format!("{:.0}", f.p99_ns),
                format!("{:.0}", f.events_per_second),
                f.fault
                    .as_deref()
                    .map(|x| format!("FAULT: {x}"))
                    .unwrap_or_default(),
            ]);
        }
        for line in table.lines() {
            println!("{line}");
        }
    }
    let faulted = rules
        .iter()
        .chain([&set, &batched])
        .any(|f| f.fault.is_some());
    Ok(ExitCode::from(if faulted {
        super::EXIT_QUARANTINE
    } else {
        super::EXIT_OK
    }))
}
