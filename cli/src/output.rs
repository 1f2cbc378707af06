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
        "content_hash": d.rule.content_hash,
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
            "content_hash": restored.content_hash,
            "quarantined_content_hash": quarantined.content_hash,
            "quarantined_version": quarantined.rule_version,
            "reason": quarantined.reason.name(),
            "message": quarantined.message,
            "event": event,
        }),
        _ => json!({ "type": "alert", "alert": "unknown", "event": event }),
    }
}

/// The alert for a rule id several modules claim: every claimant, none loaded.
pub fn duplicate(claim: &rulebox_runtime::DuplicateClaim) -> Value {
    json!({
        "type": "alert",
        "alert": "duplicate_rule_id",
        "severity": "high",
        "rule_id": claim.id,
        "message": claim.describe(),
        "claimants": claim.claimants.iter().map(|c| json!({
            "path": c.source, "content_hash": c.content_hash, "rule_version": c.version,
        })).collect::<Vec<_>>(),
    })
}

/// Writes one JSON value as a line, every string terminal-safe (control characters escaped).
pub fn line(out: &mut impl Write, value: &Value) -> anyhow::Result<()> {
    let text = rulebox_runtime::text::to_json_line(value)?;
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes `record` into `dir` as `<stem>.json` (temp file, fsync, rename), never overwriting an
/// existing record. Returns the path.
pub fn write_record(dir: &Path, record: &QuarantineRecord) -> anyhow::Result<PathBuf> {
    let mut bytes = serde_json::to_vec_pretty(record)?;
    bytes.push(b'\n');
    write_new_file(dir, &record.file_stem(), "json", &bytes)
}

/// `text` as a safe part of a file name: ASCII letters, digits, `-` and `_` kept, anything else `_`.
pub fn file_stem_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `bytes` into `dir` (created if missing) as `<stem>.<ext>`, or `<stem>-2.<ext>` and so on
/// if that exists (never overwriting a file), through a temporary file, fsync and rename, so no
/// half-written file is ever left under the final name. Returns the path.
pub fn write_new_file(dir: &Path, stem: &str, ext: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut path = dir.join(format!("{stem}.{ext}"));
    let mut n = 1;
    while path.symlink_metadata().is_ok() {
        n += 1;
        path = dir.join(format!("{stem}-{n}.{ext}"));
    }
    let tmp = dir.join(format!(".{stem}-{n}.{ext}.tmp"));
    // A temporary file left by a crash (or a link planted there) is removed, never followed.
    let _ = std::fs::remove_file(&tmp);
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    // A hard link fails if a file appeared under that name meanwhile, where `rename` would replace
    // it; `rename` is the fallback on file systems without hard links.
    match std::fs::hard_link(&tmp, &path) {
        Ok(()) => {
            let _ = std::fs::remove_file(&tmp);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("{} appeared while writing", path.display()));
        }
        Err(_) => std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot move the file into {}", path.display()))?,
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}
