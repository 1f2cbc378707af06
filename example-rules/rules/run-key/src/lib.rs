//! Persistence through a `Run` or `RunOnce` registry key: a value written there starts a program at
//! every logon (`Run`) or at the next one (`RunOnce`).
//!
//! # How it matches
//!
//! A `RegistrySet` event (Sysmon 13) whose `TargetObject` is a value directly under
//!
//! ```text
//! <root>\Software\Microsoft\Windows\CurrentVersion\Run\<value>
//! <root>\Software\Microsoft\Windows\CurrentVersion\RunOnce\<value>
//! <root>\Software\WOW6432Node\Microsoft\Windows\CurrentVersion\Run[Once]\<value>   (32-bit view)
//! ```
//!
//! where `<root>` is the machine hive (`HKLM`, `HKEY_LOCAL_MACHINE`, `\REGISTRY\MACHINE`), a user hive
//! (`HKU\<SID>`, `HKEY_USERS\<SID>`, `\REGISTRY\USER\<SID>`) or the current user (`HKCU`,
//! `HKEY_CURRENT_USER`). Matching ignores ASCII case. Keys that merely start with `Run` (`RunServices`,
//! `RunOnceEx`, `RunNotification`) do not match, and neither does a write to the key's default value
//! with an empty name. A machine-wide write (every user's logon) is reported at `high`, a per-user one
//! at the rule's `medium`.
#![cfg_attr(target_arch = "wasm32", no_std)]

use rulebox_sdk::prelude::*;

/// Which hive a Run key lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hive {
    /// `HKLM`: runs for every user.
    Machine,
    /// `HKU\<SID>` or `HKCU`: runs for one user.
    User,
}

/// A parsed Run-key value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunValue<'a> {
    /// The hive.
    pub hive: Hive,
    /// `Run` or `RunOnce`, as written.
    pub key: &'a str,
    /// The value's name.
    pub value: &'a str,
}

const MACHINE_ROOTS: &[&str] = &["HKLM\\", "HKEY_LOCAL_MACHINE\\", "\\REGISTRY\\MACHINE\\"];
/// Roots followed by a SID component.
const USERS_ROOTS: &[&str] = &["HKU\\", "HKEY_USERS\\", "\\REGISTRY\\USER\\"];
const CURRENT_USER_ROOTS: &[&str] = &["HKCU\\", "HKEY_CURRENT_USER\\"];
const RUN_PARENTS: &[&str] = &[
    "Software\\Microsoft\\Windows\\CurrentVersion\\",
    "Software\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\",
];

/// Fires when a value is written under a `Run` or `RunOnce` key.
#[derive(Default)]
pub struct RunKey;

impl Rule for RunKey {
    const META: RuleMeta = RuleMeta {
        id: "registry-run-key-persistence",
        name: "Run / RunOnce registry key written",
        version: "1.0.0",
        severity: Severity::Medium,
        events: &[EventKind::RegistrySet],
    };

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        let (EventKind::RegistrySet, Some(r)) = (event.kind(), event.registry()) else {
            return;
        };
        let Some(run) = parse_run_value(r.target_object()) else {
            return;
        };
        let d = out
            .detect("Run / RunOnce registry key written")
            .field("TargetObject", r.target_object())
            .field("Details", r.details())
            .field("Image", r.image())
            .field(
                "Hive",
                match run.hive {
                    Hive::Machine => "HKLM",
                    Hive::User => "HKU",
                },
            )
            .field("ValueName", run.value);
        if run.hive == Hive::Machine {
            d.severity(Severity::High);
        }
    }
}

/// Parses a registry path as a value directly under a Run or RunOnce key.
pub fn parse_run_value(target_object: &str) -> Option<RunValue<'_>> {
    let (hive, rest) = strip_root(target_object)?;
    let rest = RUN_PARENTS
        .iter()
        .find_map(|p| strip_prefix_ignore_case(rest, p))?;
    let (key, value) = rest.split_once('\\')?;
    if !(eq_ignore_case(key, "Run") || eq_ignore_case(key, "RunOnce"))
        || value.is_empty()
        || value.contains('\\')
    {
        return None;
    }
    Some(RunValue { hive, key, value })
}

fn strip_root(path: &str) -> Option<(Hive, &str)> {
    if let Some(rest) = MACHINE_ROOTS
        .iter()
        .find_map(|r| strip_prefix_ignore_case(path, r))
    {
        return Some((Hive::Machine, rest));
    }
    if let Some(rest) = CURRENT_USER_ROOTS
        .iter()
        .find_map(|r| strip_prefix_ignore_case(path, r))
    {
        return Some((Hive::User, rest));
    }
    let rest = USERS_ROOTS
        .iter()
        .find_map(|r| strip_prefix_ignore_case(path, r))?;
    // Skip the SID (`S-1-5-21-...` or `.DEFAULT`).
    let (_sid, rest) = rest.split_once('\\')?;
    Some((Hive::User, rest))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    if starts_with_ignore_case(text, prefix) {
        // `prefix` is ASCII, so its length is a character boundary in `text` when it matched.
        text.get(prefix.len()..)
    } else {
        None
    }
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(RunKey);

#[cfg(test)]
mod tests {
    use super::*;

    fn set(target: &str) -> Event<'static> {
        let mut r = RegistryEvent::default();
        r.event_type = "SetValue".into();
        r.image = "C:\\Users\\bob\\AppData\\Roaming\\updater.exe".into();
        r.target_object = target.to_owned().into();
        r.details = "C:\\Users\\bob\\AppData\\Roaming\\updater.exe --silent".into();
        Event::new(EventData::RegistrySet(r))
    }

    fn check(target: &str) -> Option<Severity> {
        let found = run_native(&mut RunKey, &set(target));
        assert!(found.len() <= 1);
        let d = found.first()?;
        assert_eq!(d.rule_id, "registry-run-key-persistence");
        assert!(
            d.fields
                .iter()
                .any(|f| f.name == "TargetObject" && f.value == target)
        );
        assert!(d.fields.iter().any(|f| f.name == "Details"));
        Some(d.severity)
    }

    #[test]
    fn run_keys_fire() {
        for (target, severity) in [
            (
                "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater",
                Severity::High,
            ),
            (
                "HKLM\\SOFTWARE\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\RunOnce\\x",
                Severity::High,
            ),
            (
                "HKU\\S-1-5-21-1004336348-1177238915-682003330-1001\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\OneDriveX",
                Severity::Medium,
            ),
            (
                "hkcu\\software\\microsoft\\windows\\currentversion\\runonce\\Stage2",
                Severity::Medium,
            ),
            (
                "\\REGISTRY\\MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\a b",
                Severity::High,
            ),
        ] {
            assert_eq!(check(target), Some(severity), "{target}");
        }
    }

    #[test]
    fn other_keys_are_quiet() {
        for target in [
            "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\RunOnceEx\\0001",
            "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\RunServices\\x",
            "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\",
            "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\Sub\\x",
            "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Explorer\\Run",
            "HKLM\\SOFTWARE\\Vendor\\Microsoft\\Windows\\CurrentVersion\\Run\\x",
            "HKU\\S-1-5-21-1\\Software\\Microsoft\\Office\\16.0\\Word",
            "",
        ] {
            assert_eq!(check(target), None, "{target}");
        }
        // A Run-key path in another kind of event is not this rule's business.
        let mut r = RegistryEvent::default();
        r.target_object = "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\x".into();
        let ev = Event::new(EventData::RegistryDelete(r));
        assert!(run_native(&mut RunKey, &ev).is_empty());
    }
}
