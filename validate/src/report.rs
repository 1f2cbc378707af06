//! The validation report: per rule verdict, detections, fuel and memory profile; bound to a bundle's
//! manifest hash; and the check the signing step makes.

use std::path::{Path, PathBuf};

use rulebox_runtime::content::{
    KeyEntry, Manifest, RUNTIME_VERSION, Root, Signable, Signed, key_id, manifest_hash,
    verify_envelope, write_atomic,
};
use serde::{Deserialize, Serialize};

use crate::bundle::read_capped;
use crate::error::{GateError, ValidateError};

/// The report format written by this version ([`Report::format`]). Format 2 lists every fault of a
/// rule ([`RuleReport::faults`], [`RuleReport::fault_count`]), not only the first.
pub const REPORT_FORMAT: u32 = 2;

/// Largest report file read back, in bytes.
const MAX_REPORT_BYTES: u64 = 64 << 20;

/// Domain-separation context prefixed to a report's canonical bytes before a gate key signs it.
pub const CONTEXT_VALIDATION: &[u8] = b"rulebox-validation-v1\0";

/// What was validated, how, and the verdict. Holds no timings or absolute paths of the validating
/// machine, so the same build validating the same content writes the same report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Report format ([`REPORT_FORMAT`]).
    pub format: u32,
    /// The `rulebox-runtime` version that ran the rules (the validator is that runtime).
    pub runtime_version: String,
    /// The guest ABI version of that runtime.
    pub abi_version: u32,
    /// What was validated.
    pub target: TargetInfo,
    /// The settings that shaped the run.
    pub settings: Settings,
    /// Whether the recorded corpus was used.
    pub corpus: CorpusInfo,
    /// Problems with the content as a whole (declared versions this validator cannot check, no
    /// rules, ...). Any problem fails the report.
    pub problems: Vec<String>,
    /// One entry per rule and event-schema version.
    pub rules: Vec<RuleReport>,
    /// `true` when there are rules, no problems, and every rule passed.
    pub passed: bool,
}

/// What a report is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetInfo {
    /// `"bundle"` or `"modules"` (loose module files).
    pub kind: String,
    /// The bundle's release number.
    pub release: Option<u64>,
    /// The bundle's canonical manifest hash: the report is bound to it.
    pub manifest_hash: Option<String>,
    /// The event-schema versions the content declares (for loose modules: the runtime's).
    pub schema_versions: Vec<u32>,
    /// The oldest runtime the bundle declares it runs on.
    pub min_runtime: Option<String>,
}

/// The settings of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// A rule fails if its worst event uses more than this percentage of its fuel or memory budget.
    pub headroom_percent: u32,
    /// Seed of the event generator.
    pub seed: u64,
    /// Generated events per subscribed event kind.
    pub generated_per_kind: u32,
    /// The runtime's cap on an encoded event, used by the boundary events.
    pub max_event_bytes: u64,
    /// The runtime's cap on untyped fields, used by the boundary events.
    pub max_event_fields: u64,
}

/// The recorded corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusInfo {
    /// Whether corpus events were run.
    pub used: bool,
    /// Events read from it.
    pub events: u64,
    /// Records that did not read as events (each is named in `notes`).
    pub unreadable: u64,
    /// Where it was, or why it was skipped, in words.
    pub note: String,
}

/// The verdict and profile of one rule under one event-schema version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleReport {
    /// Where the module came from (the manifest's file, or the name given).
    pub source: String,
    /// SHA-256 of the module, hex.
    pub content_hash: String,
    /// The rule id the module reports (`None` if it did not load).
    pub rule_id: Option<String>,
    /// The rule version the module reports.
    pub version: Option<String>,
    /// The event-schema version the events were encoded in.
    pub schema_version: u32,
    /// The event kinds the rule subscribes to.
    pub subscriptions: Vec<String>,
    /// `true` when `failures` is empty.
    pub passed: bool,
    /// Why the rule failed, one reason a line.
    pub failures: Vec<String>,
    /// Remarks that do not fail the rule (for example: no test cases).
    pub notes: Vec<String>,
    /// Events the rule was called for, by source.
    pub events: EventCounts,
    /// Detections, by source.
    pub detections: EventCounts,
    /// The rule's own test cases.
    pub tests: TestSummary,
    /// Fuel per event.
    pub fuel: FuelProfile,
    /// Memory.
    pub memory: MemoryProfile,
    /// The first fault (trap, budget, bad result), with the event that caused it.
    pub fault: Option<FaultSummary>,
    /// Every fault, in the order found, up to [`MAX_LISTED_FAULTS`](crate::MAX_LISTED_FAULTS):
    /// after a fault the rule is loaded again and the run goes on, so each event is run. (Absent
    /// from format 1 reports, which are read so that the gate can refuse them by their format.)
    #[serde(default)]
    pub faults: Vec<FaultSummary>,
    /// How many faults in all (the list above may be cut).
    #[serde(default)]
    pub fault_count: u64,
}

/// Counts by event source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventCounts {
    /// From the rule's test cases.
    pub tests: u64,
    /// From the recorded corpus.
    pub corpus: u64,
    /// Generated.
    pub generated: u64,
    /// Boundary events.
    pub boundary: u64,
}

impl EventCounts {
    /// The sum over all sources.
    pub fn total(&self) -> u64 {
        self.tests + self.corpus + self.generated + self.boundary
    }
}

/// Test case results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSummary {
    /// Cases run.
    pub cases: u64,
    /// Cases passed.
    pub passed: u64,
    /// The failed cases.
    pub failed: Vec<CaseFailure>,
}

/// One failed test case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFailure {
    /// `<file name>: <case name>`.
    pub case: String,
    /// What differed.
    pub problem: String,
}

/// Fuel used per event (deterministic: fuel counts WebAssembly instructions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuelProfile {
    /// The rule's fuel budget per event.
    pub budget: u64,
    /// Median over the events the rule ran on.
    pub p50: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// The most any event used.
    pub max: u64,
    /// The event that used the most.
    pub worst_event: String,
}

/// Memory use against the budget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryProfile {
    /// The rule's memory budget in bytes.
    pub budget: u64,
    /// The largest linear memory the rule had, in bytes.
    pub high_water: u64,
}

/// A fault, in short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSummary {
    /// The typed reason (`out_of_bounds`, `out_of_fuel`, ...).
    pub reason: String,
    /// The trap or error message.
    pub message: String,
    /// The event that caused it (`generated process_start #3`, a test case, a corpus file).
    pub event: String,
}

impl Signable for Report {
    const CONTEXT: &'static [u8] = CONTEXT_VALIDATION;
}

impl Report {
    /// One line per failing rule or problem, for messages.
    pub fn failure_summary(&self) -> String {
        let mut lines: Vec<String> = self.problems.clone();
        for r in self.rules.iter().filter(|r| !r.passed) {
            let name = r.rule_id.as_deref().unwrap_or(&r.source);
            lines.push(format!(
                "{name} (schema {}): {}",
                r.schema_version,
                r.failures.join("; ")
            ));
        }
        if self.rules.is_empty() && lines.is_empty() {
            lines.push("no rules".to_owned());
        }
        lines.join(" | ")
    }
}

/// Where the report of the bundle in `bundle_dir` with manifest hash `manifest_hash` lives: beside
/// the folder (a bundle folder holds only its manifest and modules), named after the folder and
/// the first 16 hex digits of the hash: `release-42.validation-0123456789abcdef.json`. A report of
/// earlier content of the same folder has another name, so it is never taken for this one.
pub fn report_path(bundle_dir: &Path, manifest_hash: &str) -> Result<PathBuf, ValidateError> {
    let full = std::fs::canonicalize(bundle_dir).map_err(|error| ValidateError::Io {
        path: bundle_dir.to_path_buf(),
        error,
    })?;
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| ValidateError::Bundle {
            path: bundle_dir.to_path_buf(),
            problem: "has no folder name".to_owned(),
        })?;
    let short: String = manifest_hash.chars().take(16).collect();
    let parent = full.parent().unwrap_or(Path::new("/"));
    Ok(parent.join(format!("{name}.validation-{short}.json")))
}

/// Writes `report` as pretty JSON to `path` (atomically): the report for people (`--report`).
pub fn write_report(path: &Path, report: &Report) -> Result<(), ValidateError> {
    write_json(path, report)
}

/// Writes the attested report (the report with the gate keys' signatures, [`Signed`]) to `path`
/// (atomically): what lies beside a bundle at [`report_path`] and what [`check_gate`] reads.
pub fn write_attested_report(path: &Path, attested: &Signed<Report>) -> Result<(), ValidateError> {
    write_json(path, attested)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ValidateError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(ValidateError::Encode)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(|error| ValidateError::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// Reads a report file written by [`write_report`].
pub fn read_report(path: &Path) -> Result<Report, ValidateError> {
    read_json(path)
}

/// Reads an attested report written by [`write_attested_report`].
pub fn read_attested_report(path: &Path) -> Result<Signed<Report>, ValidateError> {
    read_json(path)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ValidateError> {
    let bytes = read_capped(path, MAX_REPORT_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|error| ValidateError::Json {
        path: path.to_path_buf(),
        error,
    })
}

/// The gate keys a signer trusts, as the key set [`verify_envelope`] checks against (any one of
/// them suffices). Refused if a key is not a valid ed25519 public key.
pub fn gate_key_set(keys: &[KeyEntry]) -> Result<Root, GateError> {
    let root = Root {
        version: 1,
        expires_unix: 0,
        keys: keys
            .iter()
            .filter_map(|k| {
                let bytes: [u8; 32] = hex::decode(&k.public).ok()?.try_into().ok()?;
                Some((key_id(&bytes), k.clone()))
            })
            .collect(),
        threshold: 1,
        release_counter: None,
        roles: Default::default(),
    };
    if root.keys.len() != keys.len() {
        return Err(GateError::NoGateKey {
            problem: "a gate key is not 32 bytes of hex".to_owned(),
        });
    }
    root.verifying_keys()
        .map_err(|problem| GateError::NoGateKey { problem })?;
    Ok(root)
}

/// The signing gate: succeeds only if the attested report for the bundle in `bundle_dir` with
/// `manifest` (at [`report_path`]) exists, is signed by one of `gate_keys` (over its canonical
/// bytes: a report edited after it was signed, "passed" set by hand, fails), is bound to the
/// manifest's hash, was made by this runtime version, covers every module under every declared
/// event-schema version, and passed. Returns the report.
pub fn check_gate(
    bundle_dir: &Path,
    manifest: &Manifest,
    gate_keys: &[KeyEntry],
) -> Result<Report, GateError> {
    let manifest_hash =
        manifest_hash(manifest).map_err(|e| GateError::Unreadable(ValidateError::Encode(e)))?;
    let manifest_hash = manifest_hash.as_str();
    let path = report_path(bundle_dir, manifest_hash).map_err(GateError::Unreadable)?;
    if !path.exists() {
        return Err(GateError::Missing {
            path,
            bundle: bundle_dir.to_path_buf(),
        });
    }
    let attested = read_attested_report(&path).map_err(GateError::Unreadable)?;
    let signers = gate_key_set(gate_keys)?;
    if attested.signatures.is_empty() {
        return Err(GateError::Unsigned { path });
    }
    verify_envelope(&attested, &signers).map_err(|error| GateError::NotAttested {
        path: path.clone(),
        error,
    })?;
    let report = attested.signed;
    let found = report.target.manifest_hash.clone().unwrap_or_default();
    if report.target.kind != "bundle" || found != manifest_hash {
        return Err(GateError::WrongHash {
            path,
            found,
            expected: manifest_hash.to_owned(),
        });
    }
    if report.runtime_version != RUNTIME_VERSION {
        return Err(GateError::OtherRuntime {
            path,
            found: report.runtime_version,
            ours: RUNTIME_VERSION.to_owned(),
        });
    }
    if report.format != REPORT_FORMAT {
        return Err(GateError::OtherFormat {
            path,
            found: report.format,
            ours: REPORT_FORMAT,
        });
    }
    for entry in &manifest.rules {
        for version in &manifest.schema_versions {
            let covered = report
                .rules
                .iter()
                .any(|r| r.content_hash == entry.sha256 && r.schema_version == *version);
            if !covered {
                return Err(GateError::Failed {
                    summary: format!(
                        "rule `{}` was not validated under event-schema version {version}",
                        entry.id
                    ),
                    path,
                });
            }
        }
    }
    // Every rule of every pack, by its id and version in its engine.
    for pack in &manifest.packs {
        for rule in &pack.rules {
            for version in &manifest.schema_versions {
                let covered = report.rules.iter().any(|r| {
                    r.content_hash == pack.engine
                        && r.rule_id.as_deref() == Some(rule.id.as_str())
                        && r.version.as_deref() == Some(rule.version.as_str())
                        && r.schema_version == *version
                });
                if !covered {
                    return Err(GateError::Failed {
                        summary: format!(
                            "rule `{}` of pack `{}` was not validated under event-schema version {version}",
                            rule.id.escape_debug(),
                            pack.id.escape_debug()
                        ),
                        path,
                    });
                }
            }
        }
    }
    // Recomputed rather than trusting the stored flag alone.
    let passed = report.passed
        && report.problems.is_empty()
        && !report.rules.is_empty()
        && report
            .rules
            .iter()
            .all(|r| r.passed && r.failures.is_empty());
    if !passed {
        return Err(GateError::Failed {
            summary: report.failure_summary(),
            path,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report written before faults were listed still reads (so the gate can name its format).
    #[test]
    fn a_format_1_report_reads_and_says_its_format() {
        let golden = include_str!("../../tests/golden/validate-examples.json");
        let mut value: serde_json::Value = serde_json::from_str(golden).unwrap();
        value["format"] = 1.into();
        for rule in value["rules"].as_array_mut().unwrap() {
            let rule = rule.as_object_mut().unwrap();
            rule.remove("faults");
            rule.remove("fault_count");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.json");
        std::fs::write(&path, value.to_string()).unwrap();
        let report = read_report(&path).unwrap();
        assert_eq!(report.format, 1);
        assert!(report.rules.iter().all(|r| r.faults.is_empty()));
    }
}
