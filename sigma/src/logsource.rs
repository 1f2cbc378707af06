//! Sigma `logsource` onto rulebox event kinds (and, for kinds shared by several sources, a guard).

use rulebox_sdk::{EventKind, EventKinds};
use rulebox_sigma_eval::{Check, Expr, Pattern, Test};

use crate::SigmaError;

/// What a logsource maps to: the kinds to subscribe to, and a guard every event must pass too.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The event kinds.
    pub kinds: EventKinds,
    /// A condition on the event (provider, channel, event id) that the kind alone does not give.
    pub guard: Expr,
}

/// The typed Sysmon kinds of each Windows `category`, by the Sigma taxonomy.
const TYPED: &[(&str, &[EventKind])] = &[
    ("process_creation", &[EventKind::ProcessStart]),
    ("process_access", &[EventKind::ProcessAccess]),
    ("file_event", &[EventKind::FileCreate]),
    ("file_delete", &[EventKind::FileDelete]),
    ("file_rename", &[EventKind::FileRename]),
    ("file_change", &[EventKind::FileWrite]),
    ("registry_add", &[EventKind::RegistryAdd]),
    ("registry_set", &[EventKind::RegistrySet]),
    ("registry_delete", &[EventKind::RegistryDelete]),
    ("registry_rename", &[EventKind::RegistryRename]),
    (
        "registry_event",
        &[
            EventKind::RegistryAdd,
            EventKind::RegistrySet,
            EventKind::RegistryDelete,
            EventKind::RegistryRename,
        ],
    ),
    ("network_connection", &[EventKind::NetworkConnect]),
    ("dns_query", &[EventKind::DnsQuery]),
    (
        "pipe_created",
        &[EventKind::PipeCreate, EventKind::PipeConnect],
    ),
    ("image_load", &[EventKind::ImageLoad]),
];

/// Windows categories carried by Sysmon events without a typed kind: their Sysmon event ids.
const SYSMON_OTHER: &[(&str, &[u32])] = &[
    ("process_termination", &[5]),
    ("driver_load", &[6]),
    ("create_remote_thread", &[8]),
    ("raw_access_thread", &[9]),
    ("create_stream_hash", &[15]),
    ("sysmon_status", &[4, 16]),
    ("sysmon_error", &[255]),
    ("wmi_event", &[19, 20, 21]),
    ("clipboard_capture", &[24]),
    ("process_tampering", &[25]),
    ("file_block_executable", &[27]),
    ("file_block_shredding", &[28]),
    ("file_executable_detected", &[29]),
];

/// Windows `service`s: the event log channel each reads.
const SERVICES: &[(&str, &str)] = &[
    ("security", "Security"),
    ("system", "System"),
    ("application", "Application"),
    ("sysmon", "Microsoft-Windows-Sysmon/Operational"),
    ("powershell", "Microsoft-Windows-PowerShell/Operational"),
    ("powershell-classic", "Windows PowerShell"),
    (
        "taskscheduler",
        "Microsoft-Windows-TaskScheduler/Operational",
    ),
    ("wmi", "Microsoft-Windows-WMI-Activity/Operational"),
    (
        "windefend",
        "Microsoft-Windows-Windows Defender/Operational",
    ),
    ("bits-client", "Microsoft-Windows-Bits-Client/Operational"),
    (
        "dns-client",
        "Microsoft-Windows-DNS Client Events/Operational",
    ),
    (
        "driver-framework",
        "Microsoft-Windows-DriverFrameworks-UserMode/Operational",
    ),
    (
        "firewall-as",
        "Microsoft-Windows-Windows Firewall With Advanced Security/Firewall",
    ),
    (
        "terminalservices-localsessionmanager",
        "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",
    ),
    (
        "codeintegrity-operational",
        "Microsoft-Windows-CodeIntegrity/Operational",
    ),
    ("applocker", "Microsoft-Windows-AppLocker/EXE and DLL"),
    ("msexchange-management", "MSExchange Management"),
    ("ntlm", "Microsoft-Windows-NTLM/Operational"),
    ("openssh", "OpenSSH/Operational"),
    ("printservice-admin", "Microsoft-Windows-PrintService/Admin"),
    (
        "printservice-operational",
        "Microsoft-Windows-PrintService/Operational",
    ),
    ("smbclient-security", "Microsoft-Windows-SmbClient/Security"),
    ("shell-core", "Microsoft-Windows-Shell-Core/Operational"),
    ("ldap_debug", "Microsoft-Windows-LDAP-Client/Debug"),
];

fn equals(field: &str, value: &str) -> Expr {
    Expr::Test(Test {
        field: Some(field.into()),
        check: Check::Text {
            pattern: Pattern::Exact(value.to_lowercase()),
            cased: false,
        },
    })
}

/// Maps a rule's `logsource` (its `product`, `category` and `service`, any of which may be absent).
pub fn map(
    product: Option<&str>,
    category: Option<&str>,
    service: Option<&str>,
) -> Result<Source, SigmaError> {
    let describe = || {
        let mut parts = Vec::new();
        for (k, v) in [
            ("product", product),
            ("category", category),
            ("service", service),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}: {v}"));
            }
        }
        format!("`{}`", parts.join(", "))
    };
    if product.is_some_and(|p| !p.eq_ignore_ascii_case("windows")) {
        return Err(SigmaError::Logsource(describe()));
    }
    let other = EventKinds::of(&[EventKind::Other]);
    match (category, service) {
        (Some(_), Some(_)) => Err(SigmaError::Logsource(format!(
            "{} (both a category and a service)",
            describe()
        ))),
        (Some(cat), None) => {
            if let Some((_, kinds)) = TYPED.iter().find(|(c, _)| *c == cat) {
                return Ok(Source {
                    kinds: EventKinds::of(kinds),
                    guard: Expr::True,
                });
            }
            if let Some((_, ids)) = SYSMON_OTHER.iter().find(|(c, _)| *c == cat) {
                let ids = ids.iter().map(|id| equals("EventID", &id.to_string()));
                return Ok(Source {
                    kinds: other,
                    guard: Expr::And(vec![
                        equals("Provider", rulebox_runtime::events::SYSMON_PROVIDER),
                        Expr::Or(ids.collect()),
                    ]),
                });
            }
            Err(SigmaError::Logsource(describe()))
        }
        (None, Some(svc)) => {
            let Some((_, channel)) = SERVICES.iter().find(|(s, _)| *s == svc) else {
                return Err(SigmaError::Logsource(describe()));
            };
            if svc == "sysmon" {
                // Sysmon events with a typed kind carry no channel; the others do.
                let typed = EventKinds(EventKinds::all().0 & !other.0);
                return Ok(Source {
                    kinds: EventKinds::all(),
                    guard: Expr::Or(vec![Expr::Kind(typed), equals("Channel", channel)]),
                });
            }
            Ok(Source {
                kinds: other,
                guard: equals("Channel", channel),
            })
        }
        (None, None) => Err(SigmaError::Logsource(format!(
            "{} (neither a category nor a service)",
            describe()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_services_and_refusals() {
        let s = map(Some("windows"), Some("process_creation"), None).unwrap();
        assert_eq!(s.kinds, EventKinds::of(&[EventKind::ProcessStart]));
        assert_eq!(s.guard, Expr::True);
        let s = map(Some("windows"), None, Some("security")).unwrap();
        assert_eq!(s.kinds, EventKinds::of(&[EventKind::Other]));
        assert_eq!(s.guard, equals("Channel", "Security"));
        let s = map(Some("windows"), Some("create_remote_thread"), None).unwrap();
        assert_eq!(s.kinds, EventKinds::of(&[EventKind::Other]));
        let e = map(Some("linux"), Some("process_creation"), None).unwrap_err();
        assert!(e.to_string().contains("product: linux"), "{e}");
        let e = map(Some("windows"), Some("webserver"), None).unwrap_err();
        assert!(e.to_string().contains("category: webserver"), "{e}");
        let e = map(Some("windows"), None, Some("nope")).unwrap_err();
        assert!(e.to_string().contains("service: nope"), "{e}");
    }
}
