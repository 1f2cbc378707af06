//! Helpers for the content tests: deterministic keys, signed roots and bundles on disk.

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};

use super::format::{
    KeyEntry, MANIFEST_FORMAT, Manifest, RoleKeys, Roles, Root, RuleEntry, Signable, Signature,
    Signed, key_id, module_file_name, signing_bytes,
};

/// A fixed "now" for the tests.
pub(crate) const NOW: u64 = 1_700_000_000;
/// A week later.
pub(crate) const LATER: u64 = NOW + 7 * 86_400;

pub(crate) fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub(crate) fn keyid(key: &SigningKey) -> String {
    key_id(key.verifying_key().as_bytes())
}

pub(crate) fn root(version: u64, keys: &[&SigningKey], threshold: u32) -> Root {
    Root {
        version,
        expires_unix: LATER,
        keys: keys
            .iter()
            .map(|k| {
                (
                    keyid(k),
                    KeyEntry {
                        public: hex::encode(k.verifying_key().as_bytes()),
                    },
                )
            })
            .collect(),
        threshold,
        release_counter: None,
        roles: Roles::default(),
    }
}

/// An online role of `keys` with `threshold`, expiring at `expires_unix`.
pub(crate) fn role_keys(keys: &[&SigningKey], threshold: u32, expires_unix: u64) -> RoleKeys {
    RoleKeys {
        keys: keys
            .iter()
            .map(|k| {
                (
                    keyid(k),
                    KeyEntry {
                        public: hex::encode(k.verifying_key().as_bytes()),
                    },
                )
            })
            .collect(),
        threshold,
        expires_unix,
    }
}

/// Root version 1 of key 1, with a timestamp role (key 20) and a rollout role (keys 30 and 31,
/// threshold 2), both expiring at [`LATER`].
pub(crate) fn root_with_roles() -> Root {
    let mut r = root(1, &[&key(1)], 1);
    r.roles = Roles {
        timestamp: Some(role_keys(&[&key(20)], 1, LATER)),
        rollout: Some(role_keys(&[&key(30), &key(31)], 2, LATER)),
    };
    r
}

pub(crate) fn sign<T: Signable + Clone>(value: &T, signers: &[&SigningKey]) -> Signed<T> {
    let message = signing_bytes(value).unwrap();
    Signed {
        signed: value.clone(),
        signatures: signers
            .iter()
            .map(|k| Signature {
                keyid: keyid(k),
                sig: hex::encode(k.sign(&message).to_bytes()),
            })
            .collect(),
    }
}

pub(crate) fn root_bytes(root: &Root, signers: &[&SigningKey]) -> Vec<u8> {
    serde_json::to_vec_pretty(&sign(root, signers)).unwrap()
}

/// Three real rule modules (the example rules).
pub(crate) fn modules() -> Vec<(&'static str, &'static [u8])> {
    rulebox_example_artifacts::good()
        .take(3)
        .map(|a| (a.name, a.bytes))
        .collect()
}

pub(crate) fn entry(id: &str, version: &str, bytes: &[u8]) -> RuleEntry {
    let sha256 = crate::content_hash(bytes);
    RuleEntry {
        id: id.to_owned(),
        version: version.to_owned(),
        file: module_file_name(&sha256),
        sha256,
        size: bytes.len() as u64,
        limits: None,
    }
}

pub(crate) fn manifest(release: u64, modules: &[(&str, &[u8])]) -> Manifest {
    Manifest {
        format: MANIFEST_FORMAT,
        release,
        created_unix: NOW - 60,
        expires_unix: LATER,
        min_runtime: "0.1.0".to_owned(),
        abi_version: rulebox_sdk::abi::ABI_VERSION,
        schema_versions: vec![rulebox_sdk::abi::SCHEMA_VERSION],
        rules: modules
            .iter()
            .map(|(id, bytes)| entry(id, "1.0.0", bytes))
            .collect(),
        engines: Vec::new(),
        packs: Vec::new(),
        notes: format!("release {release}"),
    }
}

/// Writes a bundle: `manifest.json` signed by `signers`, and the modules (matched to entries in
/// order).
pub(crate) fn write_bundle(
    dir: &Path,
    manifest: &Manifest,
    signers: &[&SigningKey],
    modules: &[&[u8]],
) {
    std::fs::create_dir_all(dir.join("modules")).unwrap();
    for (entry, bytes) in manifest.rules.iter().zip(modules) {
        std::fs::write(dir.join(&entry.file), bytes).unwrap();
    }
    let envelope = sign(manifest, signers);
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&envelope).unwrap(),
    )
    .unwrap();
}

/// A release of the three example modules, signed by `signers`, in `dir`.
pub(crate) fn standard_bundle(dir: &Path, release: u64, signers: &[&SigningKey]) -> Manifest {
    let mods = modules();
    let manifest = manifest(release, &mods);
    let bytes: Vec<&[u8]> = mods.iter().map(|(_, b)| *b).collect();
    write_bundle(dir, &manifest, signers, &bytes);
    manifest
}

/// Bytes standing for an engine module (the structure checks never compile it).
pub(crate) const ENGINE: &[u8] = b"\0asm engine bytes";

/// A pack entry of `data` for the engine `engine`, declaring `rules` (id, version).
pub(crate) fn pack_entry(
    id: &str,
    engine: &[u8],
    data: &[u8],
    rules: &[(&str, &str)],
) -> super::format::PackEntry {
    let sha256 = crate::content_hash(data);
    super::format::PackEntry {
        id: id.to_owned(),
        version: "1".to_owned(),
        engine: crate::content_hash(engine),
        file: super::format::data_file_name(&sha256),
        sha256,
        size: data.len() as u64,
        limits: None,
        rules: rules
            .iter()
            .map(|(id, version)| super::format::PackRuleEntry {
                id: (*id).to_owned(),
                version: (*version).to_owned(),
                limits: None,
            })
            .collect(),
    }
}

/// The engine entry of `engine`.
pub(crate) fn engine_entry(engine: &[u8]) -> super::format::EngineEntry {
    let sha256 = crate::content_hash(engine);
    super::format::EngineEntry {
        file: module_file_name(&sha256),
        sha256,
        size: engine.len() as u64,
        abi_version: rulebox_sdk::abi::PACK_ABI_VERSION,
    }
}

/// A release of the three example modules and one pack (`ENGINE` with `data`, rules `p1`, `p2`),
/// format 2, signed by `signers`, in `dir`.
pub(crate) fn pack_bundle(
    dir: &Path,
    release: u64,
    data: &[u8],
    signers: &[&SigningKey],
) -> Manifest {
    let mods = modules();
    let mut manifest = manifest(release, &mods);
    manifest.format = super::format::MANIFEST_FORMAT_PACKS;
    manifest.engines = vec![engine_entry(ENGINE)];
    manifest.packs = vec![pack_entry(
        "pack",
        ENGINE,
        data,
        &[("p1", "1"), ("p2", "1")],
    )];
    let bytes: Vec<&[u8]> = mods.iter().map(|(_, b)| *b).collect();
    write_bundle(dir, &manifest, signers, &bytes);
    std::fs::write(dir.join(&manifest.engines[0].file), ENGINE).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join(&manifest.packs[0].file), data).unwrap();
    manifest
}
