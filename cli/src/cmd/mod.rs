//! One module per command.

pub mod agent;
pub mod bench;
pub mod controller;
pub mod demo;
pub mod fleet;
pub mod new;
pub mod policy;
pub mod publish;
pub mod release;
pub mod replay;
pub mod roles;
pub mod rollout;
pub mod rollout_service;
pub mod run;
pub mod sigma;
pub mod store;
pub mod test;
pub mod validate;

/// Exit status: success, nothing quarantined or rejected.
pub const EXIT_OK: u8 = 0;
/// Exit status: a usage, input or I/O error stopped the command.
pub const EXIT_ERROR: u8 = 1;
/// Exit status: the command ran, and at least one rule was quarantined or rejected.
pub const EXIT_QUARANTINE: u8 = 2;

/// Signs `envelope` with each key file in `keys` (a threshold needs several) and writes it to `out`
/// as pretty JSON.
pub fn sign_and_write<T>(
    envelope: &mut rulebox_runtime::content::Signed<T>,
    keys: &[std::path::PathBuf],
    out: &std::path::Path,
) -> anyhow::Result<()>
where
    T: rulebox_runtime::content::Signable + serde::Serialize,
{
    use anyhow::Context;
    for path in keys {
        let key = rulebox_release::read_key_file(path)?;
        rulebox_release::add_signature(envelope, &key)?;
    }
    std::fs::write(out, serde_json::to_vec_pretty(envelope)?)
        .with_context(|| format!("cannot write {}", out.display()))
}
