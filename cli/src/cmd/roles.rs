//! The online roles of a root on the command line: `rulebox root build --rollout-key ...
//! --timestamp-key ...` and `rulebox keygen --role ROLE`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rulebox_runtime::content::{RoleName, Root, Signed};

/// The role flags of `rulebox root build`.
#[derive(Debug, Clone, clap::Args)]
pub struct RoleArgs {
    /// An online key file of the timestamp role (`rulebox keygen --role timestamp`), which signs
    /// the repository's timestamp.json; only its public half goes into the root. Repeat for several.
    #[arg(long = "timestamp-key")]
    timestamp_keys: Vec<PathBuf>,
    /// Signatures of the timestamp role required.
    #[arg(long, default_value_t = 1)]
    timestamp_threshold: u32,
    /// An online key file of the rollout role (`rulebox keygen --role rollout`), which signs offers
    /// and reverts (the controller's key); only its public half goes into the root. Repeat for
    /// several.
    #[arg(long = "rollout-key")]
    rollout_keys: Vec<PathBuf>,
    /// Signatures of the rollout role required.
    #[arg(long, default_value_t = 1)]
    rollout_threshold: u32,
    /// Days until the online roles expire (their keys stop counting; renew the root before).
    #[arg(long, default_value_t = 90)]
    roles_expire_days: u64,
}

/// Declares the roles `args` names in `root` (unsigned); returns a description of each.
pub fn declare(args: &RoleArgs, root: &mut Signed<Root>) -> anyhow::Result<Vec<String>> {
    let expires = rulebox_runtime::content::now_unix()
        .saturating_add(args.roles_expire_days.saturating_mul(86_400));
    let mut out = Vec::new();
    for (role, paths, threshold) in [
        (
            RoleName::Timestamp,
            &args.timestamp_keys,
            args.timestamp_threshold,
        ),
        (
            RoleName::Rollout,
            &args.rollout_keys,
            args.rollout_threshold,
        ),
    ] {
        if paths.is_empty() {
            continue;
        }
        let keys = paths
            .iter()
            .map(|p| {
                let key = rulebox_release::read_online_key(p)
                    .with_context(|| format!("key {}", p.display()))?;
                anyhow::ensure!(
                    key.role == role,
                    "{} is a `{}` key, given as a `{role}` key",
                    p.display(),
                    key.role
                );
                Ok(key)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let publics: Vec<&str> = keys.iter().map(|k| k.key.public.as_str()).collect();
        rulebox_release::declare_role(root, role, &publics, threshold, expires)?;
        out.push(format!(
            "role `{role}`: {} key(s), threshold {threshold}, expiring in {} days",
            keys.len(),
            args.roles_expire_days
        ));
    }
    Ok(out)
}

/// `rulebox keygen --role ROLE --out FILE`: a new online key.
pub fn keygen(role: RoleName, out: &Path) -> anyhow::Result<ExitCode> {
    let key = rulebox_release::generate_online_key(role)?;
    rulebox_release::write_online_key(out, &key)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{role} key {} written to {} (public {}); it belongs on the online service, never with the root's keys",
        key.key.keyid,
        out.display(),
        key.key.public
    );
    Ok(ExitCode::from(super::EXIT_OK))
}
