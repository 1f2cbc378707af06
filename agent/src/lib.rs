//! # rulebox-agent: the endpoint agent as a library
//!
//! One type, [`Agent`], built from a content store, a runtime configuration and the baseline content
//! built into the embedder's binary. It keeps every rule an endpoint agent must keep: the boot guard
//! (STARTING recorded before any content runs, at start-up and after every install; GOOD at the end
//! of the health window, with the rule set settled; fallback to last-known-good, then to the
//! baseline), quarantined rules kept out across restarts, modules checked against their signed
//! manifest entries and run under their limits, signed reverts taken before bundles, and an alert
//! whenever it runs expired content. Events go in through [`EventSender`] (a bounded queue with
//! back-pressure; drops, if the embedder asks for them, are counted and reported); everything comes
//! out as one typed stream of [`AgentEvent`]s (detections, [`Alert`]s, [`Lifecycle`] events), with a
//! versioned JSON form (`docs/agent.md`). Plain threads: no async runtime is imposed.
//!
//! ```
//! use rulebox_agent::{Agent, AgentConfig, AgentEvent, Baseline, EventOrigin};
//! use rulebox_runtime::sdk::{Event, EventData, ProcessStart};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The content built into the binary; `config.store = Some(dir)` adds a content store.
//! let baseline = Baseline::from_modules(rulebox_example_artifacts::good().map(|a| (a.name, a.bytes)));
//! let (agent, output) = Agent::start(AgentConfig::new(baseline))?;
//! let reader = std::thread::spawn(move || output.collect::<Vec<AgentEvent>>());
//!
//! let events = agent.sender();
//! let mut body = ProcessStart::default();
//! body.image = r"C:\Windows\System32\cmd.exe".into();
//! body.parent_image = r"C:\Program Files\Office\WINWORD.EXE".into();
//! events.send(Event::new(EventData::ProcessStart(body)), EventOrigin::new("example", 1))?;
//!
//! let summary = agent.stop()?;
//! assert_eq!(summary.processed, 1);
//! let seen = reader.join().expect("the reader thread");
//! assert!(seen.iter().any(|e| matches!(e, AgentEvent::Detection(d) if d.rule.id == "office-spawns-shell")));
//! # Ok(()) }
//! ```
//!
//! The same program, runnable: `cargo run -p rulebox-agent --example embed [STORE]`. Event sources
//! come with the crate too: [`feed`] (any reader of JSON records, capped by `ReadLimits`) and, on
//! Unix, [`SocketSource`] (a socket created `0600`, every peer checked with `SO_PEERCRED`). A
//! content fetcher plugs in as a [`Transport`] and delivers through the store's inbox, the one way in;
//! the built-in one, [`Fetcher`] ([`AgentConfig::fetch`]), checks in with the controller service and
//! downloads from the static content repository (`docs/controlplane.md`).

mod agent;
mod alert;
mod config;
mod control;
mod error;
mod event;
mod fetch;
mod lifecycle;
mod sender;
#[cfg(unix)]
mod socket;
mod source;
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod testing;
mod transport;
mod worker;

pub use agent::{Agent, AgentOutput};
pub use alert::{Alert, AlertSeverity};
pub use config::{AgentConfig, Baseline, HealthWindow};
pub use error::AgentError;
pub use event::{AgentEvent, Detection, EventOrigin, EventRef, OUTPUT_FORMAT};
pub use fetch::{EnrollSecret, FetchConfig, FetchError, FetchEvent, Fetcher};
pub use lifecycle::{AgentSummary, BaselineReason, Lifecycle};
pub use sender::{AgentStopped, EventSender, TrySendError};
#[cfg(unix)]
pub use socket::{SocketAccess, SocketError, SocketSource};
pub use source::{FeedSummary, feed};
pub use transport::{StoreView, Transport, TransportError};

#[cfg(test)]
mod tests {
    fn send<T: Send>() {}

    #[test]
    fn the_handles_can_move_to_other_threads() {
        send::<crate::Agent>();
        send::<crate::EventSender>();
        send::<crate::AgentOutput>();
        send::<crate::AgentEvent>();
    }
}
