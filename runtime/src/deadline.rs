//! Deadlines that count the CPU time of the sandbox thread, not the wall clock.
//!
//! A wall-clock deadline makes a healthy rule fault on a machine whose CPU is taken by something
//! else: an attacker who can load the CPU (or a burst of other work) would switch rules off. So a
//! call's deadline counts what the thread running it actually computed:
//!
//! - each budget period (a call into a one-rule module, a rule of a pack from its `rule_begin` to
//!   its close, a pack's own work on one event, a load) starts with [`Budget::start`] and an epoch
//!   deadline one tick ahead;
//! - at every engine tick while the guest runs, the store's epoch callback ([`Budget::tick`]) reads
//!   the thread's CPU clock and charges the CPU time used since the last tick: a starved thread is
//!   charged what it ran, not what it waited;
//! - the guest is stopped ([`wasmtime::Trap::Interrupt`], a `deadline` fault) at the first tick at
//!   which its charges reach the period's allowance, so the deadline is rounded up to a tick.
//!
//! The first tick of a period charges the CPU time since the thread's previous tick, at most one
//! tick: the period's share of it is not known, and a tick of CPU is the most it can be. Where the
//! thread's CPU clock cannot be read (not a Unix system), every tick charges a tick: wall-clock
//! semantics.
//!
//! Nothing a rule calls can block (`poll_oneoff` is refused, stdin is empty, there are no files or
//! sockets) and every host call is bounded ([`crate::wasi`]), so a thread that does not get the CPU
//! makes no progress, and holds up no one but its own events.

use std::cell::Cell;

/// A period's CPU budget, in the store ([`HostState::budget`](crate::host::HostState)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    /// CPU time allowed, in nanoseconds.
    allowed_ns: u64,
    /// CPU time charged so far, in nanoseconds.
    used_ns: u64,
    /// The thread's CPU clock at the period's last tick, once one passed.
    last_cpu_ns: Option<u64>,
    /// One engine tick, in nanoseconds.
    tick_ns: u64,
}

/// What the epoch callback decides at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Within the budget: the next check is one tick ahead.
    Continue,
    /// The budget is used up: stop the guest.
    Expired,
}

thread_local! {
    /// This thread's CPU clock at its last tick (in any period), in nanoseconds.
    static LAST_TICK_CPU_NS: Cell<u64> = const { Cell::new(0) };
}

/// The CPU time this thread has used, in nanoseconds; `None` where it cannot be read.
fn thread_cpu_ns() -> Option<u64> {
    #[cfg(unix)]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        let secs = u64::try_from(t.tv_sec).ok()?;
        let nanos = u64::try_from(t.tv_nsec).ok()?;
        Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

impl Budget {
    /// A period allowed `ms` milliseconds of CPU time, checked every `tick_ms`.
    pub(crate) fn start(ms: u64, tick_ms: u64) -> Budget {
        Budget {
            allowed_ns: ms.saturating_mul(1_000_000),
            used_ns: 0,
            last_cpu_ns: None,
            tick_ns: tick_ms.saturating_mul(1_000_000).max(1),
        }
    }

    /// The same budget resumed after a pause (a pack's own budget while one of its rules ran): what
    /// it had used is kept; the CPU time of the pause is not charged to it.
    pub(crate) fn resumed(self) -> Budget {
        Budget {
            last_cpu_ns: None,
            ..self
        }
    }

    /// Charges the CPU time since the last tick ([`Tick::Expired`] once the allowance is used).
    pub(crate) fn tick(&mut self) -> Tick {
        let charge = match thread_cpu_ns() {
            Some(now) => {
                let since = match self.last_cpu_ns {
                    Some(last) => now.saturating_sub(last),
                    None => now
                        .saturating_sub(LAST_TICK_CPU_NS.with(Cell::get))
                        .min(self.tick_ns),
                };
                LAST_TICK_CPU_NS.with(|c| c.set(now));
                self.last_cpu_ns = Some(now);
                since
            }
            None => self.tick_ns,
        };
        self.used_ns = self.used_ns.saturating_add(charge);
        if self.used_ns >= self.allowed_ns {
            Tick::Expired
        } else {
            Tick::Continue
        }
    }

    /// CPU time charged so far, in nanoseconds.
    #[cfg(test)]
    pub(crate) fn used_ns(&self) -> u64 {
        self.used_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin_cpu(ms: u64) {
        let start = thread_cpu_ns().unwrap();
        while thread_cpu_ns().unwrap() - start < ms * 1_000_000 {
            std::hint::black_box(0);
        }
    }

    #[test]
    #[cfg(unix)]
    fn a_budget_charges_cpu_time_not_waiting() {
        let mut b = Budget::start(30, 2);
        // Waiting (a sleep stands for a starved thread) is not charged, whatever the wall clock.
        for _ in 0..10 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            assert_eq!(b.tick(), Tick::Continue);
        }
        assert!(
            b.used_ns() < 10_000_000,
            "charged {} ns for sleeping",
            b.used_ns()
        );
        // Computing is.
        let mut ticks = 0;
        while b.tick() == Tick::Continue {
            spin_cpu(2);
            ticks += 1;
            assert!(ticks < 100, "30 ms of CPU ends the budget");
        }
        assert!(b.used_ns() >= 30_000_000);
        // A paused budget resumes with what it had used.
        let resumed = b.resumed();
        assert_eq!(resumed.used_ns(), b.used_ns());
    }
}
