//! `rulebox agent`: the endpoint agent. Reads events, evaluates them on a dedicated sandbox thread,
//! takes new releases without stopping, and falls back to last-known-good content after repeated
//! failed starts.
//!
//! Threads: a reader (stdin, a followed file, or a Unix socket) feeds a bounded queue; one sandbox
//! thread owns the rule set and takes events and updates from that queue in order, so an update is
//! applied between two events: none is lost or processed twice. The tokio runtime runs the control
//! side: signals, the inbox, the boot guard's health window, and persistence of quarantines.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rulebox_runtime::content::{BootDecision, ContentStore, now_unix};
use rulebox_runtime::events::EventReader;
use rulebox_runtime::{Alert, CompiledRule, Limits, Outcome, RuleSet, Runtime, Upsert};
use rulebox_sdk::Event;
use tokio::sync::mpsc;

use crate::output;

/// Arguments of `rulebox agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The content store (see `rulebox store init`).
    #[arg(long, required_unless_present = "safe_mode")]
    store: Option<PathBuf>,
    /// Start on the baseline content built into this binary alone, ignoring the store (the
    /// equivalent of booting without third-party drivers).
    #[arg(long)]
    safe_mode: bool,
    /// Where events come from: `-` (standard input), a file, or `unix:PATH` (a Unix socket accepting
    /// JSON-lines connections).
    #[arg(long, default_value = "-")]
    events: String,
    /// Keep reading a file as it grows (like `tail -f`) instead of stopping at its end.
    #[arg(long)]
    follow: bool,
    /// Starts without reaching GOOD after which a release is abandoned for last-known-good (K).
    #[arg(long, default_value_t = 3)]
    boot_attempts: u32,
    /// Events a release must process before it can be marked GOOD.
    #[arg(long, default_value_t = 100)]
    health_events: u64,
    /// Seconds a release must run without a crash before it can be marked GOOD.
    #[arg(long, default_value_t = 30)]
    health_secs: u64,
    /// Events queued between the reader and the rules; a full queue makes the reader wait
    /// (back-pressure: no event is dropped).
    #[arg(long, default_value_t = 1024)]
    queue: usize,
    /// How often the inbox is checked for new bundles, in milliseconds.
    #[arg(long, default_value_t = 500)]
    inbox_poll_ms: u64,
    /// A runtime configuration file (JSON).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Content to activate: the rules, with their limits, and which release they are.
struct Content {
    release: Option<u64>,
    /// Each rule, its limits from the manifest, and the id and version the manifest says it has.
    rules: Vec<ContentRule>,
}

/// A compiled rule, its limits from the manifest, and the `(id, version)` the manifest says it has.
type ContentRule = (CompiledRule, Option<Limits>, Option<(String, String)>);

enum Work {
    Event(Box<Event<'static>>, u64),
    /// Replace the rule set's content by this release (only changed rules are touched).
    Update(Content),
    /// The current release is healthy: drop the fallback versions kept by the update.
    Settle,
}

enum Control {
    Quarantined(Arc<rulebox_runtime::QuarantineRecord>),
    Healthy(u64),
}

/// Runs the agent until end of input or SIGTERM/SIGINT.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = crate::load::config(args.config.as_deref())?;
    let runtime = Runtime::new(config).context("cannot start the runtime")?;
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tokio_rt.block_on(agent(args, runtime))
}

fn baseline(runtime: &Runtime) -> anyhow::Result<Content> {
    let rules = rulebox_example_artifacts::good()
        .map(|a| {
            runtime
                .compile(a.bytes, &format!("baseline:{}", a.name))
                .map(|c| (c, None, None))
        })
        .collect::<Result<Vec<_>, _>>()
        .context("the built-in baseline content does not compile")?;
    Ok(Content {
        release: None,
        rules,
    })
}

fn compile_bundle(
    runtime: &Runtime,
    store: &ContentStore,
    bundle: &rulebox_runtime::content::VerifiedBundle,
) -> (Content, Vec<String>) {
    // Freeze defence: an expired release is never installed, but one already installed keeps running
    // (stopping detection would be worse); say so loudly every time it is activated.
    if bundle.is_expired(now_unix()) {
        eprintln!(
            "rulebox agent: release {} has expired; it keeps running until a newer release arrives",
            bundle.release()
        );
        alert_line(
            serde_json::json!({"type": "alert", "alert": "content_expired", "severity": "high",
            "release": bundle.release(), "expires_unix": bundle.manifest().expires_unix}),
        );
    }
    let mut rules = Vec::new();
    let mut skipped = Vec::new();
    // Machine code this host generated earlier for the same modules (see docs/performance.md for the
    // trust boundary): a restart or an update that keeps most rules compiles only the new ones.
    let cache = rulebox_runtime::ModuleCache::open(&store.dir().join("cache"));
    for (entry, bytes) in bundle.modules() {
        if store.is_quarantined(&entry.id, &entry.version, &entry.sha256) {
            skipped.push(format!(
                "{} {} is quarantined on this host",
                entry.id, entry.version
            ));
            continue;
        }
        match cache.compile(
            runtime,
            bytes,
            &format!("release-{}:{}", bundle.release(), entry.id),
        ) {
            Ok(c) => rules.push((
                c,
                entry.limits.clone(),
                Some((entry.id.clone(), entry.version.clone())),
            )),
            Err(e) => skipped.push(format!(
                "{} {}: {}: {e}",
                entry.id,
                entry.version,
                e.reason()
            )),
        }
    }
    (
        Content {
            release: Some(bundle.release()),
            rules,
        },
        skipped,
    )
}

#[cfg(feature = "fault-injection")]
fn inject_start_crash(content: &Content) {
    // Test builds only: stand-in for "this content crashes the host during start-up".
    if let Ok(id) = std::env::var("RULEBOX_TEST_CRASH_ON_RULE")
        && content
            .rules
            .iter()
            .any(|(c, _, _)| c.source().ends_with(&format!(":{id}")))
    {
        eprintln!("rulebox agent: fault injection: crashing on start-up with rule {id}");
        std::process::abort();
    }
}

async fn agent(args: Args, runtime: Runtime) -> anyhow::Result<ExitCode> {
    let mut store = match (&args.store, args.safe_mode) {
        (_, true) => None,
        (Some(dir), false) => Some(
            ContentStore::open(dir)
                .with_context(|| format!("cannot open the content store {}", dir.display()))?,
        ),
        (None, false) => anyhow::bail!("--store is required unless --safe-mode"),
    };

    // Boot guard: decide what to run, durably recording STARTING before anything runs.
    let content = match store.as_mut() {
        None => {
            eprintln!("rulebox agent: safe mode: running the built-in baseline content only");
            baseline(&runtime)?
        }
        Some(store) => match store.begin_boot(args.boot_attempts).context("boot guard")? {
            BootDecision::Start {
                release,
                attempt,
                bundle,
            } => {
                eprintln!(
                    "rulebox agent: starting release {release} (attempt {attempt} of {})",
                    args.boot_attempts
                );
                let (content, skipped) = compile_bundle(&runtime, store, &bundle);
                for s in skipped {
                    eprintln!("rulebox agent: not loaded: {s}");
                }
                content
            }
            BootDecision::FellBack {
                from,
                to,
                reason,
                report,
                bundle,
            } => {
                eprintln!(
                    "rulebox agent: release {from} abandoned ({reason:?}); running last-known-good release {to}; report: {}",
                    report.display()
                );
                alert_line(
                    serde_json::json!({"type": "alert", "alert": "release_abandoned", "severity": "critical", "from": from, "to": to, "reason": format!("{reason:?}"), "report": report}),
                );
                compile_bundle(&runtime, store, &bundle).0
            }
            BootDecision::Baseline {
                from,
                reason,
                report,
            } => {
                if let Some(from) = from {
                    eprintln!(
                        "rulebox agent: release {from} abandoned ({reason:?}) and no usable last-known-good; running the baseline content"
                    );
                    alert_line(
                        serde_json::json!({"type": "alert", "alert": "release_abandoned", "severity": "critical", "from": from, "to": "baseline", "reason": format!("{reason:?}"), "report": report}),
                    );
                } else {
                    eprintln!("rulebox agent: no release installed; running the baseline content");
                }
                baseline(&runtime)?
            }
        },
    };
    #[cfg(feature = "fault-injection")]
    inject_start_crash(&content);

    let (work_tx, work_rx) = mpsc::channel::<Work>(args.queue.max(1));
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Control>();
    let events_in = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // The sandbox thread: owns the rule set.
    let health = (args.health_events, Duration::from_secs(args.health_secs));
    let rt = runtime.clone();
    let worker = runtime
        .spawn_sandbox_thread("rulebox-worker", move |thread| {
            worker(&rt, thread, content, work_rx, control_tx, health)
        })
        .context("cannot start the sandbox thread")?;

    // The reader.
    let reader = spawn_reader(
        &args.events,
        args.follow,
        work_tx.clone(),
        events_in.clone(),
        stop.clone(),
    )?;

    // Control: signals, inbox, health, quarantine persistence.
    let mut inbox_tick = tokio::time::interval(Duration::from_millis(args.inbox_poll_ms.max(50)));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    let mut reader = reader;
    loop {
        tokio::select! {
            _ = sigterm.recv() => { eprintln!("rulebox agent: SIGTERM: shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { eprintln!("rulebox agent: interrupted: shutting down"); break; }
            done = &mut reader => {
                if let Ok(Err(e)) = done { eprintln!("rulebox agent: event source: {e:#}"); }
                break;
            }
            Some(msg) = control_rx.recv() => handle_control(store.as_mut(), msg, &work_tx).await,
            _ = inbox_tick.tick() => {
                if let Some(store) = store.as_mut() {
                    check_inbox(&runtime, store, &work_tx, args.boot_attempts).await;
                }
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    reader.abort();
    drop(work_tx);
    // Drain: the worker finishes every queued event, then exits.
    let processed = tokio::task::spawn_blocking(move || worker.join())
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or(0);
    while let Ok(msg) = control_rx.try_recv() {
        if let Control::Quarantined(_) = msg {
            // Persist late quarantines too (not Healthy: the agent is stopping).
            handle_quarantine_only(store.as_mut(), msg);
        }
    }
    let read = events_in.load(Ordering::SeqCst);
    eprintln!("rulebox agent: stopped: {read} events read, {processed} processed");
    Ok(ExitCode::from(if read == processed {
        super::EXIT_OK
    } else {
        super::EXIT_ERROR
    }))
}

fn alert_line(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = output::line(&mut out, &value);
    let _ = out.flush();
}

fn handle_quarantine_only(store: Option<&mut ContentStore>, msg: Control) {
    if let (Some(store), Control::Quarantined(r)) = (store, msg)
        && let Err(e) = store.record_quarantine(
            &r.rule_id,
            &r.rule_version,
            &r.content_hash,
            r.reason.name(),
        )
    {
        eprintln!(
            "rulebox agent: cannot persist the quarantine of {}: {e}",
            r.rule_id
        );
    }
}

async fn handle_control(
    store: Option<&mut ContentStore>,
    msg: Control,
    work_tx: &mpsc::Sender<Work>,
) {
    match msg {
        Control::Healthy(release) => {
            if let Some(store) = store {
                match store.mark_good(release) {
                    Ok(()) => {
                        eprintln!("rulebox agent: release {release} is GOOD (last-known-good)")
                    }
                    Err(e) => eprintln!("rulebox agent: cannot record GOOD({release}): {e}"),
                }
            }
            let _ = work_tx.send(Work::Settle).await;
        }
        msg @ Control::Quarantined(_) => handle_quarantine_only(store, msg),
    }
}

async fn check_inbox(
    runtime: &Runtime,
    store: &mut ContentStore,
    work_tx: &mpsc::Sender<Work>,
    boot_attempts: u32,
) {
    let inbox = store.inbox_dir();
    let Ok(entries) = std::fs::read_dir(&inbox) else {
        return;
    };
    let visible: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    // Signed reverts first: a release withdrawn by the vendor must not be activated by a bundle
    // waiting behind it.
    let mut reverts: Vec<PathBuf> = visible
        .iter()
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(REVERT_SUFFIX))
        .cloned()
        .collect();
    reverts.sort();
    for path in reverts {
        apply_revert_file(runtime, store, work_tx, &path).await;
    }
    let mut bundles: Vec<PathBuf> = visible.into_iter().filter(|p| p.is_dir()).collect();
    bundles.sort();
    for bundle in bundles {
        let name = bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match store.install(&bundle, now_unix()) {
            Ok(installed) => {
                eprintln!(
                    "rulebox agent: installed release {} from the inbox; applying",
                    installed.release
                );
                // STARTING(V) is recorded before the new content runs, exactly as at start-up: if it
                // takes the agent down, the restarts count towards the fallback.
                let verified = match store.begin_boot(boot_attempts) {
                    Ok(
                        BootDecision::Start { bundle, .. } | BootDecision::FellBack { bundle, .. },
                    ) => bundle,
                    Ok(BootDecision::Baseline { .. }) => {
                        eprintln!(
                            "rulebox agent: the boot guard chose the baseline after installing; keeping the running content"
                        );
                        continue;
                    }
                    Err(e) => {
                        eprintln!("rulebox agent: boot guard after install: {e}");
                        continue;
                    }
                };
                let (content, skipped) = compile_bundle(runtime, store, &verified);
                for s in skipped {
                    eprintln!("rulebox agent: not loaded: {s}");
                }
                alert_line(
                    serde_json::json!({"type": "update", "release": installed.release, "previous": installed.previous}),
                );
                let _ = work_tx.send(Work::Update(content)).await;
                let _ = std::fs::remove_dir_all(&bundle);
            }
            Err(e) => {
                eprintln!("rulebox agent: bundle {name} refused: {e}");
                alert_line(
                    serde_json::json!({"type": "alert", "alert": "update_refused", "severity": "high", "bundle": name, "message": e.to_string()}),
                );
                let _ = store.report_refusal(&bundle, &e);
                let _ = std::fs::rename(
                    &bundle,
                    inbox.join(format!(
                        ".refused-{name}-{}",
                        rulebox_runtime::content::now_unix_ms()
                    )),
                );
            }
        }
    }
}

/// How a signed revert instruction is named in the inbox (`rulebox push REVERT.json` names it so).
pub const REVERT_SUFFIX: &str = ".revert.json";

/// Largest revert file read (a revert is a few hundred bytes of JSON).
const MAX_REVERT_BYTES: u64 = 64 << 10;

/// Verifies and applies a signed revert from the inbox: the withdrawn release is marked bad and, if it
/// was running, the content the store goes back to (the named release, last-known-good, or the
/// built-in baseline) replaces it without stopping the event stream.
async fn apply_revert_file(
    runtime: &Runtime,
    store: &mut ContentStore,
    work_tx: &mpsc::Sender<Work>,
    path: &Path,
) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = match std::fs::metadata(path) {
        Ok(m) if m.len() <= MAX_REVERT_BYTES => std::fs::read(path).map_err(|e| e.to_string()),
        Ok(m) => Err(format!(
            "{} bytes is larger than a revert may be ({MAX_REVERT_BYTES})",
            m.len()
        )),
        Err(e) => Err(e.to_string()),
    };
    let outcome = bytes.and_then(|b| {
        store
            .apply_revert(&b, now_unix())
            .map_err(|e| e.to_string())
    });
    match outcome {
        Ok(outcome) => {
            eprintln!(
                "rulebox agent: applied the signed revert of release {} ({}); current release: {:?}",
                outcome.revert.release, outcome.revert.reason, outcome.current
            );
            alert_line(
                serde_json::json!({"type": "revert", "release": outcome.revert.release,
                "current": outcome.current, "was_current": outcome.was_current,
                "reason": outcome.revert.reason}),
            );
            if outcome.was_current {
                let content = match &outcome.bundle {
                    Some(bundle) => {
                        let (content, skipped) = compile_bundle(runtime, store, bundle);
                        for s in skipped {
                            eprintln!("rulebox agent: not loaded: {s}");
                        }
                        Some(content)
                    }
                    None => match baseline(runtime) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            eprintln!("rulebox agent: {e:#}; keeping the running content");
                            None
                        }
                    },
                };
                if let Some(content) = content {
                    let _ = work_tx.send(Work::Update(content)).await;
                }
            }
            let _ = std::fs::remove_file(path);
        }
        Err(e) => {
            eprintln!("rulebox agent: revert {name} refused: {e}");
            alert_line(
                serde_json::json!({"type": "alert", "alert": "revert_refused",
                "severity": "high", "file": name, "message": e}),
            );
            let _ = std::fs::rename(
                path,
                path.with_file_name(format!(
                    ".refused-{name}-{}",
                    rulebox_runtime::content::now_unix_ms()
                )),
            );
        }
    }
}

fn spawn_reader(
    source: &str,
    follow: bool,
    tx: mpsc::Sender<Work>,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    if let Some(path) = source.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        return Ok(tokio::spawn(async move {
            loop {
                let (conn, _) = listener.accept().await?;
                let (tx, count) = (tx.clone(), count.clone());
                tokio::spawn(async move {
                    use tokio::io::AsyncBufReadExt;
                    let mut lines = tokio::io::BufReader::new(conn).lines();
                    let mut n = 0u64;
                    while let Ok(Some(line)) = lines.next_line().await {
                        n += 1;
                        if line.trim().is_empty() {
                            continue;
                        }
                        match rulebox_runtime::events::parse_json_line(&line) {
                            Ok(event) => {
                                count.fetch_add(1, Ordering::SeqCst);
                                if tx.send(Work::Event(Box::new(event), n)).await.is_err() {
                                    break;
                                }
                            }
                            Err(e) => eprintln!(
                                "rulebox agent: unreadable event: connection line {n}: {e}"
                            ),
                        }
                    }
                });
            }
        }));
    }
    let path = (source != "-").then(|| PathBuf::from(source));
    Ok(tokio::task::spawn_blocking(move || {
        read_stream(path.as_deref(), follow, &tx, &count, &stop)
    }))
}

fn read_stream(
    path: Option<&Path>,
    follow: bool,
    tx: &mpsc::Sender<Work>,
    count: &AtomicU64,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let input: Box<dyn std::io::Read + Send> = match path {
        None => Box::new(std::io::stdin()),
        Some(p) if follow => Box::new(Follow {
            file: std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
            stop: stop.clone(),
        }),
        Some(p) => Box::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        ),
    };
    let reader = EventReader::new(BufReader::new(input));
    let mut unreadable = 0u64;
    for item in reader {
        match item {
            Ok(item) => {
                count.fetch_add(1, Ordering::SeqCst);
                let line = u64::try_from(item.line).unwrap_or(u64::MAX);
                if tx
                    .blocking_send(Work::Event(Box::new(item.event), line))
                    .is_err()
                {
                    break;
                }
            }
            Err(e) => {
                unreadable += 1;
                eprintln!("rulebox agent: unreadable event: {e}");
            }
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    if unreadable > 0 {
        eprintln!("rulebox agent: {unreadable} unreadable records in the event source");
    }
    Ok(())
}

/// A file read as it grows: at its end, waits and tries again until stopped.
struct Follow {
    file: std::fs::File,
    stop: Arc<AtomicBool>,
}

impl std::io::Read for Follow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.file.read(buf)?;
            if n > 0 || self.stop.load(Ordering::SeqCst) {
                return Ok(n);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn apply(set: &mut RuleSet, thread: &rulebox_runtime::SandboxThread, content: &Content) {
    let mut ids: Vec<String> = Vec::new();
    for (compiled, limits, expected) in &content.rules {
        match set.upsert_with_limits(thread, compiled, limits.as_ref()) {
            Ok(
                Upsert::Added(info) | Upsert::Unchanged(info) | Upsert::Replaced { new: info, .. },
            ) => {
                // The module must be the rule its signed manifest says it is.
                if let Some((id, version)) = expected
                    && (info.id != *id || info.version != *version)
                {
                    set.remove(&info.id);
                    alert_line(
                        serde_json::json!({"type": "alert", "alert": "manifest_mismatch", "severity": "high",
                        "message": format!("module reports {} {}, the manifest says {id} {version}; not loaded", info.id, info.version)}),
                    );
                    continue;
                }
                ids.push(info.id.clone());
            }
            Ok(_) => {}
            Err(record) => {
                // The version already loaded (if any) keeps running.
                if !record.rule_id.is_empty() {
                    ids.push(record.rule_id.clone());
                }
                alert_line(output::alert(
                    &Alert::RuleQuarantined(record),
                    &serde_json::Value::Null,
                    None,
                ));
            }
        }
    }
    // Rules the new content no longer has are removed.
    let stale: Vec<String> = set
        .ids()
        .filter(|id| !ids.iter().any(|n| n == id))
        .map(str::to_owned)
        .collect();
    for id in stale {
        set.remove(&id);
    }
}

/// The sandbox thread's loop; returns the number of events processed.
fn worker(
    runtime: &Runtime,
    thread: &rulebox_runtime::SandboxThread,
    content: Content,
    mut rx: mpsc::Receiver<Work>,
    control: mpsc::UnboundedSender<Control>,
    (health_events, health_time): (u64, Duration),
) -> u64 {
    let mut set = RuleSet::new(runtime);
    apply(&mut set, thread, &content);
    eprintln!("rulebox agent: {} rules active", set.active_count());
    let mut release = content.release;
    let (mut since, mut started, mut reported) = (0u64, Instant::now(), false);
    let mut processed = 0u64;
    let mut outcome = Outcome::default();
    let stdout = std::io::stdout();
    while let Some(work) = rx.blocking_recv() {
        match work {
            Work::Event(event, line) => {
                processed += 1;
                since += 1;
                let result = set.process_into(thread, &event, &mut outcome);
                let mut out = stdout.lock();
                let event_ref =
                    output::event_ref(&event, usize::try_from(line).unwrap_or(usize::MAX));
                if let Err(e) = result {
                    let _ = output::line(
                        &mut out,
                        &serde_json::json!({"type": "alert", "alert": "event_refused", "message": e.to_string(), "event": event_ref}),
                    );
                }
                for d in &outcome.detections {
                    let _ = output::line(&mut out, &output::detection(d, &event_ref));
                }
                for alert in &outcome.alerts {
                    let _ = output::line(&mut out, &output::alert(alert, &event_ref, None));
                    if let Alert::RuleQuarantined(r) = alert {
                        let _ = control.send(Control::Quarantined(r.clone()));
                    }
                }
                let _ = out.flush();
            }
            Work::Update(content) => {
                apply(&mut set, thread, &content);
                release = content.release;
                (since, started, reported) = (0, Instant::now(), false);
                eprintln!(
                    "rulebox agent: release {release:?} active: {} rules",
                    set.active_count()
                );
            }
            Work::Settle => set.settle(),
        }
        if let Some(r) = release
            && !reported
            && since >= health_events
            && started.elapsed() >= health_time
        {
            reported = true;
            let _ = control.send(Control::Healthy(r));
        }
    }
    processed
}
