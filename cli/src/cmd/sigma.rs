//! `rulebox sigma`: compile Sigma rules into a sandboxed rule pack (the evaluator and its rule data),
//! and test them on recorded events.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_runtime::{Runtime, RuntimeConfig};
use rulebox_sigma::cases::{load_cases, run_cases};

/// Arguments of `rulebox sigma`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Compile Sigma rules (YAML) into one rule pack: `OUT/sigma.wasm`, the sandboxed Sigma
    /// evaluator (compiled once by the host), and `OUT/sigma.rules`, its rule data (every rule's
    /// compiled program). `rulebox run --rules OUT` and `rulebox validate OUT` load the engine with
    /// its data. A rule using an unsupported construct, or whose id an earlier rule has, is refused
    /// with a message naming it; the others are still written. At the end, a summary of the
    /// refusals grouped by reason (on stderr).
    Compile(CompileArgs),
    /// Test a folder of cases (`<case>/rule.yml`, `<case>/event.json`, optional `<case>/info.yml`
    /// with `match_count`, as in SigmaHQ's regression data): compile every rule, run every event
    /// through every rule in the sandbox, require each rule to fire on its own events.
    Test(TestArgs),
}

/// Arguments of `rulebox sigma compile`.
#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    /// Sigma rule files.
    #[arg(required = true)]
    rules: Vec<PathBuf>,
    /// Output folder (`sigma.wasm` and `sigma.rules`; with `--modules`, `<rule file stem>.wasm`).
    #[arg(short, long)]
    out: PathBuf,
    /// Write one module per rule instead (the evaluator with the rule's program embedded: a
    /// one-rule pack that loads without data), as `<rule file stem>.wasm`.
    #[arg(long)]
    modules: bool,
}

/// Arguments of `rulebox sigma test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The folder of cases.
    dir: PathBuf,
    /// A runtime configuration file (JSON), as for `rulebox run`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Runs `rulebox sigma`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Compile(a) => compile(a),
        Command::Test(a) => test(a),
    }
}

fn stem(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `cases/<name>/rule.yml`: name the module after its folder.
    if stem == "rule"
        && let Some(parent) = path.parent().and_then(|p| p.file_name())
    {
        return parent.to_string_lossy().into_owned();
    }
    stem
}

/// `text` with control characters (terminal escapes, newlines) written as `\u{..}`: rule files and
/// the messages that quote them are shown to an operator.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                format!("\\u{{{:x}}}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The engine file `rulebox sigma compile` writes, beside its rule data `sigma.NN.rules` (`rulebox
/// run` loads a `NAME.wasm` once with each `NAME.rules` / `NAME.*.rules` beside it as its data).
const ENGINE_FILE: &str = "sigma.wasm";

/// The shared prefilter index of the packs (`rulebox_release::is_index_data_of`).
const INDEX_FILE: &str = "sigma.index.rules";

fn compile(args: CompileArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // Refusals by reason, for the summary: how many, and the first rule of each.
    let mut reasons = rulebox_sigma::Refusals::default();
    let mut refused = 0;
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut ids: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for path in &args.rules {
        let result = std::fs::read_to_string(path)
            .map_err(|e| {
                (
                    format!("cannot read it: {e}"),
                    "the file cannot be read".to_owned(),
                )
            })
            .and_then(|text| {
                let program =
                    rulebox_sigma::compile(&text).map_err(|e| (e.to_string(), e.reason()))?;
                if let Some(first) = ids.get(&program.id) {
                    return Err((
                        format!(
                            "its id {} is also the id of {first}",
                            printable(&program.id)
                        ),
                        "an id an earlier rule has".to_owned(),
                    ));
                }
                let bytes = if args.modules {
                    rulebox_sigma::build_module(&program, SIGMA_EVAL.bytes)
                } else {
                    rulebox_sigma::rule_record(&program)
                };
                bytes
                    .map(|bytes| (program, bytes))
                    .map_err(|e| (e.to_string(), e.reason()))
            });
        match result {
            Ok((program, bytes)) => {
                ids.insert(program.id.clone(), path.display().to_string());
                let to = if args.modules {
                    let out = args.out.join(format!("{}.wasm", stem(path)));
                    std::fs::write(&out, &bytes)
                        .with_context(|| format!("cannot write {}", out.display()))?;
                    out.display().to_string()
                } else {
                    records.push(bytes.clone());
                    format!("rule {}", ids.len() - 1)
                };
                let kinds: Vec<_> = program.kinds.iter().map(|k| k.name()).collect();
                println!(
                    "compiled {} -> {to} ({} bytes): {} ({}) on {}",
                    path.display(),
                    bytes.len(),
                    printable(&program.id),
                    program.severity,
                    kinds.join(", ")
                );
            }
            Err((message, reason)) => {
                refused += 1;
                println!("refused  {}: {}", path.display(), printable(&message));
                reasons.add(printable(&reason), &path.display().to_string());
            }
        }
    }
    if !args.modules && !records.is_empty() {
        // Stale data files of an earlier compile would load as packs of their own: remove them.
        for entry in std::fs::read_dir(&args.out)
            .with_context(|| format!("cannot list {}", args.out.display()))?
        {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.starts_with("sigma.") && n.ends_with(".rules")) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        let engine = args.out.join(ENGINE_FILE);
        write_new(&engine, SIGMA_EVAL.bytes)?;
        // Rules that step through most of a field at the cap get all their byte rows in their pack.
        let full = rulebox_validate::named::full_rows(&records, &RuntimeConfig::default());
        let packs = rulebox_sigma::split_packs_with_rows(
            &records,
            "sigma",
            rulebox_sigma::MAX_PACK_DATA_BYTES,
            &full,
        );
        for (i, (id, data, members)) in packs.iter().enumerate() {
            let path = args.out.join(format!("sigma.{:02}.rules", i + 1));
            write_new(&path, data)?;
            println!(
                "wrote {} (pack {id}: {} rules, {} bytes)",
                path.display(),
                members.len(),
                data.len()
            );
        }
        // One prefilter scan of each event for every pack (`rulebox run` loads it with them; a
        // release leaves it out, and each pack then runs its own).
        let index = rulebox_sigma::index_data("sigma-index", packs.iter().map(|p| p.1.as_slice()))?;
        let path = args.out.join(INDEX_FILE);
        write_new(&path, &index)?;
        println!(
            "wrote {} (the shared prefilter index of the {} packs, {} bytes)",
            path.display(),
            packs.len(),
            index.len()
        );
        println!(
            "wrote {} ({} bytes): the engine of {} packs",
            engine.display(),
            SIGMA_EVAL.bytes.len(),
            packs.len()
        );
    }
    let total = args.rules.len();
    eprintln!(
        "{} compiled, {refused} refused ({:.1}% compiled)",
        total - refused,
        100.0 * (total - refused) as f64 / total.max(1) as f64
    );
    if !reasons.is_empty() {
        eprintln!("refused, by reason:");
        for (reason, count, first) in reasons.by_count() {
            eprintln!("  {count:>5}  {reason}  (e.g. {})", printable(first));
        }
    }
    Ok(ExitCode::from(if refused == 0 {
        super::EXIT_OK
    } else {
        super::EXIT_QUARANTINE
    }))
}

/// Writes `bytes` to `path` through a temporary file renamed over it: a reader (a running
/// `rulebox run` reloading the folder) sees the old file or the new one, never half of one.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let cases = load_cases(&args.dir)?;
    let runtime = Runtime::new(crate::load::config(args.config.as_deref())?)
        .context("cannot start the runtime")?;
    let report = run_cases(&runtime, SIGMA_EVAL.bytes, &cases);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            for r in &report.cases {
                match &r.failure {
                    None => println!(
                        "pass {}: fired on {}/{} of its events{}",
                        r.name,
                        r.own_matches,
                        r.events,
                        r.note
                            .as_ref()
                            .map(|n| format!(" (note: {n})"))
                            .unwrap_or_default()
                    ),
                    Some(why) => println!("FAIL {}: {why}", r.name),
                }
                if !r.fires_on_others.is_empty() {
                    println!("     also fires on: {}", r.fires_on_others.join(", "));
                }
            }
            println!(
                "{}/{} cases pass ({:.1}%); {} rules fire on other cases' events ({} matches)",
                report.passed,
                report.cases.len(),
                100.0 * report.pass_share(),
                report.rules_firing_elsewhere,
                report.cross_matches
            );
        }
    }
    Ok(ExitCode::from(if report.passed == report.cases.len() {
        super::EXIT_OK
    } else {
        super::EXIT_QUARANTINE
    }))
}
