//! A named pipe whose name is the default of a known attack tool.
//!
//! Many offensive frameworks use fixed or templated pipe names unless the operator changes them, and
//! Sysmon reports every pipe created (event 17) or connected to (event 18). The list below is
//! documented pattern by pattern; `*` matches any run of characters, matching ignores ASCII case, and a
//! leading `\` on the reported name is optional.
//!
//! | pattern | tool |
//! |---|---|
//! | `\MSSE-*-server` | Cobalt Strike: default SMB beacon / artifact-kit pipe |
//! | `\msagent_*` | Cobalt Strike: default SMB beacon pipe (`msagent_##`) |
//! | `\postex_*` | Cobalt Strike: post-exploitation jobs (`postex_####`, `postex_ssh_####`) |
//! | `\status_*` | Cobalt Strike: `status_##` |
//! | `\mojo.5688.8052.*` | Cobalt Strike: malleable profiles imitating Chrome's Mojo pipes with fixed numbers |
//! | `\interprocess_*`, `\lsarpc_*`, `\samr_*`, `\netlogon_*`, `\srvsvc_*`, `\wkssvc_*` | Cobalt Strike: common malleable-profile names (the real Windows pipes have no `_` suffix) |
//! | `\isapi_http`, `\isapi_dg`, `\isapi_dg2` | Uroburos (Turla) |
//! | `\sdlrpc` | Cobra (Turla) |
//! | `\ahexec` | Sofacy (APT28) |
//! | `\winsession`, `\lsassw` | Wild Neutron |
//! | `\46a676ab7f179e511e30dd2dc41bd388`, `\9f81f59bc58452127884ce513865ed20`, `\e710f28d59aa529d6792ca6ff0ca1b34`, `\rpchlp_3` | Project Sauron |
//! | `\NamePipe_MoreWindows` | RedLeaves (Cloud Hopper) |
//! | `\pcheap_reuse` | Equation Group |
//! | `\lsadump`, `\cachedump`, `\wceservicepipe` | credential dumpers (pwdump/fgdump family, Windows Credentials Editor) |
//! | `\gruntsvc` | Covenant: SMB grunt |
//! | `\jaccdpqnvbrrxlaf` | PoshC2: default pipe |
//! | `\583da945-62af-10e8-4902-a8f205c72b2e` | SUNBURST (SolarWinds) backdoor |
//! | `\csexecsvc` | CSExec (PsExec clone) |
//! | `\PSEXESVC*`, `\RemCom_communicaton` | PsExec and RemCom service pipes: legitimate admin tools, lateral movement in attacks; reported at `low` |
#![cfg_attr(target_arch = "wasm32", no_std)]

use rulebox_sdk::prelude::*;

/// One documented pipe-name pattern.
#[derive(Debug, Clone, Copy)]
pub struct PipePattern {
    /// Glob pattern (`*` = any run of characters), ASCII case-insensitive.
    pub pattern: &'static str,
    /// The tool it belongs to.
    pub tool: &'static str,
    /// Severity override for patterns that also match legitimate admin tools.
    pub severity: Option<Severity>,
}

const fn p(pattern: &'static str, tool: &'static str) -> PipePattern {
    PipePattern {
        pattern,
        tool,
        severity: None,
    }
}

const fn admin(pattern: &'static str, tool: &'static str) -> PipePattern {
    PipePattern {
        pattern,
        tool,
        severity: Some(Severity::Low),
    }
}

/// The documented list (see the crate docs).
pub const PATTERNS: &[PipePattern] = &[
    p("\\MSSE-*-server", "Cobalt Strike"),
    p("\\msagent_*", "Cobalt Strike"),
    p("\\postex_*", "Cobalt Strike"),
    p("\\status_*", "Cobalt Strike"),
    p("\\mojo.5688.8052.*", "Cobalt Strike"),
    p("\\interprocess_*", "Cobalt Strike"),
    p("\\lsarpc_*", "Cobalt Strike"),
    p("\\samr_*", "Cobalt Strike"),
    p("\\netlogon_*", "Cobalt Strike"),
    p("\\srvsvc_*", "Cobalt Strike"),
    p("\\wkssvc_*", "Cobalt Strike"),
    p("\\isapi_http", "Uroburos (Turla)"),
    p("\\isapi_dg", "Uroburos (Turla)"),
    p("\\isapi_dg2", "Uroburos (Turla)"),
    p("\\sdlrpc", "Cobra (Turla)"),
    p("\\ahexec", "Sofacy (APT28)"),
    p("\\winsession", "Wild Neutron"),
    p("\\lsassw", "Wild Neutron"),
    p("\\46a676ab7f179e511e30dd2dc41bd388", "Project Sauron"),
    p("\\9f81f59bc58452127884ce513865ed20", "Project Sauron"),
    p("\\e710f28d59aa529d6792ca6ff0ca1b34", "Project Sauron"),
    p("\\rpchlp_3", "Project Sauron"),
    p("\\NamePipe_MoreWindows", "RedLeaves (Cloud Hopper)"),
    p("\\pcheap_reuse", "Equation Group"),
    p("\\lsadump", "credential dumper (pwdump family)"),
    p("\\cachedump", "credential dumper (cachedump)"),
    p("\\wceservicepipe", "Windows Credentials Editor"),
    p("\\gruntsvc", "Covenant"),
    p("\\jaccdpqnvbrrxlaf", "PoshC2"),
    p("\\583da945-62af-10e8-4902-a8f205c72b2e", "SUNBURST"),
    p("\\csexecsvc", "CSExec"),
    admin("\\PSEXESVC*", "PsExec"),
    admin("\\RemCom_communicaton", "RemCom"),
];

/// Fires when a pipe with a known attack-tool name is created or connected to.
#[derive(Default)]
pub struct AttackPipe;

impl Rule for AttackPipe {
    const META: RuleMeta = RuleMeta {
        id: "attack-tool-named-pipe",
        name: "Named pipe of a known attack tool",
        version: "1.0.0",
        severity: Severity::High,
        events: &[EventKind::PipeCreate, EventKind::PipeConnect],
    };

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        let Some(pipe) = event.pipe() else {
            return;
        };
        let Some(hit) = match_pipe(pipe.pipe_name()) else {
            return;
        };
        let d = out
            .detect("Named pipe of a known attack tool")
            .field("PipeName", pipe.pipe_name())
            .field("Image", pipe.image())
            .field("Tool", hit.tool)
            .field("Pattern", hit.pattern);
        if !pipe.event_type().is_empty() {
            d.field("EventType", pipe.event_type());
        }
        if let Some(severity) = hit.severity {
            d.severity(severity);
        }
    }
}

/// The first documented pattern `pipe_name` matches.
pub fn match_pipe(pipe_name: &str) -> Option<&'static PipePattern> {
    let name = pipe_name.strip_prefix('\\').unwrap_or(pipe_name);
    if name.is_empty() {
        return None;
    }
    PATTERNS.iter().find(|p| {
        let pattern = p.pattern.strip_prefix('\\').unwrap_or(p.pattern);
        glob_ignore_case(pattern.as_bytes(), name.as_bytes())
    })
}

/// ASCII case-insensitive glob match where `*` matches any run of bytes (iterative, linear in
/// practice: backtracks only to the last `*`).
pub fn glob_ignore_case(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p].eq_ignore_ascii_case(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(AttackPipe);

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe(name: &str, connect: bool) -> Event<'static> {
        let mut p = PipeEvent::default();
        p.pipe_name = name.to_owned().into();
        p.image = "C:\\Windows\\System32\\rundll32.exe".into();
        if connect {
            p.event_type = "ConnectPipe".into();
            Event::new(EventData::PipeConnect(p))
        } else {
            p.event_type = "CreatePipe".into();
            Event::new(EventData::PipeCreate(p))
        }
    }

    fn tool_of(name: &str, connect: bool) -> Option<(String, Severity)> {
        let found = run_native(&mut AttackPipe, &pipe(name, connect));
        assert!(found.len() <= 1);
        let d = found.first()?;
        assert_eq!(d.rule_id, "attack-tool-named-pipe");
        assert!(
            d.fields
                .iter()
                .any(|f| f.name == "PipeName" && f.value == name)
        );
        let tool = d.fields.iter().find(|f| f.name == "Tool").unwrap();
        Some((tool.value.to_string(), d.severity))
    }

    #[test]
    fn attack_tool_pipes_fire() {
        for (name, tool) in [
            ("\\MSSE-1234-server", "Cobalt Strike"),
            ("\\msagent_a7", "Cobalt Strike"),
            ("\\postex_ssh_3f2a", "Cobalt Strike"),
            ("\\status_5c", "Cobalt Strike"),
            ("\\mojo.5688.8052.183894939787088877abc", "Cobalt Strike"),
            ("\\wkssvc_01", "Cobalt Strike"),
            ("\\ISAPI_HTTP", "Uroburos (Turla)"),
            ("lsadump", "credential dumper (pwdump family)"),
            ("\\wceservicepipe", "Windows Credentials Editor"),
            ("\\583da945-62af-10e8-4902-a8f205c72b2e", "SUNBURST"),
        ] {
            for connect in [false, true] {
                let (got, severity) = tool_of(name, connect).unwrap_or_else(|| panic!("{name}"));
                assert_eq!(got, tool, "{name}");
                assert_eq!(severity, Severity::High);
            }
        }
        assert_eq!(
            tool_of("\\PSEXESVC-HOST-1234-stdin", false),
            Some(("PsExec".into(), Severity::Low))
        );
    }

    #[test]
    fn ordinary_pipes_are_quiet() {
        for name in [
            "\\wkssvc",
            "\\srvsvc",
            "\\lsass",
            "\\mojo.1234.5678.999",
            "\\MSSE-server",
            "\\PIPE_EVENTROOT\\CIMV2SCM EVENT PROVIDER",
            "",
            "\\",
        ] {
            assert_eq!(tool_of(name, false), None, "{name}");
        }
    }

    #[test]
    fn glob() {
        assert!(glob_ignore_case(b"a*b*c", b"aXXbYYc"));
        assert!(glob_ignore_case(b"*", b""));
        assert!(!glob_ignore_case(b"a*b", b"aXXc"));
        assert!(glob_ignore_case(b"ab", b"AB"));
        assert!(!glob_ignore_case(b"ab", b"abc"));
    }
}
