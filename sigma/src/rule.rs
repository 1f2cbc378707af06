//! A Sigma rule (YAML) compiled into a [`Program`].

use rulebox_sdk::Severity;
use rulebox_sigma_eval::{FORMAT_VERSION, Program};
use yaml_rust2::{Yaml, YamlLoader};

use crate::ir::Node;
use crate::{SigmaError, logsource, lower, value};

/// The longest rule name the runtime accepts.
const MAX_NAME: usize = 256;

fn text<'a>(doc: &'a Yaml, key: &str) -> Result<Option<&'a str>, SigmaError> {
    match &doc[key] {
        Yaml::BadValue | Yaml::Null => Ok(None),
        Yaml::String(s) => Ok(Some(s)),
        _ => Err(SigmaError::invalid(key, "must be text")),
    }
}

/// A rule id the runtime accepts: the Sigma `id` if it is one, else the title made into one.
fn rule_id(id: Option<&str>, title: &str) -> Result<String, SigmaError> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    };
    if let Some(id) = id {
        if ok(id) {
            return Ok(id.to_owned());
        }
        return Err(SigmaError::invalid(
            "id",
            format!("`{id}` must be 1 to 128 ASCII letters, digits, `-`, `_`, `.` or `:`"),
        ));
    }
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(128).collect();
    if ok(&slug) {
        Ok(slug)
    } else {
        Err(SigmaError::invalid(
            "title",
            "gives no usable rule id (and there is no `id`)",
        ))
    }
}

/// Keys under `detection` other than selections.
const NOT_SELECTIONS: &[&str] = &["condition", "timeframe"];

/// Compiles the Sigma rule in `yaml` into a [`Program`] for the sandboxed evaluator.
///
/// Every construct is checked: anything unsupported is refused with an error naming it.
pub fn compile(yaml: &str) -> Result<Program<'static>, SigmaError> {
    let docs = YamlLoader::load_from_str(yaml).map_err(|e| SigmaError::Yaml(e.to_string()))?;
    if docs.len() != 1 {
        return Err(SigmaError::Documents(docs.len()));
    }
    let doc = &docs[0];
    if doc.as_hash().is_none() {
        return Err(SigmaError::invalid("the rule", "must be a mapping"));
    }
    for key in ["correlation", "action", "filter"] {
        if !doc[key].is_badvalue() {
            return Err(SigmaError::Unsupported(format!(
                "top-level `{key}` (correlation and filter rules, rule collections)"
            )));
        }
    }
    let title = text(doc, "title")?.ok_or(SigmaError::Missing("title"))?;
    let id = rule_id(text(doc, "id")?, title)?;
    let version = text(doc, "modified")?
        .or(text(doc, "date")?)
        .unwrap_or("1")
        .to_owned();
    let severity = match text(doc, "level")? {
        None => Severity::Medium,
        Some(level) => Severity::from_name(level).ok_or_else(|| {
            SigmaError::invalid(
                "level",
                format!("`{level}` is not informational, low, medium, high or critical"),
            )
        })?,
    };
    let mut name = title.to_owned();
    if name.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }

    let ls = &doc["logsource"];
    if ls.as_hash().is_none() {
        return Err(SigmaError::Missing("logsource"));
    }
    let source = logsource::map(
        text(ls, "product")?,
        text(ls, "category")?,
        text(ls, "service")?,
    )?;

    let detection = &doc["detection"];
    let Some(map) = detection.as_hash() else {
        return Err(SigmaError::Missing("detection"));
    };
    let mut selections: Vec<(String, Node)> = Vec::new();
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            return Err(SigmaError::invalid(
                "detection",
                "has a key that is not text",
            ));
        };
        if name == "timeframe" {
            return Err(SigmaError::Unsupported("`detection.timeframe`".into()));
        }
        if NOT_SELECTIONS.contains(&name) {
            continue;
        }
        let expr = selection(name, v)?;
        selections.push((name.to_owned(), expr));
    }
    let conditions: Vec<&str> = match &detection["condition"] {
        Yaml::String(s) => vec![s.as_str()],
        Yaml::Array(items) => items
            .iter()
            .map(|c| {
                c.as_str()
                    .ok_or_else(|| SigmaError::invalid("detection.condition", "must be text"))
            })
            .collect::<Result<_, _>>()?,
        Yaml::BadValue | Yaml::Null => return Err(SigmaError::Missing("detection.condition")),
        _ => return Err(SigmaError::invalid("detection.condition", "must be text")),
    };
    if conditions.is_empty() {
        return Err(SigmaError::Missing("detection.condition"));
    }
    let mut parsed = Vec::new();
    for c in conditions {
        parsed.push(crate::condition::parse(c, &selections)?.0);
    }
    let condition = Node::any(parsed);
    let report = reported_fields(doc)?;
    let lowered = lower::lower(&source.guard, &condition, &report, source.lookup)?;
    Ok(Program {
        format: FORMAT_VERSION,
        id,
        title: name,
        version,
        severity,
        kinds: source.kinds,
        fields: lowered.fields,
        scans: lowered.scans,
        guard: lowered.guard,
        condition: lowered.condition,
        report: lowered.report,
        gate: lowered.gate,
        needs: lowered.needs,
    })
}

/// The rule's `fields:` list: what a detection reports.
fn reported_fields(doc: &Yaml) -> Result<Vec<String>, SigmaError> {
    match &doc["fields"] {
        Yaml::BadValue | Yaml::Null => Ok(Vec::new()),
        Yaml::Array(items) => {
            let mut names: Vec<String> = Vec::new();
            for item in items {
                let Some(name) = item.as_str().filter(|n| !n.trim().is_empty()) else {
                    return Err(SigmaError::invalid(
                        "fields",
                        "must be a list of field names",
                    ));
                };
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
            }
            Ok(names)
        }
        _ => Err(SigmaError::invalid(
            "fields",
            "must be a list of field names",
        )),
    }
}

/// One named selection: a map (every entry holds), a list of maps (one of them holds), or a list of
/// keywords (one of them appears in some field).
fn selection(name: &str, v: &Yaml) -> Result<Node, SigmaError> {
    let where_ = format!("detection.{name}");
    match v {
        Yaml::Hash(map) => map_selection(&where_, map),
        Yaml::Array(items) if items.iter().all(|i| i.as_hash().is_some()) && !items.is_empty() => {
            let mut alts = Vec::new();
            for item in items {
                alts.push(map_selection(
                    &where_,
                    item.as_hash().unwrap_or(&Default::default()),
                )?);
            }
            Ok(Node::any(alts))
        }
        Yaml::Array(items)
            if items
                .iter()
                .all(|i| matches!(i, Yaml::String(_) | Yaml::Integer(_)))
                && !items.is_empty() =>
        {
            value::field_entry("|contains", v).map_err(|e| rename(e, &where_))
        }
        Yaml::String(_) | Yaml::Integer(_) => {
            value::field_entry("|contains", v).map_err(|e| rename(e, &where_))
        }
        _ => Err(SigmaError::invalid(
            where_,
            "must be a map of fields, a list of maps, or a list of keywords",
        )),
    }
}

fn rename(e: SigmaError, where_: &str) -> SigmaError {
    match e {
        SigmaError::Invalid { key, problem } if key.starts_with('|') => SigmaError::Invalid {
            key: where_.to_owned(),
            problem,
        },
        other => other,
    }
}

fn map_selection(where_: &str, map: &yaml_rust2::yaml::Hash) -> Result<Node, SigmaError> {
    if map.is_empty() {
        return Err(SigmaError::invalid(where_, "is an empty map"));
    }
    let mut terms = Vec::new();
    for (k, v) in map {
        let key = match k {
            Yaml::String(s) => s.clone(),
            Yaml::Integer(i) => i.to_string(),
            _ => {
                return Err(SigmaError::invalid(
                    where_,
                    "has a field name that is not text",
                ));
            }
        };
        let mut parts = key.split('|');
        if parts.next().is_some_and(|f| f.trim().is_empty()) {
            // `'|all': [...]`: keywords with modifiers; a keyword is found anywhere in a value
            // unless the modifiers place it.
            let mods: Vec<&str> = parts.collect();
            if mods.is_empty() {
                return Err(SigmaError::invalid(
                    format!("{where_}.{key}"),
                    "has no field name",
                ));
            }
            let placed = mods
                .iter()
                .any(|m| matches!(*m, "contains" | "startswith" | "endswith" | "re"));
            let key = if placed {
                key.clone()
            } else {
                format!("{key}|contains")
            };
            terms.push(value::field_entry(&key, v).map_err(|e| rename(e, where_))?);
            continue;
        }
        terms.push(value::field_entry(&key, v)?);
    }
    Ok(Node::all(terms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulebox_sdk::{Event, EventData, EventKind, EventKinds, Field, ProcessStart};
    use rulebox_sigma_eval::Evaluator;

    const HEAD: &str = "title: Test rule\nid: 11111111-2222-3333-4444-555555555555\nlevel: high\nlogsource:\n    product: windows\n    category: process_creation\n";

    fn rule(detection: &str) -> String {
        format!("{HEAD}detection:\n{detection}")
    }

    fn proc(image: &str, cmd: &str) -> Event<'static> {
        let mut body = ProcessStart::default();
        body.image = image.to_owned().into();
        body.command_line = cmd.to_owned().into();
        Event::new(EventData::ProcessStart(body))
    }

    #[test]
    fn metadata_and_a_whole_rule_evaluated_natively() {
        let p = compile(&rule(
            "    sel_img:\n        Image|endswith: '\\powershell.exe'\n    sel_cli:\n        CommandLine|contains|windash: ' -enc '\n    filter_main:\n        CommandLine|contains: 'trusted'\n    condition: all of sel_* and not 1 of filter_*\n",
        ))
        .unwrap();
        assert_eq!(p.id, "11111111-2222-3333-4444-555555555555");
        assert_eq!(p.title, "Test rule");
        assert_eq!(p.severity, Severity::High);
        assert_eq!(p.kinds, EventKinds::of(&[EventKind::ProcessStart]));
        let mut e = Evaluator::new(p).unwrap();
        assert!(e.matches_event(&proc("C:\\x\\PowerShell.EXE", "powershell /ENC abc")));
        assert!(!e.matches_event(&proc("C:\\x\\PowerShell.EXE", "powershell /ENC trusted")));
        assert!(!e.matches_event(&proc("C:\\x\\cmd.exe", "powershell -enc abc")));
    }

    /// The detections `yaml` gives on `event`, natively: (name, value) of each field.
    fn detected(yaml: &str, event: &Event<'_>) -> Vec<Vec<(String, String)>> {
        let p = compile(yaml).unwrap();
        let mut e = Evaluator::new(p).unwrap();
        let mut bytes = Vec::new();
        event.encode_into(&mut bytes).unwrap();
        let view = rulebox_sdk::EventView::new(&bytes).unwrap();
        let mut out =
            rulebox_sdk::Detections::new("11111111-2222-3333-4444-555555555555", Severity::High);
        e.detect(&view, &mut out);
        out.to_vec()
            .into_iter()
            .map(|d| {
                assert_eq!(d.title, "Test rule");
                d.fields
                    .into_iter()
                    .map(|f| (f.name.into_owned(), f.value.into_owned()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn detections_carry_the_listed_fields_else_the_matched_ones_within_the_caps() {
        let detection = "    sel:\n        Image|endswith: '\\cmd.exe'\n    other:\n        ParentImage|endswith: '\\never.exe'\n    cli:\n        CommandLine|contains: 'assoc'\n    condition: sel and (cli or other)\n";
        let long = format!("cmd /c assoc {}", "é".repeat(6000));
        let event = proc("C:\\Windows\\cmd.exe", &long);
        // No `fields:`: the fields of the selections that matched, in condition order; the
        // operand of the `or` that did not match is left out.
        let got = detected(&rule(detection), &event);
        assert_eq!(got.len(), 1);
        let names: Vec<&str> = got[0].iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Image", "CommandLine"]);
        assert_eq!(got[0][0].1, "C:\\Windows\\cmd.exe");
        // A value over the SDK's cap is cut at a character boundary and marked.
        let cli = &got[0][1].1;
        assert!(
            cli.ends_with(rulebox_sdk::TRUNCATED_MARK),
            "{}",
            &cli[cli.len() - 20..]
        );
        let kept = cli.strip_suffix(rulebox_sdk::TRUNCATED_MARK).unwrap();
        assert!(kept.len() <= rulebox_sdk::abi::MAX_FIELD_VALUE_BYTES);
        assert!(long.starts_with(kept) && kept.len() > 8000);
        // `fields:` lists what a detection carries, in the rule's order, whether matched or not.
        let listed =
            format!("{HEAD}fields:\n    - User\n    - Image\n    - User\ndetection:\n{detection}");
        let mut event = event;
        if let EventData::ProcessStart(p) = &mut event.data {
            p.user = "CORP\\alice".to_owned().into();
        }
        let got = detected(&listed, &event);
        assert_eq!(
            got,
            [vec![
                ("User".to_owned(), "CORP\\alice".to_owned()),
                ("Image".to_owned(), "C:\\Windows\\cmd.exe".to_owned())
            ]]
        );
        // No match, no detection.
        assert!(detected(&listed, &proc("C:\\Windows\\cmd.exe", "dir")).is_empty());
    }

    #[test]
    fn keywords_search_every_field() {
        let p = compile(&rule(
            "    keywords:\n        - 'mimikatz'\n        - 'sekurlsa'\n    condition: keywords\n",
        ))
        .unwrap();
        let mut e = Evaluator::new(p).unwrap();
        assert!(e.matches_event(&proc("a.exe", "x SEKURLSA::logonpasswords")));
        let mut ev = proc("a.exe", "b");
        ev.extra.push(Field {
            name: "Note".into(),
            value: "Mimikatz!".into(),
        });
        assert!(e.matches_event(&ev));
        assert!(!e.matches_event(&proc("a.exe", "b")));
    }

    #[test]
    fn id_from_title_when_there_is_none() {
        let text = rule("    s:\n        Image: a\n    condition: s\n")
            .replace("id: 11111111-2222-3333-4444-555555555555\n", "");
        assert_eq!(compile(&text).unwrap().id, "test-rule");
    }

    #[test]
    fn refusals_name_the_construct() {
        let cases: &[(String, &str)] = &[
            (
                rule("    s:\n        Image: a\n    condition: s | count() > 3\n"),
                "`|`",
            ),
            (
                rule("    s:\n        Image: a\n    timeframe: 5m\n    condition: s\n"),
                "timeframe",
            ),
            (
                rule("    s:\n        Image|expand: '%x%'\n    condition: s\n"),
                "unsupported modifier `|expand`",
            ),
            (rule("    s:\n        Image: a\n"), "detection.condition"),
            (
                format!(
                    "{}correlation:\n    type: event_count\n",
                    rule("    s:\n        Image: a\n    condition: s\n")
                ),
                "correlation",
            ),
            (
                rule("    s:\n        Image: a\n    condition: s\n")
                    .replace("category: process_creation", "category: webserver"),
                "category: webserver",
            ),
            (
                format!(
                    "{}---\n{}",
                    rule("    s:\n        Image: a\n    condition: s\n"),
                    HEAD
                ),
                "exactly one YAML document",
            ),
            (
                rule("    s:\n        Image: a\n    condition: s\n")
                    .replace("level: high", "level: severe"),
                "`level`",
            ),
            (rule("    s: 5.5\n    condition: s\n"), "detection.s"),
        ];
        for (text, needle) in cases {
            let e = compile(text).unwrap_err().to_string();
            assert!(e.contains(needle), "expected {needle:?} in: {e}");
        }
    }
}
