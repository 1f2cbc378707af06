//! WASI modules and the `rulebox.log` import: a WASI context that grants nothing, stdout to the
//! rate-limited log, and a host that never trusts a pointer it is given.

use rulebox_example_artifacts::CHATTY;
use rulebox_runtime::RuleSet;
use rulebox_sdk::abi::{ABI_VERSION, SCHEMA_VERSION, pack};
use rulebox_sdk::{EventKind, EventKinds, RuleMetadata, Severity};

use crate::common::{process, runtime};
use crate::faults::demo_events;

#[test]
fn a_wasi_rule_runs_and_its_output_is_rate_limited() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        let info = set
            .load(thread, CHATTY.bytes, CHATTY.name)
            .expect("the WASI rule loads");
        assert!(info.wasi);
        let mut detections = 0;
        let events = demo_events();
        for event in &events {
            detections += set.process(thread, event).unwrap().detections.len();
        }
        assert_eq!(detections, 0, "nothing in the demo is whoami");
        let outcome = set
            .process(
                thread,
                &process(
                    "C:\\Windows\\System32\\whoami.exe",
                    "whoami /all",
                    "cmd.exe",
                ),
            )
            .unwrap();
        assert_eq!(outcome.detections.len(), 1);
        assert_eq!(outcome.detections[0].rule.id, "wasi-chatty-whoami");
        let (_, _, stats) = set.rules().next().unwrap();
        assert_eq!(stats.events, u64::try_from(events.len() + 1).unwrap());
        // One line per event, far above the burst of 20 in a fraction of a second: most are suppressed
        // and counted, none reaches the log unbounded.
        assert!(
            stats.log_suppressed >= u64::try_from(events.len()).unwrap() - 25,
            "suppressed {}",
            stats.log_suppressed
        );
        assert!(set.records().is_empty());
    });
}

fn metadata(id: &str) -> String {
    let meta = RuleMetadata {
        schema_version: SCHEMA_VERSION,
        id: id.into(),
        name: "wat".into(),
        version: "1".into(),
        severity: Severity::Low,
        subscriptions: EventKinds::of(&[EventKind::ProcessStart]),
    };
    let bytes = postcard::to_allocvec(&meta).unwrap();
    let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
    format!(
        r#"(data (i32.const 1024) "{escaped}")
           (func (export "rulebox_abi_version") (result i32) i32.const {ABI_VERSION})
           (func (export "rulebox_metadata") (result i64) i64.const {})
           (func (export "rulebox_input") (param i32) (result i32) i32.const 4096)"#,
        pack(1024, u32::try_from(bytes.len()).unwrap()).cast_signed()
    )
}

#[test]
fn wasi_grants_nothing_and_never_blocks() {
    // The rule asks WASI for a preopened directory (none: EBADF = 8), for its environment (empty),
    // and to sleep for an hour through poll_oneoff (refused: ENOTSUP = 58). Any other answer traps.
    let text = format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            {meta}
            (func (export "rulebox_on_event") (param i32) (result i64)
                (if (i32.ne (call $prestat (i32.const 3) (i32.const 8192)) (i32.const 8)) (then unreachable))
                (if (i32.ne (call $env (i32.const 8192) (i32.const 8196)) (i32.const 0)) (then unreachable))
                (if (i32.ne (i32.load (i32.const 8192)) (i32.const 0)) (then unreachable))
                ;; one clock subscription: 3600 s relative timeout
                (i64.store (i32.const 9000) (i64.const 1))
                (i32.store8 (i32.const 9008) (i32.const 0))
                (i32.store (i32.const 9016) (i32.const 0))
                (i64.store (i32.const 9024) (i64.const 3600000000000))
                (if (i32.ne (call $poll (i32.const 9000) (i32.const 9100) (i32.const 1) (i32.const 9200)) (i32.const 58)) (then unreachable))
                i64.const 0))"#,
        meta = metadata("wasi-probe")
    );
    let bytes = wat::parse_str(&text).unwrap();
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        set.load(thread, &bytes, "probe.wat").unwrap();
        let started = std::time::Instant::now();
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        assert!(outcome.alerts.is_empty(), "{:?}", outcome.alerts);
        assert!(set.is_active("wasi-probe"));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "poll_oneoff must not sleep"
        );
    });
}

#[test]
fn log_import_checks_every_pointer() {
    // Logs once with a valid message and once with a range far outside memory; neither may fault.
    let text = format!(
        r#"(module
            (import "rulebox" "log" (func $log (param i32 i32 i32)))
            (memory (export "memory") 1)
            {meta}
            (data (i32.const 2048) "hello from a rule")
            (func (export "rulebox_on_event") (param i32) (result i64)
                (call $log (i32.const 2) (i32.const 2048) (i32.const 17))
                (call $log (i32.const 2) (i32.const 0x7fffffff) (i32.const 0x7fffffff))
                (call $log (i32.const 99) (i32.const 65530) (i32.const 100))
                i64.const 0))"#,
        meta = metadata("logger")
    );
    let bytes = wat::parse_str(&text).unwrap();
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        set.load(thread, &bytes, "logger.wat").unwrap();
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        assert!(outcome.alerts.is_empty());
        let (_, _, stats) = set.rules().next().unwrap();
        assert_eq!(
            stats.log_suppressed, 2,
            "the two bad ranges are counted, not read"
        );
    });
}
