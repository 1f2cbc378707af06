//! Rule test cases: events and the detections they must (or must not) produce.
//!
//! The format, and its strict reading, is [`rulebox_cases`]'s (described in full in
//! `docs/testing.md`), the crate a rule crate also uses to run the same cases natively from its own
//! `cargo test`. This module reads them for the host: Windows event JSON (evtx_dump form) in a case
//! is read by the runtime's own reader, exactly as `rulebox run` reads it.

use std::path::{Path, PathBuf};

use rulebox_runtime::events::{ReadLimits, parse_json_value};
use rulebox_sdk::Event;

pub use rulebox_cases::{
    Case, CaseFile, CaseOutcome, Expected, MAX_CASE_FILE_BYTES, MAX_FIELD_BYTES, Seen, compare,
    parse_case_file,
};

use crate::error::ValidateError;

/// Reads one test file; Windows event JSON in it is read by the runtime's reader.
pub fn read_case_file(path: &Path) -> Result<CaseFile, ValidateError> {
    Ok(rulebox_cases::read_case_file_with(path, &windows_event)?)
}

/// The test files under `paths` ([`rulebox_cases::find_case_files`]): a folder in which none is
/// found is an error.
pub fn find_case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ValidateError> {
    Ok(rulebox_cases::find_case_files(paths)?)
}

/// Reads a Windows event as `rulebox run` does.
pub fn windows_event(value: &serde_json::Value) -> Result<Event<'static>, String> {
    parse_json_value(value.clone(), &ReadLimits::default())
        .map(|(event, _)| event)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_events_are_capped_as_the_readers_cap_them() {
        assert_eq!(
            MAX_FIELD_BYTES,
            rulebox_runtime::events::DEFAULT_MAX_FIELD_BYTES
        );
    }

    #[test]
    fn windows_events_in_a_test_file_are_read_by_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cases.json");
        std::fs::write(
            &path,
            r##"{"rule":"r","cases":[{"name":"sysmon 1","expect":"none","events":[
                {"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Sysmon"}},
                 "EventID":1,"Computer":"ws-1"},
                 "EventData":{"Image":"C:\\Windows\\System32\\cmd.exe","UtcTime":"x"}}}]}]}"##,
        )
        .unwrap();
        let file = read_case_file(&path).unwrap();
        let event = &file.cases[0].events[0];
        assert_eq!(event.kind(), rulebox_sdk::EventKind::ProcessStart);
        assert_eq!(event.text("Image"), "C:\\Windows\\System32\\cmd.exe");
        assert_eq!(event.host, "ws-1");
        // The native reading of the same file refuses it, saying where it can run.
        let err = rulebox_cases::read_case_file(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rulebox test"), "{err}");
    }
}
