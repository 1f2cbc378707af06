//! Helpers shared by the integration tests.

use std::borrow::Cow;

use rulebox_runtime::{Runtime, RuntimeConfig};
use rulebox_sdk::{Event, EventData, EventKind, ProcessStart};

/// A runtime with default limits.
pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("default config is valid")
}

/// A runtime with `edit` applied to the default config.
pub fn runtime_with(edit: impl FnOnce(&mut RuntimeConfig)) -> Runtime {
    let mut config = RuntimeConfig::default();
    edit(&mut config);
    Runtime::new(config).expect("test config is valid")
}

/// A process-start event.
pub fn process(image: &str, command_line: &str, parent: &str) -> Event<'static> {
    let mut p = ProcessStart::default();
    p.image = Cow::Owned(image.into());
    p.command_line = Cow::Owned(command_line.into());
    p.parent_image = Cow::Owned(parent.into());
    let mut e = Event::new(EventData::ProcessStart(p));
    e.host = "test-host".into();
    e.pid = 4242;
    e.timestamp = 1_700_000_000_000;
    e
}

/// An event of `kind` with every field empty.
#[allow(dead_code, reason = "used by some test modules only")]
pub fn empty(kind: EventKind) -> Event<'static> {
    Event::new(EventData::empty(kind))
}

/// The shared Sigma corpus, if present: `$RULEBOX_SIGMA_CORPUS` or `../shared/corpus/sigma` beside the
/// repository. Prints a plain "skipped" line when absent.
#[allow(dead_code, reason = "used by some test modules only")]
pub fn sigma_corpus(test: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("RULEBOX_SIGMA_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/sigma")
        });
    if path.join("cases").is_dir() {
        Some(path)
    } else {
        eprintln!(
            "{test}: skipped: Sigma corpus not found at {} (set RULEBOX_SIGMA_CORPUS)",
            path.display()
        );
        None
    }
}
