//! PowerShell started with an encoded command: `powershell -enc <base64>` hides the script from
//! command-line logging and is a staple of droppers and post-exploitation frameworks.
//!
//! # How it matches
//!
//! * The process is PowerShell: `Image` ends with `\powershell.exe` or `\pwsh.exe`, or the PE
//!   `OriginalFileName` is `PowerShell.EXE` / `pwsh.dll` (a renamed copy).
//! * Its command line, split on whitespace (surrounding quotes stripped), has a parameter that
//!   PowerShell resolves to `-EncodedCommand`: any prefix of `encodedcommand` (`-e`, `-en`, `-enc`,
//!   `-encoded`, ...) or the alias `-ec`, case-insensitive, introduced by `-`, `/` or a Unicode dash
//!   (en dash, em dash, horizontal bar: PowerShell accepts those too). `-enc:<payload>` also counts.
//! * The value that follows looks like base64 (at least 16 characters of the base64 alphabet). This
//!   keeps `-ExecutionPolicy`-style look-alikes and a dangling flag quiet.
//!
//! Scanning stops at `-Command`/`-c` and `-File`/`-f`: what follows them belongs to the script, not to
//! PowerShell.
#![cfg_attr(target_arch = "wasm32", no_std)]

use rulebox_sdk::prelude::*;

const IMAGES: &[&str] = &["\\powershell.exe", "\\pwsh.exe"];
const ORIGINAL_NAMES: &[&str] = &["PowerShell.EXE", "pwsh.dll"];
/// Characters that introduce a PowerShell parameter.
const DASHES: &[char] = &['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
/// The shortest payload that counts as an encoded command.
const MIN_PAYLOAD: usize = 16;

/// Fires when PowerShell is started with `-EncodedCommand` (or an abbreviation of it).
#[derive(Default)]
pub struct EncodedPowerShell;

impl Rule for EncodedPowerShell {
    const META: RuleMeta = RuleMeta {
        id: "powershell-encoded-command",
        name: "PowerShell started with an encoded command",
        version: "1.0.0",
        severity: Severity::High,
        events: &[EventKind::ProcessStart],
    };

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        let Some(p) = event.process_start() else {
            return;
        };
        let is_powershell = IMAGES.iter().any(|s| ends_with_ignore_case(p.image(), s))
            || ORIGINAL_NAMES
                .iter()
                .any(|n| eq_ignore_case(p.original_file_name(), n));
        if !is_powershell {
            return;
        }
        if let Some((flag, payload)) = find_encoded_command(p.command_line()) {
            out.detect("PowerShell started with an encoded command")
                .field("Image", p.image())
                .field("CommandLine", p.command_line())
                .field("ParentImage", p.parent_image())
                .field("EncodedFlag", flag)
                .field("EncodedCommand", payload);
        }
    }
}

/// Finds an `-EncodedCommand` parameter and its base64 value in a PowerShell command line; returns the
/// flag as written and the value.
pub fn find_encoded_command(command_line: &str) -> Option<(&str, &str)> {
    let mut tokens = command_line.split_whitespace().map(unquote);
    // The first token is the program itself.
    tokens.next()?;
    while let Some(token) = tokens.next() {
        let Some(param) = token.strip_prefix(DASHES) else {
            continue;
        };
        let (name, inline_value) = match param.split_once(':') {
            Some((name, value)) => (name, Some(value)),
            None => (param, None),
        };
        if is_encoded_command_param(name) {
            let value = match inline_value {
                Some(v) if !v.is_empty() => v,
                _ => tokens.next().unwrap_or(""),
            };
            if looks_like_base64(value) {
                return Some((token, value));
            }
            return None;
        }
        if is_script_param(name) {
            return None;
        }
    }
    None
}

/// Strips one pair of surrounding quotes (and a lone leading or trailing one).
fn unquote(token: &str) -> &str {
    token.trim_matches(|c| c == '"' || c == '\'')
}

/// Whether PowerShell resolves the parameter `name` (without its dash) to `-EncodedCommand`.
fn is_encoded_command_param(name: &str) -> bool {
    const FULL: &str = "encodedcommand";
    !name.is_empty() && (starts_with_ignore_case(FULL, name) || eq_ignore_case(name, "ec"))
}

/// Whether the parameter `name` starts the script (`-Command`, `-File`), after which nothing is a
/// PowerShell parameter any more.
fn is_script_param(name: &str) -> bool {
    eq_ignore_case(name, "c")
        || (name.len() >= 3 && starts_with_ignore_case("command", name))
        || (!name.is_empty() && starts_with_ignore_case("file", name))
}

fn looks_like_base64(value: &str) -> bool {
    value.len() >= MIN_PAYLOAD
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(EncodedPowerShell);

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = "JABjAGwAaQBlAG4AdAAgAD0AIABOAGUAdwAtAE8AYgBqAGUAYwB0AA==";

    fn ps(image: &str, command_line: &str) -> Event<'static> {
        let mut p = ProcessStart::default();
        p.image = image.to_owned().into();
        p.command_line = command_line.to_owned().into();
        p.parent_image = "C:\\Windows\\System32\\cmd.exe".into();
        Event::new(EventData::ProcessStart(p))
    }

    fn fires(image: &str, command_line: &str) -> bool {
        let found = run_native(&mut EncodedPowerShell, &ps(image, command_line));
        assert!(found.len() <= 1);
        found.iter().all(|d| {
            d.rule_id == "powershell-encoded-command"
                && d.fields
                    .iter()
                    .any(|f| f.name == "CommandLine" && f.value == command_line)
        }) && found.len() == 1
    }

    const PS: &str = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe";

    #[test]
    fn encoded_flags_and_abbreviations_fire() {
        for flag in [
            "-enc",
            "-EncodedCommand",
            "-e",
            "-E",
            "-eNcOdEd",
            "-ec",
            "/enc",
            "\u{2013}enc",
            "\"-enc\"",
        ] {
            let cl = format!("powershell.exe -NoP -W Hidden {flag} {PAYLOAD}");
            assert!(fires(PS, &cl), "{cl}");
        }
        assert!(fires(
            "C:\\Program Files\\PowerShell\\7\\pwsh.exe",
            &format!("pwsh -enc:{PAYLOAD}")
        ));
    }

    #[test]
    fn reports_flag_and_payload() {
        let found = run_native(
            &mut EncodedPowerShell,
            &ps(PS, &format!("powershell -nop -enc {PAYLOAD}")),
        );
        let field = |n: &str| {
            found[0]
                .fields
                .iter()
                .find(|f| f.name == n)
                .map(|f| f.value.to_string())
        };
        assert_eq!(field("EncodedFlag").as_deref(), Some("-enc"));
        assert_eq!(field("EncodedCommand").as_deref(), Some(PAYLOAD));
        assert_eq!(field("Image").as_deref(), Some(PS));
    }

    #[test]
    fn renamed_powershell_found_by_original_file_name() {
        let mut p = ProcessStart::default();
        p.image = "C:\\Users\\Public\\svc.exe".into();
        p.original_file_name = "PowerShell.EXE".into();
        p.command_line = format!("svc.exe -e {PAYLOAD}").into();
        let ev = Event::new(EventData::ProcessStart(p));
        assert_eq!(run_native(&mut EncodedPowerShell, &ev).len(), 1);
    }

    #[test]
    fn ordinary_command_lines_are_quiet() {
        for cl in [
            "powershell.exe -ExecutionPolicy Bypass -File C:\\scripts\\backup.ps1",
            "powershell.exe -NoProfile -Command Get-ChildItem -e x",
            &format!("powershell.exe -Command Write-Output -enc {PAYLOAD}"),
            "powershell.exe -enc",
            "powershell.exe -enc short",
            "powershell.exe -ep Bypass",
        ] {
            assert!(!fires(PS, cl), "{cl}");
        }
        // Not PowerShell at all.
        assert!(!fires(
            "C:\\Windows\\System32\\cmd.exe",
            &format!("cmd.exe /c echo -enc {PAYLOAD}")
        ));
    }

    #[test]
    fn other_kinds_are_ignored() {
        let ev = Event::new(EventData::DnsQuery(DnsQuery::default()));
        assert!(run_native(&mut EncodedPowerShell, &ev).is_empty());
    }
}
