//! `rulebox validate`: load each module in the production sandbox, report accept or reject.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rulebox_runtime::{LoadedRule, Runtime};
use serde_json::json;

/// Arguments of `rulebox validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Module files or folders of modules.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
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

/// Runs `rulebox validate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let modules = crate::load::module_files(&args.paths)?;
    let runtime = Runtime::new(crate::load::config(args.config.as_deref())?)
        .context("cannot start the runtime")?;
    let format = args.format;
    let rt = runtime.clone();
    runtime.run_sandboxed(move |thread| {
        let mut rejected = 0;
        for module in &modules {
            let path = module.path.display().to_string();
            let bytes = match &module.bytes {
                Ok(bytes) => bytes,
                Err(message) => {
                    match format {
                        Format::Text => println!("reject {path}: unreadable: {message}"),
                        Format::Json => println!("{}", json!({"path": path, "verdict": "reject", "reason": "unreadable", "message": message})),
                    }
                    rejected += 1;
                    continue;
                }
            };
            // Each module is checked on its own, in a fresh store, exactly as the agent loads it.
            let result = rt.compile(bytes, &path).and_then(|c| LoadedRule::load(&rt, thread, &c));
            let hash = rulebox_runtime::content_hash(bytes);
            match (&result, format) {
                (Ok(rule), Format::Text) => {
                    let i = rule.info();
                    let kinds: Vec<_> = i.subscriptions.iter().map(|k| k.name()).collect();
                    println!("accept {path}: {} {} ({}) subscribes to {}", i.id, i.version, i.severity, kinds.join(", "));
                }
                (Err(e), Format::Text) => println!("reject {path}: {}: {e}", e.reason()),
                (Ok(rule), Format::Json) => println!("{}", json!({"path": path, "verdict": "accept", "content_hash": hash, "rule": &**rule.info()})),
                (Err(e), Format::Json) => println!("{}", json!({"path": path, "verdict": "reject", "content_hash": hash, "reason": e.reason().name(), "message": e.to_string()})),
            }
            if result.is_err() {
                rejected += 1;
            }
        }
        if matches!(format, Format::Text) {
            eprintln!("rulebox validate: {} accepted, {rejected} rejected", modules.len() - rejected);
        }
        Ok(ExitCode::from(if rejected == 0 { super::EXIT_OK } else { super::EXIT_QUARANTINE }))
    })
}
