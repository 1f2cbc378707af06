//! Vendor-side commands: `rulebox keygen`, `rulebox root`, `rulebox bundle build|sign|verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rulebox_release::{BundleOptions, ModuleSource};

/// Longest validity a manifest or root may be given, in days (ten years).
const MAX_EXPIRES_DAYS: u64 = 3650;

/// `now + days`, for a `--expires-days` clap already bounded to [`MAX_EXPIRES_DAYS`].
fn expires_in(days: u64) -> anyhow::Result<u64> {
    days.checked_mul(86_400)
        .and_then(|secs| rulebox_runtime::content::now_unix().checked_add(secs))
        .context("--expires-days is too large")
}

/// Arguments of `rulebox keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the key file (created with mode 0600; keep it offline).
    #[arg(long)]
    out: PathBuf,
    /// Also write the public half (`{"keyid", "public"}`) here: what a signer is given to trust a
    /// gate key (`rulebox bundle sign --gate-key`).
    #[arg(long)]
    public_out: Option<PathBuf>,
    /// Make a key of an online role of the root instead (`timestamp` or `rollout`): for the
    /// controller, never usable as a root key.
    #[arg(long)]
    role: Option<rulebox_runtime::content::RoleName>,
}

/// Runs `rulebox keygen`.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    if let Some(role) = args.role {
        return super::roles::keygen(role, &args.out);
    }
    let key = rulebox_release::generate_key()?;
    rulebox_release::write_key_file(&args.out, &key)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if let Some(path) = &args.public_out {
        rulebox_release::write_public_key_file(path, &key)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "key {} written to {} (public {})",
        key.keyid,
        args.out.display(),
        key.public
    );
    Ok(ExitCode::from(super::EXIT_OK))
}

/// Arguments of `rulebox root`.
#[derive(Debug, clap::Args)]
pub struct RootArgs {
    #[command(subcommand)]
    command: RootCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RootCommand {
    /// Write an unsigned root naming the keys (their key files) and the threshold.
    Build {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Root version: 1 for the first; N+1 to rotate from root N.
        #[arg(long, default_value_t = 1)]
        root_version: u64,
        /// Days until the root expires (at most 3650).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=MAX_EXPIRES_DAYS))]
        expires_days: u64,
        /// The release counter a store takes when it installs this root (its highest accepted
        /// release becomes this number): to reset a counter a fast-forwarded release number
        /// blocked, or to start a numbering. Pick it above every release still signed by a key
        /// this root keeps.
        #[arg(long)]
        release_counter: Option<u64>,
        /// Key files whose public keys the root trusts.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Signatures required.
        #[arg(long, default_value_t = 1)]
        threshold: u32,
        #[command(flatten)]
        roles: super::roles::RoleArgs,
    },
    /// Add a signature to a root file.
    Sign {
        /// The root file.
        root: PathBuf,
        /// The signing key file.
        #[arg(long)]
        key: PathBuf,
    },
}

/// Runs `rulebox root ...`.
pub fn root(args: RootArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RootCommand::Build {
            out,
            root_version: version,
            expires_days,
            release_counter,
            keys,
            threshold,
            roles,
        } => {
            let files = keys
                .iter()
                .map(|k| {
                    rulebox_release::read_key_file(k)
                        .with_context(|| format!("key {}", k.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let publics: Vec<&str> = files.iter().map(|k| k.public.as_str()).collect();
            let expires = expires_in(expires_days)?;
            let mut root = rulebox_release::build_root(version, expires, &publics, threshold)?;
            root.signed.release_counter = release_counter;
            for line in super::roles::declare(&roles, &mut root)? {
                println!("{line}");
            }
            rulebox_release::write_root(&out, &root)?;
            println!(
                "root version {version} with {} keys (threshold {threshold}) written to {}; sign it with `rulebox root sign`",
                files.len(),
                out.display()
            );
        }
        RootCommand::Sign { root, key } => {
            let key = rulebox_release::read_key_file(&key)
                .with_context(|| format!("key {}", key.display()))?;
            let signed = rulebox_release::sign_root_file(&root, &key)?;
            println!(
                "{} signed by {}: {} signatures",
                root.display(),
                key.keyid,
                signed.signatures.len()
            );
        }
    }
    Ok(ExitCode::from(super::EXIT_OK))
}

/// Arguments of `rulebox bundle`.
#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    #[command(subcommand)]
    command: BundleCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BundleCommand {
    /// Build an unsigned bundle folder from rule modules and rule packs (each is loaded in the real
    /// runtime first).
    Build {
        /// The bundle folder to create.
        #[arg(long)]
        out: PathBuf,
        /// The release number (above every release endpoints have accepted).
        #[arg(long)]
        release: u64,
        /// Days until the manifest expires (endpoints refuse to install it after; at most 3650).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=MAX_EXPIRES_DAYS))]
        expires_days: u64,
        /// Release notes.
        #[arg(long, default_value = "")]
        notes: String,
        /// A compiled folder of rule packs (`rulebox sigma compile -o DIR`): each `NAME.wasm` with
        /// its `NAME.rules` / `NAME.*.rules` data files is an engine and its packs. Repeatable.
        #[arg(long = "packs")]
        packs: Vec<PathBuf>,
        /// Rule modules (`.wasm` files or folders of them).
        #[arg(required_unless_present = "packs")]
        modules: Vec<PathBuf>,
    },
    /// Add a signature to a bundle's manifest: refused unless the validation report beside the
    /// bundle passed, is bound to this manifest, and is signed by a trusted gate key (`--key` itself,
    /// or one named with `--gate-key`).
    Sign {
        /// The bundle folder.
        bundle: PathBuf,
        /// The signing key file.
        #[arg(long)]
        key: PathBuf,
        /// A gate key whose signed validation reports are trusted (its key file, or just its public
        /// half from `rulebox keygen --public-out`). Repeatable.
        #[arg(long = "gate-key")]
        gate_keys: Vec<PathBuf>,
    },
    /// Check a bundle exactly as an endpoint would (signatures against ROOT, expiry, ABI, hashes),
    /// and load every module in the real runtime.
    Verify {
        /// The bundle folder.
        bundle: PathBuf,
        /// The trusted root file.
        #[arg(long)]
        root: PathBuf,
    },
}

/// Runs `rulebox bundle ...`.
pub fn bundle(args: BundleArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BundleCommand::Build {
            out,
            release,
            expires_days,
            notes,
            packs,
            modules,
        } => {
            let sources = if modules.is_empty() {
                Vec::new()
            } else {
                crate::load::module_files(&modules)?
                    .into_iter()
                    .map(|f| ModuleSource::Path(f.path))
                    .collect::<Vec<_>>()
            };
            let mut pack_sources = Vec::new();
            for dir in &packs {
                pack_sources.extend(
                    rulebox_release::pack_sources_in(dir)
                        .with_context(|| format!("packs {}", dir.display()))?,
                );
            }
            let expires = expires_in(expires_days)?;
            let manifest = rulebox_release::build_bundle_with_packs(
                &out,
                &sources,
                &pack_sources,
                &BundleOptions::new(release, expires, &notes),
            )?;
            let pack_rules: usize = manifest.packs.iter().map(|p| p.rules.len()).sum();
            println!(
                "bundle {} (release {release}, {} rules in modules, {pack_rules} rules in {} packs of {} engines) written; sign it with `rulebox bundle sign`",
                out.display(),
                manifest.rules.len(),
                manifest.packs.len(),
                manifest.engines.len()
            );
        }
        BundleCommand::Sign {
            bundle,
            key,
            gate_keys,
        } => {
            let key = rulebox_release::read_key_file(&key)
                .with_context(|| format!("key {}", key.display()))?;
            let gates = gate_keys
                .iter()
                .map(|p| {
                    rulebox_release::read_public_key_file(p)
                        .with_context(|| format!("gate key {}", p.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let signed = rulebox_release::sign_manifest_trusting(&bundle, &key, &gates)?;
            println!(
                "{} signed by {}: {} signatures",
                bundle.display(),
                key.keyid,
                signed.signatures.len()
            );
        }
        BundleCommand::Verify { bundle, root } => {
            match rulebox_release::verify_release(
                &bundle,
                &root,
                None,
                rulebox_runtime::content::now_unix(),
            ) {
                Ok(verified) => println!(
                    "ok: release {} with {} rules ({} in {} packs) verifies against {}",
                    verified.release(),
                    verified.modules().len()
                        + verified
                            .packs()
                            .iter()
                            .map(|(p, _)| p.rules.len())
                            .sum::<usize>(),
                    verified
                        .packs()
                        .iter()
                        .map(|(p, _)| p.rules.len())
                        .sum::<usize>(),
                    verified.packs().len(),
                    root.display()
                ),
                Err(e) => {
                    println!("refused: {e}");
                    return Ok(ExitCode::from(super::EXIT_QUARANTINE));
                }
            }
        }
    }
    Ok(ExitCode::from(super::EXIT_OK))
}
