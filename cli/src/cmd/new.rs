//! `rulebox new`: write a rule crate, ready to build, test, validate, run and bench, from the
//! template in `cli/template/rule/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

/// Arguments of `rulebox new`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The rule's name: the crate's name and the rule's id. Lower-case ASCII letters, digits and
    /// `-`, starting with a letter (`certutil-download`).
    name: String,
    /// The folder to create (it must not exist, or be empty). Default: ./NAME.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The rulebox checkout whose `rules-sdk/` and `cases/` the crate depends on (by path). Default:
    /// the checkout this binary was built from, if it is still there.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

/// The template's files: where each goes in the new crate, and its text.
const TEMPLATE: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../template/rule/Cargo.toml.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../template/rule/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../template/rule/gitignore.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../template/rule/src/lib.rs.tmpl"),
    ),
    (
        "tests/cases.json",
        include_str!("../../template/rule/tests/cases.json.tmpl"),
    ),
    (
        "tests/cases.rs",
        include_str!("../../template/rule/tests/cases.rs.tmpl"),
    ),
    (
        "events/sample.jsonl",
        include_str!("../../template/rule/events/sample.jsonl.tmpl"),
    ),
];

/// Names a crate may not have (they shadow the standard crates or the SDK's).
const RESERVED: &[&str] = &[
    "core",
    "std",
    "alloc",
    "test",
    "proc-macro",
    "self",
    "super",
    "crate",
    "rulebox-sdk",
    "rulebox-cases",
];

/// Runs `rulebox new`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let checkout = match &args.sdk {
        Some(dir) => dir.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    let checkout = std::fs::canonicalize(&checkout)
        .ok()
        .filter(|c| {
            c.join("rules-sdk/Cargo.toml").is_file() && c.join("cases/Cargo.toml").is_file()
        })
        .with_context(|| {
            format!(
                "{} is not a rulebox checkout (no rules-sdk/ and cases/ in it){}",
                checkout.display(),
                if args.sdk.is_none() {
                    "; this binary was built elsewhere: give --sdk PATH_TO_THE_RULEBOX_CHECKOUT"
                } else {
                    ""
                }
            )
        })?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let files = render(&args.name, &checkout)?;
    let lock = std::fs::read(checkout.join("Cargo.lock")).ok();
    create(&dir, &files, lock.as_deref())?;

    let crate_name = args.name.replace('-', "_");
    println!("created {} (rule id `{}`)", dir.display(), args.name);
    println!("next, in {}:", dir.display());
    println!("  cargo test");
    println!("  cargo build --release --target wasm32-unknown-unknown");
    println!(
        "  rulebox validate target/wasm32-unknown-unknown/release/{crate_name}.wasm --tests tests"
    );
    println!("(README.md has the test, run and bench commands too)");
    Ok(ExitCode::from(super::EXIT_OK))
}

/// Refuses a name that is not a usable crate name and rule id.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        bail!(
            "`{}` cannot name a rule: use 1 to 64 lower-case ASCII letters, digits and single `-`, \
             starting with a letter (`certutil-download`)",
            rulebox_cases::printable(name)
        );
    }
    if RESERVED.contains(&name) {
        bail!("`{name}` is the name of a crate a rule depends on; choose another");
    }
    Ok(())
}

/// `MyRule` for `my-rule`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// A TOML string holding `text` exactly (a literal string when it can be one).
fn toml_string(text: &str) -> String {
    if !text.contains('\'') && !text.chars().any(char::is_control) {
        return format!("'{text}'");
    }
    let mut out = String::from('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The template's files with the placeholders filled in.
fn render(name: &str, checkout: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    let path = |sub: &str| {
        checkout
            .join(sub)
            .to_str()
            .map(toml_string)
            .with_context(|| format!("the path of {} is not UTF-8", checkout.display()))
    };
    let values = [
        ("{{rule-name}}", name.to_owned()),
        ("{{crate_name}}", name.replace('-', "_")),
        ("{{RuleType}}", type_name(name)),
        ("{{sdk-path}}", path("rules-sdk")?),
        ("{{cases-path}}", path("cases")?),
        ("{{checkout}}", checkout.display().to_string()),
    ];
    TEMPLATE
        .iter()
        .map(|(file, text)| {
            let mut out = (*text).to_owned();
            for (key, value) in &values {
                out = out.replace(key, value);
            }
            match out.find("{{") {
                Some(at) => bail!(
                    "the template's {file} has an unknown placeholder at byte {at}: {}",
                    out[at..].chars().take(24).collect::<String>()
                ),
                None => Ok((*file, out)),
            }
        })
        .collect()
}

/// Writes the crate into a fresh folder beside `dir`, then renames it to `dir`: an interrupted run
/// leaves no half-written crate under the name.
fn create(dir: &Path, files: &[(&str, String)], lock: Option<&[u8]>) -> anyhow::Result<()> {
    if dir.symlink_metadata().is_ok() {
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .next()
                .is_none();
        if !empty {
            bail!(
                "{} already exists; choose another name or --dir",
                dir.display()
            );
        }
        std::fs::remove_dir(dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let leaf = dir
        .file_name()
        .with_context(|| format!("{} has no folder name", dir.display()))?
        .to_string_lossy()
        .into_owned();
    let staging = parent.join(format!(".{leaf}.rulebox-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let written = (|| -> anyhow::Result<()> {
        for (file, text) in files {
            let path = staging.join(file);
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p)?;
            }
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        // The versions the SDK is built and tested with; cargo drops what the rule does not use.
        if let Some(lock) = lock {
            std::fs::write(staging.join("Cargo.lock"), lock)?;
        }
        std::fs::rename(&staging, dir).with_context(|| format!("cannot create {}", dir.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_crate_type_and_file_names() {
        assert_eq!(type_name("certutil-download"), "CertutilDownload");
        assert_eq!(type_name("r2d2"), "R2d2");
        for bad in [
            "", "My-Rule", "-x", "x-", "a--b", "1abc", "a_b", "a/b", "../x", "core", "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("certutil-download").unwrap();
    }

    #[test]
    fn toml_strings_hold_any_path() {
        assert_eq!(toml_string("/a/b c"), "'/a/b c'");
        assert_eq!(toml_string("/it's"), "\"/it's\"");
        assert_eq!(toml_string("C:\\x\"y"), "'C:\\x\"y'");
    }

    #[test]
    fn every_placeholder_of_the_template_is_filled() {
        let files = render("my-rule", Path::new("/opt/rule box")).unwrap();
        assert_eq!(files.len(), TEMPLATE.len());
        let cargo = &files.iter().find(|(f, _)| *f == "Cargo.toml").unwrap().1;
        assert!(cargo.contains("name = \"my-rule\""), "{cargo}");
        assert!(
            cargo.contains("path = '/opt/rule box/rules-sdk'"),
            "{cargo}"
        );
        assert!(cargo.contains("opt-level = 3"), "{cargo}");
        let lib = &files.iter().find(|(f, _)| *f == "src/lib.rs").unwrap().1;
        assert!(lib.contains("pub struct MyRule;") && lib.contains("id: \"my-rule\""));
        let readme = &files.iter().find(|(f, _)| *f == "README.md").unwrap().1;
        assert!(readme.contains("release/my_rule.wasm"), "{readme}");
    }
}
