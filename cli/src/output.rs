//! The output stream: detections and alerts as JSON lines, and quarantine records on disk.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rulebox_runtime::{Alert, QuarantineRecord, RuleDetection};
use rulebox_sdk::Event;
use serde_json::{Map, Value, json};

/// Where an event came from, for output lines.
pub fn event_ref(event: &Event<'_>, line: usize) -> Value {
    json!({
        "line": line,
        "kind": event.kind().name(),
        "host": event.host,
        "pid": event.pid,
        "timestamp": event.timestamp,
    })
}

/// A detection as one JSON object.
pub fn detection(d: &RuleDetection, event: &Value) -> Value {
    let fields: Map<String, Value> = d
        .detection
        .fields
        .iter()
        .map(|f| (f.name.to_string(), Value::String(f.value.to_string())))
        .collect();
    json!({
        "type": "detection",
        "rule_id": d.rule.id,
        "rule_version": d.rule.version,
        "title": d.detection.title,
        "severity": d.detection.severity.name(),
        "fields": fields,
        "event": event,
    })
}

/// An alert as one JSON object. `record_path` is where the quarantine record was written, if it was.
pub fn alert(a: &Alert, event: &Value, record_path: Option<&Path>) -> Value {
    match a {
        Alert::RuleQuarantined(r) => json!({
            "type": "alert",
            "alert": "rule_quarantined",
            "severity": "high",
            "rule_id": r.rule_id,
            "rule_version": r.rule_version,
            "content_hash": r.content_hash,
            "reason": r.reason.name(),
            "message": r.message,
            "record": record_path.map(|p| p.display().to_string()),
            "event": event,
            "triggering_event": r.event_json,
            // A rule of a pack, or (no rule index) the pack itself, with all its rules.
            "pack": r.pack.as_ref().map(|p| json!({
                "id": p.id, "version": p.version, "rule_index": p.rule_index,
                "rules": p.rules, "data_hash": p.data_hash,
            })),
        }),
        Alert::PackStrike {
            pack,
            fault,
            strike,
            allowed,
            rules_missed,
        } => json!({
            "type": "alert",
            "alert": "pack_strike",
            "severity": "medium",
            "pack_id": pack.id,
            "pack_version": pack.version,
            "content_hash": pack.content_hash,
            "reason": fault.reason.name(),
            "message": fault.message,
            "strike": strike,
            "allowed": allowed,
            "rules_missed": rules_missed,
            "event": event,
        }),
        Alert::BudgetStrike {
            rule,
            fault,
            strike,
            allowed,
        } => json!({
            "type": "alert",
            "alert": "budget_strike",
            "severity": "medium",
            "rule_id": rule.id,
            "rule_version": rule.version,
            "content_hash": rule.content_hash,
            "reason": fault.reason.name(),
            "message": fault.message,
            "strike": strike,
            "allowed": allowed,
            "event": event,
        }),
        Alert::PreviousVersionRestored {
            quarantined,
            restored,
        } => json!({
            "type": "alert",
            "alert": "previous_version_restored",
            "severity": "high",
            "rule_id": restored.id,
            "rule_version": restored.version,
            "quarantined_version": quarantined.rule_version,
            "reason": quarantined.reason.name(),
            "message": quarantined.message,
            "event": event,
        }),
        _ => json!({ "type": "alert", "alert": "unknown", "event": event }),
    }
}

/// Writes one JSON value as a line.
pub fn line(out: &mut impl Write, value: &Value) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes `record` into `dir` as `<stem>.json` (temp file, fsync, rename), never overwriting an
/// existing record. Returns the path.
pub fn write_record(dir: &Path, record: &QuarantineRecord) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stem = record.file_stem();
    let mut path = dir.join(format!("{stem}.json"));
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = dir.join(format!("{stem}-{n}.json"));
    }
    let tmp = dir.join(format!(".{stem}-{n}.json.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        serde_json::to_writer_pretty(&mut file, record)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot move record into {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}
