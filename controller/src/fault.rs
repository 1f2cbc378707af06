//! Test-only crash points (feature `fault-injection`): with `RULEBOX_CONTROLLER_CRASH_AT` naming a
//! point, the process aborts there, as a `kill -9` would stop it. Without the feature every point
//! is a no-op.

/// The environment variable naming the crash point.
pub const CRASH_ENV: &str = "RULEBOX_CONTROLLER_CRASH_AT";

/// The crash points.
pub const CRASH_POINTS: &[&str] = &[
    // A tick decided to halt and issue a revert; its transaction has not committed.
    "halt-before-commit",
    // That transaction committed; the outbox has not run.
    "halt-after-commit",
    // The outbox wrote the revert into the repository; the entry is not marked done.
    "revert-after-publish",
    // A tick opened a ring; its transaction committed.
    "ring-after-commit",
];

/// Aborts the process if `RULEBOX_CONTROLLER_CRASH_AT` is `point` (fault-injection builds only).
pub fn crash_point(point: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var(CRASH_ENV).is_ok_and(|v| v == point) {
        eprintln!("rulebox-controller: crash point `{point}` reached: aborting");
        std::process::abort();
    }
    let _ = point;
}
