//! `rulebox fleet simulate`: a staged rollout over a simulated fleet in virtual time, with a bad (or
//! good) release, reporting the blast radius.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use rulebox_fleet_sim::{Scenario, SimConfig, SimReport, simulate, svg};

/// Arguments of `rulebox fleet`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(Debug, clap::Subcommand)]
enum FleetCommand {
    /// Roll a release out over simulated hosts in virtual time and report what it reached.
    ///
    /// A sample of hosts runs the real content store, boot guard and sandbox runtime; the others are
    /// modelled from it (docs/rollout.md). Exits 0 when the targets hold: a bad release halted before
    /// leaving the canary ring, a good one reached every eligible host, and no host needs a person.
    Simulate(SimulateArgs),
}

/// Arguments of `rulebox fleet simulate`.
#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// Hosts in the fleet.
    #[arg(long, default_value_t = 10_000)]
    hosts: usize,
    /// What is wrong with the release: good, crash-at-boot, trap, silent, detection-storm.
    #[arg(long, default_value = "good")]
    scenario: String,
    /// Write an SVG of adoption and failures per ring over time.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Print the full report as JSON (timeline included) instead of the summary.
    #[arg(long)]
    json: bool,
    /// Seed for host attributes, policies, poll times and jitter.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Real hosts (own content store, real boot guard and runtime) besides the probe and the
    /// policy hosts.
    #[arg(long, default_value_t = 4)]
    real_hosts: usize,
    /// Share of hosts with each customer policy (pinned, N-1, paused, delayed).
    #[arg(long, default_value_t = 0.02)]
    policy_share: f64,
    /// Use the emergency plan (shorter bakes, still canary first and validated).
    #[arg(long)]
    emergency: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Runs `rulebox fleet ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        FleetCommand::Simulate(a) => simulate_cmd(a),
    }
}

fn simulate_cmd(a: SimulateArgs) -> anyhow::Result<ExitCode> {
    let scenario: Scenario = a.scenario.parse()?;
    let mut cfg = SimConfig::new(a.hosts, scenario);
    cfg.seed = a.seed;
    cfg.real_hosts = a.real_hosts;
    cfg.policy_share = a.policy_share;
    cfg.emergency = a.emergency;
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(1);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} virtual {msg} [{bar:40}] {percent}% ({elapsed} real)",
            )
            .context("progress bar template")?
            .progress_chars("=> "),
        );
        bar
    };
    let started = Instant::now();
    let report = simulate(&cfg, &mut |done, expected| {
        bar.set_length(expected.max(done));
        bar.set_position(done);
        bar.set_message(format!("{}h{:02}m", done / 3600, done / 60 % 60));
    })?;
    bar.finish_and_clear();
    let wall = started.elapsed();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary());
        println!("  wall-clock time           {:.2} s", wall.as_secs_f64());
    }
    if let Some(path) = &a.svg {
        std::fs::write(path, svg::render(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
        if !a.json {
            println!("  picture                   {}", path.display());
        }
    }
    let missed = missed_targets(&report);
    if missed.is_empty() {
        Ok(ExitCode::from(super::EXIT_OK))
    } else {
        for m in &missed {
            eprintln!("rulebox fleet simulate: target missed: {m}");
        }
        Ok(ExitCode::from(super::EXIT_ERROR))
    }
}

/// The simulation's targets (a bad release halted before it left the canary ring, a good one on every
/// eligible host, no host needing a person), checked on a report.
fn missed_targets(r: &SimReport) -> Vec<String> {
    let mut missed = Vec::new();
    if r.manual_intervention > 0 {
        missed.push(format!(
            "{} hosts need manual intervention",
            r.manual_intervention
        ));
    }
    if r.scenario.is_bad() {
        if r.halted_after_secs.is_none() {
            missed.push("the bad release was not halted".to_owned());
        }
        if r.received_outside_canary_before_halt > 0 {
            missed.push(format!(
                "{} hosts outside the canary ring took the bad release before the halt",
                r.received_outside_canary_before_halt
            ));
        }
    } else if r.on_new_at_end != r.eligible {
        missed.push(format!(
            "the good release reached {} of {} eligible hosts",
            r.on_new_at_end, r.eligible
        ));
    }
    missed
}
