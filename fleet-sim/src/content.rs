//! The simulation's content: the vendor's keys and root, the previous (good) release and the new
//! release of each scenario, built and signed with the real release tools, and the owner's key that
//! signs customer policies.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rulebox_release::{
    BundleOptions, KeyFile, ModuleSource, OnlineKey, add_signature, build_bundle, build_root,
    declare_role, sign_manifest, sign_root, write_root,
};
use rulebox_runtime::content::{CustomerPolicy, POLICY_FORMAT, PolicyMode, RoleName, Signed};
use rulebox_sdk::abi::{ABI_VERSION, SCHEMA_VERSION, pack};
use rulebox_sdk::{Detections, EventKinds, RuleMetadata, Severity};
use sha2::{Digest, Sha256};

use crate::scenario::{Scenario, SimError};

/// The id of the detection-storm rule.
pub const STORM_RULE_ID: &str = "fires-on-everything";

/// A deterministic key for the simulation (never a real key: derived from a public label).
pub fn sim_key(label: &str, seed: u64) -> KeyFile {
    let mut h = Sha256::new();
    h.update(b"rulebox-sim-key\0");
    h.update(label.as_bytes());
    h.update(seed.to_le_bytes());
    let bytes: [u8; 32] = h.finalize().into();
    KeyFile::from_signing_key(&SigningKey::from_bytes(&bytes))
}

/// A rule that subscribes to every event kind and reports one detection on every event: the
/// detection storm. Hand-written WebAssembly (text, assembled here; nothing binary is committed).
pub fn storm_rule() -> Result<Vec<u8>, SimError> {
    let meta = RuleMetadata {
        schema_version: SCHEMA_VERSION,
        id: Cow::Borrowed(STORM_RULE_ID),
        name: Cow::Borrowed("Fires on everything"),
        version: Cow::Borrowed("1.0.0"),
        severity: Severity::Low,
        subscriptions: EventKinds::all(),
    };
    let mut list = Detections::new(STORM_RULE_ID, Severity::Low);
    list.detect("suspicious activity");
    let detections = list.as_bytes();
    let meta = postcard::to_allocvec(&meta).map_err(|e| SimError::Content(e.to_string()))?;
    let escape = |b: &[u8]| b.iter().map(|b| format!("\\{b:02x}")).collect::<String>();
    let len = |b: &[u8]| u32::try_from(b.len()).unwrap_or(u32::MAX);
    let text = format!(
        r#"(module
  (memory (export "memory") 2)
  (data (i32.const 1024) "{meta}")
  (data (i32.const 4096) "{det}")
  (func (export "rulebox_abi_version") (result i32) i32.const {ABI_VERSION})
  (func (export "rulebox_metadata") (result i64) i64.const {meta_packed})
  (func (export "rulebox_input") (param i32) (result i32)
    (if (result i32) (i32.gt_u (local.get 0) (i32.const 65536))
      (then (i32.const 0)) (else (i32.const 65536))))
  (func (export "rulebox_on_event") (param i32) (result i64) i64.const {det_packed}))"#,
        meta = escape(&meta),
        det = escape(detections),
        meta_packed = pack(1024, len(&meta)).cast_signed(),
        det_packed = pack(4096, len(detections)).cast_signed(),
    );
    wat::parse_str(&text).map_err(|e| SimError::Content(e.to_string()))
}

/// The modules of each release.
fn modules(scenario: Option<Scenario>) -> Result<Vec<ModuleSource>, SimError> {
    let mut out: Vec<ModuleSource> = rulebox_example_artifacts::good()
        .map(|a| ModuleSource::Bytes {
            name: a.name.to_owned(),
            bytes: a.bytes.to_vec(),
        })
        .collect();
    match scenario {
        Some(Scenario::Trap) => {
            for a in [
                &rulebox_example_artifacts::ENDLESS_LOOP,
                &rulebox_example_artifacts::NULL_DEREF,
            ] {
                out.push(ModuleSource::Bytes {
                    name: a.name.to_owned(),
                    bytes: a.bytes.to_vec(),
                });
            }
        }
        Some(Scenario::DetectionStorm) => out.push(ModuleSource::Bytes {
            name: STORM_RULE_ID.to_owned(),
            bytes: storm_rule()?,
        }),
        _ => {}
    }
    Ok(out)
}

/// Everything signed the simulation needs, in a temporary folder.
#[derive(Debug)]
pub struct SimContent {
    /// The temporary folder (removed on drop).
    pub dir: tempfile::TempDir,
    /// The vendor's content-root key (signs manifests; stays offline).
    pub vendor: KeyFile,
    /// The controller's key: the root's rollout role (signs offers and reverts).
    pub rollout: OnlineKey,
    /// The content root envelope's file.
    pub root_path: PathBuf,
    /// The content root envelope.
    pub root_bytes: Vec<u8>,
    /// The owner's root envelope (signs customer policies).
    pub owner_root_bytes: Vec<u8>,
    /// The owner's key.
    pub owner: KeyFile,
    /// The previous release's number and bundle folder.
    pub previous: (u64, PathBuf),
    /// The new release's number and bundle folder.
    pub new: (u64, PathBuf),
    /// When the new release was built (the simulation's start).
    pub created_unix: u64,
}

/// The previous release's number.
pub const PREVIOUS_RELEASE: u64 = 41;
/// The new release's number.
pub const NEW_RELEASE: u64 = 42;

fn release_err(e: rulebox_release::ReleaseError) -> SimError {
    SimError::Content(e.to_string())
}

/// Signs a release the way the vendor does: through the release gate (a passing validation report
/// bound to the manifest hash). The bad scenarios stand for content that passed the gate and failed
/// in the field; where the gate does catch the stand-in fault (a trapping rule, for one), the bundle
/// is signed by hand with [`add_signature`], as an insider holding the key could, because the point
/// of the simulation is what the fleet does when bad content gets signed anyway.
fn release_through_gate(
    path: &Path,
    vendor: &KeyFile,
    scenario: Option<Scenario>,
) -> Result<(), SimError> {
    let options = rulebox_validate::Options {
        generated_per_kind: 4,
        ..Default::default()
    };
    // The vendor validates with its own key as the gate key.
    let (report, _) =
        rulebox_release::validate_for_release(path, &options, vendor).map_err(release_err)?;
    if report.passed {
        return sign_manifest(path, vendor).map(|_| ()).map_err(release_err);
    }
    if matches!(scenario, None | Some(Scenario::Good)) {
        return Err(SimError::Content(format!(
            "the release gate refused the good release: {}",
            report.failure_summary()
        )));
    }
    let manifest = path.join("manifest.json");
    let text = std::fs::read(&manifest).map_err(|e| SimError::Content(e.to_string()))?;
    let mut envelope: Signed<rulebox_runtime::content::Manifest> =
        serde_json::from_slice(&text).map_err(|e| SimError::Content(e.to_string()))?;
    add_signature(&mut envelope, vendor).map_err(release_err)?;
    let text = serde_json::to_vec(&envelope).map_err(|e| SimError::Content(e.to_string()))?;
    std::fs::write(&manifest, text).map_err(|e| SimError::Content(e.to_string()))
}

/// Builds and signs the root, the previous release and the scenario's new release at `start_unix`.
pub fn build(scenario: Scenario, seed: u64, start_unix: u64) -> Result<SimContent, SimError> {
    let dir = tempfile::tempdir().map_err(|e| SimError::Content(e.to_string()))?;
    let vendor = sim_key("vendor", seed);
    let owner = sim_key("owner", seed);
    let expires = start_unix + 90 * 86_400;
    let rollout = OnlineKey {
        role: RoleName::Rollout,
        key: sim_key("rollout", seed),
    };
    let mut root = build_root(1, expires, &[vendor.public.as_str()], 1).map_err(release_err)?;
    declare_role(
        &mut root,
        RoleName::Rollout,
        &[rollout.key.public.as_str()],
        1,
        expires,
    )
    .map_err(release_err)?;
    sign_root(&mut root, &vendor).map_err(release_err)?;
    let root_path = dir.path().join("root.json");
    write_root(&root_path, &root).map_err(release_err)?;
    let root_bytes = std::fs::read(&root_path).map_err(|e| SimError::Content(e.to_string()))?;
    let mut owner_root =
        build_root(1, expires, &[owner.public.as_str()], 1).map_err(release_err)?;
    sign_root(&mut owner_root, &owner).map_err(release_err)?;
    let owner_root_bytes =
        serde_json::to_vec(&owner_root).map_err(|e| SimError::Content(e.to_string()))?;

    let make = |release: u64, created: u64, scenario: Option<Scenario>, notes: &str| {
        let path = dir.path().join(format!("bundle-{release}"));
        let mut options = BundleOptions::new(release, expires, notes);
        options.created_unix = Some(created);
        build_bundle(&path, &modules(scenario)?, &options).map_err(release_err)?;
        release_through_gate(&path, &vendor, scenario)?;
        Ok::<_, SimError>(path)
    };
    let previous = make(
        PREVIOUS_RELEASE,
        start_unix - 7 * 86_400,
        None,
        "last week's content",
    )?;
    let new = make(
        NEW_RELEASE,
        start_unix,
        Some(scenario),
        &format!("scenario {}", scenario.name()),
    )?;
    Ok(SimContent {
        dir,
        vendor,
        rollout,
        root_path,
        root_bytes,
        owner_root_bytes,
        owner,
        previous: (PREVIOUS_RELEASE, previous),
        new: (NEW_RELEASE, new),
        created_unix: start_unix,
    })
}

/// A customer policy signed by the owner's key.
pub fn signed_policy(
    owner: &KeyFile,
    version: u64,
    mode: PolicyMode,
    delay_hours: u32,
    issued_unix: u64,
) -> Result<(CustomerPolicy, Vec<u8>), SimError> {
    let policy = CustomerPolicy {
        format: POLICY_FORMAT,
        version,
        issued_unix,
        mode,
        delay_hours,
        notes: String::new(),
    };
    let mut envelope = Signed {
        signed: policy.clone(),
        signatures: Vec::new(),
    };
    add_signature(&mut envelope, owner).map_err(release_err)?;
    let bytes = serde_json::to_vec(&envelope).map_err(|e| SimError::Content(e.to_string()))?;
    Ok((policy, bytes))
}

/// The bundle folder of `release`.
pub fn bundle_dir(content: &SimContent, release: u64) -> &Path {
    if release == content.previous.0 {
        &content.previous.1
    } else {
        &content.new.1
    }
}
