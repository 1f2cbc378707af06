//! The JSON formats of releases: the signed envelope, the root of trust and the manifest.
//!
//! Every struct rejects unknown fields. A signature covers the *canonical bytes* of the signed value:
//! a per-type domain-separation context ([`CONTEXT_ROOT`], [`CONTEXT_MANIFEST`]) followed by
//! `serde_json::to_vec` of the struct (field order is the struct's, maps are `BTreeMap`s, so the
//! bytes are deterministic whatever the file's formatting). The context keeps a root signature from
//! ever being replayed as a manifest signature, and the other way round.
//!
//! A root may also declare **online roles** ([`Roles`]): keys held by online services (the
//! controller) that may sign only what their role allows (a timestamp; offers and reverts), each role
//! with its own keys, threshold and expiry. Manifests are signed only by the root's own keys.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Limits;

/// Domain-separation context prefixed to a root's canonical bytes before signing.
pub const CONTEXT_ROOT: &[u8] = b"rulebox-root-v1\0";
/// Domain-separation context prefixed to a manifest's canonical bytes before signing.
pub const CONTEXT_MANIFEST: &[u8] = b"rulebox-manifest-v1\0";
/// The manifest format of a release of one-rule modules only ([`Manifest::format`]): no `engines`,
/// no `packs`. What a release without packs is written as, so that older agents keep reading it.
pub const MANIFEST_FORMAT: u32 = 1;
/// The manifest format of a release that carries rule packs ([`Manifest::engines`],
/// [`Manifest::packs`]) besides, or instead of, one-rule modules.
pub const MANIFEST_FORMAT_PACKS: u32 = 2;
/// Most engines one manifest may list.
pub const MAX_ENGINES: usize = 64;
/// Most packs (rule data files) one manifest may list.
pub const MAX_PACKS: usize = 1_024;
/// Most rules one manifest may list, one-rule modules and rules of packs together.
pub const MAX_MANIFEST_RULES: usize = 65_536;

/// A value with the signatures over its canonical bytes: `{"signed": ..., "signatures": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed<T> {
    /// The signed value (a [`Root`] or a [`Manifest`]).
    pub signed: T,
    /// Signatures over [`signing_bytes`] of `signed`. Order does not matter; a key's repeated
    /// signatures count once; signatures by keys the verifier does not know are ignored.
    pub signatures: Vec<Signature>,
}

/// One ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// The signing key's id: hex SHA-256 of its 32-byte public key ([`key_id`]).
    pub keyid: String,
    /// The 64-byte ed25519 signature, hex.
    pub sig: String,
}

/// A type that can be signed: it names its domain-separation context.
pub trait Signable: Serialize + DeserializeOwned {
    /// The context prefixed to the canonical JSON bytes before signing.
    const CONTEXT: &'static [u8];
}

/// The root of trust an endpoint holds: the keys allowed to sign, and how many must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// Version of this root, starting at 1. Root `N + 1` is accepted only on top of root `N`.
    pub version: u64,
    /// When this root expires, in seconds since the Unix epoch. Informational on the endpoint (the
    /// store's status flags an expired root); manifests carry their own, enforced, expiry.
    pub expires_unix: u64,
    /// The signing keys, by key id (hex SHA-256 of the public key).
    pub keys: BTreeMap<String, KeyEntry>,
    /// How many distinct keys of `keys` must sign a manifest (and a new root). `1 ..= keys.len()`.
    pub threshold: u32,
    /// The release counter a store takes when it installs this root: its highest accepted release
    /// becomes this number, so releases numbered above it install (and, on a fresh store, the
    /// release-step bound counts from it). A rotation that carries it resets a counter that a
    /// fast-forwarded release number blocked; pick it above every release still signed by a key the
    /// root keeps, or the older ones install again. `None` (left out of the JSON): the counter is
    /// unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_counter: Option<u64>,
    /// The online roles (absent from the JSON when there are none, so a root without roles keeps
    /// the canonical bytes it had before roles existed, and its signatures).
    #[serde(default, skip_serializing_if = "Roles::is_empty")]
    pub roles: Roles,
}

/// The online roles a root may declare. Each role's keys are distinct from the root's own keys and
/// from every other role's, and a role signs only its own kind of document:
///
/// | role | may sign | context |
/// |---|---|---|
/// | `timestamp` | `timestamp.json` | `rulebox-timestamp-v1\0` |
/// | `rollout` | offers and reverts | `rulebox-offer-v1\0`, `rulebox-revert-v1\0` |
///
/// No role can sign a manifest or a root: those need the root's own (offline) keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// The timestamp role: signs the repository's short-lived `timestamp.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<RoleKeys>,
    /// The rollout role: signs offers of a release to a host, and reverts of a halted release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RoleKeys>,
}

impl Roles {
    /// `true` when no role is declared.
    pub fn is_empty(&self) -> bool {
        self.timestamp.is_none() && self.rollout.is_none()
    }

    /// The keys of role `name`, if the root declares it.
    pub fn get(&self, name: RoleName) -> Option<&RoleKeys> {
        match name {
            RoleName::Timestamp => self.timestamp.as_ref(),
            RoleName::Rollout => self.rollout.as_ref(),
        }
    }
}

/// The name of an online role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    /// Signs `timestamp.json`.
    Timestamp,
    /// Signs offers and reverts.
    Rollout,
}

impl RoleName {
    /// Every role, in a fixed order.
    pub const ALL: [RoleName; 2] = [RoleName::Timestamp, RoleName::Rollout];

    /// The role's name as written in JSON (`timestamp`, `rollout`).
    pub fn name(self) -> &'static str {
        match self {
            RoleName::Timestamp => "timestamp",
            RoleName::Rollout => "rollout",
        }
    }
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RoleName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoleName::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("`{s}` is not a role (timestamp, rollout)"))
    }
}

/// One online role's keys: who may sign for it, how many must, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleKeys {
    /// The role's keys, by key id (hex SHA-256 of the public key).
    pub keys: BTreeMap<String, KeyEntry>,
    /// How many distinct keys of `keys` must sign. `1 ..= keys.len()`.
    pub threshold: u32,
    /// After this instant (seconds since the Unix epoch) no key of the role counts: a stolen online
    /// key stops working by itself unless the root is renewed.
    pub expires_unix: u64,
}

/// A public key in a [`Root`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The 32-byte ed25519 public key, hex.
    pub public: String,
}

impl Signable for Root {
    const CONTEXT: &'static [u8] = CONTEXT_ROOT;
}

impl Root {
    /// Checks the root's own consistency: a usable threshold, every key a valid ed25519 public key
    /// filed under its own id; the same for each online role, whose keys must be distinct from the
    /// root's and from every other role's. Returns the root's own parsed keys by id.
    pub fn verifying_keys(&self) -> Result<BTreeMap<String, VerifyingKey>, String> {
        if self.version == 0 {
            return Err("version must be at least 1".to_owned());
        }
        let keys = parse_keys(&self.keys, self.threshold)?;
        let mut seen: BTreeMap<&str, &str> = keys.keys().map(|id| (id.as_str(), "root")).collect();
        for name in RoleName::ALL {
            let Some(role) = self.roles.get(name) else {
                continue;
            };
            parse_keys(&role.keys, role.threshold)
                .map_err(|problem| format!("role `{name}`: {problem}"))?;
            for id in role.keys.keys() {
                if let Some(other) = seen.insert(id.as_str(), name.name()) {
                    return Err(format!(
                        "role `{name}`: key `{id}` is also a key of {}; every role has keys of its own",
                        if other == "root" {
                            "the root itself".to_owned()
                        } else {
                            format!("role `{other}`")
                        }
                    ));
                }
            }
        }
        Ok(keys)
    }
}

impl RoleKeys {
    /// The role's parsed keys by id (checked as the root's own keys are).
    pub fn verifying_keys(&self) -> Result<BTreeMap<String, VerifyingKey>, String> {
        parse_keys(&self.keys, self.threshold)
    }
}

/// Parses a key map with its threshold: `1 ..= keys.len()`, every key a valid, non-weak ed25519
/// public key filed under its own id.
fn parse_keys(
    entries: &BTreeMap<String, KeyEntry>,
    threshold: u32,
) -> Result<BTreeMap<String, VerifyingKey>, String> {
    let count = entries.len();
    let threshold = usize::try_from(threshold).unwrap_or(usize::MAX);
    if threshold == 0 {
        return Err("threshold must be at least 1".to_owned());
    }
    if threshold > count {
        return Err(format!(
            "threshold {threshold} is more than the {count} keys named"
        ));
    }
    let mut keys = BTreeMap::new();
    for (id, entry) in entries {
        let bytes = decode_fixed::<32>(&entry.public)
            .ok_or_else(|| format!("key `{id}`: public key is not 32 bytes of hex"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| format!("key `{id}`: not a valid ed25519 public key"))?;
        if key.is_weak() {
            return Err(format!("key `{id}`: a weak (small-order) ed25519 key"));
        }
        let expected = key_id(&bytes);
        if *id != expected {
            return Err(format!(
                "key filed as `{id}` has id `{expected}` (the hex SHA-256 of its public key)"
            ));
        }
        keys.insert(id.clone(), key);
    }
    Ok(keys)
}

/// A release's manifest: what the bundle holds and the conditions to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format: [`MANIFEST_FORMAT`] (1) for one-rule modules only, [`MANIFEST_FORMAT_PACKS`]
    /// (2) for a release with packs. This runtime reads both.
    pub format: u32,
    /// Release number. Strictly increasing: an endpoint refuses a release not above the highest it
    /// has accepted (rollback defence).
    pub release: u64,
    /// When the release was built, in seconds since the Unix epoch (informational).
    pub created_unix: u64,
    /// After this instant (seconds since the Unix epoch) the manifest is refused for installation
    /// (freeze defence). Content already running keeps running and is flagged.
    pub expires_unix: u64,
    /// Oldest `rulebox-runtime` version that may run this release, `"major.minor.patch"`, compared
    /// numerically.
    pub min_runtime: String,
    /// The guest ABI version every module of `rules` implements (`rulebox_sdk::abi::ABI_VERSION`);
    /// an engine states its own ([`EngineEntry::abi_version`]).
    pub abi_version: u32,
    /// Event-schema versions the modules were built for; the runtime's
    /// (`rulebox_sdk::abi::SCHEMA_VERSION`) must be among them.
    pub schema_versions: Vec<u32>,
    /// The one-rule modules. Rule ids are unique across these and every pack's rules.
    pub rules: Vec<RuleEntry>,
    /// Engine modules (rule packs, ABI 3) whose rules are data: each compiled once on an endpoint,
    /// whatever the number of packs it runs. Absent from the JSON when empty (format 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engines: Vec<EngineEntry>,
    /// Rule packs: one data file each, loaded into the engine it names. Absent from the JSON when
    /// empty (format 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs: Vec<PackEntry>,
    /// Release notes for people.
    pub notes: String,
}

impl Signable for Manifest {
    const CONTEXT: &'static [u8] = CONTEXT_MANIFEST;
}

/// One rule module of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    /// The rule's id, as the module's own metadata reports it.
    pub id: String,
    /// The rule's version, as the module's own metadata reports it.
    pub version: String,
    /// The module's path in the bundle: exactly `modules/<sha256>.wasm` ([`module_file_name`]).
    pub file: String,
    /// SHA-256 of the module bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// The module's size in bytes.
    pub size: u64,
    /// Limits for this rule, replacing the runtime's defaults; `None` keeps the defaults.
    pub limits: Option<Limits>,
}

/// An engine module of a release: a rule pack (ABI 3) loaded with the data of each [`PackEntry`]
/// that names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineEntry {
    /// The module's path in the bundle: exactly `modules/<sha256>.wasm` ([`module_file_name`]).
    pub file: String,
    /// SHA-256 of the module bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// The module's size in bytes.
    pub size: u64,
    /// The guest ABI the engine implements: `rulebox_sdk::abi::PACK_ABI_VERSION` (3).
    pub abi_version: u32,
}

/// One rule pack of a release: a rule data file and the engine that loads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackEntry {
    /// The pack's id, as the engine reports it once loaded with the data.
    pub id: String,
    /// The pack's version, as the engine reports it.
    pub version: String,
    /// SHA-256 of the engine module ([`EngineEntry::sha256`] of an entry of the same manifest).
    pub engine: String,
    /// The data file's path in the bundle: exactly `data/<sha256>.rules` ([`data_file_name`]).
    pub file: String,
    /// SHA-256 of the data, 64 lowercase hex digits.
    pub sha256: String,
    /// The data's size in bytes.
    pub size: u64,
    /// The pack's own limits (memory, tables, load budgets, its work outside every rule) and the
    /// default of its rules; `None` keeps the runtime's.
    pub limits: Option<Limits>,
    /// The rules the data holds, in the pack's index order, as the engine reports them.
    pub rules: Vec<PackRuleEntry>,
}

/// One rule inside a pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackRuleEntry {
    /// The rule's id.
    pub id: String,
    /// The rule's version.
    pub version: String,
    /// Limits for this rule (its fuel and deadline per event, its strikes), replacing the pack's;
    /// `None` keeps the pack's (or the runtime configuration's entry for the rule id).
    pub limits: Option<Limits>,
}

/// One file a manifest lists, whatever it holds: its path in the bundle (and the repository), its
/// SHA-256 and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedFile<'m> {
    /// The path: `modules/<sha256>.wasm` or `data/<sha256>.rules`.
    pub file: &'m str,
    /// SHA-256, hex, as the manifest states it.
    pub sha256: &'m str,
    /// Size in bytes, as the manifest states it.
    pub size: u64,
    /// What the file is, for messages: a rule id, `engine`, or a pack id.
    pub owner: &'m str,
}

impl Manifest {
    /// Every file the manifest lists, in order: the one-rule modules, the engines, the packs' data.
    /// Not checked: see `check_bundle_structure`.
    pub fn files(&self) -> impl Iterator<Item = ListedFile<'_>> {
        let rules = self.rules.iter().map(|e| ListedFile {
            file: &e.file,
            sha256: &e.sha256,
            size: e.size,
            owner: &e.id,
        });
        let engines = self.engines.iter().map(|e| ListedFile {
            file: &e.file,
            sha256: &e.sha256,
            size: e.size,
            owner: "engine",
        });
        let packs = self.packs.iter().map(|p| ListedFile {
            file: &p.file,
            sha256: &p.sha256,
            size: p.size,
            owner: &p.id,
        });
        rules.chain(engines).chain(packs)
    }
}

/// The key id of a public key: hex SHA-256 of its 32 bytes.
pub fn key_id(public: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(public))
}

/// The only file name a module may have in a bundle: `modules/<sha256>.wasm`.
pub fn module_file_name(sha256: &str) -> String {
    format!("modules/{sha256}.wasm")
}

/// The only file name a pack's rule data may have in a bundle: `data/<sha256>.rules`.
pub fn data_file_name(sha256: &str) -> String {
    format!("data/{sha256}.rules")
}

/// The bytes a signature covers: the type's context followed by the canonical JSON of `value`.
pub fn signing_bytes<T: Signable>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut bytes = T::CONTEXT.to_vec();
    serde_json::to_writer(&mut bytes, value)?;
    Ok(bytes)
}

/// A manifest's canonical hash: hex SHA-256 of its [`signing_bytes`]. Two manifests with the same
/// hash have the same content, however their files are formatted or signed.
pub fn manifest_hash(manifest: &Manifest) -> Result<String, serde_json::Error> {
    Ok(hex::encode(Sha256::digest(signing_bytes(manifest)?)))
}

/// `true` for exactly 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `N` bytes from hex text (either case), or `None`.
pub(crate) fn decode_fixed<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// A `major.minor.patch` version; anything after a `-` or `+` in the patch part is ignored (so
/// `0.1.0-dev` compares as `0.1.0`).
pub(crate) fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let mut next = || -> Option<u64> {
        let p = parts.next()?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let v = (next()?, next()?, next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_compare_numerically() {
        assert_eq!(parse_version("0.10.2"), Some((0, 10, 2)));
        assert_eq!(parse_version("1.2.3-rc.1"), Some((1, 2, 3)));
        assert!(parse_version("0.10.2") > parse_version("0.9.99"));
        for bad in [
            "", "1", "1.2", "1.2.3.4", "a.b.c", "1..3", "-1.0.0", "1.2.+3",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn contexts_differ_and_prefix_the_canonical_bytes() {
        assert_ne!(CONTEXT_ROOT, CONTEXT_MANIFEST);
        let root = Root {
            version: 1,
            expires_unix: 9,
            keys: BTreeMap::new(),
            threshold: 1,
            release_counter: None,
            roles: Roles::default(),
        };
        let bytes = signing_bytes(&root).unwrap();
        assert!(bytes.starts_with(CONTEXT_ROOT));
        assert_eq!(
            &bytes[CONTEXT_ROOT.len()..],
            br#"{"version":1,"expires_unix":9,"keys":{},"threshold":1}"#
        );
    }

    #[test]
    fn sha256_hex_is_strict() {
        assert!(is_sha256_hex(&"a".repeat(64)));
        assert!(!is_sha256_hex(&"A".repeat(64)));
        assert!(!is_sha256_hex(&"a".repeat(63)));
        assert!(!is_sha256_hex(&"g".repeat(64)));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<Signed<Root>>(
            r#"{"signed":{"version":1,"expires_unix":1,"keys":{},"threshold":1,"extra":1},"signatures":[]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");
    }

    #[test]
    fn a_root_without_roles_keeps_its_canonical_bytes_and_one_with_roles_round_trips() {
        // The bytes a root signed before roles existed (no `roles` field at all).
        let old = br#"{"version":3,"expires_unix":9,"keys":{},"threshold":1}"#;
        let root: Root = serde_json::from_slice(old).unwrap();
        assert!(root.roles.is_empty());
        assert_eq!(serde_json::to_vec(&root).unwrap(), old.to_vec());
        let mut with = root.clone();
        with.roles.rollout = Some(RoleKeys {
            keys: BTreeMap::new(),
            threshold: 1,
            expires_unix: 7,
        });
        let text = serde_json::to_string(&with).unwrap();
        assert!(
            text.ends_with(r#""roles":{"rollout":{"keys":{},"threshold":1,"expires_unix":7}}}"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Root>(&text).unwrap(), with);
        let err = serde_json::from_str::<Root>(
            r#"{"version":1,"expires_unix":1,"keys":{},"threshold":1,"roles":{"manifest":{}}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `manifest`"),
            "{err}"
        );
        assert_eq!("rollout".parse::<RoleName>(), Ok(RoleName::Rollout));
        assert!("root".parse::<RoleName>().is_err());
    }
}
