//! A host call runs outside the rule's deadline (which interrupts WebAssembly code, not the host),
//! so none may do unbounded work: one WASI write takes at most 4 KiB and leaves the rest for the
//! next call, one `random_get` fills at most 64 KiB, each costs the rule fuel, and a rule looping
//! on huge writes is stopped by its deadline without overshooting it by a host call's worth of
//! work.

use std::time::Duration;

use rulebox_runtime::{Alert, Reason, RuleSet};

use crate::common::{process, runtime, runtime_with};
use crate::wat::Rule;

const WASI: &str = r#"
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))"#;

/// The CPU time this thread has used.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the valid pointer it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "the thread CPU clock is readable");
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap(),
        u32::try_from(ts.tv_nsec).unwrap(),
    )
}

#[test]
fn one_wasi_write_takes_at_most_4_kib_and_costs_fuel() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        // One I/O vector of 300,000 bytes: the host takes 4,096 of them (a partial write, which
        // WASI allows) and says so in `nwritten`; the rule fires only then, and traps otherwise.
        let mut rule = Rule::new(
            "big-write",
            &format!(
                "(i32.store (i32.const 0) (i32.const 131072)) (i32.store (i32.const 4) (i32.const 300000))
                 (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
                 (if (result i64) (i32.eq (i32.load (i32.const 8)) (i32.const 4096))
                     (then i64.const {}) (else unreachable))",
                Rule::fired("big-write")
            ),
        );
        rule.imports = WASI.to_owned();
        rule.pages = 8;
        let mut set = RuleSet::new(&rt);
        set.load(thread, &rule.build(), "big-write.wat").unwrap();
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        assert!(outcome.alerts.is_empty(), "{:?}", outcome.alerts);
        assert_eq!(outcome.detections.len(), 1, "nwritten was 4096");
        let (_, _, stats) = set.rules().next().unwrap();
        assert!(
            stats.last_fuel >= 4096 + 500,
            "the write cost the rule fuel: {}",
            stats.last_fuel
        );
    });
}

#[test]
fn random_get_fills_at_most_64_kib_per_call() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut rule = Rule::new(
            "random",
            &format!(
                "(if (result i64)
                     (i32.and
                         (i32.eq (call $random (i32.const 131072) (i32.const 65536)) (i32.const 0))
                         (i32.eq (call $random (i32.const 131072) (i32.const 65537)) (i32.const 28)))
                     (then i64.const {}) (else unreachable))",
                Rule::fired("random")
            ),
        );
        rule.imports = WASI.to_owned();
        rule.pages = 8;
        let mut set = RuleSet::new(&rt);
        set.load(thread, &rule.build(), "random.wat").unwrap();
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        assert!(outcome.alerts.is_empty(), "{:?}", outcome.alerts);
        assert_eq!(outcome.detections.len(), 1, "64 KiB filled, 64 KiB + 1 refused");
    });
}

#[test]
fn a_wasi_write_loop_is_stopped_by_its_deadline_without_overshooting_it() {
    const DEADLINE_MS: u64 = 50;
    let rt = runtime_with(|c| {
        c.limits.deadline_ms = DEADLINE_MS;
        // Fuel enough for hours: only the deadline can stop the loop.
        c.limits.fuel_per_event = 100_000_000_000;
    });
    rt.clone().run_sandboxed(move |thread| {
        // Every call asks the host to write (almost) all of the rule's 16 MiB.
        let mut rule = Rule::new(
            "write-loop",
            "(i32.store (i32.const 0) (i32.const 0)) (i32.store (i32.const 4) (i32.const 16777000))
             (loop $again
                 (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
                 (br $again))
             i64.const 0",
        );
        rule.imports = WASI.to_owned();
        rule.pages = 256;
        let mut set = RuleSet::new(&rt);
        set.load(thread, &rule.build(), "write-loop.wat").unwrap();
        let before = thread_cpu();
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        let used = thread_cpu() - before;
        let [Alert::RuleQuarantined(record)] = &outcome.alerts[..] else {
            panic!("{:?}", outcome.alerts);
        };
        assert_eq!(record.reason, Reason::Deadline, "{}", record.message);
        // One write of 16 MiB took about 300 ms when the host wrote all of a call's bytes.
        assert!(
            used < Duration::from_millis(DEADLINE_MS + 100),
            "the call used {used:?} of CPU against a deadline of {DEADLINE_MS} ms"
        );
        let (_, _, stats) = set.rules().next().unwrap();
        assert!(
            stats.log_suppressed > 0,
            "the flood was counted, not logged"
        );
    });
}
