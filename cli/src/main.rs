//! `rulebox`: run detection rules in sandboxes, validate content, replay quarantines, and demo it all.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod load;
mod output;
mod table;

/// Sandboxed detection content for endpoint agents.
///
/// Every rule is a WebAssembly module running in its own sandbox with fuel, memory, stack and time
/// limits. A rule that faults is quarantined; every other rule keeps running.
#[derive(Debug, Parser)]
#[command(name = "rulebox", version, propagate_version = true)]
struct Cli {
    /// Log level for the runtime's decisions on stderr (off, error, warn, info, debug, trace), or a
    /// tracing filter such as `rulebox=debug`. Also read from RULEBOX_LOG. Default: warn (off for
    /// the demo and the fleet simulation, which tell their own story, and for validate and test,
    /// which report every fault themselves).
    #[arg(long, global = true)]
    log: Option<String>,
    /// Write the runtime's log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run as the endpoint agent: read events, evaluate them, take new releases without stopping,
    /// fall back to last-known-good content after repeated failed starts.
    Agent(cmd::agent::Args),
    /// Tell the whole story on built-in content: good rules detect attacks while a bad content
    /// update is contained.
    Demo(cmd::demo::Args),
    /// Load every module in a folder and stream events through them.
    Run(cmd::run::Args),
    /// The release gate: run each rule in the production sandbox over its tests, a recorded corpus,
    /// generated and boundary events; report fuel and memory; write the report signing requires.
    Validate(cmd::validate::Args),
    /// Run rules' test cases (events and expected detections) in the sandbox.
    Test(cmd::test::Args),
    /// Write a new rule crate (rule, native tests, test cases, README) ready to build and validate.
    New(cmd::new::Args),
    /// Vendor side: generate a signing key.
    Keygen(cmd::release::KeygenArgs),
    /// Vendor side: build and sign the trusted root (keys and threshold).
    Root(cmd::release::RootArgs),
    /// Vendor side: build, sign and verify release bundles.
    Bundle(cmd::release::BundleArgs),
    /// Manage the content store: init, status, rollback.
    Store(cmd::store::Args),
    /// Deliver a bundle to a store's inbox; the running agent verifies and applies it.
    Push(cmd::store::PushArgs),
    /// Measure per-event latency (p50, p99) and throughput of rule modules in the production sandbox.
    Bench(cmd::bench::Args),
    /// Re-run a quarantine record's event against its module and show the same fault, or against a
    /// rebuilt module to check a fix.
    Replay(cmd::replay::Args),
    /// Simulate a staged rollout over a fleet in virtual time and report the blast radius.
    Fleet(cmd::fleet::Args),
    /// Staged rollout: plans, ring assignment, signed reverts; start, status, halt and resume on
    /// the controller service.
    Rollout(cmd::rollout::Args),
    /// Vendor side: publish roots, releases and reverts into the static content repository any
    /// HTTP server or CDN serves; sign its timestamp.json.
    Publish(cmd::publish::Args),
    /// The rollout controller service (agent check-ins, operator API, rollout state in a database).
    Controller(cmd::controller::Args),
    /// Host owner's side: sign and install a policy for when content may land.
    Policy(cmd::policy::Args),
    /// Compile Sigma rules into sandboxed rule modules; test them on recorded events.
    Sigma(cmd::sigma::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo and the fleet simulation tell their own story; validate and test report every fault
    // themselves (a rule faulting on every event would otherwise log a quarantine per event).
    let default_level = if matches!(
        cli.command,
        Command::Demo(_) | Command::Fleet(_) | Command::Validate(_) | Command::Test(_)
    ) {
        "off"
    } else {
        "warn"
    };
    init_tracing(cli.log.as_deref().unwrap_or(default_level), cli.log_json);
    let result = match cli.command {
        Command::Agent(args) => cmd::agent::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Test(args) => cmd::test::run(args),
        Command::New(args) => cmd::new::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Store(args) => cmd::store::run(args),
        Command::Keygen(args) => cmd::release::keygen(args),
        Command::Root(args) => cmd::release::root(args),
        Command::Bundle(args) => cmd::release::bundle(args),
        Command::Push(args) => cmd::store::push(args),
        Command::Fleet(args) => cmd::fleet::run(args),
        Command::Rollout(args) => cmd::rollout::run(args),
        Command::Publish(args) => cmd::publish::run(args),
        Command::Controller(args) => cmd::controller::run(args),
        Command::Policy(args) => cmd::policy::run(args),
        Command::Sigma(args) => cmd::sigma::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rulebox: error: {e:#}");
            ExitCode::from(cmd::EXIT_ERROR)
        }
    }
}

fn init_tracing(level: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RULEBOX_LOG")
        .ok()
        .unwrap_or_else(|| level.to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(stderr_colour())
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Colour on stderr only on a terminal, and never when `NO_COLOR` is set to anything
/// (<https://no-color.org>).
fn stderr_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
