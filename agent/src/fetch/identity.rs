//! The fetcher's durable state in the store (`STORE/fetcher/`): the node key (`node.key`, mode
//! `0600`), and `state.json` with the host id the controller gave, the next check-in `seq`
//! (persisted before each send) and the highest `timestamp.json` version accepted.

use std::io::Write;
use std::path::{Path, PathBuf};

use rulebox_controlplane_proto::NodeKey;
use rulebox_runtime::content::{fsync_dir, read_capped};
use serde::{Deserialize, Serialize};

use super::error::FetchError;
use super::staging::create_private_dir;

/// What the fetcher remembers across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchState {
    /// The id the controller gave this host (`None`: not enrolled yet).
    pub host_id: Option<String>,
    /// The `seq` of the next check-in.
    pub next_seq: u64,
    /// The highest `timestamp.json` version accepted (a lower one is a rollback).
    pub timestamp_version: Option<u64>,
}

/// The fetcher's folder in the store.
#[derive(Debug, Clone)]
pub struct Identity {
    dir: PathBuf,
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync of the folder), the
/// file readable by its owner only (mode `0600` on Unix) from its creation.
fn write_private_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut options = std::fs::File::options();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl Identity {
    /// The fetcher's folder of the store at `store`, created (mode `0700`) if needed.
    pub fn open(store: &Path) -> Result<Identity, FetchError> {
        let dir = store.join("fetcher");
        create_private_dir(&dir)
            .map_err(|e| FetchError::disk("create the fetcher's folder", &e))?;
        Ok(Identity { dir })
    }

    /// Where the report spool lives.
    pub fn spool_path(&self) -> PathBuf {
        self.dir.join("spool.json")
    }

    /// The node key: read from `node.key`, or generated and written (mode `0600`) on first start.
    /// A damaged key file is an error (the host would lose its identity): an operator removes it
    /// and the host enrols again.
    pub fn node_key(&self) -> Result<NodeKey, FetchError> {
        let path = self.dir.join("node.key");
        match read_capped(&path, 256) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                NodeKey::from_secret_hex(&text).map_err(|e| {
                    FetchError::disk(
                        &format!("read the node key {}", path.display()),
                        &std::io::Error::other(e.to_string()),
                    )
                })
            }
            Err(rulebox_runtime::content::CappedReadError::Io(e))
                if e.kind() == std::io::ErrorKind::NotFound =>
            {
                let key = NodeKey::generate().map_err(|e| {
                    FetchError::disk(
                        "generate the node key",
                        &std::io::Error::other(e.to_string()),
                    )
                })?;
                write_private_atomic(&path, key.secret_hex().as_bytes())
                    .map_err(|e| FetchError::disk("write the node key", &e))?;
                Ok(key)
            }
            Err(e) => Err(FetchError::disk(
                &format!("read the node key {}", path.display()),
                &std::io::Error::other(e.to_string()),
            )),
        }
    }

    /// The state, or the default one (not enrolled) if there is none. A damaged state file is
    /// replaced by the default: the host enrols again (same key, same host id) and a `409` sets
    /// `seq` right.
    pub fn load(&self) -> FetchState {
        read_capped(&self.dir.join("state.json"), 64 << 10)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the state durably.
    pub fn save(&self, state: &FetchState) -> Result<(), FetchError> {
        let bytes = serde_json::to_vec(state).unwrap_or_default();
        write_private_atomic(&self.dir.join("state.json"), &bytes)
            .map_err(|e| FetchError::disk("write the fetcher's state", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_key_is_private_and_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::open(dir.path()).unwrap();
        let key = id.node_key().unwrap();
        assert_eq!(id.node_key().unwrap().public_hex(), key.public_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("fetcher/node.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let state = FetchState {
            host_id: Some("h".into()),
            next_seq: 7,
            timestamp_version: Some(3),
        };
        id.save(&state).unwrap();
        assert_eq!(Identity::open(dir.path()).unwrap().load(), state);
    }
}
