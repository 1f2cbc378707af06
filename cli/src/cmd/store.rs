//! `rulebox store` (init, status, rollback) and `rulebox push`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rulebox_runtime::content::{
    ContentStore, Inbox, MAX_REVERT_BYTES, ReleaseName, StoreLayout, StoreStatus, read_capped,
};
use rulebox_runtime::text::Escaped;

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
                print_status(&status);
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

/// `rulebox store status` for people: one fact a line, every text that came from content escaped.
fn print_status(status: &StoreStatus) {
    let when = |unix: u64| {
        if unix >= status.at_unix {
            format!("{unix} (in {} h)", (unix - status.at_unix) / 3600)
        } else {
            format!("{unix} ({} h ago)", (status.at_unix - unix) / 3600)
        }
    };
    let list = |items: &[u64]| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let line = |key: &str, value: String| println!("{:<17} {value}", format!("{key}:"));
    line("store", status.dir.display().to_string());
    line(
        "root",
        format!(
            "version {}, expires {}{}",
            status.root_version,
            when(status.root_expires_unix),
            if status.root_expired {
                ": EXPIRED (rotate the root)"
            } else {
                ""
            }
        ),
    );
    let current = status.installed.iter().find(|r| r.current);
    line(
        "current",
        match (status.current, current.and_then(|r| r.expires_unix)) {
            (Some(r), Some(expires)) => format!(
                "release {r}, content expires {}{}",
                when(expires),
                if status.current_expired {
                    ": EXPIRED (it keeps running; a newer release is due)"
                } else {
                    ""
                }
            ),
            (current, _) => ReleaseName(current).to_string(),
        },
    );
    line(
        "last_known_good",
        status
            .last_known_good
            .map_or_else(|| "none".to_owned(), |r| format!("release {r}")),
    );
    line(
        "highest_release",
        status
            .highest_release
            .map_or_else(|| "none".to_owned(), |r| r.to_string()),
    );
    line(
        "boot",
        match status.boot.starting {
            Some(s) => format!(
                "starting release {} ({} start(s) without GOOD)",
                s.release, s.attempts
            ),
            None => "no start pending".to_owned(),
        },
    );
    line("bad", list(&status.bad));
    if status.installed.is_empty() {
        line("installed", "none".to_owned());
    }
    for r in &status.installed {
        let mut facts = Vec::new();
        for (flag, name) in [
            (r.current, "current"),
            (r.last_known_good, "last-known-good"),
            (r.reached_good, "reached GOOD"),
        ] {
            if flag {
                facts.push(name.to_owned());
            }
        }
        if r.bad {
            facts.push(match r.bad_reason {
                Some(why) => format!("bad: {why}"),
                None => "bad".to_owned(),
            });
        }
        if let Some(expires) = r.expires_unix {
            facts.push(format!(
                "{} {}",
                if r.expired { "EXPIRED" } else { "expires" },
                when(expires)
            ));
        }
        if let Some(rules) = r.rules {
            facts.push(format!("{rules} rules"));
        }
        if let Some(problem) = &r.problem {
            facts.push(format!("PROBLEM: {}", Escaped(problem)));
        }
        line(
            "installed",
            format!(
                "release {} manifest {} ({})",
                r.release,
                r.manifest_hash,
                facts.join(", ")
            ),
        );
    }
    line("quarantined", status.quarantine.len().to_string());
    for q in &status.quarantine {
        println!(
            "  {} {} ({}) {}",
            Escaped(&q.rule_id),
            Escaped(&q.rule_version),
            q.reason,
            q.content_hash.get(..12).unwrap_or(&q.content_hash)
        );
    }
    let u = &status.usage;
    let mib = |bytes: u64| match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    };
    line(
        "disk",
        format!(
            "{} in all: releases {}, inbox {} ({} refused entries kept, {}), reports {}, module cache {}{}",
            mib(u.total.bytes),
            mib(u.releases.bytes),
            mib(u.inbox.bytes),
            u.refused_entries,
            mib(u.refused.bytes),
            mib(u.reports.bytes),
            mib(u.cache.bytes),
            if u.total.truncated { " (at least)" } else { "" }
        ),
    );
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
    // Never follows a link: the path named must itself be the bundle folder or the revert file.
    let meta = std::fs::symlink_metadata(&args.bundle)
        .with_context(|| format!("cannot read {}", args.bundle.display()))?;
    if meta.file_type().is_symlink() {
        anyhow::bail!(
            "{} is a symbolic link; push the folder or file itself (links are never followed)",
            args.bundle.display()
        );
    }
    if !meta.is_dir() {
        let cap = u64::try_from(MAX_REVERT_BYTES).unwrap_or(u64::MAX);
        let bytes = read_capped(&args.bundle, cap)
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

/// Reads a file an operator names (a root, a policy, a revert) through the one capped reader:
/// a regular file, not a link, a FIFO or a device (checked on the descriptor, opened non-blocking
/// without following a link), of at most 1 MiB.
pub fn read_operator_file(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    read_capped(path, OPERATOR_FILE_CAP).with_context(|| {
        format!(
            "cannot read {what} {} (a regular file, not a link, is needed)",
            path.display()
        )
    })
}

/// Largest root, policy or revert file an operator command reads.
const OPERATOR_FILE_CAP: u64 = 1 << 20;
