//! A process opens LSASS with rights to read its memory: how Mimikatz, procdump, comsvcs.dll
//! `MiniDump` and most credential dumpers start.
//!
//! # How it matches
//!
//! * A `ProcessAccess` event (Sysmon 10) whose `TargetImage` ends with `\lsass.exe`;
//! * whose `GrantedAccess` mask includes `PROCESS_VM_READ` (`0x0010`). Every mask dumpers are known to
//!   ask for has that bit: `0x1010`, `0x1410`, `0x1438`, `0x143a`, `0x1fffff` (`PROCESS_ALL_ACCESS`).
//!   Masks without it (`0x1000` `PROCESS_QUERY_LIMITED_INFORMATION`, `0x1400`) are routine and ignored,
//!   and so is a mask that does not parse as a number.
//! * unless the source is one of a short list of system processes that read LSASS as part of their
//!   job, *at its expected location* (a copy of `csrss.exe` elsewhere is not exempt):
//!   - `C:\Windows\System32\csrss.exe`, `C:\Windows\System32\wininit.exe`;
//!   - `MsMpEng.exe` (Microsoft Defender) under a `\Windows Defender\` directory (`C:\Program Files\...`
//!     or the `C:\ProgramData\Microsoft\Windows Defender\Platform\<version>\` update location).
#![cfg_attr(target_arch = "wasm32", no_std)]

use rulebox_sdk::prelude::*;

/// `PROCESS_VM_READ`: the right to read another process's memory.
pub const PROCESS_VM_READ: u32 = 0x0010;

/// Sources that legitimately read LSASS memory: (suffix of the image, part its path must contain).
const BENIGN_SOURCES: &[(&str, &str)] = &[
    ("\\csrss.exe", "c:\\windows\\system32\\"),
    ("\\wininit.exe", "c:\\windows\\system32\\"),
    ("\\MsMpEng.exe", "\\windows defender\\"),
];

/// Fires when a process opens `lsass.exe` with `PROCESS_VM_READ`.
#[derive(Default)]
pub struct LsassAccess;

impl Rule for LsassAccess {
    const META: RuleMeta = RuleMeta {
        id: "lsass-memory-access",
        name: "LSASS memory opened for reading",
        version: "1.0.0",
        severity: Severity::High,
        events: &[EventKind::ProcessAccess],
    };

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        let Some(a) = event.process_access() else {
            return;
        };
        if !ends_with_ignore_case(a.target_image(), "\\lsass.exe") {
            return;
        }
        let Some(mask) = a.granted_access_mask() else {
            return;
        };
        if mask & PROCESS_VM_READ == 0 || is_benign_source(a.source_image()) {
            return;
        }
        let d = out
            .detect("LSASS memory opened for reading")
            .field("SourceImage", a.source_image())
            .field("TargetImage", a.target_image())
            .field("GrantedAccess", a.granted_access());
        if !a.source_user().is_empty() {
            d.field("SourceUser", a.source_user());
        }
        if !a.call_trace().is_empty() {
            d.field("CallTrace", a.call_trace());
        }
    }
}

fn is_benign_source(image: &str) -> bool {
    BENIGN_SOURCES
        .iter()
        .any(|(name, dir)| ends_with_ignore_case(image, name) && contains_ignore_case(image, dir))
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(LsassAccess);

#[cfg(test)]
mod tests {
    use super::*;

    fn access(source: &str, target: &str, mask: &str) -> Event<'static> {
        let mut a = ProcessAccess::default();
        a.source_image = source.to_owned().into();
        a.target_image = target.to_owned().into();
        a.granted_access = mask.to_owned().into();
        a.source_user = "CORP\\alice".into();
        Event::new(EventData::ProcessAccess(a))
    }

    const LSASS: &str = "C:\\Windows\\system32\\lsass.exe";

    #[test]
    fn dumpers_fire() {
        for mask in ["0x1010", "0x1410", "0x1fffff", "0x10", "0x1438", "0X143A"] {
            let ev = access("C:\\Users\\alice\\Desktop\\mimikatz.exe", LSASS, mask);
            let found = run_native(&mut LsassAccess, &ev);
            assert_eq!(found.len(), 1, "{mask}");
            assert_eq!(found[0].rule_id, "lsass-memory-access");
            assert!(
                found[0]
                    .fields
                    .iter()
                    .any(|f| f.name == "GrantedAccess" && f.value == mask)
            );
        }
    }

    #[test]
    fn fake_system_process_is_not_exempt() {
        let ev = access("C:\\Users\\Public\\csrss.exe", LSASS, "0x1010");
        assert_eq!(run_native(&mut LsassAccess, &ev).len(), 1);
    }

    #[test]
    fn benign_sources_and_masks_are_quiet() {
        for source in [
            "C:\\Windows\\System32\\csrss.exe",
            "C:\\Windows\\system32\\wininit.exe",
            "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11-0\\MsMpEng.exe",
        ] {
            let ev = access(source, LSASS, "0x1fffff");
            assert!(run_native(&mut LsassAccess, &ev).is_empty(), "{source}");
        }
        for mask in ["0x1000", "0x1400", "0x40", "", "garbage"] {
            let ev = access("C:\\tools\\x.exe", LSASS, mask);
            assert!(run_native(&mut LsassAccess, &ev).is_empty(), "{mask}");
        }
        let ev = access(
            "C:\\tools\\x.exe",
            "C:\\Windows\\System32\\notepad.exe",
            "0x1fffff",
        );
        assert!(run_native(&mut LsassAccess, &ev).is_empty());
    }
}
