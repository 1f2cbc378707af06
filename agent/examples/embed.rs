//! Embeds the rulebox agent with its own event source: the example rules as the baseline content, a
//! content store if one is named, three events made in code, and every detection, alert and
//! lifecycle event printed as it comes.
//!
//! `cargo run -p rulebox-agent --example embed [STORE]`

use rulebox_agent::{Agent, AgentConfig, Baseline, EventOrigin};
use rulebox_runtime::sdk::{Event, EventData, ProcessStart};

fn main() -> anyhow::Result<()> {
    let baseline =
        Baseline::from_modules(rulebox_example_artifacts::good().map(|a| (a.name, a.bytes)));
    let mut config = AgentConfig::new(baseline);
    config.store = std::env::args_os().nth(1).map(Into::into);
    let (agent, output) = Agent::start(config)?;
    // The agent waits when its output is full: read it on a thread of its own.
    let printer = std::thread::spawn(move || {
        for event in output {
            println!("{event}\n  {}", event.to_json_line());
        }
    });
    let events = agent.sender();
    for (line, parent) in (1..).zip(["WINWORD.EXE", "explorer.exe", "EXCEL.EXE"]) {
        let mut body = ProcessStart::default();
        body.image = r"C:\Windows\System32\cmd.exe".into();
        body.parent_image = format!(r"C:\Program Files\{parent}").into();
        events.send(
            Event::new(EventData::ProcessStart(body)),
            EventOrigin::new("example", line),
        )?;
    }
    let summary = agent.stop()?;
    printer
        .join()
        .map_err(|_| anyhow::anyhow!("the printer thread panicked"))?;
    println!("{summary}");
    Ok(())
}
