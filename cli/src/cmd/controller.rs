//! `rulebox controller`: the rollout controller service (`serve`) and its operators' credentials
//! (`add-operator`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use rulebox_controller::reports::{BusConfig, ReportIntake};
use rulebox_controller::{ControllerConfig, OperatorsFile, SqliteSync};

/// Arguments of `rulebox controller`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ControllerCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ControllerCommand {
    /// Run the controller: the agent API (enrolment, check-in), the operator API (rollouts, halt,
    /// resume, status, audit), ticks and the outbox while this instance holds the lease. Stops on
    /// SIGINT or SIGTERM (giving the lease up). Prints `controller listening on ADDR` once ready.
    Serve(Box<ServeArgs>),
    /// Create an operator's bearer token: the token goes to a new file (mode 0600), its SHA-256 to
    /// the operators file (created if missing). The controller reads the operators file at start.
    AddOperator {
        /// The operators file.
        #[arg(long)]
        operators: PathBuf,
        /// The operator's name (what the audit records): lowercase letters, digits, '.', '_', '-'.
        #[arg(long)]
        name: String,
        /// Where to write the token (a new file, mode 0600).
        #[arg(long)]
        token_out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The database: `sqlite:PATH` (created if missing) or `postgres://user@host/db`.
    #[arg(long)]
    db: String,
    /// The content repository folder (`rulebox publish --repo`); reverts and `timestamp.json` are
    /// written into it.
    #[arg(long)]
    repo: PathBuf,
    /// The trusted content root; the repository's root chain must contain it.
    #[arg(long)]
    root: PathBuf,
    /// A key file of the root's rollout role (`rulebox keygen --role rollout`); repeat for a
    /// threshold. A root key is refused.
    #[arg(long = "rollout-key", required = true)]
    rollout_keys: Vec<PathBuf>,
    /// A key file of the root's timestamp role (`rulebox keygen --role timestamp`); repeat for a
    /// threshold.
    #[arg(long = "timestamp-key", required = true)]
    timestamp_keys: Vec<PathBuf>,
    /// A file whose first line is the enrolment secret of ordinary hosts (16 bytes or more).
    #[arg(long)]
    enroll_secret_file: PathBuf,
    /// A file whose first line is the enrolment secret of the vendor's own hosts
    /// (`vendor_internal`, first in every rollout). Without it, no host enrols as internal.
    #[arg(long)]
    internal_enroll_secret_file: Option<PathBuf>,
    /// The operators file (`rulebox controller add-operator`).
    #[arg(long)]
    operators: PathBuf,
    /// Address to listen on (terminate TLS in front of it for anything but loopback).
    #[arg(long, default_value = "127.0.0.1:8750")]
    listen: SocketAddr,
    /// The floor on every ring's bake, seconds; no plan bakes less (at least 600).
    #[arg(long, default_value_t = rulebox_rollout::DEFAULT_BAKE_FLOOR_SECS)]
    bake_floor_secs: u64,
    /// Seconds between ticks of the active controller.
    #[arg(long, default_value_t = 5.0)]
    tick_secs: f64,
    /// Seconds the lease lasts without renewal (at least three ticks): how soon a standby takes
    /// over from a controller that died.
    #[arg(long, default_value_t = 15.0)]
    lease_secs: f64,
    /// Seconds between an agent's check-ins.
    #[arg(long, default_value_t = 60)]
    checkin_interval_secs: u64,
    /// Seconds an offer stays valid.
    #[arg(long, default_value_t = 900)]
    offer_validity_secs: u64,
    /// Seconds a `timestamp.json` stays valid (re-signed at half-life).
    #[arg(long, default_value_t = 3600)]
    timestamp_validity_secs: u64,
    /// A rollout starts with the hosts that checked in within this many seconds.
    #[arg(long, default_value_t = 86_400)]
    active_host_secs: u64,
    /// Also serve the repository's files under /repo/ (with Range), for a deployment without a web
    /// server or CDN in front of the repository.
    #[arg(long)]
    serve_repo: bool,
    /// SQLite durability: `full` (every commit on disk; survives power loss) or `normal` (survives
    /// a crash of the process; may lose the last commits on power loss).
    #[arg(long, default_value = "full")]
    sqlite_sync: String,
    /// Database connections.
    #[arg(long, default_value_t = 16)]
    max_connections: u32,
    /// Where check-ins' reports go: `db` (a row per report, written by the check-in) or a NATS
    /// JetStream server, `nats://HOST:PORT` (the stream is created if missing; a check-in is
    /// answered once the stream stored its reports, and refused with 503 while it cannot).
    #[arg(long, default_value = "db")]
    reports: String,
    /// With `--reports nats://...`: do not fold the stream into the database in this process
    /// (another controller's aggregator does; they share one durable consumer).
    #[arg(long)]
    no_aggregate: bool,
    /// For tests only: controller time runs this many times as fast as the wall clock (bakes and
    /// silence shrink by the same factor). Stored in the database at its first start.
    #[arg(long, default_value_t = 1, hide = true)]
    clock_scale: u32,
}

/// Runs `rulebox controller ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        ControllerCommand::Serve(serve) => self::serve(*serve),
        ControllerCommand::AddOperator {
            operators,
            name,
            token_out,
        } => add_operator(&operators, &name, &token_out),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let read_keys = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| {
                rulebox_release::read_online_key(p).with_context(|| format!("key {}", p.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let sqlite_sync = match args.sqlite_sync.as_str() {
        "full" => SqliteSync::Full,
        "normal" => SqliteSync::Normal,
        other => bail!("--sqlite-sync is `full` or `normal`, not `{other}`"),
    };
    let secs = |s: f64, what: &str| {
        if s.is_finite() && s > 0.0 && s < 86_400.0 {
            Ok(Duration::from_secs_f64(s))
        } else {
            Err(anyhow::anyhow!("--{what} must be between 0 and 86400"))
        }
    };
    let mut config = ControllerConfig::new(
        args.db,
        args.repo,
        args.root,
        read_keys(&args.rollout_keys)?,
        read_keys(&args.timestamp_keys)?,
        rulebox_controller::read_secret_file(&args.enroll_secret_file)?,
        rulebox_controller::read_operators_file(&args.operators)?,
    );
    config.internal_enroll_secret = args
        .internal_enroll_secret_file
        .as_deref()
        .map(rulebox_controller::read_secret_file)
        .transpose()?;
    config.listen = args.listen;
    config.bake_floor_secs = args.bake_floor_secs;
    config.tick_interval = secs(args.tick_secs, "tick-secs")?;
    config.lease_ttl = secs(args.lease_secs, "lease-secs")?;
    config.checkin_interval_secs = args.checkin_interval_secs;
    config.offer_validity_secs = args.offer_validity_secs;
    config.timestamp_validity_secs = args.timestamp_validity_secs;
    config.active_host_secs = args.active_host_secs;
    config.serve_repo = args.serve_repo;
    config.sqlite_sync = sqlite_sync;
    config.max_connections = args.max_connections;
    config.clock_scale = args.clock_scale;
    config.reports = match args.reports.as_str() {
        "db" => {
            if args.no_aggregate {
                bail!("--no-aggregate goes with --reports nats://...");
            }
            ReportIntake::Direct
        }
        url if url.starts_with("nats://") => ReportIntake::Bus {
            config: BusConfig::new(url),
            aggregate: !args.no_aggregate,
        },
        other => bail!(
            "--reports is `db` or `nats://HOST:PORT`, not `{}`",
            other.escape_debug()
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let running = rulebox_controller::start(config).await?;
        println!("controller listening on {}", running.addr());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        running.run_until(stop_signal()).await;
        eprintln!("controller stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::from(super::EXIT_OK))
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn add_operator(
    operators: &std::path::Path,
    name: &str,
    token_out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let mut file: OperatorsFile = match std::fs::read(operators) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not an operators file", operators.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => OperatorsFile::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", operators.display())),
    };
    if file.operators.iter().any(|o| o.name == name) {
        bail!("operator `{name}` is already in {}", operators.display());
    }
    let (token, entry) = rulebox_controller::new_token(name).map_err(anyhow::Error::msg)?;
    {
        use std::io::Write;
        let mut options = std::fs::File::options();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut out = options
            .open(token_out)
            .with_context(|| format!("cannot create {}", token_out.display()))?;
        writeln!(out, "{token}")?;
        out.sync_all()?;
    }
    file.operators.push(entry);
    let mut bytes = serde_json::to_vec_pretty(&file)?;
    bytes.push(b'\n');
    rulebox_runtime::content::write_atomic(operators, &bytes)
        .with_context(|| format!("cannot write {}", operators.display()))?;
    println!(
        "operator `{name}` added to {}; token written to {} (restart the controller to read it)",
        operators.display(),
        token_out.display()
    );
    Ok(ExitCode::from(super::EXIT_OK))
}
