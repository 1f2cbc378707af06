//! Headless Chromium on the dashboard, for the tests that look at it as an operator does.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{OperatorClient, TestError};

/// Debian's Chromium (`/usr/bin/chromium`, or `$RULEBOX_CHROMIUM`), when it is there.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("RULEBOX_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    path.exists().then_some(path)
}

/// The folder the dashboard tests keep their pages and screenshots in (`target/test-artifacts`).
pub fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    // A test that cannot keep its artifact still checks the page; the write reports the error.
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Runs headless Chromium (a fresh profile, no background networking) on a fresh one-time
/// sign-in link of the controller at `base` that leads to `path`: with `shot`, a screenshot into
/// that file; without, `--dump-dom` and the DOM it returns.
pub fn browse(
    base: &str,
    op: &OperatorClient,
    chromium: &Path,
    path: &str,
    shot: Option<&Path>,
) -> Result<String, TestError> {
    let (status, body) = op.post("/v1/ui/signin-codes", &serde_json::json!({}))?;
    if status != 201 {
        return Err(format!("sign-in code refused ({status}): {body}").into());
    }
    let link = body["path"]
        .as_str()
        .ok_or_else(|| format!("no sign-in path in {body}"))?;
    let url = format!("{base}{link}?next={path}");
    let profile = tempfile::tempdir()?;
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match shot {
        Some(file) => {
            cmd.arg(format!("--screenshot={}", file.display()))
                .arg("--window-size=1200,1600");
        }
        None => {
            cmd.arg("--dump-dom");
        }
    }
    let out = cmd.arg(url).output()?;
    if !out.status.success() {
        return Err(format!(
            "chromium failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The rows of the page's ring table (`id="rings"`), one string each, in ring order; empty when
/// the page has no ring table.
pub fn ring_rows(dom: &str) -> Vec<String> {
    let Some(start) = dom.find(r#"id="rings""#) else {
        return Vec::new();
    };
    let table = &dom[start..];
    let table = &table[..table.find("</table>").unwrap_or(table.len())];
    table
        .split("<tr data-ring=")
        .skip(1)
        .map(str::to_owned)
        .collect()
}
