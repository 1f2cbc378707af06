//! A WASI rule: links `std`, prints a line on every event it sees and detects `whoami.exe`.
//!
//! Built for `wasm32-wasip1`, not `wasm32-unknown-unknown`: `println!` writes to WASI's stdout
//! (`fd_write`), which the host routes to its log, rate-limited, in a WASI context that grants nothing
//! else (no files, no environment, no sockets). It shows that a rule may use `std` and that a chatty
//! rule cannot flood the host's log.
//!
//! The crate depends on the SDK with `default-features = false, features = ["allocator"]`: `std`
//! brings its own panic handler, so the SDK's (`panic-handler`) must stay off.
//!
//! It subscribes to every event kind so that it prints a lot; only process starts can detect.

use rulebox_sdk::prelude::*;

/// Prints every event; detects `whoami.exe` starting.
#[derive(Default)]
pub struct Chatty {
    seen: u64,
}

impl Rule for Chatty {
    const META: RuleMeta = RuleMeta {
        id: "wasi-chatty-whoami",
        name: "WASI example: whoami.exe started (prints every event)",
        version: "1.0.0",
        severity: Severity::Low,
        events: EventKind::ALL,
    };

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        self.seen += 1;
        println!(
            "chatty: event #{} on {}: {} by pid {}",
            self.seen,
            event.host(),
            event.kind(),
            event.pid()
        );
        if let Some(p) = event.process_start()
            && ends_with_ignore_case(p.image(), "\\whoami.exe")
        {
            out.detect("whoami.exe started")
                .field("Image", p.image())
                .field("CommandLine", p.command_line())
                .field("User", p.user());
        }
    }
}

rulebox_sdk::export_rule!(Chatty);

#[cfg(test)]
mod tests {
    use super::*;

    fn start(image: &str) -> Event<'static> {
        let mut p = ProcessStart::default();
        p.image = image.to_owned().into();
        p.command_line = "whoami /all".into();
        Event::new(EventData::ProcessStart(p))
    }

    #[test]
    fn whoami_fires() {
        let found = run_native(
            &mut Chatty::default(),
            &start("C:\\Windows\\System32\\whoami.exe"),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule_id, "wasi-chatty-whoami");
        assert!(found[0].fields.iter().any(|f| f.name == "CommandLine"));
    }

    #[test]
    fn other_events_only_print() {
        let mut rule = Chatty::default();
        assert!(run_native(&mut rule, &start("C:\\Windows\\System32\\hostname.exe")).is_empty());
        let dns = Event::new(EventData::DnsQuery(DnsQuery::default()));
        assert!(run_native(&mut rule, &dns).is_empty());
        assert_eq!(rule.seen, 2);
    }
}
