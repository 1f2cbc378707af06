//! [`Alert`]: what an operator must know about, each with its severity. A rule silenced, an update
//! refused, content expired, input refused or dropped: none of it is ever silent.

use std::sync::Arc;

use rulebox_runtime::content::ReleaseName;
use rulebox_runtime::text::Escaped;
use rulebox_runtime::{DeclaredRule, ManifestMismatch, QuarantineRecord, Reason, RuleInfo};
use serde::Serialize;

use crate::event::EventRef;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum AlertSeverity {
    /// Input or a transport had trouble; detection goes on.
    Low,
    /// A rule is degraded but running, or input was refused.
    Medium,
    /// A rule or some content does not run as shipped.
    High,
    /// The host runs other content than it should: a release was abandoned.
    Critical,
}

impl AlertSeverity {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            AlertSeverity::Low => "low",
            AlertSeverity::Medium => "medium",
            AlertSeverity::High => "high",
            AlertSeverity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for AlertSeverity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An alert. In JSON: `"type": "alert"`, `"alert"`: the variant's snake_case name, `"severity"`,
/// then the variant's fields (`docs/agent.md`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "alert", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Alert {
    /// A rule faulted on an event and was quarantined; it does not run again on this host until a
    /// new version of it arrives.
    RuleQuarantined {
        /// The rule id.
        rule_id: String,
        /// The rule version.
        rule_version: String,
        /// SHA-256 of the module.
        content_hash: String,
        /// Why.
        reason: Reason,
        /// The trap or error message (from content: escaped when shown).
        message: String,
        /// The event that triggered it.
        event: EventRef,
        /// The triggering event in full, as JSON.
        triggering_event: Option<serde_json::Value>,
    },
    /// A rule hit its fuel or time budget on an event and was reset; it keeps running until its
    /// strike allowance is used up.
    BudgetStrike {
        /// The rule id.
        rule_id: String,
        /// The rule version.
        rule_version: String,
        /// SHA-256 of the module.
        content_hash: String,
        /// Which budget.
        reason: Reason,
        /// The message.
        message: String,
        /// Strikes used, this one included.
        strike: u32,
        /// Strikes allowed before quarantine.
        allowed: u32,
        /// The event.
        event: EventRef,
    },
    /// A new version of a rule was quarantined and the version it replaced runs again.
    PreviousVersionRestored {
        /// The rule id.
        rule_id: String,
        /// The version running again.
        rule_version: String,
        /// The quarantined version.
        quarantined_version: String,
        /// Why it was quarantined.
        reason: Reason,
        /// The message.
        message: String,
        /// The event.
        event: EventRef,
    },
    /// A module of the content being activated did not load; the version of that rule already
    /// running, if any, keeps running.
    RuleRefused {
        /// The release (`null`: the baseline content).
        release: Option<u64>,
        /// The rule id, if the module's metadata could be read.
        rule_id: String,
        /// The rule version, if known.
        rule_version: String,
        /// SHA-256 of the module.
        content_hash: String,
        /// Why.
        reason: Reason,
        /// The message.
        message: String,
    },
    /// A module is not the rule its signed manifest entry declares: not loaded.
    ManifestMismatch {
        /// The release.
        release: Option<u64>,
        /// The rule id the manifest declares.
        rule_id: String,
        /// The rule version the manifest declares.
        rule_version: String,
        /// The rule id the module reports.
        module_rule_id: String,
        /// The rule version the module reports.
        module_rule_version: String,
        /// SHA-256 of the module.
        content_hash: String,
    },
    /// A module of the release does not compile or fails the ABI checks: not loaded.
    ModuleUnreadable {
        /// The release.
        release: Option<u64>,
        /// The rule id its manifest entry declares.
        rule_id: String,
        /// The rule version its manifest entry declares.
        rule_version: String,
        /// Why.
        reason: Reason,
        /// The error.
        message: String,
    },
    /// An event was refused before reaching any rule (over the runtime's caps, or not encodable).
    EventRefused {
        /// Why.
        error: String,
        /// The event.
        event: EventRef,
    },
    /// A record of an event source could not be read as an event; reading went on with the next.
    EventUnreadable {
        /// The source.
        source: String,
        /// The line the record starts on.
        line: u64,
        /// What was wrong.
        error: String,
    },
    /// Events offered with [`EventSender::try_send`](crate::EventSender::try_send) while the queue
    /// was full were dropped.
    EventsDropped {
        /// Dropped since the last such alert.
        dropped: u64,
        /// Dropped since the agent started.
        total: u64,
    },
    /// The running release's manifest has expired. It keeps running (stopping detection would be
    /// worse) until a newer release arrives.
    ContentExpired {
        /// The release.
        release: u64,
        /// When its manifest expired, seconds since the Unix epoch.
        expires_unix: u64,
    },
    /// The boot guard abandoned a release: the host runs its last-known-good release or the
    /// baseline content.
    ReleaseAbandoned {
        /// The release abandoned.
        from: u64,
        /// The release now running (`null`: the baseline content).
        to: Option<u64>,
        /// Why.
        reason: String,
        /// The report written in the store.
        report: Option<String>,
    },
    /// A delivered bundle was refused; the running content keeps running.
    UpdateRefused {
        /// The inbox entry's name.
        bundle: String,
        /// Why.
        error: String,
        /// The report written in the store, if it could be written.
        report: Option<String>,
        /// What kind of refusal (`policy`: the owner's policy; `signature`, `expired`, `hash`,
        /// `too_large`: the bundle), as a `fetch_failed` or `refused` report names it.
        class: rulebox_controlplane_proto::FetchFailureClass,
    },
    /// A delivered signed revert was refused; nothing changed.
    RevertRefused {
        /// The inbox entry's name.
        file: String,
        /// Why.
        error: String,
    },
    /// A peer of the event socket was refused.
    PeerRefused {
        /// The socket.
        socket: String,
        /// The peer's user id (`null` if it could not be read).
        uid: Option<u32>,
        /// The peer's group id.
        gid: Option<u32>,
        /// The peer's process id.
        pid: Option<i32>,
        /// Why.
        reason: String,
    },
    /// An event source failed (it stopped delivering events).
    SourceFailed {
        /// The source.
        source: String,
        /// The error.
        error: String,
    },
    /// The content store cannot be opened (another process holds its lock, it is not initialised,
    /// another user could change it, its files are damaged or the disk fails): the agent runs its
    /// baseline content, tries again every few seconds, and runs the store's content once it can.
    StoreUnavailable {
        /// The store folder.
        store: String,
        /// Why.
        error: String,
    },
    /// A write to the content store failed (a quarantine, a GOOD record, a report, the inbox, an
    /// install): the agent goes on with the content it can run and tries again.
    StoreFailed {
        /// What the agent was doing.
        operation: String,
        /// The error.
        error: String,
    },
    /// The content transport failed; the agent goes on with the content it has.
    TransportFailed {
        /// The error.
        error: String,
    },
}

impl Alert {
    /// How urgent it is.
    pub fn severity(&self) -> AlertSeverity {
        match self {
            Alert::ReleaseAbandoned { .. } | Alert::StoreUnavailable { .. } => {
                AlertSeverity::Critical
            }
            Alert::RuleQuarantined { .. }
            | Alert::PreviousVersionRestored { .. }
            | Alert::RuleRefused { .. }
            | Alert::ManifestMismatch { .. }
            | Alert::ModuleUnreadable { .. }
            | Alert::EventsDropped { .. }
            | Alert::ContentExpired { .. }
            | Alert::UpdateRefused { .. }
            | Alert::RevertRefused { .. }
            | Alert::PeerRefused { .. }
            | Alert::SourceFailed { .. }
            | Alert::StoreFailed { .. } => AlertSeverity::High,
            Alert::BudgetStrike { .. } | Alert::EventRefused { .. } => AlertSeverity::Medium,
            Alert::EventUnreadable { .. } | Alert::TransportFailed { .. } => AlertSeverity::Low,
        }
    }

    /// The snake_case name (`"update_refused"`), as in the JSON form.
    pub fn name(&self) -> &'static str {
        match self {
            Alert::RuleQuarantined { .. } => "rule_quarantined",
            Alert::BudgetStrike { .. } => "budget_strike",
            Alert::PreviousVersionRestored { .. } => "previous_version_restored",
            Alert::RuleRefused { .. } => "rule_refused",
            Alert::ManifestMismatch { .. } => "manifest_mismatch",
            Alert::ModuleUnreadable { .. } => "module_unreadable",
            Alert::EventRefused { .. } => "event_refused",
            Alert::EventUnreadable { .. } => "event_unreadable",
            Alert::EventsDropped { .. } => "events_dropped",
            Alert::ContentExpired { .. } => "content_expired",
            Alert::ReleaseAbandoned { .. } => "release_abandoned",
            Alert::UpdateRefused { .. } => "update_refused",
            Alert::RevertRefused { .. } => "revert_refused",
            Alert::PeerRefused { .. } => "peer_refused",
            Alert::SourceFailed { .. } => "source_failed",
            Alert::StoreUnavailable { .. } => "store_unavailable",
            Alert::StoreFailed { .. } => "store_failed",
            Alert::TransportFailed { .. } => "transport_failed",
        }
    }

    /// A run-time quarantine.
    pub(crate) fn quarantined(record: &QuarantineRecord, event: EventRef) -> Alert {
        Alert::RuleQuarantined {
            rule_id: record.rule_id.clone(),
            rule_version: record.rule_version.clone(),
            content_hash: record.content_hash.clone(),
            reason: record.reason,
            message: record.message.clone(),
            event,
            triggering_event: record.event_json.clone(),
        }
    }

    /// A module refused at activation.
    pub(crate) fn refused(release: Option<u64>, record: &QuarantineRecord) -> Alert {
        Alert::RuleRefused {
            release,
            rule_id: record.rule_id.clone(),
            rule_version: record.rule_version.clone(),
            content_hash: record.content_hash.clone(),
            reason: record.reason,
            message: record.message.clone(),
        }
    }

    /// A module that is not what its manifest entry declares.
    pub(crate) fn mismatch(release: Option<u64>, m: &ManifestMismatch) -> Alert {
        Alert::ManifestMismatch {
            release,
            rule_id: m.declared.id.clone(),
            rule_version: m.declared.version.clone(),
            module_rule_id: m.found_id.clone(),
            module_rule_version: m.found_version.clone(),
            content_hash: m.content_hash.clone(),
        }
    }

    /// A module that does not compile.
    pub(crate) fn unreadable_module(
        release: Option<u64>,
        rule: &DeclaredRule,
        reason: Reason,
        message: &str,
    ) -> Alert {
        Alert::ModuleUnreadable {
            release,
            rule_id: rule.id.clone(),
            rule_version: rule.version.clone(),
            reason,
            message: message.to_owned(),
        }
    }

    /// A budget strike.
    pub(crate) fn strike(
        rule: &Arc<RuleInfo>,
        fault: &rulebox_runtime::Fault,
        strike: u32,
        allowed: u32,
        event: EventRef,
    ) -> Alert {
        Alert::BudgetStrike {
            rule_id: rule.id.clone(),
            rule_version: rule.version.clone(),
            content_hash: rule.content_hash.clone(),
            reason: fault.reason,
            message: fault.message.clone(),
            strike,
            allowed,
            event,
        }
    }
}

impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Alert::RuleQuarantined {
                rule_id,
                rule_version,
                reason,
                message,
                event,
                ..
            } => write!(
                f,
                "rule {} {} quarantined ({reason}): {} on {event}",
                Escaped(rule_id),
                Escaped(rule_version),
                Escaped(message)
            ),
            Alert::BudgetStrike {
                rule_id,
                reason,
                strike,
                allowed,
                event,
                ..
            } => write!(
                f,
                "rule {} hit its budget ({reason}), strike {strike} of {allowed}, on {event}",
                Escaped(rule_id)
            ),
            Alert::PreviousVersionRestored {
                rule_id,
                rule_version,
                quarantined_version,
                reason,
                ..
            } => write!(
                f,
                "rule {} {} was quarantined ({reason}); version {} runs again",
                Escaped(rule_id),
                Escaped(quarantined_version),
                Escaped(rule_version)
            ),
            Alert::RuleRefused {
                release,
                rule_id,
                rule_version,
                content_hash,
                reason,
                message,
            } => {
                let who = if rule_id.is_empty() {
                    format!("module {}", content_hash.get(..12).unwrap_or(content_hash))
                } else {
                    format!("{} {}", Escaped(rule_id), Escaped(rule_version))
                };
                write!(
                    f,
                    "not loaded from {}: {who}: {reason}: {}",
                    ReleaseName(*release),
                    Escaped(message)
                )
            }
            Alert::ManifestMismatch {
                release,
                rule_id,
                rule_version,
                module_rule_id,
                module_rule_version,
                ..
            } => write!(
                f,
                "not loaded from {}: the manifest says rule `{}` {}; the module reports `{}` {}",
                ReleaseName(*release),
                Escaped(rule_id),
                Escaped(rule_version),
                Escaped(module_rule_id),
                Escaped(module_rule_version)
            ),
            Alert::ModuleUnreadable {
                release,
                rule_id,
                rule_version,
                reason,
                message,
            } => write!(
                f,
                "not loaded from {}: {} {}: {reason}: {}",
                ReleaseName(*release),
                Escaped(rule_id),
                Escaped(rule_version),
                Escaped(message)
            ),
            Alert::EventRefused { error, event } => {
                write!(f, "event refused: {} ({event})", Escaped(error))
            }
            Alert::EventUnreadable {
                source,
                line,
                error,
            } => write!(
                f,
                "unreadable event: {} line {line}: {}",
                Escaped(source),
                Escaped(error)
            ),
            Alert::EventsDropped { dropped, total } => write!(
                f,
                "{dropped} events dropped because the queue was full ({total} since start)"
            ),
            Alert::ContentExpired {
                release,
                expires_unix,
            } => write!(
                f,
                "release {release} expired at {expires_unix} (unix seconds); it keeps running until a newer release arrives"
            ),
            Alert::ReleaseAbandoned {
                from,
                to,
                reason,
                report,
            } => {
                write!(f, "release {from} abandoned ({}); ", Escaped(reason))?;
                match to {
                    Some(to) => write!(f, "running last-known-good release {to}")?,
                    None => {
                        f.write_str("no usable last-known-good: running the baseline content")?
                    }
                }
                if let Some(report) = report {
                    write!(f, "; report: {}", Escaped(report))?;
                }
                Ok(())
            }
            Alert::UpdateRefused { bundle, error, .. } => {
                write!(f, "bundle {} refused: {}", Escaped(bundle), Escaped(error))
            }
            Alert::RevertRefused { file, error } => {
                write!(f, "revert {} refused: {}", Escaped(file), Escaped(error))
            }
            Alert::PeerRefused {
                socket,
                uid,
                gid,
                pid,
                reason,
            } => {
                let id = |v: Option<String>| v.unwrap_or_else(|| "unknown".to_owned());
                write!(
                    f,
                    "connection to {} refused (uid {}, gid {}, pid {}): {}",
                    Escaped(socket),
                    id(uid.map(|v| v.to_string())),
                    id(gid.map(|v| v.to_string())),
                    id(pid.map(|v| v.to_string())),
                    Escaped(reason)
                )
            }
            Alert::SourceFailed { source, error } => {
                write!(
                    f,
                    "event source {} failed: {}",
                    Escaped(source),
                    Escaped(error)
                )
            }
            Alert::StoreUnavailable { store, error } => write!(
                f,
                "cannot open the content store {}: {}; running the baseline content and trying again",
                Escaped(store),
                Escaped(error)
            ),
            Alert::StoreFailed { operation, error } => {
                write!(f, "cannot {}: {}", Escaped(operation), Escaped(error))
            }
            Alert::TransportFailed { error } => {
                write!(f, "content transport: {}", Escaped(error))
            }
        }
    }
}
