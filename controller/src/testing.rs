//! Support for tests and load runs on loopback (not for production use): throwaway signed content
//! and a repository whose root declares the online roles ([`TestContent`]), a throwaway PostgreSQL
//! server ([`TestPostgres`]), a throwaway NATS server with JetStream ([`TestNats`]), an agent that speaks the check-in protocol ([`FakeAgent`]) and an
//! operator client ([`OperatorClient`]). The controller's own tests, the CLI's process tests and
//! the load generator (`examples/loadgen.rs`) share them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rulebox_controlplane_proto::{
    CHECKIN_PATH, CheckinRequest, CheckinResponse, Criticality, ENROLL_PATH, EnrollRequest,
    EnrollResponse, ErrorBody, HEADER_HOST, HEADER_SIGNATURE, HealthReport, HostContentState,
    Labels, NodeKey, PROTOCOL_VERSION, ReportKind,
};
use rulebox_release::{
    BundleOptions, KeyFile, ModuleSource, OnlineKey, ReleasePublication, Repository, add_signature,
    build_bundle, build_root, declare_role, generate_key, generate_online_key, sign_root,
    write_online_key, write_root,
};
use rulebox_runtime::content::{Manifest, RoleName, Signed};

use crate::auth::{OperatorsFile, Secret, new_token};

mod browser;
mod nats;
use crate::config::ControllerConfig;
pub use browser::{artifacts, browse, chromium, ring_rows};
pub use nats::TestNats;

/// A failure of a test helper.
pub type TestError = Box<dyn std::error::Error + Send + Sync>;

/// The enrolment secret of [`TestContent`].
pub const ENROLL_SECRET: &str = "test-enrolment-secret-0123456789";
/// The internal enrolment secret of [`TestContent`].
pub const INTERNAL_SECRET: &str = "test-internal-secret-0123456789ab";

/// Keys, a root with online roles, a repository with that root, an operator's token, files for
/// each, in a temporary folder.
#[derive(Debug)]
pub struct TestContent {
    dir: tempfile::TempDir,
    /// The root's own key (signs manifests; a controller must never hold it).
    pub root_key: KeyFile,
    /// The rollout role's key.
    pub rollout_key: OnlineKey,
    /// The timestamp role's key.
    pub timestamp_key: OnlineKey,
    /// The root file.
    pub root_path: PathBuf,
    /// The repository folder.
    pub repo_dir: PathBuf,
    /// The operator `alice`'s bearer token.
    pub token: String,
    /// Files for `rulebox controller serve`: rollout key, timestamp key, enrolment secret,
    /// internal enrolment secret, operators.
    pub files: ServeFiles,
}

/// The files `rulebox controller serve` reads.
#[derive(Debug, Clone)]
pub struct ServeFiles {
    /// `--rollout-key`.
    pub rollout_key: PathBuf,
    /// `--timestamp-key`.
    pub timestamp_key: PathBuf,
    /// `--enroll-secret-file`.
    pub enroll_secret: PathBuf,
    /// `--internal-enroll-secret-file`.
    pub internal_secret: PathBuf,
    /// `--operators`.
    pub operators: PathBuf,
    /// The token file of operator `alice` (`rulebox rollout --token-file`).
    pub token: PathBuf,
}

impl TestContent {
    /// New keys, a root (version 1, both roles) published in a new repository.
    pub fn new() -> Result<TestContent, TestError> {
        let dir = tempfile::tempdir()?;
        let root_key = generate_key()?;
        let rollout_key = generate_online_key(RoleName::Rollout)?;
        let timestamp_key = generate_online_key(RoleName::Timestamp)?;
        let now = rulebox_runtime::content::now_unix();
        let mut root = build_root(1, now + 365 * 86_400, &[root_key.public.as_str()], 1)?;
        declare_role(
            &mut root,
            RoleName::Rollout,
            &[rollout_key.key.public.as_str()],
            1,
            now + 90 * 86_400,
        )?;
        declare_role(
            &mut root,
            RoleName::Timestamp,
            &[timestamp_key.key.public.as_str()],
            1,
            now + 90 * 86_400,
        )?;
        sign_root(&mut root, &root_key)?;
        let root_path = dir.path().join("root.json");
        write_root(&root_path, &root)?;
        let repo_dir = dir.path().join("repo");
        Repository::open(&repo_dir)?.publish_root(&std::fs::read(&root_path)?)?;
        let (token, operator) = new_token("alice")?;
        let files = ServeFiles {
            rollout_key: dir.path().join("rollout-key.json"),
            timestamp_key: dir.path().join("timestamp-key.json"),
            enroll_secret: dir.path().join("enroll.secret"),
            internal_secret: dir.path().join("internal.secret"),
            operators: dir.path().join("operators.json"),
            token: dir.path().join("alice.token"),
        };
        write_online_key(&files.rollout_key, &rollout_key)?;
        write_online_key(&files.timestamp_key, &timestamp_key)?;
        std::fs::write(&files.enroll_secret, format!("{ENROLL_SECRET}\n"))?;
        std::fs::write(&files.internal_secret, format!("{INTERNAL_SECRET}\n"))?;
        std::fs::write(
            &files.operators,
            serde_json::to_vec_pretty(&OperatorsFile {
                operators: vec![operator],
            })?,
        )?;
        std::fs::write(&files.token, format!("{token}\n"))?;
        Ok(TestContent {
            dir,
            root_key,
            rollout_key,
            timestamp_key,
            root_path,
            repo_dir,
            token,
            files,
        })
    }

    /// The temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The repository.
    pub fn repo(&self) -> Result<Repository, TestError> {
        Ok(Repository::open(&self.repo_dir)?)
    }

    /// Builds release `release` of `modules` (each loaded in the real runtime), signs its manifest
    /// with the root key, and publishes it.
    pub fn publish_release(
        &self,
        release: u64,
        modules: &[(&str, &[u8])],
    ) -> Result<ReleasePublication, TestError> {
        let out = self.dir.path().join(format!("bundle-{release}"));
        let sources: Vec<ModuleSource> = modules
            .iter()
            .map(|(name, bytes)| ModuleSource::Bytes {
                name: (*name).to_owned(),
                bytes: bytes.to_vec(),
            })
            .collect();
        let now = rulebox_runtime::content::now_unix();
        let mut options = BundleOptions::new(release, now + 30 * 86_400, "test release");
        options.created_unix = Some(now - 60);
        build_bundle(&out, &sources, &options)?;
        let path = out.join("manifest.json");
        let mut envelope: Signed<Manifest> = serde_json::from_slice(&std::fs::read(&path)?)?;
        add_signature(&mut envelope, &self.root_key)?;
        std::fs::write(&path, serde_json::to_vec_pretty(&envelope)?)?;
        Ok(self.repo()?.publish_release(&out, now)?)
    }

    /// The repository path (`/modules/<sha256>.wasm`) and bytes of each module published release
    /// `release` lists that release `older` does not (for tests that make a server lie about one).
    pub fn added_modules(
        &self,
        release: u64,
        older: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, TestError> {
        let repo = self.repo()?;
        let manifest = |r| -> Result<Manifest, TestError> {
            let (bytes, _) = repo.manifest(r)?;
            Ok(serde_json::from_slice::<Signed<Manifest>>(&bytes)?.signed)
        };
        let old: Vec<String> = manifest(older)?
            .rules
            .into_iter()
            .map(|e| e.sha256)
            .collect();
        let mut added = Vec::new();
        for entry in manifest(release)?.rules {
            if old.contains(&entry.sha256) {
                continue;
            }
            let file = rulebox_controlplane_proto::repo::module_file(&entry.sha256);
            added.push((
                format!("/{file}"),
                std::fs::read(self.repo_dir.join(&file))?,
            ));
        }
        Ok(added)
    }

    /// A configuration for an in-process controller on `database`, listening on a free loopback
    /// port, with controller time `clock_scale` times as fast as the wall clock, a tick every
    /// 100 ms and a 1 s lease.
    pub fn config(
        &self,
        database: String,
        clock_scale: u32,
    ) -> Result<ControllerConfig, TestError> {
        let operators = crate::auth::read_operators_file(&self.files.operators)?;
        let mut config = ControllerConfig::new(
            database,
            self.repo_dir.clone(),
            self.root_path.clone(),
            vec![self.rollout_key.clone()],
            vec![self.timestamp_key.clone()],
            Secret::new(ENROLL_SECRET)?,
            operators,
        );
        config.internal_enroll_secret = Some(Secret::new(INTERNAL_SECRET)?);
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.clock_scale = clock_scale;
        config.tick_interval = Duration::from_millis(100);
        config.lease_ttl = Duration::from_secs(1);
        Ok(config)
    }

    /// A SQLite database URL in the temporary folder.
    pub fn sqlite_url(&self, name: &str) -> String {
        format!("sqlite:{}", self.dir.path().join(name).display())
    }
}

/// A throwaway PostgreSQL server on a free loopback port, in a temporary data folder, run as a
/// user other than root (the `postgres` user when the tests run as root). Stopped on drop.
#[derive(Debug)]
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    /// The database URL.
    pub url: String,
}

fn find_pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl TestPostgres {
    /// Starts one, or `Ok(None)` when this machine has no PostgreSQL server binaries
    /// (`/usr/lib/postgresql/*/bin/initdb`). `durable: false` turns `fsync` off (tests);
    /// `true` keeps PostgreSQL's defaults (measurements).
    pub fn start(durable: bool) -> Result<Option<TestPostgres>, TestError> {
        let Some(bin) = find_pg_bin() else {
            return Ok(None);
        };
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("rulebox-pg-").tempdir()?;
        let data = dir.path().join("data");
        if as_postgres {
            run(Command::new("chown").arg("postgres").arg(dir.path()))?;
        }
        let port = free_port()?;
        let pg = TestPostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            as_postgres,
        };
        let data_s = data.display().to_string();
        pg.run_pg(
            "initdb",
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        let mut options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200"
        );
        if !durable {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let log = pg.dir.path().join("log");
        pg.run_pg(
            "pg_ctl",
            &[
                "-D",
                &data_s,
                "-l",
                &log.display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        Ok(Some(pg))
    }

    fn run_pg(&self, tool: &str, args: &[&str]) -> Result<(), TestError> {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args);
        run(&mut cmd)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = self.run_pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

fn run(cmd: &mut Command) -> Result<(), TestError> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

fn is_root() -> bool {
    // The effective uid, without unsafe code: `/proc/self/status` names it.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// An HTTP answer that was not a success: the status and the error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The error body (or a body that did not parse as one, in `message`).
    pub body: ErrorBody,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn answer<T: serde::de::DeserializeOwned>(
    mut resp: ureq::http::Response<ureq::Body>,
) -> Result<Result<T, Refusal>, TestError> {
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string()?;
    if (200..300).contains(&status) {
        return Ok(Ok(serde_json::from_str(&text)?));
    }
    let body = serde_json::from_str(&text).unwrap_or(ErrorBody {
        error: rulebox_controlplane_proto::ErrorCode::Internal,
        message: text,
        last_seq: None,
    });
    Ok(Err(Refusal { status, body }))
}

/// Low criticality, region `eu`, not internal.
pub fn labels(hostname: &str) -> Labels {
    Labels {
        hostname: hostname.to_owned(),
        region: "eu".to_owned(),
        criticality: Criticality::Low,
        vendor_internal: false,
    }
}

/// An agent that speaks the protocol (no content store: the test says what it runs).
#[derive(Debug)]
pub struct FakeAgent {
    /// Its node key.
    pub key: NodeKey,
    /// Its host id.
    pub host_id: String,
    /// The next `seq` it sends.
    pub seq: u64,
    /// What it says it runs.
    pub state: HostContentState,
    /// A request sent without an answer (the network or the controller failed): sent again, the
    /// same bytes, before anything new, as a real agent retries.
    pub pending: Option<Vec<u8>>,
    base: String,
    http: ureq::Agent,
}

/// Sends an enrolment; the answer or the refusal.
pub fn enroll_raw(
    base: &str,
    request: &EnrollRequest,
) -> Result<Result<EnrollResponse, Refusal>, TestError> {
    let resp = agent()
        .post(&format!("{base}{ENROLL_PATH}"))
        .content_type("application/json")
        .send(serde_json::to_vec(request)?)?;
    answer(resp)
}

impl FakeAgent {
    /// Enrols a new node key with `secret` and `labels` at the controller at `base`
    /// (`http://127.0.0.1:PORT`).
    pub fn enroll(
        base: &str,
        secret: &str,
        labels: Labels,
    ) -> Result<Result<FakeAgent, Refusal>, TestError> {
        let key = NodeKey::generate()?;
        let request = EnrollRequest {
            protocol: PROTOCOL_VERSION,
            secret: secret.to_owned(),
            public_key: key.public_hex(),
            labels,
        };
        Ok(enroll_raw(base, &request)?.map(|r| FakeAgent {
            key,
            host_id: r.host_id,
            seq: 1,
            state: HostContentState::default(),
            pending: None,
            base: base.to_owned(),
            http: agent(),
        }))
    }

    /// The body of a check-in with `reports` at the next `seq` (not sent).
    pub fn body(&self, reports: Vec<HealthReport>) -> Result<Vec<u8>, TestError> {
        Ok(serde_json::to_vec(&CheckinRequest {
            protocol: PROTOCOL_VERSION,
            seq: self.seq,
            state: self.state.clone(),
            reports,
            dropped_reports: 0,
        })?)
    }

    /// Sends `body` as host `host_id` with signature `signature`; the answer or the refusal.
    pub fn send_raw(
        &self,
        host_id: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<Result<CheckinResponse, Refusal>, TestError> {
        let resp = self
            .http
            .post(&format!("{}{CHECKIN_PATH}", self.base))
            .header(HEADER_HOST, host_id)
            .header(HEADER_SIGNATURE, signature)
            .content_type("application/json")
            .send(body)?;
        answer(resp)
    }

    /// Checks in with `reports` (signed with its key) and moves `seq` on once the controller
    /// answered. A request that got no answer (`Err`) is kept and sent again, the same bytes,
    /// before the next one; a `seq` conflict moves `seq` past the controller's last.
    pub fn checkin(
        &mut self,
        reports: Vec<HealthReport>,
    ) -> Result<Result<CheckinResponse, Refusal>, TestError> {
        if let Some(body) = self.pending.clone() {
            match self.send_signed(&body)? {
                Ok(_) => self.seq += 1,
                Err(refusal) => {
                    if let Some(last) = refusal.body.last_seq {
                        self.seq = last + 1;
                    }
                }
            }
            self.pending = None;
        }
        let body = self.body(reports)?;
        self.pending = Some(body.clone());
        let out = self.send_signed(&body)?;
        self.pending = None;
        match &out {
            Ok(_) => self.seq += 1,
            Err(refusal) => {
                if let Some(last) = refusal.body.last_seq {
                    self.seq = last + 1;
                }
            }
        }
        Ok(out)
    }

    fn send_signed(&self, body: &[u8]) -> Result<Result<CheckinResponse, Refusal>, TestError> {
        let sig = self.key.sign_checkin(body);
        self.send_raw(&self.host_id, &sig, body)
    }

    /// A report of `kind` about what it runs now, with no quarantined rule.
    pub fn report(&self, kind: ReportKind) -> HealthReport {
        report(kind, self.state.release, 0)
    }
}

/// A report of `kind` on `release` with `quarantined` rules.
pub fn report(kind: ReportKind, release: Option<u64>, quarantined: u32) -> HealthReport {
    HealthReport {
        at_unix: rulebox_runtime::content::now_unix(),
        kind,
        content_release: release,
        quarantined_rules: quarantined,
        boot_guard_reverts: 0,
        events: 100,
        detections: 2,
        mean_latency_us: 30.0,
    }
}

/// An operator's client.
#[derive(Debug, Clone)]
pub struct OperatorClient {
    base: String,
    token: String,
    http: ureq::Agent,
}

impl OperatorClient {
    /// A client of the controller at `base` with `token`.
    pub fn new(base: &str, token: &str) -> OperatorClient {
        OperatorClient {
            base: base.to_owned(),
            token: token.to_owned(),
            http: agent(),
        }
    }

    /// `GET path`: the status and the JSON body.
    pub fn get(&self, path: &str) -> Result<(u16, serde_json::Value), TestError> {
        let mut resp = self
            .http
            .get(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string()?;
        Ok((status, serde_json::from_str(&text)?))
    }

    /// `POST path` with `body`: the status and the JSON body.
    pub fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), TestError> {
        let mut resp = self
            .http
            .post(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .content_type("application/json")
            .send(serde_json::to_vec(body)?)?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string()?;
        Ok((status, serde_json::from_str(&text)?))
    }
}

/// A client of the dashboard that behaves like a browser without script: it keeps the session
/// cookie and does not follow redirects (the test sees each one).
#[derive(Debug, Clone)]
pub struct WebClient {
    base: String,
    cookie: Option<String>,
    http: ureq::Agent,
}

/// A dashboard response.
#[derive(Debug, Clone)]
pub struct WebPage {
    /// The status.
    pub status: u16,
    /// `Location`, for a redirect.
    pub location: Option<String>,
    /// The `Content-Security-Policy` header.
    pub csp: Option<String>,
    /// The body.
    pub body: String,
}

/// `application/x-www-form-urlencoded` encoding of `pairs`.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl WebClient {
    /// A client of the controller at `base`, signed out.
    pub fn new(base: &str) -> WebClient {
        WebClient {
            base: base.to_owned(),
            cookie: None,
            http: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
        }
    }

    fn page(&mut self, mut resp: ureq::http::Response<ureq::Body>) -> Result<WebPage, TestError> {
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (location, csp, set_cookie) = (
            header("location"),
            header("content-security-policy"),
            header("set-cookie"),
        );
        if let Some(c) = set_cookie {
            let pair = c.split(';').next().unwrap_or("").to_owned();
            let live = pair.split_once('=').is_some_and(|(_, v)| !v.is_empty());
            self.cookie = live.then_some(pair);
        }
        Ok(WebPage {
            status: resp.status().as_u16(),
            location,
            csp,
            body: resp.body_mut().read_to_string()?,
        })
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> Result<WebPage, TestError> {
        let mut req = self.http.get(&format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        let resp = req.call()?;
        self.page(resp)
    }

    /// `POST path` with a form.
    pub fn post_form(&mut self, path: &str, pairs: &[(&str, &str)]) -> Result<WebPage, TestError> {
        let mut req = self.http.post(&format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        let resp = req
            .content_type("application/x-www-form-urlencoded")
            .send(form_encode(pairs))?;
        self.page(resp)
    }

    /// Signs in with an operator's token.
    pub fn sign_in(&mut self, token: &str) -> Result<WebPage, TestError> {
        self.post_form("/ui/login", &[("token", token), ("next", "/ui")])
    }

    /// The value of the hidden `csrf` field of `page`.
    pub fn csrf_of(page: &WebPage) -> Option<String> {
        let at = page.body.find(r#"name="csrf" value=""#)?;
        let rest = &page.body[at + r#"name="csrf" value=""#.len()..];
        Some(rest[..rest.find('"')?].to_owned())
    }
}
