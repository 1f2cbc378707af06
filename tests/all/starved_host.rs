//! Deadlines on a CPU-starved host: the deadline counts the CPU time the sandbox thread computed,
//! not the wall clock, so a healthy rule whose thread waits for a CPU (here: busy threads pinned to
//! the same CPU) is never quarantined for the wait, while a rule that never ends still is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rulebox_runtime::{Alert, Reason, RuleSet, Runtime, SandboxThread};

use crate::common::{process, runtime_with};
use crate::host_calls::thread_cpu;
use crate::wat::{Pack, Rule};

const DEADLINE_MS: u64 = 60;
/// Busy threads sharing the sandbox thread's CPU: it gets about a fifth of it.
const HOGS: usize = 4;

/// A global loop counter, for rules of packs (which cannot declare locals).
const GLOBAL: &str = "(global $i (mut i32) (i32.const 0))";

/// Instructions spinning `n` times.
fn spin(n: u32) -> String {
    format!(
        "(global.set $i (i32.const {n}))
         (loop $spin
             (global.set $i (i32.sub (global.get $i) (i32.const 1)))
             (br_if $spin (global.get $i)))"
    )
}

const ENDLESS: &str = "(loop $forever (br $forever))";

fn one_rule(id: &str, body: &str, fires: bool) -> Vec<u8> {
    let ret = if fires {
        format!("i64.const {}", Rule::fired(id))
    } else {
        "i64.const 0".to_owned()
    };
    let mut rule = Rule::new(id, &format!("{body} {ret}"));
    rule.extra = GLOBAL.to_owned();
    rule.build()
}

fn pack(body: &str) -> Vec<u8> {
    let mut pack = Pack::new("starved-pack", &[("in-pack", body)]);
    pack.extra = GLOBAL.to_owned();
    pack.build()
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: `set` is a plain bit set, zeroed and then filled by the libc macros, and
    // `sched_setaffinity` reads `size_of::<cpu_set_t>()` bytes of it; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "cannot pin a thread to CPU {cpu}");
    }
}

/// The CPU the calling thread runs on.
fn current_cpu() -> usize {
    // SAFETY: `sched_getcpu` takes no arguments and only reads the calling thread's state.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).expect("sched_getcpu works")
}

/// Busy threads pinned to `cpu` until dropped.
struct Hogs {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hogs {
    fn start(cpu: usize) -> Hogs {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..HOGS)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    pin(cpu);
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::black_box(0u64);
                    }
                })
            })
            .collect();
        // Let them be scheduled.
        std::thread::sleep(Duration::from_millis(20));
        Hogs { stop, threads }
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A spin count that takes the rule about a third of its deadline in CPU time, unstarved.
fn calibrate(rt: &Runtime, thread: &SandboxThread) -> u32 {
    let mut n: u32 = 1_000_000;
    loop {
        let mut set = RuleSet::new(rt);
        set.load(
            thread,
            &one_rule("calibrate", &spin(n), false),
            "calibrate.wat",
        )
        .unwrap();
        let before = thread_cpu();
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        let used = thread_cpu() - before;
        assert!(outcome.alerts.is_empty(), "{:?}", outcome.alerts);
        let target = Duration::from_millis(DEADLINE_MS / 3);
        if used >= Duration::from_millis(5) {
            let scaled = u128::from(n) * target.as_nanos() / used.as_nanos();
            return u32::try_from(scaled)
                .unwrap_or(u32::MAX / 2)
                .min(u32::MAX / 2);
        }
        n = n.saturating_mul(4);
    }
}

/// Runs `events` events of `set` on a CPU shared with [`HOGS`] busy threads; returns the longest
/// wall-clock time one event took and the outcomes' alerts and detections.
fn starved(
    thread: &SandboxThread,
    set: &mut RuleSet,
    events: usize,
) -> (Duration, Vec<Alert>, usize) {
    let cpu = current_cpu();
    pin(cpu);
    let _hogs = Hogs::start(cpu);
    let (mut longest, mut alerts, mut detections) = (Duration::ZERO, Vec::new(), 0);
    for _ in 0..events {
        let start = Instant::now();
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        longest = longest.max(start.elapsed());
        alerts.extend(outcome.alerts);
        detections += outcome.detections.len();
    }
    (longest, alerts, detections)
}

fn starved_runtime() -> Runtime {
    runtime_with(|c| {
        c.limits.deadline_ms = DEADLINE_MS;
        // Only the deadline can stop these rules.
        c.limits.fuel_per_event = 100_000_000_000;
        // The first deadline fault quarantines (the default).
        c.limits.budget_strikes = 1;
    })
}

#[test]
fn a_healthy_rule_on_a_starved_cpu_is_not_quarantined_and_an_endless_one_is() {
    let rt = starved_runtime();
    rt.clone().run_sandboxed(move |thread| {
        let n = calibrate(&rt, thread);
        let mut set = RuleSet::new(&rt);
        set.load(thread, &one_rule("healthy", &spin(n), true), "healthy.wat")
            .unwrap();
        let (longest, alerts, detections) = starved(thread, &mut set, 5);
        assert!(
            longest > Duration::from_millis(DEADLINE_MS),
            "the sandbox thread was starved past the deadline (longest event {longest:?})"
        );
        assert!(alerts.is_empty(), "a healthy rule was stopped: {alerts:?}");
        assert_eq!(detections, 5, "it ran on every event");

        let mut set = RuleSet::new(&rt);
        set.load(thread, &one_rule("endless", ENDLESS, false), "endless.wat")
            .unwrap();
        let (_, alerts, _) = starved(thread, &mut set, 1);
        let [Alert::RuleQuarantined(record)] = &alerts[..] else {
            panic!("{alerts:?}");
        };
        assert_eq!(record.reason, Reason::Deadline, "{}", record.message);
    });
}

#[test]
fn a_healthy_rule_of_a_pack_on_a_starved_cpu_is_not_quarantined_and_an_endless_one_is() {
    let rt = starved_runtime();
    rt.clone().run_sandboxed(move |thread| {
        let n = calibrate(&rt, thread);
        let mut set = RuleSet::new(&rt);
        let body = format!("{} {}", spin(n), Pack::hand_over());
        set.load(thread, &pack(&body), "healthy-pack.wat").unwrap();
        let (longest, alerts, detections) = starved(thread, &mut set, 5);
        assert!(
            longest > Duration::from_millis(DEADLINE_MS),
            "the sandbox thread was starved past the deadline (longest event {longest:?})"
        );
        assert!(alerts.is_empty(), "a healthy rule was stopped: {alerts:?}");
        assert_eq!(detections, 5, "it ran on every event");

        let mut set = RuleSet::new(&rt);
        set.load(thread, &pack(ENDLESS), "endless-pack.wat")
            .unwrap();
        let (_, alerts, _) = starved(thread, &mut set, 1);
        let [Alert::RuleQuarantined(record)] = &alerts[..] else {
            panic!("{alerts:?}");
        };
        assert_eq!(record.reason, Reason::Deadline, "{}", record.message);
    });
}
