//! `docs/config.md` against `RuntimeConfig`: its example parses and means what the page says, every
//! field is listed, every default in its tables is the real one, and every range it gives is the
//! one the reader enforces (the bound accepted, one past it refused naming the field).

use std::path::Path;

use rulebox_runtime::{Limits, RuntimeConfig};
use serde_json::{Value, json};

fn page() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ```json blocks of the page.
fn json_blocks(page: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in page.lines() {
        match (&mut current, line.trim()) {
            (None, "```json") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

/// The rows (field, default, allowed) of the table under the heading that starts with `heading`.
fn table(page: &str, heading: &str) -> Vec<(String, String, String)> {
    let start = page
        .find(heading)
        .unwrap_or_else(|| panic!("no section `{heading}`"));
    let section = &page[start..];
    let end = section[heading.len()..]
        .find("\n## ")
        .map_or(section.len(), |e| e + heading.len());
    section[..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].to_owned(),
                cells[3].to_owned(),
            )
        })
        .collect()
}

/// Checks one table against the serialized defaults, and its ranges against the reader.
fn check(rows: &[(String, String, String)], defaults: &Value, wrap: impl Fn(Value) -> Value) {
    let fields: Vec<&String> = defaults.as_object().unwrap().keys().collect();
    let listed: Vec<&String> = rows.iter().map(|(f, _, _)| f).collect();
    for f in &fields {
        assert!(listed.contains(f), "docs/config.md does not list `{f}`");
    }
    for (field, default, allowed) in rows {
        assert!(
            fields.contains(&field),
            "docs/config.md lists `{field}`, which does not exist"
        );
        if let Ok(value) = serde_json::from_str::<Value>(default) {
            assert_eq!(defaults[field], value, "the default of `{field}`");
        }
        let Some((low, high)) = allowed.split_once(" ..= ") else {
            continue;
        };
        let (low, high): (u64, u64) = (low.parse().unwrap(), high.parse().unwrap());
        let read =
            |v: u64| RuntimeConfig::from_json(&wrap(json!({ field.as_str(): v })).to_string());
        read(high).unwrap_or_else(|e| panic!("`{field}` = {high} is documented as allowed: {e}"));
        read(low).unwrap_or_else(|e| panic!("`{field}` = {low} is documented as allowed: {e}"));
        let err = read(high + 1).expect_err(&format!("`{field}` = {} is refused", high + 1));
        assert!(err.to_string().contains(field.as_str()), "{err}");
        if low > 0 {
            let err = read(low - 1).expect_err(&format!("`{field}` = {} is refused", low - 1));
            assert!(err.to_string().contains(field.as_str()), "{err}");
        }
    }
}

#[test]
fn the_config_page_matches_the_runtime_configuration() {
    let page = page();
    let blocks = json_blocks(&page);
    assert!(!blocks.is_empty(), "docs/config.md has a JSON example");
    for block in &blocks {
        RuntimeConfig::from_json(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
    // What the page says the example means.
    let example = RuntimeConfig::from_json(&blocks[0]).unwrap();
    assert_eq!(example.limits.fuel_per_event, 20_000_000);
    assert_eq!(example.limits.deadline_ms, 50);
    let rule = example.limits_for("mass-file-rename");
    assert_eq!((rule.memory_bytes, rule.budget_strikes), (32 << 20, 3));
    // A per-rule entry's missing fields are the built-in defaults, not `limits`'.
    assert_eq!(rule.fuel_per_event, Limits::default().fuel_per_event);
    assert_eq!(rule.deadline_ms, Limits::default().deadline_ms);
    assert_eq!(example.max_event_bytes, 128 << 10);
    assert_eq!(example.limits_for("other"), &example.limits);

    let limits = serde_json::to_value(Limits::default()).unwrap();
    check(
        &table(&page, "## `limits`"),
        &limits,
        |l| json!({ "limits": l }),
    );
    let top = serde_json::to_value(RuntimeConfig::default()).unwrap();
    check(&table(&page, "## The top level"), &top, |v| v);
    // And the same ranges hold inside a per-rule entry, whose errors name the rule.
    let err = RuntimeConfig::from_json(r#"{"rules":{"r1":{"deadline_ms":60001}}}"#).unwrap_err();
    assert!(
        err.to_string().contains("r1") && err.to_string().contains("deadline_ms"),
        "{err}"
    );
    let err = RuntimeConfig::from_json(r#"{"limits":{"fuel":5}}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `fuel`"), "{err}");
}
