//! Online keys: the keys of the root's online roles ([`RoleName::Timestamp`],
//! [`RoleName::Rollout`]), which an online service (the controller) holds instead of any of the
//! root's own keys.
//!
//! An online key file names its role, `{"role": "rollout", "keyid", "public", "secret"}`, and is
//! read only by [`read_online_key`]: the root's offline key files (no `role`) are refused there, and
//! an online key file is refused by [`read_key_file`](crate::read_key_file), so neither kind can be
//! used where the other belongs by mistake.

use std::io::Write;
use std::path::Path;

use rulebox_runtime::content::{KeyEntry, RoleKeys, RoleName, Root, RootError, Signed};
use serde::{Deserialize, Serialize};

use crate::{KeyFile, ReleaseError, generate_key};

/// Largest online key file read, in bytes.
const MAX_ONLINE_KEY_BYTES: u64 = 64 << 10;

/// A key of an online role. `Debug` never shows the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineKey {
    /// The role the key signs for.
    pub role: RoleName,
    /// The key itself.
    #[serde(flatten)]
    pub key: KeyFile,
}

/// Why an online key does not fit a root.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnlineKeyError {
    /// The key is of another role than the one needed.
    #[error("key {keyid} is a `{found}` key; a `{needed}` key is needed")]
    WrongRole {
        /// The key id.
        keyid: String,
        /// Its role.
        found: RoleName,
        /// The role needed.
        needed: RoleName,
    },
    /// The root does not declare the key's role.
    #[error("the root (version {root_version}) declares no `{role}` role")]
    RoleNotDeclared {
        /// The role.
        role: RoleName,
        /// The root's version.
        root_version: u64,
    },
    /// The root's role does not list the key.
    #[error("key {keyid} is not a key of the root's `{role}` role (root version {root_version})")]
    NotInRole {
        /// The key id.
        keyid: String,
        /// The role.
        role: RoleName,
        /// The root's version.
        root_version: u64,
    },
    /// The key is one of the root's own (offline) keys: an online service must never hold one.
    #[error(
        "key {keyid} is one of the root's own keys; an online service holds only online-role keys"
    )]
    RootKey {
        /// The key id.
        keyid: String,
    },
    /// The role has expired.
    #[error("the root's `{role}` role expired at {expires_unix}: renew the root")]
    RoleExpired {
        /// The role.
        role: RoleName,
        /// Its expiry.
        expires_unix: u64,
    },
}

/// Generates a new key for `role` (from the operating system's random number generator).
pub fn generate_online_key(role: RoleName) -> Result<OnlineKey, ReleaseError> {
    Ok(OnlineKey {
        role,
        key: generate_key()?,
    })
}

/// Writes an online key to a new file (refused if it exists), mode 0600 on Unix, fsynced.
pub fn write_online_key(path: &Path, key: &OnlineKey) -> Result<(), ReleaseError> {
    let io = |error| ReleaseError::Io {
        path: path.to_path_buf(),
        error,
    };
    let bytes = serde_json::to_vec_pretty(key).map_err(ReleaseError::Encode)?;
    let mut options = std::fs::File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)
}

/// Reads and checks an online key file: it must name its role, and its public key and key id must
/// belong to its secret. A key file of the root's own keys (no `role`) is refused.
pub fn read_online_key(path: &Path) -> Result<OnlineKey, ReleaseError> {
    use rulebox_runtime::content::CappedReadError;
    let io = |error| ReleaseError::Io {
        path: path.to_path_buf(),
        error,
    };
    let bytes = rulebox_runtime::content::read_capped_following_links(path, MAX_ONLINE_KEY_BYTES)
        .map_err(|e| match e {
        CappedReadError::TooLarge { size } => ReleaseError::TooLarge {
            path: path.to_path_buf(),
            size,
            cap: MAX_ONLINE_KEY_BYTES,
        },
        CappedReadError::Io(source) => io(source),
        other => io(std::io::Error::other(other.to_string())),
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|error| ReleaseError::Json {
            path: path.to_path_buf(),
            error,
        })?;
    if value.get("role").is_none() {
        return Err(ReleaseError::KeyFile {
            path: path.to_path_buf(),
            problem: "not an online key (it names no role): the root's own keys stay offline"
                .to_owned(),
        });
    }
    let key: OnlineKey = serde_json::from_value(value).map_err(|error| ReleaseError::Json {
        path: path.to_path_buf(),
        error,
    })?;
    key.key.signing_key().map_err(|e| match e {
        ReleaseError::KeyFile { problem, .. } => ReleaseError::KeyFile {
            path: path.to_path_buf(),
            problem,
        },
        other => other,
    })?;
    Ok(key)
}

/// Checks that `key` may sign for `needed` under `root`: it is a key of that role, the root
/// declares the role with this key, the role has not expired at `now_unix`, and the key is not one
/// of the root's own keys.
pub fn check_online_key(
    root: &Root,
    key: &OnlineKey,
    needed: RoleName,
    now_unix: u64,
) -> Result<(), OnlineKeyError> {
    let keyid = key.key.keyid.clone();
    if key.role != needed {
        return Err(OnlineKeyError::WrongRole {
            keyid,
            found: key.role,
            needed,
        });
    }
    if root.keys.contains_key(&keyid) {
        return Err(OnlineKeyError::RootKey { keyid });
    }
    let role = root
        .roles
        .get(needed)
        .ok_or(OnlineKeyError::RoleNotDeclared {
            role: needed,
            root_version: root.version,
        })?;
    if !role.keys.contains_key(&keyid) {
        return Err(OnlineKeyError::NotInRole {
            keyid,
            role: needed,
            root_version: root.version,
        });
    }
    if now_unix >= role.expires_unix {
        return Err(OnlineKeyError::RoleExpired {
            role: needed,
            expires_unix: role.expires_unix,
        });
    }
    Ok(())
}

/// Declares (or replaces) online role `role` in an unsigned root: the public keys (hex), the
/// threshold and the role's expiry. Refused if the role would be inconsistent (threshold, keys, a
/// key shared with the root or another role). Signatures already on the root are dropped: they
/// covered the root without this role. Sign the root afterwards with
/// [`sign_root`](crate::sign_root).
pub fn declare_role(
    root: &mut Signed<Root>,
    role: RoleName,
    public_keys: &[&str],
    threshold: u32,
    expires_unix: u64,
) -> Result<(), ReleaseError> {
    let mut keys = std::collections::BTreeMap::new();
    for public in public_keys {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(public, &mut bytes).map_err(|_| {
            ReleaseError::Options(format!("public key `{public}` is not 32 bytes of hex"))
        })?;
        keys.insert(
            rulebox_runtime::content::key_id(&bytes),
            KeyEntry {
                public: hex::encode(bytes),
            },
        );
    }
    let mut candidate = root.signed.clone();
    let entry = Some(RoleKeys {
        keys,
        threshold,
        expires_unix,
    });
    match role {
        RoleName::Timestamp => candidate.roles.timestamp = entry,
        RoleName::Rollout => candidate.roles.rollout = entry,
    }
    candidate.verifying_keys().map_err(|problem| {
        ReleaseError::Root(RootError::Invalid {
            version: candidate.version,
            problem,
        })
    })?;
    root.signed = candidate;
    root.signatures.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{build_root, read_key_file, write_key_file};

    #[test]
    fn online_and_offline_key_files_cannot_stand_in_for_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let online = generate_online_key(RoleName::Rollout).unwrap();
        let online_path = dir.path().join("rollout.json");
        write_online_key(&online_path, &online).unwrap();
        assert_eq!(read_online_key(&online_path).unwrap(), online);
        assert!(!format!("{online:?}").contains(&online.key.secret));
        let err = read_key_file(&online_path).unwrap_err();
        assert!(err.to_string().contains("unknown field `role`"), "{err}");

        let offline = generate_key().unwrap();
        let offline_path = dir.path().join("root-key.json");
        write_key_file(&offline_path, &offline).unwrap();
        let err = read_online_key(&offline_path).unwrap_err();
        assert!(err.to_string().contains("not an online key"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&online_path)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_controller_key_must_be_in_its_role_and_never_a_root_key() {
        let root_key = generate_key().unwrap();
        let rollout = generate_online_key(RoleName::Rollout).unwrap();
        let timestamp = generate_online_key(RoleName::Timestamp).unwrap();
        let mut root = build_root(1, 2_000_000_000, &[root_key.public.as_str()], 1).unwrap();
        crate::sign_root(&mut root, &root_key).unwrap();
        declare_role(
            &mut root,
            RoleName::Rollout,
            &[rollout.key.public.as_str()],
            1,
            1_900_000_000,
        )
        .unwrap();
        assert!(root.signatures.is_empty(), "stale signatures dropped");
        let r = &root.signed;
        check_online_key(r, &rollout, RoleName::Rollout, 1_800_000_000).unwrap();
        assert!(matches!(
            check_online_key(r, &rollout, RoleName::Rollout, 1_900_000_000),
            Err(OnlineKeyError::RoleExpired { .. })
        ));
        assert!(matches!(
            check_online_key(r, &timestamp, RoleName::Rollout, 0),
            Err(OnlineKeyError::WrongRole { .. })
        ));
        assert!(matches!(
            check_online_key(r, &timestamp, RoleName::Timestamp, 0),
            Err(OnlineKeyError::RoleNotDeclared { .. })
        ));
        let stranger = generate_online_key(RoleName::Rollout).unwrap();
        assert!(matches!(
            check_online_key(r, &stranger, RoleName::Rollout, 0),
            Err(OnlineKeyError::NotInRole { .. })
        ));
        let disguised = OnlineKey {
            role: RoleName::Rollout,
            key: root_key.clone(),
        };
        assert!(matches!(
            check_online_key(r, &disguised, RoleName::Rollout, 0),
            Err(OnlineKeyError::RootKey { .. })
        ));
        // A role may not reuse a root key.
        let err = declare_role(
            &mut root,
            RoleName::Timestamp,
            &[root_key.public.as_str()],
            1,
            1_900_000_000,
        )
        .unwrap_err();
        assert!(err.to_string().contains("also a key of the root"), "{err}");
    }
}
