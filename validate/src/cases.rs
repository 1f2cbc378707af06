//! Rule test cases: events and the detections they must (or must not) produce.
//!
//! A rule's folder carries them in `tests/*.json`, one file holding any number of cases:
//!
//! ```json
//! {
//!   "rule": "office-spawns-shell",
//!   "cases": [
//!     {
//!       "name": "Word starts cmd",
//!       "events": [{"data": {"ProcessStart": {"Image": "C:\\Windows\\System32\\cmd.exe",
//!                                            "ParentImage": "C:\\Office\\WINWORD.EXE"}}}],
//!       "expect": [{"title": "Office application spawned a shell", "event": 0,
//!                   "fields": {"ParentImage": "C:\\Office\\WINWORD.EXE"}}]
//!     },
//!     {
//!       "name": "Explorer starts cmd",
//!       "events": [{"data": {"ProcessStart": {"Image": "C:\\Windows\\System32\\cmd.exe",
//!                                            "ParentImage": "C:\\Windows\\explorer.exe"}}}],
//!       "expect": "none"
//!     }
//!   ]
//! }
//! ```
//!
//! `rule` is the rule id the module reports. Each event is a rulebox JSON event or an evtx_dump
//! Windows event, read by the same code as `rulebox run`. Each case runs on a fresh instance of the
//! rule, its events in order (so stateful rules can be tested with sequences). `expect` is `"none"`
//! or the exact list of detections, in order: each names its `title`, optionally the index of the
//! `event` that produced it and `fields` that must be among the detection's matched fields.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rulebox_runtime::events::{ReadLimits, parse_json_value};
use rulebox_sdk::Event;
use serde::Deserialize;

use crate::bundle::read_capped;
use crate::error::ValidateError;

/// Largest test file read.
const MAX_CASE_FILE_BYTES: u64 = 16 << 20;

/// One test file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    rule: String,
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for people reading the file")]
    description: String,
    cases: Vec<CaseSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    events: Vec<serde_json::Value>,
    expect: ExpectSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ExpectSpec {
    Keyword(String),
    List(Vec<Expected>),
}

/// One detection a case expects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// The detection's title, exactly.
    pub title: String,
    /// The index of the event (in the case's `events`) that must produce it.
    #[serde(default)]
    pub event: Option<usize>,
    /// Matched fields the detection must carry, with their values.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// One test case, read and parsed.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case's name.
    pub name: String,
    /// Its events, in order.
    pub events: Vec<Event<'static>>,
    /// The detections expected, in order; empty for `"none"`.
    pub expect: Vec<Expected>,
}

/// A test file, read and parsed.
#[derive(Debug, Clone)]
pub struct CaseFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The rule id its cases are for.
    pub rule: String,
    /// The cases.
    pub cases: Vec<Case>,
}

impl CaseFile {
    /// The file's name, for reports (`cases.json`).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A detection as a case sees it: which event produced it, its title and matched fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Index of the event in the case.
    pub event: usize,
    /// Title.
    pub title: String,
    /// Matched fields, in order.
    pub fields: Vec<(String, String)>,
}

/// Reads and parses one test file.
pub fn read_case_file(path: &Path) -> Result<CaseFile, ValidateError> {
    let bad = |problem: String| ValidateError::Cases {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = read_capped(path, MAX_CASE_FILE_BYTES)?;
    let spec: FileSpec = serde_json::from_slice(&bytes).map_err(|error| ValidateError::Json {
        path: path.to_path_buf(),
        error,
    })?;
    if spec.rule.is_empty() {
        return Err(bad("`rule` is empty".to_owned()));
    }
    if spec.cases.is_empty() {
        return Err(bad("no cases".to_owned()));
    }
    let mut cases = Vec::with_capacity(spec.cases.len());
    for case in spec.cases {
        if case.events.is_empty() {
            return Err(bad(format!("case `{}` has no events", case.name)));
        }
        let events = case
            .events
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                parse_json_value(value, &ReadLimits::default())
                    .map(|(event, _)| event)
                    .map_err(|e| bad(format!("case `{}` event {i}: {e}", case.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let expect = match case.expect {
            ExpectSpec::Keyword(k) if k == "none" => Vec::new(),
            ExpectSpec::Keyword(k) => {
                return Err(bad(format!(
                    "case `{}`: `expect` is `{}`; write \"none\" or a list of detections",
                    case.name,
                    k.escape_debug()
                )));
            }
            ExpectSpec::List(list) if list.is_empty() => {
                return Err(bad(format!(
                    "case `{}`: write \"none\" for no detections (an empty list reads like a mistake)",
                    case.name
                )));
            }
            ExpectSpec::List(list) => list,
        };
        if let Some(e) = expect
            .iter()
            .find(|e| e.event.is_some_and(|i| i >= events.len()))
        {
            return Err(bad(format!(
                "case `{}`: expects a detection from event {} of {}",
                case.name,
                e.event.unwrap_or(0),
                events.len()
            )));
        }
        cases.push(Case {
            name: case.name,
            events,
            expect,
        });
    }
    Ok(CaseFile {
        path: path.to_path_buf(),
        rule: spec.rule,
        cases,
    })
}

/// The test files under `paths`: a `.json` file as given; for a rule folder (one with a `tests`
/// folder) its `tests/*.json`; for any other folder its own `*.json` and the `tests/*.json` of each
/// rule folder in it (so `example-rules/rules` finds every rule's tests). Sorted.
pub fn find_case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ValidateError> {
    fn json_files(dir: &Path) -> Result<Vec<PathBuf>, ValidateError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|error| ValidateError::Io {
                path: dir.to_path_buf(),
                error,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
            .collect();
        files.sort();
        Ok(files)
    }
    let mut found = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|error| ValidateError::Io {
            path: path.clone(),
            error,
        })?;
        if !meta.is_dir() {
            found.push(path.clone());
        } else if path.join("tests").is_dir() {
            found.extend(json_files(&path.join("tests"))?);
        } else {
            found.extend(json_files(path)?);
            let mut subs: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|error| ValidateError::Io {
                    path: path.clone(),
                    error,
                })?
                .filter_map(|e| e.ok().map(|e| e.path().join("tests")))
                .filter(|p| p.is_dir())
                .collect();
            subs.sort();
            for tests in subs {
                found.extend(json_files(&tests)?);
            }
        }
    }
    Ok(found)
}

/// Compares what a case saw with what it expects; `None` when they agree, else what differs.
pub fn compare(expect: &[Expected], seen: &[Seen]) -> Option<String> {
    let list = |seen: &[Seen]| {
        seen.iter()
            .map(|s| format!("`{}` (event {})", s.title, s.event))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if expect.len() != seen.len() {
        return Some(if seen.is_empty() {
            format!("expected {} detection(s), got none", expect.len())
        } else {
            format!(
                "expected {} detection(s), got {}: {}",
                expect.len(),
                seen.len(),
                list(seen)
            )
        });
    }
    for (i, (e, s)) in expect.iter().zip(seen).enumerate() {
        if e.title != s.title {
            return Some(format!(
                "detection {i}: expected title `{}`, got `{}`",
                e.title, s.title
            ));
        }
        if let Some(event) = e.event
            && event != s.event
        {
            return Some(format!(
                "detection {i} (`{}`): expected from event {event}, came from event {}",
                e.title, s.event
            ));
        }
        for (name, value) in &e.fields {
            match s.fields.iter().find(|(n, _)| n == name) {
                Some((_, v)) if v == value => {}
                Some((_, v)) => {
                    return Some(format!(
                        "detection {i} (`{}`): field {name} is `{v}`, expected `{value}`",
                        e.title
                    ));
                }
                None => {
                    return Some(format!(
                        "detection {i} (`{}`): has no matched field {name}",
                        e.title
                    ));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(event: usize, title: &str) -> Seen {
        Seen {
            event,
            title: title.into(),
            fields: vec![("Image".into(), "a.exe".into())],
        }
    }

    #[test]
    fn compare_names_what_differs() {
        let want = |title: &str, event: Option<usize>| Expected {
            title: title.into(),
            event,
            fields: BTreeMap::new(),
        };
        assert_eq!(compare(&[], &[]), None);
        assert!(compare(&[], &[seen(0, "x")]).unwrap().contains("got 1"));
        assert!(
            compare(&[want("x", None)], &[])
                .unwrap()
                .contains("got none")
        );
        assert_eq!(compare(&[want("x", Some(2))], &[seen(2, "x")]), None);
        assert!(
            compare(&[want("x", Some(1))], &[seen(2, "x")])
                .unwrap()
                .contains("from event 1")
        );
        assert!(
            compare(&[want("y", None)], &[seen(0, "x")])
                .unwrap()
                .contains("expected title `y`")
        );
        let mut with_field = want("x", None);
        with_field.fields.insert("Image".into(), "b.exe".into());
        assert!(
            compare(&[with_field.clone()], &[seen(0, "x")])
                .unwrap()
                .contains("field Image is `a.exe`")
        );
        with_field.fields.clear();
        with_field.fields.insert("User".into(), "u".into());
        assert!(
            compare(&[with_field], &[seen(0, "x")])
                .unwrap()
                .contains("no matched field User")
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ev = r#"{"data":{"ProcessStart":{"Image":"a.exe"}}}"#;
        let ok = write(
            "ok.json",
            &format!(r#"{{"rule":"r","cases":[{{"name":"c","events":[{ev}],"expect":"none"}}]}}"#),
        );
        let file = read_case_file(&ok).unwrap();
        assert_eq!(file.rule, "r");
        assert!(file.cases[0].expect.is_empty());
        for (name, text, needle) in [
            (
                "kw.json",
                format!(r#"{{"rule":"r","cases":[{{"name":"c","events":[{ev}],"expect":"nothing"}}]}}"#),
                "write \"none\"",
            ),
            (
                "empty.json",
                format!(r#"{{"rule":"r","cases":[{{"name":"c","events":[{ev}],"expect":[]}}]}}"#),
                "empty list",
            ),
            (
                "idx.json",
                format!(
                    r#"{{"rule":"r","cases":[{{"name":"c","events":[{ev}],"expect":[{{"title":"t","event":3}}]}}]}}"#
                ),
                "event 3 of 1",
            ),
            (
                "noev.json",
                r#"{"rule":"r","cases":[{"name":"c","events":[],"expect":"none"}]}"#.to_owned(),
                "no events",
            ),
            (
                "badev.json",
                r#"{"rule":"r","cases":[{"name":"c","events":[{"data":{"Nope":{}}}],"expect":"none"}]}"#
                    .to_owned(),
                "event 0",
            ),
        ] {
            let err = read_case_file(&write(name, &text)).unwrap_err().to_string();
            assert!(err.contains(needle), "{name}: {err}");
        }
    }
}
