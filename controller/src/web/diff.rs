//! What a release changes against the previous one: rule ids and versions added, removed and
//! changed, read from the two published manifests (their signatures checked against the root).

use std::collections::BTreeMap;

use rulebox_release::Repository;
use rulebox_runtime::content::{Manifest, Root, Signed, verify_envelope};
use serde::Serialize;

/// A rule as a manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    /// The rule id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of its module.
    pub sha256: String,
}

/// A rule in both releases whose module differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    /// In the previous release.
    pub before: RuleRef,
    /// In the new one.
    pub after: RuleRef,
}

/// The difference between two releases' rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleDiff {
    /// The previous release.
    pub previous: u64,
    /// The new release.
    pub release: u64,
    /// Rules only in the new release.
    pub added: Vec<RuleRef>,
    /// Rules only in the previous one.
    pub removed: Vec<RuleRef>,
    /// Rules in both with another module.
    pub changed: Vec<Changed>,
    /// Rules in both with the same module.
    pub unchanged: usize,
}

/// Reads release `release`'s published manifest and checks its signatures against `root`.
pub fn manifest(repo: &Repository, root: &Root, release: u64) -> Result<Manifest, String> {
    let (bytes, _) = repo
        .manifest(release)
        .map_err(|e| format!("release {release}: {e}"))?;
    let envelope: Signed<Manifest> = serde_json::from_slice(&bytes)
        .map_err(|e| format!("release {release}: the manifest does not parse: {e}"))?;
    verify_envelope(&envelope, root)
        .map_err(|e| format!("release {release}: the manifest's signatures: {e}"))?;
    if envelope.signed.release != release {
        return Err(format!(
            "the manifest published as release {release} names release {}",
            envelope.signed.release
        ));
    }
    Ok(envelope.signed)
}

fn rules(m: &Manifest) -> BTreeMap<&str, RuleRef> {
    m.rules
        .iter()
        .map(|r| {
            (
                r.id.as_str(),
                RuleRef {
                    id: r.id.clone(),
                    version: r.version.clone(),
                    sha256: r.sha256.clone(),
                },
            )
        })
        .collect()
}

/// The difference from `before` to `after`, every list in rule-id order.
pub fn diff(before: &Manifest, after: &Manifest) -> RuleDiff {
    let (old, new) = (rules(before), rules(after));
    let mut out = RuleDiff {
        previous: before.release,
        release: after.release,
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        unchanged: 0,
    };
    for (id, rule) in &new {
        match old.get(id) {
            None => out.added.push(rule.clone()),
            Some(prev) if prev.sha256 == rule.sha256 && prev.version == rule.version => {
                out.unchanged += 1;
            }
            Some(prev) => out.changed.push(Changed {
                before: prev.clone(),
                after: rule.clone(),
            }),
        }
    }
    out.removed = old
        .iter()
        .filter(|(id, _)| !new.contains_key(*id))
        .map(|(_, r)| r.clone())
        .collect();
    out
}

/// The difference between release `previous` and `release` as published in `repo`.
pub fn between(
    repo: &Repository,
    root: &Root,
    previous: u64,
    release: u64,
) -> Result<RuleDiff, String> {
    Ok(diff(
        &manifest(repo, root, previous)?,
        &manifest(repo, root, release)?,
    ))
}
