//! The staging folder (`STORE/staging/`): a release is downloaded here, file by file, each capped by
//! the size its signed data gives, resumed with `Range` after a broken download, and hash-checked
//! over the whole file; only a complete release folder is handed to the store's inbox.

use std::io::Read;
use std::path::{Path, PathBuf};

use rulebox_controlplane_proto::FetchFailureClass;
use sha2::{Digest, Sha256};

use super::client::{Http, Written};
use super::error::FetchError;

/// Where partial downloads are kept, until they are complete and verified.
#[derive(Debug, Clone)]
pub struct Staging {
    dir: PathBuf,
}

/// SHA-256 of a file's first `size` bytes (read with that cap), in lowercase hex, and the bytes read.
fn hash_file(path: &Path, size: u64) -> std::io::Result<(String, u64)> {
    let file = std::fs::File::open(path)?;
    let mut reader = file.take(size);
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The length of the regular file at `path`, `None` if there is none; anything else there (a link,
/// a folder, a FIFO) is removed, never followed.
fn regular_len(path: &Path) -> std::io::Result<Option<u64>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(Some(m.len())),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map(|()| None),
        Ok(_) => std::fs::remove_file(path).map(|()| None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates `dir` accessible by its owner only (mode `0700` on Unix), with its parents.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

impl Staging {
    /// The staging folder of the store at `store`.
    pub fn new(store: &Path) -> Staging {
        Staging {
            dir: store.join("staging"),
        }
    }

    /// The folder a release is assembled in (`staging/release-<R>`), which is also the name the
    /// inbox gives the delivery.
    pub fn release_dir(&self, release: u64) -> PathBuf {
        self.dir.join(format!("release-{release}"))
    }

    /// Removes every staged release for which `keep` is false, and anything else in the staging
    /// folder.
    pub fn retain(&self, keep: impl Fn(u64) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let release = name
                .to_str()
                .and_then(|n| n.strip_prefix("release-"))
                .and_then(|r| r.parse::<u64>().ok());
            if !release.is_some_and(&keep) {
                let _ = regular_len(&entry.path()).and_then(|len| match len {
                    Some(_) => std::fs::remove_file(entry.path()),
                    None => Ok(()),
                });
            }
        }
    }

    /// Removes the staged release `release`.
    pub fn remove(&self, release: u64) {
        let _ = std::fs::remove_dir_all(self.release_dir(release));
    }

    /// Makes `dest` the file at `url`, of exactly `size` bytes with SHA-256 `sha256`: kept if it is
    /// already there and right; otherwise downloaded into `dest.part`, resumed from what that holds
    /// (with `Range`, where the server allows it), the whole file hashed, then renamed to `dest`.
    /// A wrong hash removes the partial file (the next attempt starts over); a broken download keeps
    /// it (the next attempt resumes). Returns whether a download was resumed.
    pub fn fetch_file(
        &self,
        http: &Http,
        url: &str,
        dest: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<bool, FetchError> {
        let disk = |what: &str, e: std::io::Error| FetchError::disk(what, &e);
        if let Some(parent) = dest.parent() {
            create_private_dir(parent).map_err(|e| disk("create the staging folder", e))?;
        }
        if regular_len(dest).map_err(|e| disk("check a staged file", e))? == Some(size)
            && hash_file(dest, size)
                .map_err(|e| disk("hash a staged file", e))?
                .0
                == sha256
        {
            return Ok(false);
        }
        let part = dest.with_extension("part");
        let mut held = regular_len(&part)
            .map_err(|e| disk("check a partial download", e))?
            .unwrap_or(0);
        if held > size {
            held = 0;
        }
        let mut resumed = false;
        if held < size {
            let mut options = std::fs::File::options();
            options.create(true).write(true).truncate(false);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options
                .open(&part)
                .map_err(|e| disk("open a partial download", e))?;
            let written = http.get_into(url, held, size, &mut file)?;
            resumed = written == Written::Resumed;
            file.sync_all()
                .map_err(|e| disk("sync a partial download", e))?;
        }
        let (hash, got) = hash_file(&part, size + 1).map_err(|e| disk("hash a download", e))?;
        if got < size {
            return Err(FetchError::network(format!(
                "{url}: truncated at {got} of {size} bytes (kept; resumed next time)"
            )));
        }
        if got > size {
            let _ = std::fs::remove_file(&part);
            return Err(FetchError::new(
                FetchFailureClass::TooLarge,
                format!("{url}: {got} bytes where signed data says {size}"),
            ));
        }
        if hash != sha256 {
            let _ = std::fs::remove_file(&part);
            return Err(FetchError::new(
                FetchFailureClass::Hash,
                format!("{url}: SHA-256 {hash} where signed data says {sha256} (removed)"),
            ));
        }
        std::fs::rename(&part, dest).map_err(|e| disk("finish a download", e))?;
        Ok(resumed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testserver::{Reply, answer, ok, serve};
    use super::*;

    const FILE: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    fn fetch(url: &str, timeout: Duration) -> (tempfile::TempDir, Result<bool, FetchError>) {
        let store = tempfile::tempdir().unwrap();
        let staging = Staging::new(store.path());
        let dest = staging.release_dir(1).join("modules/m.wasm");
        let r = staging.fetch_file(
            &Http::new(timeout),
            &format!("{url}/m.wasm"),
            &dest,
            FILE.len() as u64,
            &sha256_hex(FILE),
        );
        (store, r)
    }

    fn dest(store: &tempfile::TempDir) -> PathBuf {
        Staging::new(store.path())
            .release_dir(1)
            .join("modules/m.wasm")
    }

    #[test]
    fn an_oversized_reply_is_refused_and_nothing_is_staged() {
        let mut big = FILE.to_vec();
        big.extend_from_slice(b"and more");
        let (url, _) = serve(move |_, _| ok(&big));
        let (store, r) = fetch(&url, Duration::from_secs(5));
        assert_eq!(r.unwrap_err().class, FetchFailureClass::TooLarge);
        assert!(!dest(&store).exists());
        // Without a Content-Length too (the body read itself is capped).
        let mut big = FILE.to_vec();
        big.extend_from_slice(b"x");
        let (url, _) = serve(move |_, _| answer("200 OK", &[], &big));
        let (_store, r) = fetch(&url, Duration::from_secs(5));
        assert_eq!(r.unwrap_err().class, FetchFailureClass::TooLarge);
    }

    #[test]
    fn a_wrong_hash_is_refused_and_the_partial_file_removed() {
        let mut wrong = FILE.to_vec();
        wrong[3] ^= 1;
        let (url, _) = serve(move |_, _| ok(&wrong));
        let (store, r) = fetch(&url, Duration::from_secs(5));
        assert_eq!(r.unwrap_err().class, FetchFailureClass::Hash);
        assert!(!dest(&store).exists());
        assert!(!dest(&store).with_extension("part").exists());
    }

    #[test]
    fn a_truncated_download_resumes_with_range_and_the_whole_file_is_rehashed() {
        let (url, seen) = serve(|req, _| match req.range_from {
            // First: the server promises the whole file and breaks off half-way.
            None => {
                let half = &FILE[..FILE.len() / 2];
                let Reply::Raw(mut bytes) =
                    answer("200 OK", &[("Content-Length", FILE.len().to_string())], &[])
                else {
                    unreachable!()
                };
                bytes.extend_from_slice(half);
                Reply::Raw(bytes)
            }
            Some(from) => answer(
                "206 Partial Content",
                &[
                    ("Content-Length", (FILE.len() as u64 - from).to_string()),
                    (
                        "Content-Range",
                        format!("bytes {from}-{}/{}", FILE.len() - 1, FILE.len()),
                    ),
                ],
                &FILE[usize::try_from(from).unwrap()..],
            ),
        });
        let store = tempfile::tempdir().unwrap();
        let staging = Staging::new(store.path());
        let dest = staging.release_dir(1).join("modules/m.wasm");
        let http = Http::new(Duration::from_secs(5));
        let url = format!("{url}/m.wasm");
        let (size, hash) = (FILE.len() as u64, sha256_hex(FILE));
        let first = staging
            .fetch_file(&http, &url, &dest, size, &hash)
            .unwrap_err();
        assert_eq!(first.class, FetchFailureClass::Network, "{first}");
        assert!(!dest.exists());
        assert_eq!(
            std::fs::metadata(dest.with_extension("part"))
                .unwrap()
                .len(),
            size / 2,
            "the partial file is kept for the resume"
        );
        assert!(
            staging.fetch_file(&http, &url, &dest, size, &hash).unwrap(),
            "resumed"
        );
        assert_eq!(std::fs::read(&dest).unwrap(), FILE);
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[1],
            format!("GET /m.wasm HTTP/1.1 range=Some({})", size / 2)
        );
    }

    #[test]
    fn a_server_that_ignores_range_gets_the_file_rewritten_from_its_start() {
        let (url, _) = serve(|_, _| ok(FILE));
        let store = tempfile::tempdir().unwrap();
        let staging = Staging::new(store.path());
        let dest = staging.release_dir(1).join("modules/m.wasm");
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        // A partial file of other bytes: rewritten, not appended to.
        std::fs::write(dest.with_extension("part"), b"garbage").unwrap();
        let http = Http::new(Duration::from_secs(5));
        let resumed = staging
            .fetch_file(
                &http,
                &format!("{url}/m.wasm"),
                &dest,
                FILE.len() as u64,
                &sha256_hex(FILE),
            )
            .unwrap();
        assert!(!resumed);
        assert_eq!(std::fs::read(&dest).unwrap(), FILE);
    }

    #[test]
    fn errors_slow_servers_and_redirects_are_classified_and_no_redirect_is_followed() {
        let (url, _) = serve(|_, _| {
            answer(
                "500 Internal Server Error",
                &[("Content-Length", "0".into())],
                b"",
            )
        });
        assert_eq!(
            fetch(&url, Duration::from_secs(5)).1.unwrap_err().class,
            FetchFailureClass::Status
        );

        let (elsewhere, elsewhere_seen) = serve(|_, _| ok(FILE));
        let (url, _) = serve(move |_, _| {
            answer(
                "302 Found",
                &[
                    ("Location", format!("{elsewhere}/m.wasm")),
                    ("Content-Length", "0".into()),
                ],
                b"",
            )
        });
        let err = fetch(&url, Duration::from_secs(5)).1.unwrap_err();
        assert_eq!(err.class, FetchFailureClass::Status, "{err}");
        assert!(err.message.contains("redirect"), "{err}");
        assert!(
            elsewhere_seen.lock().unwrap().is_empty(),
            "the redirect was not followed"
        );

        let (url, _) = serve(|_, _| Reply::Stall(Duration::from_secs(3)));
        let started = std::time::Instant::now();
        let err = fetch(&url, Duration::from_millis(500)).1.unwrap_err();
        assert_eq!(err.class, FetchFailureClass::Network, "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));

        // Nothing listens: network.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        assert_eq!(
            fetch(&url, Duration::from_secs(2)).1.unwrap_err().class,
            FetchFailureClass::Network
        );
    }
}
