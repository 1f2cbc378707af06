//! Office application spawning a shell or PowerShell: the classic macro-malware first step.
#![cfg_attr(target_arch = "wasm32", no_std)]

use rulebox_sdk::prelude::*;

const OFFICE: &[&str] = &[
    "\\winword.exe",
    "\\excel.exe",
    "\\powerpnt.exe",
    "\\outlook.exe",
    "\\msaccess.exe",
    "\\mspub.exe",
    "\\visio.exe",
    "\\onenote.exe",
];
const SHELLS: &[&str] = &[
    "\\cmd.exe",
    "\\powershell.exe",
    "\\pwsh.exe",
    "\\wscript.exe",
    "\\cscript.exe",
    "\\mshta.exe",
];

/// Fires when an Office application starts a shell or script host.
#[derive(Default)]
pub struct OfficeShell;

impl Rule for OfficeShell {
    const META: RuleMeta = RuleMeta {
        id: "office-spawns-shell",
        name: "Office application spawns a shell",
        version: "1.0.0",
        severity: Severity::High,
        events: &[EventKind::ProcessStart],
    };

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        let Some(p) = event.process_start() else {
            return;
        };
        if OFFICE
            .iter()
            .any(|o| ends_with_ignore_case(p.parent_image(), o))
            && SHELLS.iter().any(|s| ends_with_ignore_case(p.image(), s))
        {
            out.detect("Office application spawned a shell")
                .field("ParentImage", p.parent_image())
                .field("Image", p.image())
                .field("CommandLine", p.command_line());
        }
    }
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(OfficeShell);

#[cfg(test)]
mod tests {
    use super::*;

    fn start(parent: &str, image: &str) -> Event<'static> {
        let mut p = ProcessStart::default();
        p.parent_image = parent.to_owned().into();
        p.image = image.to_owned().into();
        p.command_line = "cmd.exe /c whoami".into();
        Event::new(EventData::ProcessStart(p))
    }

    #[test]
    fn word_spawning_cmd_fires() {
        let ev = start(
            "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
            "C:\\Windows\\System32\\cmd.exe",
        );
        let found = run_native(&mut OfficeShell, &ev);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule_id, "office-spawns-shell");
        assert!(found[0].fields.iter().any(|f| f.name == "ParentImage"));
    }

    #[test]
    fn explorer_spawning_cmd_is_quiet() {
        let ev = start(
            "C:\\Windows\\explorer.exe",
            "C:\\Windows\\System32\\cmd.exe",
        );
        assert!(run_native(&mut OfficeShell, &ev).is_empty());
        let ev = start(
            "C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE",
            "C:\\Windows\\splwow64.exe",
        );
        assert!(run_native(&mut OfficeShell, &ev).is_empty());
    }
}
