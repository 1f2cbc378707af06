//! `rulebox store` (init, status, rollback) and `rulebox push`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rulebox_runtime::content::ContentStore;

/// Arguments of `rulebox store`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StoreCommand {
    /// Create a content store trusting `ROOT` (a signed root, see `rulebox root`).
    Init {
        /// The store folder.
        #[arg(long)]
        store: PathBuf,
        /// The trusted root file (JSON envelope).
        #[arg(long)]
        root: PathBuf,
    },
    /// Show the current and last-known-good releases, boot attempts, bad releases and quarantine.
    Status {
        /// The store folder.
        #[arg(long)]
        store: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rotate the trusted root: accept root N+1 if a threshold of root N's keys and a threshold of its
    /// own keys signed it (The Update Framework's rule); a root that skips a version is refused.
    UpdateRoot {
        /// The store folder.
        #[arg(long)]
        store: PathBuf,
        /// The new root file (JSON envelope).
        #[arg(long)]
        root: PathBuf,
    },
    /// Revert by hand: to the last-known-good release, or to `--to VERSION`.
    Rollback {
        /// The store folder.
        #[arg(long)]
        store: PathBuf,
        /// The installed release to go back to (default: last-known-good).
        #[arg(long)]
        to: Option<u64>,
        /// Allow going back to a release marked bad.
        #[arg(long)]
        force: bool,
    },
}

/// Runs `rulebox store ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        StoreCommand::Init { store, root } => {
            let bytes = std::fs::read(&root)
                .with_context(|| format!("cannot read root {}", root.display()))?;
            ContentStore::init(&store, &bytes)
                .with_context(|| format!("cannot create the store {}", store.display()))?;
            println!(
                "store {} created, trusting {}",
                store.display(),
                root.display()
            );
        }
        StoreCommand::Status { store, json } => {
            let store = ContentStore::open_read_only(&store)
                .with_context(|| format!("cannot open the store {}", store.display()))?;
            let status = store.status();
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                let v = serde_json::to_value(&status)?;
                println!("store:            {}", store.dir().display());
                for key in [
                    "current",
                    "last_known_good",
                    "highest_release",
                    "bad",
                    "boot",
                    "installed",
                    "quarantine",
                ] {
                    if let Some(value) = v.get(key) {
                        println!("{:<17} {}", format!("{key}:"), value);
                    }
                }
            }
        }
        StoreCommand::UpdateRoot { store, root } => {
            let bytes = std::fs::read(&root)
                .with_context(|| format!("cannot read root {}", root.display()))?;
            let mut store = ContentStore::open(&store)
                .with_context(|| format!("cannot open the store {}", store.display()))?;
            let accepted = store.update_root(&bytes).context("new root refused")?;
            println!(
                "trusted root is now version {} ({} keys, threshold {})",
                accepted.version,
                accepted.keys.len(),
                accepted.threshold
            );
        }
        StoreCommand::Rollback { store, to, force } => {
            let mut store = ContentStore::open(&store)
                .with_context(|| format!("cannot open the store {}", store.display()))?;
            let outcome = store.rollback(to, force).context("rollback refused")?;
            println!(
                "rolled back from {:?} to release {}; report: {}",
                outcome.from,
                outcome.to,
                outcome.report.display()
            );
            println!("restart the agent (or it picks the change up at its next start)");
        }
    }
    Ok(ExitCode::from(super::EXIT_OK))
}

/// Arguments of `rulebox push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The bundle folder to deliver, or a signed revert file (`rulebox rollout sign-revert`): the
    /// agent verifies it against the trusted root and goes back to good content by itself.
    bundle: PathBuf,
    /// The store whose inbox receives it (the running agent picks it up).
    #[arg(long)]
    store: PathBuf,
}

/// Copies a bundle into a store's inbox atomically (copy beside it, then rename), so the agent never
/// sees half a bundle. The agent verifies it; `push` does not need to be trusted.
pub fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let inbox = args.store.join("inbox");
    std::fs::create_dir_all(&inbox)
        .with_context(|| format!("cannot create {}", inbox.display()))?;
    let name = args
        .bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("bundle path has no name")?;
    let tmp = inbox.join(format!(".push-{name}-{}", std::process::id()));
    if args.bundle.is_file() {
        let stem = name.strip_suffix(".json").unwrap_or(&name);
        let stem = stem.strip_suffix(".revert").unwrap_or(stem);
        std::fs::copy(&args.bundle, &tmp)
            .with_context(|| format!("cannot copy {}", args.bundle.display()))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        let target = inbox.join(format!("{stem}{}", super::agent::REVERT_SUFFIX));
        std::fs::rename(&tmp, &target)
            .with_context(|| format!("cannot move the revert into {}", target.display()))?;
        println!(
            "pushed the revert {} to {}",
            args.bundle.display(),
            target.display()
        );
        return Ok(ExitCode::from(super::EXIT_OK));
    }
    copy_dir(&args.bundle, &tmp)
        .with_context(|| format!("cannot copy {}", args.bundle.display()))?;
    let target = inbox.join(&name);
    std::fs::rename(&tmp, &target)
        .with_context(|| format!("cannot move the bundle into {}", target.display()))?;
    println!("pushed {} to {}", args.bundle.display(), target.display());
    Ok(ExitCode::from(super::EXIT_OK))
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&path, &dest)?;
        } else {
            std::fs::copy(&path, &dest)?;
            std::fs::File::open(&dest)?.sync_all()?;
        }
    }
    std::fs::File::open(to)?.sync_all()
}
