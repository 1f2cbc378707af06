//! A throwaway NATS server with JetStream, for the report bus's tests and load runs.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TestError, free_port};

/// A `nats-server` with JetStream on a free loopback port, its store in a temporary folder.
/// Stopped (killed) on drop; [`stop`](TestNats::stop) and [`start_again`](TestNats::start_again)
/// take it down and bring it back on the same port with the same store.
#[derive(Debug)]
pub struct TestNats {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
}

/// `RULEBOX_NATS_SERVER`, else `nats-server` on the `PATH` or in `/usr/sbin` or `/usr/bin`.
fn find_nats_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RULEBOX_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

impl TestNats {
    /// Starts one, or `Ok(None)` when this machine has no `nats-server` (Debian's package).
    pub fn start() -> Result<Option<TestNats>, TestError> {
        let Some(bin) = find_nats_server() else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new().prefix("rulebox-nats-").tempdir()?;
        let port = free_port()?;
        let mut nats = TestNats {
            url: format!("nats://127.0.0.1:{port}"),
            dir,
            bin,
            port,
            child: None,
        };
        nats.start_again()?;
        Ok(Some(nats))
    }

    /// Starts the server (again) on its port with its store, and waits until it accepts
    /// connections.
    pub fn start_again(&mut self) -> Result<(), TestError> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))?;
        let child = Command::new(&self.bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                return Err(format!("nats-server did not listen on {addr}: {}", self.log()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Kills the server (as a crash would) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        self.stop();
    }
}
