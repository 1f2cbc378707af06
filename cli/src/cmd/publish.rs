//! `rulebox publish --repo DIR`: roots, releases and reverts into the static content repository,
//! then its `timestamp.json` signed with the root's timestamp role.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use rulebox_release::{Publication, Repository};

/// Arguments of `rulebox publish`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository folder (created if missing). Serve it with any HTTP server or CDN:
    /// everything but timestamp.json can be cached forever.
    #[arg(long)]
    repo: PathBuf,
    /// A root to publish as root/<N>.root.json (version 1 first, then each next version, signed by
    /// the one before it). Repeat, in order.
    #[arg(long = "root")]
    roots: Vec<PathBuf>,
    /// A signed bundle folder to publish (it must verify against the repository's newest root, and
    /// every module must load). Repeat for several.
    #[arg(long = "bundle")]
    bundles: Vec<PathBuf>,
    /// A signed revert to publish as reverts/<R>.revert.json. Repeat for several.
    #[arg(long = "revert")]
    reverts: Vec<PathBuf>,
    /// A timestamp-role key file (`rulebox keygen --role timestamp`) to sign timestamp.json with;
    /// repeat for a threshold. Without one, timestamp.json is left to the controller.
    #[arg(long = "timestamp-key")]
    timestamp_keys: Vec<PathBuf>,
    /// Hours timestamp.json stays valid (hosts refuse an expired one and raise an alert when they
    /// cannot get a fresh one).
    #[arg(long, default_value_t = 1)]
    timestamp_hours: u64,
    /// Sign timestamp.json again even if it says the same and is less than half through its
    /// validity.
    #[arg(long)]
    force_timestamp: bool,
}

fn report(p: &Publication) {
    println!(
        "{} {}",
        if p.written { "wrote    " } else { "unchanged" },
        p.file
    );
}

/// Runs `rulebox publish`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.roots.is_empty()
        && args.bundles.is_empty()
        && args.reverts.is_empty()
        && args.timestamp_keys.is_empty()
    {
        bail!("nothing to publish: give --root, --bundle, --revert or --timestamp-key");
    }
    if args.timestamp_hours == 0 || args.timestamp_hours > 24 * 7 {
        bail!("--timestamp-hours is 1 to 168 (a timestamp is short-lived by design)");
    }
    let repo = Repository::open(&args.repo)
        .with_context(|| format!("cannot open the repository {}", args.repo.display()))?;
    let now = rulebox_runtime::content::now_unix();
    for path in &args.roots {
        let bytes = super::store::read_operator_file(path, "root")?;
        let p = repo
            .publish_root(&bytes)
            .with_context(|| format!("root {}", path.display()))?;
        report(&p);
    }
    for path in &args.bundles {
        let published = repo
            .publish_release(path, now)
            .with_context(|| format!("bundle {}", path.display()))?;
        for p in &published.files {
            report(p);
        }
        println!(
            "release {} published: manifest sha256 {} ({} bytes)",
            published.release, published.manifest_sha256, published.size
        );
    }
    for path in &args.reverts {
        let bytes = super::store::read_operator_file(path, "revert")?;
        let p = repo
            .publish_revert(&bytes, now)
            .with_context(|| format!("revert {}", path.display()))?;
        report(&p);
    }
    if !args.timestamp_keys.is_empty() {
        let keys = args
            .timestamp_keys
            .iter()
            .map(|p| {
                rulebox_release::read_online_key(p).with_context(|| format!("key {}", p.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let out = repo.write_timestamp(
            &keys,
            now,
            args.timestamp_hours.saturating_mul(3600),
            args.force_timestamp,
        )?;
        let ts = &out.timestamp;
        println!(
            "{} timestamp.json: version {}, root version {}, {} release(s), {} revert(s), expires at {}",
            if out.written {
                "wrote    "
            } else {
                "unchanged"
            },
            ts.version,
            ts.root_version,
            ts.releases.len(),
            ts.reverts.len(),
            ts.expires_unix
        );
    }
    Ok(ExitCode::from(super::EXIT_OK))
}
