//! `rulebox test`: run rules' test cases (events and the detections expected) in the sandbox.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rulebox_validate::ModuleInput;
use rulebox_validate::cases::{find_case_files, read_case_file};
use serde_json::json;

/// Arguments of `rulebox test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Test files (`*.json`), rule folders with a `tests/` folder, or folders of test files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Rule modules (`.wasm` files or folders of them); each test file runs against the module
    /// reporting the rule id it names. Without it the cases run against the good example rules
    /// built into this binary (and the command says so).
    #[arg(long = "rules")]
    rules: Vec<PathBuf>,
    /// A runtime configuration file (JSON), as for `rulebox run`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output format: one line per case, as text or JSON.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Runs `rulebox test`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let files = find_case_files(&args.paths)?
        .iter()
        .map(|p| read_case_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    let built_in = args.rules.is_empty();
    if built_in {
        eprintln!(
            "rulebox test: no --rules given, so the cases run against the example rules built into \
             this binary; to test your own module give --rules PATH.wasm (for a rule crate: \
             --rules target/wasm32-unknown-unknown/release/NAME.wasm)"
        );
    }
    let modules = if built_in {
        rulebox_example_artifacts::good()
            .map(|a| ModuleInput {
                source: format!("built-in {}", a.name),
                bytes: a.bytes.to_vec(),
                limits: None,
                declared: None,
                data: Vec::new(),
            })
            .collect()
    } else {
        crate::load::module_files(&args.rules)?
            .into_iter()
            .map(|f| {
                let source = f.path.display().to_string();
                f.bytes
                    .map(|bytes| ModuleInput {
                        source: source.clone(),
                        bytes,
                        limits: None,
                        declared: None,
                        data: Vec::new(),
                    })
                    .map_err(|m| anyhow::anyhow!("{source}: {m}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let config = crate::load::config(args.config.as_deref())?;
    let outcomes =
        rulebox_validate::run_tests(modules, files, config).context("cannot run the tests")?;
    let failed = outcomes.iter().filter(|o| o.problem.is_some()).count();
    for o in &outcomes {
        match args.format {
            Format::Json => println!(
                "{}",
                json!({"rule": o.rule, "file": o.file, "case": o.case,
                       "passed": o.problem.is_none(), "problem": o.problem, "detections": o.detections})
            ),
            Format::Text => println!("{o}"),
        }
    }
    if args.format == Format::Text {
        eprintln!(
            "rulebox test: {} passed, {failed} failed{}",
            outcomes.len() - failed,
            if built_in {
                " (against the built-in example rules; give --rules for your own)"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::from(if failed == 0 {
        super::EXIT_OK
    } else {
        super::EXIT_QUARANTINE
    }))
}
