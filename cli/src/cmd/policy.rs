//! `rulebox policy`: the host owner's side. Sign a policy (pin, N-k, delay, pause) with the owner's
//! key and install it, with the owner's root, in a host's content store; the agent then refuses any
//! release the policy does not allow.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use rulebox_runtime::content::{
    ContentStore, CustomerPolicy, POLICY_FORMAT, PolicyMode, Signed, now_unix,
};

/// Arguments of `rulebox policy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PolicyCommand {
    /// Write a policy signed with the owner's key (a key file from `rulebox keygen`).
    Sign {
        /// `latest`, `pin:RELEASE`, `n-minus:N` or `paused`.
        #[arg(long)]
        mode: String,
        /// For `pin:RELEASE`: the pinned release's manifest hash (`rulebox store status` shows it
        /// per installed release), so that no other manifest under that number lands.
        #[arg(long)]
        manifest_hash: Option<String>,
        /// Hours a release must have existed before it may land.
        #[arg(long, default_value_t = 0)]
        delay_hours: u32,
        /// Policy version; must be above the version installed on the hosts.
        #[arg(long)]
        policy_version: u64,
        /// The owner's key file(s) (repeat for a threshold).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Install a signed policy in a host's store (stop the agent first). `--owner-root` installs the
    /// owner's root of trust (the first time, or a rotation).
    Install {
        /// The store folder.
        #[arg(long)]
        store: PathBuf,
        /// The owner's root (a signed root, see `rulebox root`).
        #[arg(long)]
        owner_root: Option<PathBuf>,
        /// The signed policy.
        policy: PathBuf,
    },
    /// Show the policy installed in a store, verified.
    Show {
        /// The store folder.
        #[arg(long)]
        store: PathBuf,
    },
}

fn parse_mode(text: &str, manifest_hash: Option<String>) -> anyhow::Result<PolicyMode> {
    let number = |n: &str| {
        n.parse::<u64>()
            .with_context(|| format!("`{n}` in mode `{text}` is not a number"))
    };
    if manifest_hash.is_some() && !text.starts_with("pin:") {
        bail!("--manifest-hash goes with --mode pin:RELEASE only");
    }
    Ok(match text.split_once(':') {
        None if text == "latest" => PolicyMode::Latest,
        None if text == "paused" => PolicyMode::Paused,
        Some(("pin", n)) => {
            let hash = manifest_hash.context(
                "a pin names the release's content too: add --manifest-hash (see `rulebox store status`)",
            )?;
            if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                bail!("--manifest-hash must be 64 lowercase hex digits");
            }
            PolicyMode::Pin {
                release: number(n)?,
                manifest_hash: Some(hash),
            }
        }
        Some(("n-minus", n)) => PolicyMode::NMinus {
            n: u32::try_from(number(n)?).context("n-minus is too large")?,
        },
        _ => bail!("unknown mode `{text}`: use latest, pin:RELEASE, n-minus:N or paused"),
    })
}

/// Runs `rulebox policy ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Sign {
            mode,
            manifest_hash,
            delay_hours,
            policy_version: version,
            keys,
            out,
        } => {
            let mut envelope = Signed {
                signed: CustomerPolicy {
                    format: POLICY_FORMAT,
                    version,
                    issued_unix: now_unix(),
                    mode: parse_mode(&mode, manifest_hash)?,
                    delay_hours,
                    notes: String::new(),
                },
                signatures: Vec::new(),
            };
            super::sign_and_write(&mut envelope, &keys, &out)?;
            println!(
                "policy version {version} ({}, delay {delay_hours} h) signed: {}",
                envelope.signed.mode,
                out.display()
            );
        }
        PolicyCommand::Install {
            store,
            owner_root,
            policy,
        } => {
            let mut store = ContentStore::open(&store)
                .with_context(|| format!("cannot open the store {}", store.display()))?;
            if let Some(root) = owner_root {
                let bytes = super::store::read_operator_file(&root, "owner root")?;
                store.set_owner_root(&bytes)?;
            }
            let bytes = super::store::read_operator_file(&policy, "policy")?;
            let p = store.set_policy(&bytes)?;
            println!(
                "policy version {} installed: {}, delay {} h",
                p.version, p.mode, p.delay_hours
            );
        }
        PolicyCommand::Show { store } => {
            let store = ContentStore::open_read_only(&store)
                .with_context(|| format!("cannot open the store {}", store.display()))?;
            match store.policy()? {
                Some(p) => println!("{}", serde_json::to_string_pretty(&p)?),
                None => println!("no policy: every release the vendor publishes may land"),
            }
        }
    }
    Ok(ExitCode::from(super::EXIT_OK))
}
