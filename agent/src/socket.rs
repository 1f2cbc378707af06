//! [`SocketSource`]: events from a Unix socket, one JSON record a line (or pretty-printed), from
//! local processes the agent trusts.
//!
//! - The socket is created with mode `0600` (or `0660` with a configured group) before anyone can
//!   reach it: it is bound in a fresh `0700` folder, given its mode and group, then renamed into
//!   place. A path that exists and is not a socket is never replaced.
//! - Every connection's peer is checked with `SO_PEERCRED`: its uid must be the agent's own, root,
//!   or one of [`SocketAccess::allowed_uids`], or its primary gid the configured group. A refused
//!   peer is counted and alerted ([`Alert::PeerRefused`]) and its connection closed unread.
//! - Every connection is read with [`feed`] under [`ReadLimits`]: an oversize record is refused and
//!   counted without being buffered.
//! - At most [`SocketAccess::max_connections`] connections are read at once; more are refused (and
//!   alerted) rather than given a thread each.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rulebox_runtime::events::ReadLimits;

use crate::alert::Alert;
use crate::sender::{Counters, EventSender};
use crate::source::feed;

/// How often a stopped socket source notices it was stopped.
const ACCEPT_POLL: Duration = Duration::from_millis(50);
/// The least time between two reports of the same failing accept.
const FAILURE_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Who may connect to the event socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketAccess {
    /// A group whose members (by primary gid) may connect; the socket is then mode `0660` and owned
    /// by that group. `None`: mode `0600`.
    pub group: Option<u32>,
    /// More user ids allowed to connect, besides the agent's own and root.
    pub allowed_uids: Vec<u32>,
    /// The socket file's mode; `None`: `0600`, or `0660` with a group. A wider mode lets the kernel
    /// admit more peers, but the peer check still refuses every one not allowed above.
    pub mode: Option<u32>,
    /// Connections read at once (default 64).
    pub max_connections: usize,
}

impl Default for SocketAccess {
    fn default() -> Self {
        SocketAccess {
            group: None,
            allowed_uids: Vec::new(),
            mode: None,
            max_connections: 64,
        }
    }
}

impl SocketAccess {
    fn mode(&self) -> u32 {
        self.mode
            .unwrap_or(if self.group.is_some() { 0o660 } else { 0o600 })
    }

    /// Why a peer with `uid` and `gid` is refused, if it is.
    fn refuses(&self, uid: u32, gid: u32) -> Option<String> {
        let own = own_uid();
        if uid == own
            || uid == 0
            || self.allowed_uids.contains(&uid)
            || self.group.is_some_and(|g| g == gid)
        {
            None
        } else {
            let uids: Vec<String> = self.allowed_uids.iter().map(u32::to_string).collect();
            Some(format!(
                "uid {uid} (gid {gid}) is not allowed: only the agent's own uid {own}, root{}{}",
                if uids.is_empty() {
                    String::new()
                } else {
                    format!(", uids {}", uids.join(", "))
                },
                self.group
                    .map_or_else(String::new, |g| format!(" and group {g}"))
            ))
        }
    }
}

/// Why a socket source could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// Something that is not a socket is at the path; it is left alone.
    #[error("`{}` exists and is not a socket; not replacing it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The path has no parent folder or no file name.
    #[error("`{}` is not a usable socket path", path.display())]
    BadPath {
        /// The path.
        path: PathBuf,
    },
    /// Creating, binding or securing the socket failed.
    #[error("cannot {what} `{}`: {source}", path.display())]
    Io {
        /// The step.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A Unix socket feeding events into an agent until stopped (or dropped).
#[derive(Debug)]
pub struct SocketSource {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl SocketSource {
    /// Creates the socket at `path` (see the module docs) and starts accepting connections, each
    /// read with `limits` into `sender`.
    pub fn bind(
        path: &Path,
        access: SocketAccess,
        limits: ReadLimits,
        sender: EventSender,
    ) -> Result<SocketSource, SocketError> {
        let listener = create(path, &access)?;
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (stop, name) = (stop.clone(), format!("unix:{}", path.display()));
            std::thread::Builder::new()
                .name("rulebox-socket".to_owned())
                .spawn(move || accept_loop(listener, &access, limits, &sender, &stop, &name))
                .map_err(|source| SocketError::Io {
                    what: "start the accepting thread of",
                    path: path.to_path_buf(),
                    source,
                })?
        };
        Ok(SocketSource {
            path: path.to_path_buf(),
            stop,
            accept: Some(accept),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting connections and removes the socket. Connections already open are read to
    /// their end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        use std::os::unix::fs::FileTypeExt;
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        let _ = accept.join();
        // Remove the socket, not whatever someone may have put in its place.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for SocketSource {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds the socket in a private folder, secures it, and renames it into place.
fn create(path: &Path, access: &SocketAccess) -> Result<UnixListener, SocketError> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(SocketError::BadPath {
            path: path.to_path_buf(),
        });
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(SocketError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        _ => {}
    }
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let private = parent.join(format!(
        ".{}.{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        unique()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io("create a private folder for", &private))?;
    let staged = private.join("socket");
    let result = (|| {
        let listener = UnixListener::bind(&staged).map_err(io("bind", &staged))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(access.mode()))
            .map_err(io("set the mode of", &staged))?;
        if let Some(group) = access.group {
            std::os::unix::fs::chown(&staged, None, Some(group))
                .map_err(io("set the group of", &staged))?;
        }
        std::fs::rename(&staged, path).map_err(io("move into place", path))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

fn io<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> SocketError + 'p {
    move |source| SocketError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn unique() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn own_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The peer's uid, gid and pid.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn peer(stream: &UnixStream) -> std::io::Result<(u32, u32, Option<i32>)> {
    let cred = rustix::net::sockopt::socket_peercred(stream)?;
    Ok((
        cred.uid.as_raw(),
        cred.gid.as_raw(),
        Some(cred.pid.as_raw_pid()),
    ))
}

/// On other systems the peer cannot be checked this way: every peer is refused.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn peer(_stream: &UnixStream) -> std::io::Result<(u32, u32, Option<i32>)> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "peer credentials are not available on this system",
    ))
}

/// Releases a connection slot when a connection's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(
    listener: UnixListener,
    access: &SocketAccess,
    limits: ReadLimits,
    sender: &EventSender,
    stop: &AtomicBool,
    name: &str,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut connection = 0u64;
    // Accepting without blocking, so that stopping never depends on the socket file still being
    // there to connect to.
    if let Err(e) = listener.set_nonblocking(true) {
        let _ = sender.report_source_failed(name, &e);
        return;
    }
    let mut last_failure: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) => {
                // A failure that may last (out of descriptors): reported at most every 10 s, and no
                // spinning.
                if last_failure.is_none_or(|t| t.elapsed() >= FAILURE_REPORT_EVERY) {
                    last_failure = Some(Instant::now());
                    if sender.report_source_failed(name, &e).is_err() {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        // Connections are read blocking (back-pressure reaches the peer).
        if let Err(e) = stream.set_nonblocking(false) {
            let _ = sender.report_source_failed(name, &e);
            continue;
        }
        let refuse = |uid, gid, pid, reason: String| {
            Counters::add(&sender.counters().peers_refused);
            sender.notice(Alert::PeerRefused {
                socket: name.to_owned(),
                uid,
                gid,
                pid,
                reason,
            })
        };
        let (uid, gid, pid) = match peer(&stream) {
            Ok(p) => p,
            Err(e) => {
                if refuse(
                    None,
                    None,
                    None,
                    format!("cannot read its credentials: {e}"),
                )
                .is_err()
                {
                    break;
                }
                continue;
            }
        };
        if let Some(reason) = access.refuses(uid, gid) {
            if refuse(Some(uid), Some(gid), pid, reason).is_err() {
                break;
            }
            continue;
        }
        if open.fetch_add(1, Ordering::SeqCst) >= access.max_connections {
            open.fetch_sub(1, Ordering::SeqCst);
            let reason = format!("{} connections are open already", access.max_connections);
            if refuse(Some(uid), Some(gid), pid, reason).is_err() {
                break;
            }
            continue;
        }
        connection += 1;
        let slot = Slot(open.clone());
        let (conn_sender, source) = (sender.clone(), format!("{name}#{connection}"));
        let spawned = std::thread::Builder::new()
            .name("rulebox-connection".to_owned())
            .spawn(move || {
                let _slot = slot;
                let _ = feed(
                    std::io::BufReader::new(stream),
                    limits,
                    &conn_sender,
                    &source,
                );
            });
        if let Err(e) = spawned
            && sender.report_source_failed(name, &e).is_err()
        {
            break;
        }
    }
}
