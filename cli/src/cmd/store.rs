//! `rulebox store` (init, status, rollback) and `rulebox push`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rulebox_runtime::content::{
    ContentStore, Inbox, MAX_REVERT_BYTES, ReleaseName, StoreLayout, read_capped_following_links,
};

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
            let bytes = read_operator_file(&root, "root")?;
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
            let bytes = read_operator_file(&root, "root")?;
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
                "rolled back from {} to release {}; report: {}",
                ReleaseName(outcome.from),
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

/// Delivers a bundle or a signed revert to a store's inbox ([`Inbox`]: copied beside its final name,
/// fsynced, then renamed, so the agent never sees half of it). The agent verifies it; `push` does not
/// need to be trusted.
pub fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let inbox = Inbox::new(StoreLayout::new(&args.store).inbox());
    let name = args
        .bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the path to push has no name")?;
    if args.bundle.is_file() {
        let cap = u64::try_from(MAX_REVERT_BYTES).unwrap_or(u64::MAX);
        let bytes = read_capped_following_links(&args.bundle, cap)
            .with_context(|| format!("cannot read the revert {}", args.bundle.display()))?;
        let target = inbox
            .deliver_revert(&name, &bytes)
            .with_context(|| format!("cannot deliver the revert into {}", inbox.dir().display()))?;
        println!(
            "pushed the revert {} to {}",
            args.bundle.display(),
            target.display()
        );
        return Ok(ExitCode::from(super::EXIT_OK));
    }
    let target = inbox.deliver_bundle(&args.bundle).with_context(|| {
        format!(
            "cannot deliver {} into {}",
            args.bundle.display(),
            inbox.dir().display()
        )
    })?;
    println!("pushed {} to {}", args.bundle.display(), target.display());
    Ok(ExitCode::from(super::EXIT_OK))
}

/// Reads a file an operator names (a root, a policy, a revert), capped.
pub fn read_operator_file(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    read_capped_following_links(path, OPERATOR_FILE_CAP)
        .with_context(|| format!("cannot read {what} {}", path.display()))
}

/// Largest root, policy or revert file an operator command reads.
const OPERATOR_FILE_CAP: u64 = 1 << 20;
