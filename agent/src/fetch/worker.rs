//! The fetcher's thread: enrol, check in, take offers and reverts, read `timestamp.json`, wait.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rulebox_controlplane_proto::{
    CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, ErrorBody, ErrorCode,
    FetchFailureClass, HEADER_HOST, HEADER_SIGNATURE, HealthReport, HostContentState,
    MAX_CHECKIN_BYTES, MAX_REPORTS_PER_CHECKIN, NodeKey, PROTOCOL_VERSION, ReportKind, repo,
};
use rulebox_runtime::content::{
    BundleLimits, Inbox, ListedFile, MAX_REVERT_BYTES, MAX_ROOT_BYTES, MAX_TIMESTAMP_BYTES,
    Manifest, Root, Signed, StoreLayout, TimestampError, module_file_name, update_root,
    verify_envelope, verify_offer_envelope, verify_revert, verify_timestamp,
};

use super::backoff::{Backoff, full_jitter};
use super::client::Http;
use super::error::FetchError;
use super::event::FetchEvent;
use super::identity::{FetchState, Identity};
use super::spool::Spool;
use super::staging::{Staging, create_private_dir, sha256_hex};
use super::{FetchConfig, Shared, lock, now};

/// Largest answer of the controller read, in bytes.
const MAX_ANSWER_BYTES: u64 = 4 << 20;
/// Most roots of the chain fetched in one cycle (the rest follow in the next cycles).
const MAX_ROOT_STEPS: u64 = 16;

/// A report of `kind` about the content the agent runs now.
pub(crate) fn report(shared: &Shared, kind: ReportKind) -> HealthReport {
    HealthReport {
        at_unix: now(),
        kind,
        content_release: shared.state.as_ref().and_then(|s| s.current),
        quarantined_rules: shared.quarantined,
        boot_guard_reverts: shared.fallbacks,
        events: 0,
        detections: 0,
        mean_latency_us: 0.0,
    }
}

pub(crate) struct Worker {
    config: FetchConfig,
    store: std::path::PathBuf,
    shared: Arc<Mutex<Shared>>,
    woken: Receiver<()>,
    http: Http,
    staging: Staging,
    inbox: Inbox,
    /// Reverts handed to the inbox by this process (each once).
    reverts_delivered: BTreeSet<u64>,
    /// Events processed, detections raised and evaluation nanoseconds as of the last heartbeat
    /// acknowledged.
    processed_at_heartbeat: u64,
    detections_at_heartbeat: u64,
    evaluation_ns_at_heartbeat: u64,
    /// The newest root this fetcher verified and handed to the control thread, until the store's
    /// root catches up.
    pending_root: Option<Root>,
}

impl Worker {
    pub(crate) fn new(
        config: FetchConfig,
        store: &Path,
        shared: Arc<Mutex<Shared>>,
        woken: Receiver<()>,
    ) -> Worker {
        Worker {
            http: Http::new(config.request_timeout),
            config,
            store: store.to_path_buf(),
            shared,
            woken,
            staging: Staging::new(store),
            inbox: Inbox::new(StoreLayout::new(store).inbox()),
            reverts_delivered: BTreeSet::new(),
            processed_at_heartbeat: 0,
            detections_at_heartbeat: 0,
            evaluation_ns_at_heartbeat: 0,
            pending_root: None,
        }
    }

    fn emit(&self, event: FetchEvent) {
        lock(&self.shared).events.push(event.into());
    }

    fn stopped(&self) -> bool {
        lock(&self.shared).stop
    }

    /// Waits `wait`, or less if the agent stops. Reports made meanwhile do not shorten the wait
    /// (they go with the next check-in), so the request rate stays what the controller set.
    fn sleep(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if self.stopped() {
                return false;
            }
            if left.is_zero() {
                return true;
            }
            match self.woken.recv_timeout(left) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    pub(crate) fn run(mut self) {
        let mut backoff = Backoff::new(
            self.config.interval,
            self.config.max_backoff,
            self.config.min_wait,
        );
        if self.config.startup_delay && !self.sleep(full_jitter(self.config.interval)) {
            return;
        }
        let mut ctx = None;
        loop {
            let result = match &mut ctx {
                Some(ctx) => self.cycle(ctx, &mut backoff),
                None => match Context::open(&self.store) {
                    Ok(c) => {
                        ctx = Some(c);
                        continue;
                    }
                    Err(e) => Err(("start", None, e)),
                },
            };
            let wait = match result {
                Ok(()) => backoff.succeeded(),
                Err((step, release, e)) => {
                    let wait = backoff.failed();
                    if let Some(release) = release {
                        let mut message = e.message.clone();
                        rulebox_controlplane_proto::bound_text(&mut message);
                        self.queue_report(ReportKind::FetchFailed {
                            release,
                            class: e.class,
                            message,
                        });
                    }
                    self.emit(FetchEvent::Failed {
                        step,
                        release,
                        class: e.class,
                        message: e.message,
                        retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    });
                    wait
                }
            };
            if !self.sleep(wait) {
                return;
            }
        }
    }

    fn queue_report(&self, kind: ReportKind) {
        let mut shared = lock(&self.shared);
        let r = report(&shared, kind);
        shared.push_report(r);
    }

    /// One interval's work: check in (enrolling first if needed), apply what the answer brings,
    /// read `timestamp.json`, take the offer.
    fn cycle(
        &mut self,
        ctx: &mut Context,
        backoff: &mut Backoff,
    ) -> Result<(), (&'static str, Option<u64>, FetchError)> {
        {
            let mut shared = lock(&self.shared);
            if shared.spool.is_none() {
                shared.spool = Some(Spool::open(
                    ctx.identity.spool_path(),
                    self.config.spool_reports,
                    self.config.spool_bytes,
                ));
            }
        }
        let (mut root, state) = {
            let shared = lock(&self.shared);
            match (&shared.root, &shared.state) {
                (Some(root), Some(state)) => (root.clone(), state.clone()),
                // The store is not open yet: nothing to report on.
                _ => return Ok(()),
            }
        };
        // A newer root verified earlier and not yet in the store (the control thread applies it).
        match self.pending_root.take() {
            Some(pending) if pending.version > root.version => {
                root = pending.clone();
                self.pending_root = Some(pending);
            }
            _ => {}
        }
        if ctx.state.host_id.is_none() {
            self.enroll(ctx, backoff).map_err(|e| ("enroll", None, e))?;
        }
        let answer = self.checkin(ctx, &root, &state, backoff)?;
        for revert in &answer.reverts {
            let bytes = serde_json::to_vec(revert).unwrap_or_default();
            self.deliver_revert(revert.signed.release, &bytes, &root, &state)
                .map_err(|e| ("revert", Some(revert.signed.release), e))?;
        }
        // timestamp.json every interval: its reverts are applied even without an offer.
        if let Err(e) = self.timestamp(ctx, &mut root, &state) {
            self.emit(FetchEvent::Failed {
                step: "timestamp",
                release: None,
                class: e.class,
                message: e.message,
                retry_in_ms: 0,
            });
        }
        let Some(offer) = answer.offer else {
            // A partial download is kept while its release may still come (an offer withdrawn for
            // a while, a ring held): removed once the host runs it or a newer one, or lists it as
            // bad, or another release is offered.
            self.staging.retain(|r| {
                state.current.is_none_or(|c| r > c)
                    && !state.bad.contains(&r)
                    && !state.installed.contains_key(&r)
            });
            return Ok(());
        };
        let host_id = ctx.state.host_id.clone().unwrap_or_default();
        let release = offer.signed.release;
        let verified = verify_offer_envelope(&offer, &root, &host_id, now()).map_err(|e| {
            let class = match e {
                rulebox_runtime::content::OfferError::Expired { .. } => FetchFailureClass::Expired,
                _ => FetchFailureClass::Signature,
            };
            (
                "offer",
                Some(release),
                FetchError::new(class, e.to_string()),
            )
        })?;
        // Against the store's state as of now, not as of the cycle's start: the control thread may
        // have installed a delivery (and so forgotten it) since.
        let taken = {
            let shared = lock(&self.shared);
            let now = shared.state.as_ref().unwrap_or(&state);
            shared.delivered.contains(&release)
                || now.current == Some(release)
                || now.bad.contains(&release)
                || now.installed.contains_key(&release)
        };
        if taken {
            return Ok(());
        }
        self.staging.retain(|r| r == release);
        self.fetch_release(&root, &verified)
            .map_err(|e| ("release", Some(release), e))
    }

    fn enroll(&self, ctx: &mut Context, backoff: &mut Backoff) -> Result<(), FetchError> {
        let body = serde_json::to_vec(&EnrollRequest {
            protocol: PROTOCOL_VERSION,
            secret: self.config.enroll_secret.0.clone(),
            public_key: ctx.key.public_hex(),
            labels: self.config.labels.clone(),
        })
        .unwrap_or_default();
        let url = format!("{}/v1/enroll", self.config.controller);
        let (status, answer) = self.http.post_json(&url, &[], &body, MAX_ANSWER_BYTES)?;
        if status != 200 && status != 201 {
            return Err(refusal(&url, status, &answer));
        }
        let answer: EnrollResponse = serde_json::from_slice(&answer)
            .map_err(|e| FetchError::status(format!("{url}: an unreadable answer: {e}")))?;
        if answer.host_id.is_empty() || answer.host_id.len() > 128 {
            return Err(FetchError::status(format!("{url}: an unusable host id")));
        }
        backoff.set_base(Duration::from_secs(answer.interval_secs.max(1)));
        ctx.state.host_id = Some(answer.host_id.clone());
        ctx.identity.save(&ctx.state)?;
        self.emit(FetchEvent::Enrolled {
            host_id: answer.host_id,
        });
        Ok(())
    }

    fn checkin(
        &mut self,
        ctx: &mut Context,
        root: &Root,
        state: &StoreState,
        backoff: &mut Backoff,
    ) -> Result<CheckinResponse, (&'static str, Option<u64>, FetchError)> {
        let fail = |e| ("checkin", None, e);
        let url = format!("{}/v1/checkin", self.config.controller);
        // One retry after a `409` that names the last seq accepted.
        for attempt in 0..2 {
            let (mut reports, dropped) = lock(&self.shared)
                .spool
                .as_ref()
                .map(|s| s.batch(MAX_REPORTS_PER_CHECKIN - 1))
                .unwrap_or_default();
            let sent = reports.len();
            let (processed, detections, evaluation_ns) = {
                let s = lock(&self.shared);
                (s.processed, s.detections, s.evaluation_ns)
            };
            let mut heartbeat = report(&lock(&self.shared), ReportKind::Heartbeat);
            heartbeat.events = processed.saturating_sub(self.processed_at_heartbeat);
            heartbeat.detections = detections.saturating_sub(self.detections_at_heartbeat);
            let spent = evaluation_ns.saturating_sub(self.evaluation_ns_at_heartbeat);
            if heartbeat.events > 0 {
                heartbeat.mean_latency_us = spent as f64 / heartbeat.events as f64 / 1000.0;
            }
            reports.push(heartbeat);
            let seq = ctx.state.next_seq.max(1);
            ctx.state.next_seq = seq + 1;
            // Persisted before the send: a crash after it never reuses a seq.
            ctx.identity.save(&ctx.state).map_err(fail)?;
            let body = serde_json::to_vec(&CheckinRequest {
                protocol: PROTOCOL_VERSION,
                seq,
                state: HostContentState {
                    release: state.current,
                    last_known_good: state.last_known_good,
                    bad: state.bad.iter().rev().take(1000).copied().collect(),
                    root_version: Some(root.version),
                },
                reports,
                dropped_reports: dropped,
            })
            .unwrap_or_default();
            if body.len() > MAX_CHECKIN_BYTES {
                // Only if the spool holds huge reports: send fewer next time by dropping the oldest.
                if let Some(spool) = lock(&self.shared).spool.as_mut() {
                    let _ = spool.acknowledged(sent.div_ceil(2).max(1), 0);
                }
                return Err(fail(FetchError::new(
                    FetchFailureClass::TooLarge,
                    "the check-in would exceed the protocol's size; the oldest reports were dropped",
                )));
            }
            let host = ctx.state.host_id.clone().unwrap_or_default();
            let signature = ctx.key.sign_checkin(&body);
            let (status, answer) = self
                .http
                .post_json(
                    &url,
                    &[(HEADER_HOST, &host), (HEADER_SIGNATURE, &signature)],
                    &body,
                    MAX_ANSWER_BYTES,
                )
                .map_err(fail)?;
            if status == 200 {
                let answer: CheckinResponse = serde_json::from_slice(&answer).map_err(|e| {
                    fail(FetchError::status(format!(
                        "{url}: an unreadable answer: {e}"
                    )))
                })?;
                if answer.ack_seq != seq {
                    return Err(fail(FetchError::status(format!(
                        "{url}: the answer acknowledges seq {} for {seq}",
                        answer.ack_seq
                    ))));
                }
                self.processed_at_heartbeat = processed;
                self.detections_at_heartbeat = detections;
                self.evaluation_ns_at_heartbeat = evaluation_ns;
                if let Some(spool) = lock(&self.shared).spool.as_mut()
                    && let Err(e) = spool.acknowledged(sent, dropped)
                {
                    tracing::warn!(error = %e, "cannot write the report spool");
                }
                backoff.set_base(Duration::from_secs(answer.interval_secs.max(1)));
                if answer.offer.is_some() || !answer.reverts.is_empty() {
                    self.emit(FetchEvent::CheckedIn {
                        seq,
                        reports: sent + 1,
                        offer: answer.offer.as_ref().map(|o| o.signed.release),
                        reverts: answer.reverts.len(),
                    });
                }
                return Ok(answer);
            }
            let error = refusal(&url, status, &answer);
            match serde_json::from_slice::<ErrorBody>(&answer).ok() {
                Some(ErrorBody {
                    error: ErrorCode::SeqConflict,
                    last_seq: Some(last),
                    ..
                }) if attempt == 0 => {
                    ctx.state.next_seq = last.saturating_add(1);
                    ctx.identity.save(&ctx.state).map_err(fail)?;
                    continue;
                }
                Some(ErrorBody {
                    error: ErrorCode::UnknownHost,
                    ..
                }) => {
                    // The controller lost or dropped this host: enrol again (same key).
                    ctx.state.host_id = None;
                    ctx.identity.save(&ctx.state).map_err(fail)?;
                }
                _ => {}
            }
            return Err(fail(error));
        }
        Err(fail(FetchError::status(format!(
            "{url}: seq refused twice"
        ))))
    }

    /// Verifies a signed revert (so a bad one is reported by class here), then hands it to the
    /// inbox, once per release, unless the host already lists the release as bad.
    fn deliver_revert(
        &mut self,
        release: u64,
        bytes: &[u8],
        root: &Root,
        state: &StoreState,
    ) -> Result<(), FetchError> {
        if state.bad.contains(&release) || self.reverts_delivered.contains(&release) {
            return Ok(());
        }
        verify_revert(bytes, root, now()).map_err(|e| {
            let class = if e.to_string().contains("expired") {
                FetchFailureClass::Expired
            } else {
                FetchFailureClass::Signature
            };
            FetchError::new(class, format!("the revert of release {release}: {e}"))
        })?;
        self.inbox
            .deliver_revert(&format!("release-{release}"), bytes)
            .map_err(|e| FetchError::disk("deliver a revert to the inbox", &e))?;
        self.reverts_delivered.insert(release);
        self.emit(FetchEvent::RevertDelivered { release });
        Ok(())
    }

    /// Root `N + 1` of the chain on top of `root` (`N`), verified by the store's rotation rule
    /// ([`update_root`]: a threshold of root `N`'s keys and of its own), handed to the control
    /// thread to persist, and made `root` for the rest of the cycle. `Ok(false)` if the repository
    /// has no root `N + 1`.
    fn next_root(&mut self, root: &mut Root) -> Result<bool, FetchError> {
        let version = root.version.saturating_add(1);
        let url = format!("{}/{}", self.config.repo, repo::root_file(version));
        let Some(bytes) = self.http.get_optional(&url, MAX_ROOT_BYTES)? else {
            return Ok(false);
        };
        let next = update_root(root, &bytes)
            .map_err(|e| FetchError::new(FetchFailureClass::Signature, format!("{url}: {e}")))?;
        lock(&self.shared).roots.push((next.version, bytes));
        self.emit(FetchEvent::RootFetched {
            version: next.version,
        });
        *root = next.clone();
        self.pending_root = Some(next);
        Ok(true)
    }

    fn timestamp(
        &mut self,
        ctx: &mut Context,
        root: &mut Root,
        state: &StoreState,
    ) -> Result<(), FetchError> {
        let url = format!("{}/{}", self.config.repo, repo::TIMESTAMP_FILE);
        let bytes = self.http.get_capped(&url, MAX_TIMESTAMP_BYTES as u64)?;
        let mut probed = false;
        let mut steps = 0;
        let verified = loop {
            match verify_timestamp(&bytes, root, now(), ctx.state.timestamp_version) {
                // A newer root: follow the chain up to it, then check the timestamp again.
                Err(TimestampError::RootAhead { .. }) if steps < MAX_ROOT_STEPS => {
                    steps += 1;
                    if !self.next_root(root)? {
                        break Err(FetchError::status(format!(
                            "{url} names a newer root than the repository publishes"
                        )));
                    }
                }
                // Signed by keys this root does not know: the roles may have been rotated by a
                // newer root (checked once; without one, the signature is what is wrong).
                Err(e @ TimestampError::Signature { .. }) if !probed => {
                    probed = true;
                    steps += 1;
                    if !self.next_root(root)? {
                        break Err(timestamp_error(&url, &e));
                    }
                }
                Err(e) => break Err(timestamp_error(&url, &e)),
                Ok(ts) => break Ok(ts),
            }
        };
        let ts = verified?;
        if ctx.state.timestamp_version != Some(ts.version) {
            ctx.state.timestamp_version = Some(ts.version);
            ctx.identity.save(&ctx.state)?;
        }
        let concerned: BTreeSet<u64> = state
            .current
            .into_iter()
            .chain(state.last_known_good)
            .chain(state.installed.keys().copied())
            .chain(lock(&self.shared).delivered.iter().copied())
            .collect();
        for revert in &ts.reverts {
            if !concerned.contains(&revert.release)
                || state.bad.contains(&revert.release)
                || self.reverts_delivered.contains(&revert.release)
            {
                continue;
            }
            let url = format!("{}/{}", self.config.repo, repo::revert_file(revert.release));
            let cap = revert.size.min(MAX_REVERT_BYTES as u64);
            let bytes = self.http.get_capped(&url, cap)?;
            if sha256_hex(&bytes) != revert.sha256 {
                return Err(FetchError::new(
                    FetchFailureClass::Hash,
                    format!("{url}: not the bytes timestamp.json names"),
                ));
            }
            self.deliver_revert(revert.release, &bytes, root, state)?;
        }
        Ok(())
    }

    /// The manifest (capped by the offer's size, hash-checked, signatures and expiry checked
    /// against the root), then each module (capped by the manifest's sizes, hash-checked), into
    /// `staging/release-R/`; then the whole folder to the inbox.
    fn fetch_release(
        &mut self,
        root: &Root,
        offer: &rulebox_runtime::content::Offer,
    ) -> Result<(), FetchError> {
        let release = offer.release;
        let dir = self.staging.release_dir(release);
        create_private_dir(&dir.join("modules"))
            .map_err(|e| FetchError::disk("create the staging folder", &e))?;
        let url = format!("{}/{}", self.config.repo, repo::manifest_file(release));
        let manifest_path = dir.join("manifest.json");
        self.staging.fetch_file(
            &self.http,
            &url,
            &manifest_path,
            offer.size,
            &offer.manifest_sha256,
        )?;
        let limits = BundleLimits::default();
        let bytes =
            rulebox_runtime::content::read_capped(&manifest_path, offer.size).map_err(|e| {
                FetchError::disk(
                    "read the staged manifest",
                    &std::io::Error::other(e.to_string()),
                )
            })?;
        let envelope: Signed<Manifest> = serde_json::from_slice(&bytes).map_err(|e| {
            self.staging.remove(release);
            FetchError::new(
                FetchFailureClass::Signature,
                format!("{url}: does not parse: {e}"),
            )
        })?;
        if let Err(e) = verify_envelope(&envelope, root) {
            self.staging.remove(release);
            return Err(FetchError::new(
                FetchFailureClass::Signature,
                format!("{url}: {e}"),
            ));
        }
        let manifest = envelope.signed;
        if manifest.release != release {
            self.staging.remove(release);
            return Err(FetchError::new(
                FetchFailureClass::Signature,
                format!("{url}: the manifest is of release {}", manifest.release),
            ));
        }
        if now() >= manifest.expires_unix {
            return Err(FetchError::new(
                FetchFailureClass::Expired,
                format!("{url}: the manifest expired at {}", manifest.expires_unix),
            ));
        }
        let files = match download_list(&manifest, &limits) {
            Ok(files) => files,
            Err(problem) => {
                self.staging.remove(release);
                return Err(FetchError::new(
                    FetchFailureClass::TooLarge,
                    format!("{url}: {problem}"),
                ));
            }
        };
        if !manifest.packs.is_empty() {
            create_private_dir(&dir.join("data"))
                .map_err(|e| FetchError::disk("create a staging folder", &e))?;
        }
        let mut resumed = 0;
        for entry in &files {
            // The repository's path is the bundle's (`modules/<sha256>.wasm`, `data/<sha256>.rules`).
            let url = format!("{}/{}", self.config.repo, entry.file);
            if self.staging.fetch_file(
                &self.http,
                &url,
                &dir.join(entry.file),
                entry.size,
                entry.sha256,
            )? {
                resumed += 1;
            }
        }
        // Leftovers of an earlier attempt (a file no longer listed, a partial file) would make
        // the bundle refused: only the listed files go.
        let listed: BTreeSet<&str> = files.iter().map(|e| e.file).collect();
        for folder in ["modules", "data"] {
            if let Ok(entries) = std::fs::read_dir(dir.join(folder)) {
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let path = name.to_str().map(|n| format!("{folder}/{n}"));
                    if !path.is_some_and(|p| listed.contains(p.as_str())) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
        self.inbox
            .deliver_bundle(&dir)
            .map_err(|e| FetchError::disk("deliver the release to the inbox", &e))?;
        lock(&self.shared).delivered.insert(release);
        self.staging.remove(release);
        self.emit(FetchEvent::Delivered { release, resumed });
        Ok(())
    }
}

use rulebox_runtime::content::StoreState;

/// The class of a refused `timestamp.json`: `expired`, or `signature` (a bad or missing signature,
/// a rollback below the last version accepted, a root that does not match).
fn timestamp_error(url: &str, e: &TimestampError) -> FetchError {
    let class = if matches!(e, TimestampError::Expired { .. }) {
        FetchFailureClass::Expired
    } else {
        FetchFailureClass::Signature
    };
    FetchError::new(class, format!("{url}: {e}"))
}

/// The error of a non-success answer: its code's class, and whether it is a refusal.
fn refusal(url: &str, status: u16, body: &[u8]) -> FetchError {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let text = match &parsed {
        Some(b) => format!(
            "{url}: HTTP {status}: {}",
            rulebox_runtime::text::Escaped(&b.message)
        ),
        None => format!("{url}: HTTP {status}"),
    };
    let mut error = FetchError::status(text);
    error.refusal = parsed.as_ref().is_some_and(|b| !b.error.is_retryable());
    error.last_seq = parsed.and_then(|b| b.last_seq);
    error
}

/// Every file a verified manifest lists, to download: modules and engines (`modules/`), packs'
/// rule data (`data/`), each name, hash and size checked against the bundle caps before anything
/// is downloaded (the store checks them again on the finished bundle).
fn download_list<'m>(
    manifest: &'m Manifest,
    limits: &BundleLimits,
) -> Result<Vec<ListedFile<'m>>, String> {
    if manifest.engines.len() > rulebox_runtime::content::MAX_ENGINES
        || manifest.packs.len() > rulebox_runtime::content::MAX_PACKS
    {
        return Err(format!(
            "{} engines and {} packs are more than a bundle may list",
            manifest.engines.len(),
            manifest.packs.len()
        ));
    }
    let mut total = 0u64;
    let mut files = Vec::new();
    // `files()` lists the modules, then the engines, then the packs' data.
    let modules = manifest.rules.len().saturating_add(manifest.engines.len());
    for (i, entry) in manifest.files().enumerate() {
        total = total.saturating_add(entry.size);
        let hex_ok = entry.sha256.len() == 64
            && entry
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let (name, cap) = if i >= modules {
            (repo::data_file(entry.sha256), limits.max_data_bytes)
        } else {
            (module_file_name(entry.sha256), limits.max_module_bytes)
        };
        if !hex_ok || entry.file != name || entry.size > cap || total > limits.max_total_bytes {
            return Err(format!(
                "entry {:?} is over the limits or malformed",
                entry.owner
            ));
        }
        files.push(entry);
    }
    Ok(files)
}

/// What the loop needs once the store's folder is usable.
struct Context {
    identity: Identity,
    key: NodeKey,
    state: FetchState,
}

impl Context {
    fn open(store: &Path) -> Result<Context, FetchError> {
        let identity = Identity::open(store)?;
        let key = identity.node_key()?;
        let state = identity.load();
        Ok(Context {
            identity,
            key,
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use rulebox_runtime::content::{
        EngineEntry, MANIFEST_FORMAT_PACKS, PackEntry, PackRuleEntry, data_file_name,
    };

    use super::*;

    fn manifest() -> Manifest {
        let (engine, data) = ("e".repeat(64), "d".repeat(64));
        Manifest {
            format: MANIFEST_FORMAT_PACKS,
            release: 1,
            created_unix: 0,
            expires_unix: u64::MAX,
            min_runtime: "0.1.0".into(),
            abi_version: 2,
            schema_versions: vec![2],
            rules: Vec::new(),
            engines: vec![EngineEntry {
                file: module_file_name(&engine),
                sha256: engine.clone(),
                size: 100,
                abi_version: 3,
            }],
            packs: vec![PackEntry {
                id: "sigma".into(),
                version: "1".into(),
                engine,
                file: data_file_name(&data),
                sha256: data,
                size: 200,
                limits: None,
                rules: vec![PackRuleEntry {
                    id: "r".into(),
                    version: "1".into(),
                    limits: None,
                }],
            }],
            notes: String::new(),
        }
    }

    #[test]
    fn the_download_list_holds_engines_and_rule_data_each_within_its_cap() {
        let m = manifest();
        let limits = BundleLimits::default();
        let files: Vec<&str> = download_list(&m, &limits)
            .unwrap()
            .iter()
            .map(|f| f.file)
            .collect();
        assert_eq!(
            files,
            [m.engines[0].file.as_str(), m.packs[0].file.as_str()]
        );
        let mut big = m.clone();
        big.packs[0].size = limits.max_data_bytes + 1;
        assert!(download_list(&big, &limits).unwrap_err().contains("sigma"));
        let mut elsewhere = m.clone();
        elsewhere.packs[0].file = "../../etc/passwd".into();
        assert!(download_list(&elsewhere, &limits).is_err());
        let mut as_module = m;
        as_module.packs[0].file = module_file_name(&as_module.packs[0].sha256);
        assert!(download_list(&as_module, &limits).is_err());
    }
}
