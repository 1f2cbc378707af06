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

    fn on_event(&mut self, event: &Event<'_>, out: &mut Detections) {
        let EventData::ProcessStart(p) = &event.data else {
            return;
        };
        if OFFICE
            .iter()
            .any(|o| ends_with_ignore_case(&p.parent_image, o))
            && SHELLS.iter().any(|s| ends_with_ignore_case(&p.image, s))
        {
            out.detect("Office application spawned a shell")
                .field("ParentImage", &p.parent_image)
                .field("Image", &p.image)
                .field("CommandLine", &p.command_line);
        }
    }
}

rulebox_sdk::export_rule!(OfficeShell);
