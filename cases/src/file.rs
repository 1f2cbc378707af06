//! A test file: the rule it is for, and its cases (events, and the detections expected).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rulebox_sdk::Event;
use serde::Deserialize;

use crate::error::CaseError;
use crate::event::{WindowsEvents, parse_event};
use rulebox_sdk::text::printable;

/// The largest test file read, in bytes.
pub const MAX_CASE_FILE_BYTES: u64 = 16 << 20;

/// One test file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    rule: String,
    #[serde(default)]
    description: String,
    cases: Vec<CaseSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    events: Vec<serde_json::Value>,
    /// `"none"` or a list of [`Expected`], read by hand so that a mistake inside a detection is
    /// named (an untagged enum would only say that nothing matched).
    expect: serde_json::Value,
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
    /// Matched fields the detection must carry, with their values (others may be there too).
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
    /// What the file tests, in words (optional in the file).
    pub description: String,
    /// The cases, in file order.
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

/// Reads one test file. Windows event JSON in it is refused (the native runner has no mapping for
/// it); the host-side tools read such files with [`read_case_file_with`].
pub fn read_case_file(path: &Path) -> Result<CaseFile, CaseError> {
    parse_case_file(path, &read_capped(path)?, None)
}

/// Reads one test file, reading Windows event JSON with `windows`.
pub fn read_case_file_with(path: &Path, windows: WindowsEvents<'_>) -> Result<CaseFile, CaseError> {
    parse_case_file(path, &read_capped(path)?, Some(windows))
}

/// Parses the bytes of a test file; `path` is only named in errors and kept in the result.
pub fn parse_case_file(
    path: &Path,
    bytes: &[u8],
    windows: Option<WindowsEvents<'_>>,
) -> Result<CaseFile, CaseError> {
    let bad = |problem: String| CaseError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let spec: FileSpec = serde_json::from_slice(bytes).map_err(|source| CaseError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    if spec.rule.is_empty() {
        return Err(bad("`rule` is empty".to_owned()));
    }
    if spec.cases.is_empty() {
        return Err(bad("no cases".to_owned()));
    }
    let mut cases = Vec::with_capacity(spec.cases.len());
    for case in spec.cases {
        let name = printable(&case.name).into_owned();
        if case.events.is_empty() {
            return Err(bad(format!("case `{name}` has no events")));
        }
        let events = case
            .events
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                parse_event(value, windows).map_err(|e| bad(format!("case `{name}` event {i} {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let expect = match case.expect {
            serde_json::Value::String(k) if k == "none" => Vec::new(),
            serde_json::Value::Array(list) if list.is_empty() => {
                return Err(bad(format!(
                    "case `{name}`: write \"none\" for no detections (an empty list reads like a mistake)"
                )));
            }
            serde_json::Value::Array(list) => list
                .into_iter()
                .enumerate()
                .map(|(i, d)| {
                    Expected::deserialize(d)
                        .map_err(|e| bad(format!("case `{name}`: expected detection {i}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            other => {
                return Err(bad(format!(
                    "case `{name}`: `expect` is {}; write \"none\" or a list of detections",
                    match other {
                        serde_json::Value::String(k) => format!("`{}`", printable(&k)),
                        other => other.to_string().chars().take(40).collect::<String>(),
                    }
                )));
            }
        };
        if let Some(e) = expect
            .iter()
            .find(|e| e.event.is_some_and(|i| i >= events.len()))
        {
            return Err(bad(format!(
                "case `{name}`: expects a detection from event {} of {}",
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
        description: spec.description,
        cases,
    })
}

/// Reads a regular file of at most [`MAX_CASE_FILE_BYTES`] (checked before and while reading); a
/// FIFO or device where a test file should be is refused without being opened.
fn read_capped(path: &Path) -> Result<Vec<u8>, CaseError> {
    let io = |source| CaseError::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_a_file = || CaseError::NotAFile {
        path: path.to_path_buf(),
    };
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(not_a_file());
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(not_a_file());
    }
    let too_large = |size| CaseError::TooLarge {
        path: path.to_path_buf(),
        size,
        cap: MAX_CASE_FILE_BYTES,
    };
    if meta.len() > MAX_CASE_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_CASE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_CASE_FILE_BYTES {
        return Err(too_large(MAX_CASE_FILE_BYTES + 1));
    }
    Ok(bytes)
}

/// The test files under `paths`: a file as given; for a rule folder (one with a `tests` folder) its
/// `tests/*.json`; for any other folder its own `*.json` and the `tests/*.json` of each rule folder
/// in it (so `example-rules/rules` finds every rule's tests). Sorted within each path. A folder in
/// which none is found is an error ([`CaseError::NoFiles`]): a gate given a folder without tests
/// (a typo, the wrong folder) must not pass quietly.
pub fn find_case_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<PathBuf>, CaseError> {
    let mut found = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let before = found.len();
        let meta = std::fs::metadata(path).map_err(|source| CaseError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_dir() {
            found.push(path.to_path_buf());
        } else if path.join("tests").is_dir() {
            found.extend(json_files(&path.join("tests"))?);
        } else {
            found.extend(json_files(path)?);
            let mut subs: Vec<PathBuf> = list(path)?
                .into_iter()
                .map(|p| p.join("tests"))
                .filter(|p| p.is_dir())
                .collect();
            subs.sort();
            for tests in subs {
                found.extend(json_files(&tests)?);
            }
        }
        if found.len() == before {
            return Err(CaseError::NoFiles {
                paths: vec![path.display().to_string()],
            });
        }
    }
    Ok(found)
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, CaseError> {
    Ok(std::fs::read_dir(dir)
        .map_err(|source| CaseError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect())
}

fn json_files(dir: &Path) -> Result<Vec<PathBuf>, CaseError> {
    let mut files: Vec<PathBuf> = list(dir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            &format!(
                r#"{{"rule":"r","description":"d","cases":[{{"name":"c","events":[{ev}],"expect":"none"}}]}}"#
            ),
        );
        let file = read_case_file(&ok).unwrap();
        assert_eq!((file.rule.as_str(), file.description.as_str()), ("r", "d"));
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
                "case `c` event 0 unknown event kind `Nope`",
            ),
            (
                "typo.json",
                r#"{"rule":"r","cases":[{"name":"c","events":[{"data":{"ProcessStart":{"Imgae":"x"}}}],"expect":"none"}]}"#
                    .to_owned(),
                "unknown field `Imgae`",
            ),
            (
                "casekey.json",
                format!(r#"{{"rule":"r","cases":[{{"name":"c","events":[{ev}],"expcet":"none"}}]}}"#),
                "unknown field `expcet`",
            ),
            (
                "expkey.json",
                format!(
                    r#"{{"rule":"r","cases":[{{"name":"c","events":[{ev}],"expect":[{{"title":"t","feilds":{{}}}}]}}]}}"#
                ),
                "expected detection 0: unknown field `feilds`",
            ),
        ] {
            let err = read_case_file(&write(name, &text)).unwrap_err().to_string();
            assert!(err.contains(needle), "{name}: {err}");
        }
    }

    #[test]
    fn a_folder_without_tests_is_an_error_and_a_fifo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_case_files(&[dir.path()]).unwrap_err();
        assert!(matches!(err, CaseError::NoFiles { .. }), "{err}");
        assert!(find_case_files::<&Path>(&[]).unwrap().is_empty());
        let rule = dir.path().join("my-rule");
        std::fs::create_dir_all(rule.join("tests")).unwrap();
        std::fs::write(rule.join("tests/cases.json"), "{}").unwrap();
        std::fs::write(rule.join("tests/notes.txt"), "").unwrap();
        assert_eq!(
            find_case_files(&[dir.path()]).unwrap(),
            vec![rule.join("tests/cases.json")]
        );
        assert_eq!(
            find_case_files(&[&rule]).unwrap(),
            vec![rule.join("tests/cases.json")]
        );
        #[cfg(unix)]
        {
            let fifo = dir.path().join("fifo.json");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                let err = read_case_file(&fifo).unwrap_err();
                assert!(matches!(err, CaseError::NotAFile { .. }), "{err}");
            }
        }
    }
}
