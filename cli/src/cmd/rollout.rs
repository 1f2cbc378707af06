//! `rulebox rollout`: plans, ring assignment, signed reverts (vendor side) and applying a revert on
//! a host; `start | status | halt | resume | audit` against the controller service
//! (`rollout_service.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use rulebox_rollout::{HostInfo, RolloutPlan, assign_rings};
use rulebox_runtime::content::{
    ContentStore, REVERT_FORMAT, ReleaseName, Revert, Signed, now_unix,
};

/// Arguments of `rulebox rollout`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RolloutCommand {
    /// Print the standard (or emergency) plan for a release as JSON, checked.
    Plan {
        /// The release to roll out.
        #[arg(long)]
        release: u64,
        /// The release it replaces (what a revert goes back to).
        #[arg(long)]
        previous: Option<u64>,
        /// Shorter bakes; still canary first, still validated.
        #[arg(long)]
        emergency: bool,
    },
    /// Check a plan file and show the ring of every host of a hosts file (JSON list of
    /// `{id, vendor_internal, criticality, region}`).
    Rings {
        /// The plan (JSON, as `rollout plan` prints it).
        #[arg(long)]
        plan: PathBuf,
        /// The hosts (JSON list).
        #[arg(long)]
        hosts: PathBuf,
    },
    /// Sign a revert of a release offline with content-root keys (the controller signs its own with
    /// the root's rollout role).
    SignRevert {
        /// The release withdrawn.
        #[arg(long)]
        release: u64,
        /// The release to go back to (default: each host's last-known-good).
        #[arg(long)]
        to: Option<u64>,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Signing key file(s) of the content root (repeat for a threshold).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Hours the instruction stays valid (at most 2160, the 90 days a host accepts).
        #[arg(long, default_value_t = 168, value_parser = clap::value_parser!(u64).range(1..=2160))]
        valid_hours: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Start a rollout on the controller service: a release published in its repository, with the
    /// standard, emergency or a given plan.
    Start(super::rollout_service::StartArgs),
    /// Show a rollout on the controller service (exit 0 complete, 5 in progress, 2 halted).
    Status(super::rollout_service::StatusArgs),
    /// Follow a rollout on the controller service: a progress line per ring whenever it changes;
    /// exits 0 when it completes, 2 when it halts, 5 if still in progress at `--timeout`.
    Watch(super::rollout_service::WatchArgs),
    /// Print a one-time sign-in link to the controller's dashboard.
    Dashboard(super::rollout_service::DashboardArgs),
    /// Halt a rollout on the controller service (with `--revert`, also publish a signed revert).
    Halt(super::rollout_service::HaltArgs),
    /// Resume a rollout halted without a revert.
    Resume(super::rollout_service::ResumeArgs),
    /// The controller's audit: every gate evaluation, offer, halt, resume and revert.
    Audit(super::rollout_service::AuditArgs),
    /// On a host: verify a signed revert against the store's root and apply it (stop the agent
    /// first; it takes the store's lock).
    ApplyRevert {
        /// The store folder.
        #[arg(long)]
        store: PathBuf,
        /// The signed revert file.
        revert: PathBuf,
    },
}

/// Runs `rulebox rollout ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        RolloutCommand::Start(a) => return super::rollout_service::start(a),
        RolloutCommand::Status(a) => return super::rollout_service::status(a),
        RolloutCommand::Watch(a) => return super::rollout_service::watch(a),
        RolloutCommand::Dashboard(a) => return super::rollout_service::dashboard(a),
        RolloutCommand::Halt(a) => return super::rollout_service::halt(a),
        RolloutCommand::Resume(a) => return super::rollout_service::resume(a),
        RolloutCommand::Audit(a) => return super::rollout_service::audit(a),
        RolloutCommand::Plan {
            release,
            previous,
            emergency,
        } => {
            let plan = if emergency {
                RolloutPlan::emergency(release, previous)
            } else {
                RolloutPlan::standard(release, previous)
            };
            plan.validate()?;
            println!("{}", serde_json::to_string_pretty(&plan)?);
        }
        RolloutCommand::Rings { plan, hosts } => {
            let plan: RolloutPlan =
                serde_json::from_slice(&super::store::read_operator_file(&plan, "plan")?)
                    .with_context(|| format!("{} is not a plan", plan.display()))?;
            plan.validate()?;
            let list: Vec<HostInfo> = serde_json::from_slice(
                &std::fs::read(&hosts)
                    .with_context(|| format!("cannot read {}", hosts.display()))?,
            )
            .with_context(|| format!("{} is not a list of hosts", hosts.display()))?;
            if list.is_empty() {
                bail!("{} lists no hosts", hosts.display());
            }
            let rings = assign_rings(&plan, &list);
            for (host, ring) in list.iter().zip(&rings) {
                println!("{ring}\t{}", host.id);
            }
        }
        RolloutCommand::SignRevert {
            release,
            to,
            reason,
            keys,
            valid_hours,
            out,
        } => {
            let now = now_unix();
            let mut envelope = Signed {
                signed: Revert {
                    format: REVERT_FORMAT,
                    release,
                    to,
                    issued_unix: now,
                    // At most 2160 h: within range of any clock.
                    expires_unix: now + valid_hours * 3600,
                    reason,
                },
                signatures: Vec::new(),
            };
            super::sign_and_write(&mut envelope, &keys, &out)?;
            println!(
                "revert of release {release} signed by {} key(s): {}",
                keys.len(),
                out.display()
            );
        }
        RolloutCommand::ApplyRevert { store, revert } => {
            let bytes = super::store::read_operator_file(&revert, "revert")?;
            let mut store = ContentStore::open(&store)
                .with_context(|| format!("cannot open the store {}", store.display()))?;
            let out = store.apply_revert(&bytes, now_unix())?;
            println!(
                "release {} withdrawn ({}); current: {}; report: {}",
                out.revert.release,
                if out.pinned {
                    "not marked bad: the owner's policy pins it"
                } else {
                    "marked bad"
                },
                ReleaseName(out.current),
                out.report
                    .map_or_else(|| "not written".to_owned(), |p| p.display().to_string())
            );
        }
    }
    Ok(ExitCode::from(super::EXIT_OK))
}
