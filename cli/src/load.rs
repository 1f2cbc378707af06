//! Finding and reading rule modules.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rulebox_runtime::content::read_capped_following_links;

/// A module file's path and bytes, or why it could not be read (one bad file never stops the others).
pub struct ModuleFile {
    pub path: PathBuf,
    pub bytes: Result<Vec<u8>, String>,
    /// For an engine whose rules are data (`NAME.wasm` with `NAME.rules` or `NAME.*.rules` beside
    /// it, as `rulebox sigma compile` writes): each data file, loaded as one pack of the engine.
    pub data: Vec<DataFile>,
}

/// A rule data file of an engine: its path and bytes, or why it could not be read.
pub struct DataFile {
    pub path: PathBuf,
    pub bytes: Result<Vec<u8>, String>,
}

/// Largest rule data file read (the runtime refuses data over its own cap after).
const MAX_DATA_READ: u64 = 64 << 20;

/// The rule data files of the engine `module`: `NAME.rules` and `NAME.*.rules` in its folder,
/// sorted by name.
fn data_files(module: &Path) -> Vec<DataFile> {
    let (Some(dir), Some(stem)) = (module.parent(), module.file_stem().and_then(|s| s.to_str()))
    else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| rulebox_release::is_rule_data_of(stem, n))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes =
                read_capped(&path, MAX_DATA_READ, "rule data").map_err(|e| format!("{e:#}"));
            DataFile { path, bytes }
        })
        .collect()
}

/// Largest file read as a module (the runtime's own cap is applied after; this only stops a huge file
/// from being read into memory).
const MAX_READ: u64 = 64 << 20;

/// Every `*.wasm` file in `paths` (files as given; folders are searched, not recursively), sorted by
/// path so the load order is stable.
pub fn module_files(paths: &[PathBuf]) -> anyhow::Result<Vec<ModuleFile>> {
    let mut found = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
                .collect();
            entries.sort();
            if entries.is_empty() {
                bail!("no .wasm modules in {}", path.display());
            }
            found.extend(entries);
        } else {
            found.push(path.clone());
        }
    }
    Ok(found
        .into_iter()
        .map(|path| {
            let bytes = read_module(&path).map_err(|e| format!("{e:#}"));
            let data = data_files(&path);
            ModuleFile { path, bytes, data }
        })
        .collect())
}

/// Reads one module file, refusing files over the read cap before reading them (the runtime's one
/// capped reader).
pub fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_capped(path, MAX_READ, "a rule module")
}

/// Reads a regular file of at most `cap` bytes through the runtime's one capped reader (`what`
/// names it in errors): a FIFO or device where the file should be is refused on the open
/// descriptor, a file over the cap before it is read.
pub fn read_capped(path: &Path, cap: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    read_capped_following_links(path, cap).with_context(|| {
        format!(
            "cannot read {} ({what} is at most {cap} bytes)",
            path.display()
        )
    })
}

/// Largest runtime configuration file read.
const MAX_CONFIG: u64 = 1 << 20;

/// Reads an optional runtime configuration file.
pub fn config(path: Option<&Path>) -> anyhow::Result<rulebox_runtime::RuntimeConfig> {
    match path {
        None => Ok(rulebox_runtime::RuntimeConfig::default()),
        Some(path) => {
            let bytes = read_capped_following_links(path, MAX_CONFIG)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            let text = String::from_utf8(bytes)
                .with_context(|| format!("config {} is not UTF-8", path.display()))?;
            rulebox_runtime::RuntimeConfig::from_json(&text)
                .with_context(|| format!("config {}", path.display()))
        }
    }
}

/// Loads each engine `(bytes, source, data files)` into `set`: compiled once, then one pack per
/// data file (`unreadable` is told of a data file that could not be read, with its path). Returns
/// the refusals (a refused engine, or a pack refused at load).
pub fn load_engines(
    thread: &rulebox_runtime::SandboxThread,
    set: &mut rulebox_runtime::RuleSet,
    engines: &[(&[u8], &str, &[DataFile])],
    unreadable: &mut dyn FnMut(String) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<std::sync::Arc<rulebox_runtime::QuarantineRecord>>> {
    let mut refused = Vec::new();
    for &(bytes, source, data) in engines {
        // A refused engine is recorded by loading it without data (the set's own record).
        let compiled = match set.runtime().compile(bytes, source) {
            Ok(c) => c,
            Err(_) => {
                if let Err(record) = set.load(thread, bytes, source) {
                    refused.push(record);
                }
                continue;
            }
        };
        for file in data {
            match &file.bytes {
                Ok(d) => {
                    if let Err(record) = set.add_module(thread, &compiled, d, None) {
                        refused.push(record);
                    }
                }
                Err(message) => unreadable(format!("{}: {message}", file.path.display()))?,
            }
        }
    }
    Ok(refused)
}
