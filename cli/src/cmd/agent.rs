//! `rulebox agent`: the endpoint agent ([`rulebox_agent::Agent`]) with its event sources (standard
//! input, a file, followed or not, or a Unix socket) and its output: every [`AgentEvent`] as one JSON
//! line on stdout (the schema of `docs/agent.md`), and alerts and lifecycle events for people on
//! stderr, escaped. The baseline content is the example rules built into this binary.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use rulebox_agent::{
    Agent, AgentConfig, AgentEvent, AgentOutput, Baseline, EventSender, HealthWindow, SocketAccess,
    SocketSource, feed,
};
use rulebox_runtime::events::ReadLimits;

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
    /// JSON-lines connections from the agent's own user and root; see `--socket-group`).
    #[arg(long, default_value = "-")]
    events: String,
    /// Keep reading a file as it grows (like `tail -f`) instead of stopping at its end.
    #[arg(long)]
    follow: bool,
    /// A group id whose members may also write events to the `unix:` socket (it is then mode 0660
    /// and owned by that group; peers are checked by their primary group id).
    #[arg(long)]
    socket_group: Option<u32>,
    /// A user id that may also write events to the `unix:` socket (repeat for several).
    #[arg(long = "socket-allow-uid")]
    socket_allow_uids: Vec<u32>,
    /// Starts of a release without reaching GOOD after which it is abandoned for last-known-good.
    #[arg(long, default_value_t = 3)]
    boot_attempts: u32,
    /// Events a release must process before it can be marked GOOD.
    #[arg(long, default_value_t = 100)]
    health_events: u64,
    /// Seconds a release must run without a crash before it can be marked GOOD.
    #[arg(long, default_value_t = 30)]
    health_secs: u64,
    /// Seconds after which a release that runs without a crash is marked GOOD whatever the event
    /// count, so that a quiet host reaches GOOD too (0: the event count is always needed).
    #[arg(long, default_value_t = 600)]
    health_after_secs: u64,
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
    /// Fetch content: the controller's base URL (`rulebox controller serve`); needs `--repo` and
    /// `--enroll-secret-file`.
    #[arg(long, requires_all = ["repo", "enroll_secret_file"])]
    controller: Option<String>,
    /// The content repository's base URL (`rulebox publish --repo`, on any HTTP server).
    #[arg(long, requires = "controller")]
    repo: Option<String>,
    /// A file holding the enrolment secret (read once; keep it readable by the agent's user only).
    #[arg(long, requires = "controller")]
    enroll_secret_file: Option<PathBuf>,
    /// The hostname label sent at enrolment (default: the system's hostname).
    #[arg(long)]
    hostname: Option<String>,
    /// The region label sent at enrolment.
    #[arg(long, default_value = "default")]
    region: String,
    /// The criticality label: low, medium or high.
    #[arg(long, default_value = "low")]
    criticality: String,
    /// The check-in interval in seconds until the controller sets one.
    #[arg(long, default_value_t = 60)]
    checkin_secs: u64,
    /// The backoff ceiling after failures, in seconds.
    #[arg(long, default_value_t = 3600)]
    max_backoff_secs: u64,
    /// The shortest wait between two check-ins, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    min_wait_ms: u64,
    /// Each HTTP request's deadline, in seconds.
    #[arg(long, default_value_t = 120)]
    request_timeout_secs: u64,
    /// Check in at once at start-up instead of after a random delay of up to one interval.
    #[arg(long)]
    no_startup_delay: bool,
}

/// The fetcher's configuration from the flags, if `--controller` is given.
fn fetch_config(args: &Args) -> anyhow::Result<Option<rulebox_agent::FetchConfig>> {
    use rulebox_controlplane_proto::{Criticality, Labels};
    let (Some(controller), Some(repo), Some(secret_file)) =
        (&args.controller, &args.repo, &args.enroll_secret_file)
    else {
        return Ok(None);
    };
    let secret = rulebox_runtime::content::read_capped_following_links(secret_file, 4096)
        .with_context(|| format!("cannot read the enrolment secret {}", secret_file.display()))?;
    let secret = String::from_utf8(secret)
        .context("the enrolment secret is not UTF-8")?
        .trim()
        .to_owned();
    let hostname = match &args.hostname {
        Some(h) => h.clone(),
        None => std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned()),
    };
    let criticality = match args.criticality.as_str() {
        "low" => Criticality::Low,
        "medium" => Criticality::Medium,
        "high" => Criticality::High,
        other => anyhow::bail!(
            "--criticality must be low, medium or high, not {:?}",
            rulebox_runtime::text::Escaped(other).to_string()
        ),
    };
    let labels = Labels {
        hostname,
        region: args.region.clone(),
        criticality,
        vendor_internal: false,
    };
    labels
        .check()
        .map_err(|e| anyhow::anyhow!("the enrolment labels: {e}"))?;
    let mut config = rulebox_agent::FetchConfig::new(controller, repo, secret, labels);
    config.interval = Duration::from_secs(args.checkin_secs.max(1));
    config.max_backoff = Duration::from_secs(args.max_backoff_secs.max(1));
    config.min_wait = Duration::from_millis(args.min_wait_ms.max(10));
    config.request_timeout = Duration::from_secs(args.request_timeout_secs.max(1));
    config.startup_delay = !args.no_startup_delay;
    Ok(Some(config))
}

/// Runs the agent until end of input or SIGTERM/SIGINT.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let baseline =
        Baseline::from_modules(rulebox_example_artifacts::good().map(|a| (a.name, a.bytes)));
    let mut config = AgentConfig::new(baseline);
    config.runtime = crate::load::config(args.config.as_deref())?;
    config.store = if args.safe_mode {
        None
    } else {
        Some(
            args.store
                .clone()
                .context("--store is required unless --safe-mode")?,
        )
    };
    config.boot_attempts = args.boot_attempts;
    config.health = HealthWindow::new(args.health_events, Duration::from_secs(args.health_secs))
        .with_or_after(
            (args.health_after_secs > 0).then(|| Duration::from_secs(args.health_after_secs)),
        );
    config.queue = args.queue;
    config.inbox_poll = Duration::from_millis(args.inbox_poll_ms.max(50));
    config.fetch = fetch_config(&args)?;
    if config.fetch.is_some() && config.store.is_none() {
        anyhow::bail!("--controller needs a store (not --safe-mode)");
    }

    // Signals first, so that a SIGTERM during start-up is not lost.
    let (end_tx, end_rx) = mpsc::channel::<String>();
    watch_signals(end_tx.clone())?;
    let (agent, output) = Agent::start(config)?;
    let printer = std::thread::Builder::new()
        .name("rulebox-output".to_owned())
        .spawn(move || print(output))
        .context("cannot start the output thread")?;
    let stop_reading = Arc::new(AtomicBool::new(false));
    let socket = start_source(&args, agent.sender(), end_tx, stop_reading.clone())?;

    let why = end_rx
        .recv()
        .unwrap_or_else(|_| "every event source ended".to_owned());
    eprintln!("rulebox agent: {why}");
    stop_reading.store(true, Ordering::SeqCst);
    drop(socket);
    let summary = agent.stop()?;
    if printer.join().is_err() {
        anyhow::bail!("the output thread panicked");
    }
    Ok(ExitCode::from(if summary.received == summary.processed {
        super::EXIT_OK
    } else {
        super::EXIT_ERROR
    }))
}

/// Every event as a JSON line on stdout; alerts and lifecycle events also as text on stderr.
fn print(output: AgentOutput) {
    let stdout = std::io::stdout();
    for event in output {
        let mut out = stdout.lock();
        // Nothing useful can be done when stdout is closed; the agent keeps running.
        let _ = writeln!(out, "{}", event.to_json_line());
        let _ = out.flush();
        drop(out);
        if !matches!(event, AgentEvent::Detection(_)) {
            eprintln!("rulebox agent: {event}");
        }
    }
}

/// Sends one line on `end` at SIGTERM or SIGINT.
fn watch_signals(end: mpsc::Sender<String>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot start the signal handler")?;
    let (mut term, mut int) = {
        let _guard = rt.enter();
        (
            signal(SignalKind::terminate()).context("SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("SIGINT handler")?,
        )
    };
    std::thread::Builder::new()
        .name("rulebox-signals".to_owned())
        .spawn(move || {
            let why = rt.block_on(async {
                tokio::select! {
                    _ = term.recv() => "SIGTERM: shutting down",
                    _ = int.recv() => "interrupted: shutting down",
                }
            });
            let _ = end.send(why.to_owned());
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Starts the event source named by `--events`. A stream source reports its end on `end`; a socket
/// runs until the agent stops (the returned source closes it when dropped).
fn start_source(
    args: &Args,
    sender: EventSender,
    end: mpsc::Sender<String>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Option<SocketSource>> {
    if let Some(path) = args.events.strip_prefix("unix:") {
        let mut access = SocketAccess::default();
        access.group = args.socket_group;
        access.allowed_uids = args.socket_allow_uids.clone();
        let socket = SocketSource::bind(Path::new(path), access, ReadLimits::default(), sender)
            .context("cannot listen for events")?;
        return Ok(Some(socket));
    }
    let input: Box<dyn std::io::Read + Send> = match args.events.as_str() {
        "-" => Box::new(std::io::stdin()),
        path => {
            let file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
            if args.follow {
                Box::new(Follow { file, stop })
            } else {
                Box::new(file)
            }
        }
    };
    let name = if args.events == "-" {
        "stdin".to_owned()
    } else {
        args.events.clone()
    };
    std::thread::Builder::new()
        .name("rulebox-reader".to_owned())
        .spawn(move || {
            let _ = feed(BufReader::new(input), ReadLimits::default(), &sender, &name);
            let _ = end.send("end of input: stopping".to_owned());
        })
        .context("cannot start the reader thread")?;
    Ok(None)
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
