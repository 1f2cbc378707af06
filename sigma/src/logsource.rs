//! Sigma `logsource` onto rulebox event kinds (and, for kinds shared by several sources, a guard),
//! and how the fields of those events are spelled.

use rulebox_sdk::{EventKind, EventKinds};

use crate::SigmaError;
use crate::ir::{Node, Pattern, Position};

/// What a logsource maps to: the kinds to subscribe to, a guard every event must pass too, and how
/// its events spell the rule's field names.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The event kinds.
    pub kinds: EventKinds,
    /// A condition on the event (provider, channel, event id) that the kind alone does not give.
    pub guard: Node,
    /// How field names are looked up.
    pub lookup: Lookup,
}

/// How a rule's field names are looked up in its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lookup {
    /// Also look a `CamelCase` name up with spaces between its words: the Sigma taxonomy's
    /// `ThreatName` is Defender's `Threat Name`. The name as written is tried first.
    pub spaced_names: bool,
    /// A field the event does not have also matches the elements of a list the reader flattened
    /// under its name (`Data[0]`, `Data[1]`, ...: the unnamed `<Data>` of classic event logs, which
    /// Sigma calls `Data`).
    pub elements: bool,
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

/// The PowerShell log channels.
const POWERSHELL: &str = "Microsoft-Windows-PowerShell/Operational";
const POWERSHELL_CLASSIC: &str = "Windows PowerShell";

/// Windows categories of other event logs: the channel and event ids that carry them.
const LOG_CATEGORIES: &[(&str, &str, &[u32])] = &[
    // Script block logging.
    ("ps_script", POWERSHELL, &[4104]),
    // Module logging.
    ("ps_module", POWERSHELL, &[4103]),
    // The classic log: engine started, provider started, pipeline executed.
    ("ps_classic_start", POWERSHELL_CLASSIC, &[400]),
    ("ps_classic_provider_start", POWERSHELL_CLASSIC, &[600]),
    ("ps_classic_script", POWERSHELL_CLASSIC, &[800]),
];

/// Windows categories of an event provider (any event id, any channel).
const PROVIDER_CATEGORIES: &[(&str, &str)] = &[
    // The Kernel-File provider's file-object events (`FileName`).
    ("file_access", "Microsoft-Windows-Kernel-File"),
];

/// Windows `service`s: the event log channels each reads (any of them).
const SERVICES: &[(&str, &[&str])] = &[
    ("security", &["Security"]),
    ("system", &["System"]),
    ("application", &["Application"]),
    ("sysmon", &["Microsoft-Windows-Sysmon/Operational"]),
    ("powershell", &[POWERSHELL]),
    ("powershell-classic", &[POWERSHELL_CLASSIC]),
    (
        "taskscheduler",
        &["Microsoft-Windows-TaskScheduler/Operational"],
    ),
    ("wmi", &["Microsoft-Windows-WMI-Activity/Operational"]),
    (
        "windefend",
        &["Microsoft-Windows-Windows Defender/Operational"],
    ),
    (
        "bits-client",
        &["Microsoft-Windows-Bits-Client/Operational"],
    ),
    (
        "dns-client",
        &["Microsoft-Windows-DNS Client Events/Operational"],
    ),
    ("dns-server", &["DNS Server"]),
    (
        "dns-server-analytic",
        &["Microsoft-Windows-DNS-Server/Analytical"],
    ),
    ("dns-server-audit", &["Microsoft-Windows-DNS-Server/Audit"]),
    (
        "driver-framework",
        &["Microsoft-Windows-DriverFrameworks-UserMode/Operational"],
    ),
    (
        "firewall-as",
        &["Microsoft-Windows-Windows Firewall With Advanced Security/Firewall"],
    ),
    (
        "terminalservices-localsessionmanager",
        &["Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"],
    ),
    (
        "codeintegrity-operational",
        &["Microsoft-Windows-CodeIntegrity/Operational"],
    ),
    (
        "applocker",
        &[
            "Microsoft-Windows-AppLocker/MSI and Script",
            "Microsoft-Windows-AppLocker/EXE and DLL",
            "Microsoft-Windows-AppLocker/Packaged app-Deployment",
            "Microsoft-Windows-AppLocker/Packaged app-Execution",
        ],
    ),
    ("msexchange-management", &["MSExchange Management"]),
    ("ntlm", &["Microsoft-Windows-NTLM/Operational"]),
    ("openssh", &["OpenSSH/Operational"]),
    (
        "printservice-admin",
        &["Microsoft-Windows-PrintService/Admin"],
    ),
    (
        "printservice-operational",
        &["Microsoft-Windows-PrintService/Operational"],
    ),
    (
        "smbclient-security",
        &["Microsoft-Windows-SmbClient/Security"],
    ),
    (
        "smbclient-connectivity",
        &["Microsoft-Windows-SmbClient/Connectivity"],
    ),
    (
        "smbserver-connectivity",
        &["Microsoft-Windows-SMBServer/Connectivity"],
    ),
    ("shell-core", &["Microsoft-Windows-Shell-Core/Operational"]),
    ("ldap_debug", &["Microsoft-Windows-LDAP-Client/Debug"]),
    ("ldap", &["Microsoft-Windows-LDAP-Client/Debug"]),
    (
        "appxdeployment-server",
        &["Microsoft-Windows-AppXDeploymentServer/Operational"],
    ),
    (
        "appxpackaging-om",
        &["Microsoft-Windows-AppxPackaging/Operational"],
    ),
    (
        "appmodel-runtime",
        &["Microsoft-Windows-AppModel-Runtime/Admin"],
    ),
    (
        "iis-configuration",
        &["Microsoft-IIS-Configuration/Operational"],
    ),
    (
        "security-mitigations",
        &[
            "Microsoft-Windows-Security-Mitigations/Kernel Mode",
            "Microsoft-Windows-Security-Mitigations/User Mode",
        ],
    ),
    (
        "microsoft-servicebus-client",
        &["Microsoft-ServiceBus-Client"],
    ),
    ("servicebus-client", &["Microsoft-ServiceBus-Client"]),
    ("lsa-server", &["Microsoft-Windows-LSA/Operational"]),
    (
        "diagnosis-scripted",
        &["Microsoft-Windows-Diagnosis-Scripted/Operational"],
    ),
    (
        "certificateservicesclient-lifecycle-system",
        &["Microsoft-Windows-CertificateServicesClient-Lifecycle-System/Operational"],
    ),
    ("capi2", &["Microsoft-Windows-CAPI2/Operational"]),
    (
        "bitlocker",
        &["Microsoft-Windows-BitLocker/BitLocker Management"],
    ),
    ("vhdmp", &["Microsoft-Windows-VHDMP/Operational"]),
    ("dhcp", &["Microsoft-Windows-DHCP-Server/Operational"]),
];

/// `field` equals `value` (case-insensitively).
fn equals(field: &str, value: &str) -> Node {
    Node::Text {
        field: Some(field.into()),
        pattern: Pattern::Literal {
            position: Position::Exact,
            text: rulebox_sigma_eval::fold_case(value, &mut String::new()).to_owned(),
            cased: false,
        },
    }
}

fn event_ids(ids: &[u32]) -> Node {
    Node::any(
        ids.iter()
            .map(|id| equals("EventID", &id.to_string()))
            .collect(),
    )
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
    // Events of kind `other` carry the fields as their source spelled them.
    let from_logs = |guard: Node| Source {
        kinds: other,
        guard,
        lookup: Lookup {
            spaced_names: true,
            elements: true,
        },
    };
    match (category, service) {
        (Some(_), Some(_)) => Err(SigmaError::Logsource(format!(
            "{} (both a category and a service)",
            describe()
        ))),
        (Some(cat), None) => {
            if let Some((_, kinds)) = TYPED.iter().find(|(c, _)| *c == cat) {
                return Ok(Source {
                    kinds: EventKinds::of(kinds),
                    guard: Node::True,
                    lookup: Lookup::default(),
                });
            }
            if let Some((_, ids)) = SYSMON_OTHER.iter().find(|(c, _)| *c == cat) {
                return Ok(Source {
                    lookup: Lookup::default(),
                    ..from_logs(Node::And(vec![
                        equals("Provider", rulebox_runtime::events::SYSMON_PROVIDER),
                        event_ids(ids),
                    ]))
                });
            }
            if let Some((_, channel, ids)) = LOG_CATEGORIES.iter().find(|(c, ..)| *c == cat) {
                return Ok(from_logs(Node::And(vec![
                    equals("Channel", channel),
                    event_ids(ids),
                ])));
            }
            if let Some((_, provider)) = PROVIDER_CATEGORIES.iter().find(|(c, _)| *c == cat) {
                return Ok(from_logs(equals("Provider", provider)));
            }
            Err(SigmaError::Logsource(describe()))
        }
        (None, Some(svc)) => {
            let Some((_, channels)) = SERVICES.iter().find(|(s, _)| *s == svc) else {
                return Err(SigmaError::Logsource(describe()));
            };
            let channel = Node::any(channels.iter().map(|c| equals("Channel", c)).collect());
            if svc == "sysmon" {
                // Sysmon events with a typed kind carry no channel; the others do.
                let typed = EventKinds(EventKinds::all().0 & !other.0);
                return Ok(Source {
                    kinds: EventKinds::all(),
                    guard: Node::Or(vec![Node::Kind(typed), channel]),
                    lookup: Lookup::default(),
                });
            }
            Ok(from_logs(channel))
        }
        // Any Windows event.
        (None, None) => Ok(Source {
            kinds: EventKinds::all(),
            guard: Node::True,
            lookup: Lookup {
                spaced_names: true,
                elements: true,
            },
        }),
    }
}

/// A Sigma `logsource` an event belongs to, with `product: windows`: a `category` or a `service`
/// (never both, as Sigma's Windows rules write them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// A `category` (`process_creation`, `ps_script`, `driver_load`, ...).
    Category(&'static str),
    /// A `service` (`security`, `sysmon`, ...).
    Service(&'static str),
}

/// Every `logsource` whose rules [`map`] gives `event` to: the inverse of [`map`], from the same
/// tables, for routing an event to another engine's rules by logsource (rules with only
/// `product: windows` take every event and are not listed). A typed event's categories (a registry
/// set is `registry_set` and `registry_event`) and `service: sysmon`; an event of kind `other` by
/// its `Provider`, `Channel` and `EventID`, compared as the guards compare them (ignoring case).
pub fn event_sources(event: &rulebox_sdk::Event<'_>) -> Vec<EventSource> {
    let kind = event.kind();
    if kind != EventKind::Other {
        let mut out: Vec<EventSource> = TYPED
            .iter()
            .filter(|(_, kinds)| kinds.contains(&kind))
            .map(|(c, _)| EventSource::Category(c))
            .collect();
        out.push(EventSource::Service("sysmon"));
        return out;
    }
    let text = |name: &str| {
        event
            .field(name)
            .map(|v| match v {
                rulebox_sdk::Value::Str(s) => s.to_owned(),
                rulebox_sdk::Value::Int(n) => n.to_string(),
                rulebox_sdk::Value::Bool(b) => b.to_string(),
            })
            .unwrap_or_default()
    };
    let (provider, channel, id) = (text("Provider"), text("Channel"), text("EventID"));
    let is_id = |ids: &[u32]| ids.iter().any(|i| i.to_string() == id);
    let mut out = Vec::new();
    if provider.eq_ignore_ascii_case(rulebox_runtime::events::SYSMON_PROVIDER) {
        out.extend(
            SYSMON_OTHER
                .iter()
                .filter(|(_, ids)| is_id(ids))
                .map(|(c, _)| EventSource::Category(c)),
        );
    }
    out.extend(
        LOG_CATEGORIES
            .iter()
            .filter(|(_, ch, ids)| ch.eq_ignore_ascii_case(&channel) && is_id(ids))
            .map(|(c, ..)| EventSource::Category(c)),
    );
    out.extend(
        PROVIDER_CATEGORIES
            .iter()
            .filter(|(_, p)| p.eq_ignore_ascii_case(&provider))
            .map(|(c, _)| EventSource::Category(c)),
    );
    out.extend(
        SERVICES
            .iter()
            .filter(|(_, chs)| chs.iter().any(|c| c.eq_ignore_ascii_case(&channel)))
            .map(|(s, _)| EventSource::Service(s)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule of `logsource` that matches any event its logsource admits (a test of a field no
    /// event has, negated), natively: whether it matches `event`.
    fn admits(logsource: &str, event: &rulebox_sdk::Event<'_>) -> bool {
        let rule = format!(
            "title: t\nid: t\nlogsource: {{product: windows, {logsource}}}\ndetection:\n    sel:\n        NoSuchField: x\n    condition: not sel\n"
        );
        let p = crate::compile(&rule).unwrap();
        let kinds = p.kinds;
        kinds.contains(event.kind()) && crate::Evaluator::new(p).unwrap().matches_event(event)
    }

    fn other(provider: &str, channel: &str, id: u32) -> rulebox_sdk::Event<'static> {
        let mut e = rulebox_sdk::Event::new(rulebox_sdk::EventData::Other(Default::default()));
        for (name, value) in [
            ("Provider", provider.to_owned()),
            ("Channel", channel.to_owned()),
            ("EventID", id.to_string()),
        ] {
            e.extra.push(rulebox_sdk::Field {
                name: name.into(),
                value: value.into(),
            });
        }
        e
    }

    fn logsource_of(s: EventSource) -> String {
        match s {
            EventSource::Category(c) => format!("category: {c}"),
            EventSource::Service(s) => format!("service: {s}"),
        }
    }

    #[test]
    fn event_sources_are_exactly_the_logsources_whose_rules_take_the_event() {
        // One event per table entry, and every logsource of every table: the event's sources
        // are the logsources whose compiled rule (kinds and guard) takes it, no more, no fewer.
        let mut events: Vec<rulebox_sdk::Event<'static>> = EventKind::ALL
            .iter()
            .filter(|k| **k != EventKind::Other)
            .map(|k| rulebox_sdk::Event::new(rulebox_sdk::EventData::empty(*k)))
            .collect();
        let sysmon = rulebox_runtime::events::SYSMON_PROVIDER;
        let sysmon_channel = "Microsoft-Windows-Sysmon/Operational";
        for (_, ids) in SYSMON_OTHER {
            events.extend(ids.iter().map(|id| other(sysmon, sysmon_channel, *id)));
        }
        for (_, channel, ids) in LOG_CATEGORIES {
            events.extend(ids.iter().map(|id| other("Some-Provider", channel, *id)));
        }
        for (_, provider) in PROVIDER_CATEGORIES {
            events.push(other(provider, "Some/Channel", 12));
        }
        for (_, channels) in SERVICES {
            events.extend(channels.iter().map(|c| other("Some-Provider", c, 1)));
        }
        // Case as a source may spell it, and an event of no logsource.
        events.push(other("microsoft-windows-sysmon", "SECURITY", 8));
        events.push(other("Nobody", "Nowhere", 1));
        let mut all: Vec<EventSource> = TYPED
            .iter()
            .map(|(c, _)| EventSource::Category(c))
            .collect();
        all.extend(SYSMON_OTHER.iter().map(|(c, _)| EventSource::Category(c)));
        all.extend(
            LOG_CATEGORIES
                .iter()
                .map(|(c, ..)| EventSource::Category(c)),
        );
        all.extend(
            PROVIDER_CATEGORIES
                .iter()
                .map(|(c, _)| EventSource::Category(c)),
        );
        all.extend(SERVICES.iter().map(|(s, _)| EventSource::Service(s)));
        for event in &events {
            let got = event_sources(event);
            for s in &all {
                assert_eq!(
                    got.contains(s),
                    admits(&logsource_of(*s), event),
                    "{s:?} on {event:?}"
                );
            }
        }
        let sources = event_sources(&other("microsoft-windows-sysmon", "SECURITY", 8));
        assert!(sources.contains(&EventSource::Category("create_remote_thread")));
        assert!(sources.contains(&EventSource::Service("security")));
        assert!(event_sources(&other("Nobody", "Nowhere", 1)).is_empty());
    }

    #[test]
    fn categories_services_and_refusals() {
        let s = map(Some("windows"), Some("process_creation"), None).unwrap();
        assert_eq!(s.kinds, EventKinds::of(&[EventKind::ProcessStart]));
        assert_eq!(s.guard, Node::True);
        let s = map(Some("windows"), None, Some("security")).unwrap();
        assert_eq!(s.kinds, EventKinds::of(&[EventKind::Other]));
        assert_eq!(s.guard, equals("Channel", "Security"));
        assert!(s.lookup.spaced_names);
        let s = map(Some("windows"), Some("create_remote_thread"), None).unwrap();
        assert_eq!(s.kinds, EventKinds::of(&[EventKind::Other]));
        let s = map(Some("windows"), Some("ps_script"), None).unwrap();
        assert_eq!(
            s.guard,
            Node::And(vec![
                equals("Channel", POWERSHELL),
                equals("EventID", "4104")
            ])
        );
        let s = map(Some("windows"), None, Some("applocker")).unwrap();
        assert!(matches!(s.guard, Node::Or(v) if v.len() == 4));
        let s = map(Some("windows"), None, None).unwrap();
        assert_eq!(s.kinds, EventKinds::all());
        let e = map(Some("linux"), Some("process_creation"), None).unwrap_err();
        assert!(e.to_string().contains("product: linux"), "{e}");
        let e = map(Some("windows"), Some("webserver"), None).unwrap_err();
        assert!(e.to_string().contains("category: webserver"), "{e}");
        let e = map(Some("windows"), None, Some("nope")).unwrap_err();
        assert!(e.to_string().contains("service: nope"), "{e}");
    }
}
