//! Rule packs in a bundle: an engine module (ABI 3) and its rule data files, as `rulebox sigma
//! compile` writes them (`NAME.wasm` with `NAME.rules` / `NAME.*.rules` beside it). Each engine is
//! compiled once and loaded with each data file in the real runtime, to learn the pack's id, version
//! and rules, exactly as an endpoint will.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rulebox_runtime::content::{BundleLimits, EngineEntry, PackEntry, PackRuleEntry};
use rulebox_runtime::{Limits, LoadedPack, Runtime, RuntimeConfig};

use crate::{ModuleSource, ReleaseError, io_at, read_capped};

/// A rule pack engine and its rule data files, to put in a bundle.
#[derive(Debug, Clone)]
pub struct PackSource {
    /// The engine module (a rule pack, ABI 3).
    pub engine: ModuleSource,
    /// Its rule data files: one pack each.
    pub data: Vec<ModuleSource>,
}

/// What a pack reports once its engine is loaded with its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackIdentity {
    /// The pack id.
    pub id: String,
    /// The pack version.
    pub version: String,
    /// Its rules (id, version), in index order.
    pub rules: Vec<(String, String)>,
}

/// Whether `file_name` is the shared prefilter index `rulebox sigma compile` writes beside the
/// packs of the engine `engine_stem` (`NAME.index.rules`). `rulebox run` loads it with the packs;
/// a release does not carry one yet ([`pack_sources_in`] leaves it out): an endpoint's packs run
/// their own prefilters, finding the same.
pub fn is_index_data_of(engine_stem: &str, file_name: &str) -> bool {
    file_name
        .strip_prefix(engine_stem)
        .is_some_and(|rest| rest == ".index.rules")
}

/// Most data files read from one compiled folder.
const MAX_DATA_FILES: usize = rulebox_runtime::content::MAX_PACKS;

/// Whether `file_name` is a rule data file of the engine `engine_stem` (`NAME.wasm`): `NAME.rules`
/// or `NAME.*.rules`, the names `rulebox sigma compile -o DIR` writes.
pub fn is_rule_data_of(engine_stem: &str, file_name: &str) -> bool {
    file_name
        .strip_prefix(engine_stem)
        .is_some_and(|rest| rest == ".rules" || (rest.starts_with('.') && rest.ends_with(".rules")))
}

/// The engines of a compiled folder (`rulebox sigma compile -o DIR`): every `NAME.wasm` with at
/// least one `NAME.rules` or `NAME.*.rules` beside it, with those data files sorted by name (but
/// the shared index, [`is_index_data_of`], which a release does not carry yet). A `.wasm` without
/// data files is not an engine of this folder and is left out. Nothing is read yet.
pub fn pack_sources_in(dir: &Path) -> Result<Vec<PackSource>, ReleaseError> {
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    let mut sources = Vec::new();
    for engine in names.iter().filter(|n| n.ends_with(".wasm")) {
        let stem = engine.trim_end_matches(".wasm");
        let data: Vec<ModuleSource> = names
            .iter()
            .filter(|n| is_rule_data_of(stem, n) && !is_index_data_of(stem, n))
            .map(|n| ModuleSource::Path(dir.join(n)))
            .collect();
        if data.len() > MAX_DATA_FILES {
            return Err(ReleaseError::Options(format!(
                "{} has {} rule data files for {engine}; a bundle holds at most {MAX_DATA_FILES} packs",
                dir.display(),
                data.len()
            )));
        }
        if !data.is_empty() {
            sources.push(PackSource {
                engine: ModuleSource::Path(dir.join(engine)),
                data,
            });
        }
    }
    if sources.is_empty() {
        return Err(ReleaseError::Options(format!(
            "{} holds no engine with rule data (NAME.wasm with NAME.rules or NAME.*.rules)",
            dir.display()
        )));
    }
    Ok(sources)
}

/// Reads a source with the cap `cap`: its name and bytes.
pub(crate) fn read_source(
    source: &ModuleSource,
    cap: u64,
) -> Result<(String, Vec<u8>), ReleaseError> {
    match source {
        ModuleSource::Path(path) => Ok((path.display().to_string(), read_capped(path, cap)?)),
        ModuleSource::Bytes { name, bytes } => {
            let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            if size > cap {
                return Err(ReleaseError::TooLarge {
                    path: PathBuf::from(name),
                    size,
                    cap,
                });
            }
            Ok((name.clone(), bytes.clone()))
        }
    }
}

/// One engine and its data files, read: each a name for messages and its bytes.
#[derive(Debug, Clone)]
pub struct ReadPack {
    /// The engine module.
    pub engine: (String, Vec<u8>),
    /// Its rule data files, one pack each.
    pub data: Vec<(String, Vec<u8>)>,
}

/// Reads every engine and data file, each within the endpoint's caps.
pub(crate) fn read_packs(packs: &[PackSource]) -> Result<Vec<ReadPack>, ReleaseError> {
    let limits = BundleLimits::default();
    packs
        .iter()
        .map(|p| {
            Ok(ReadPack {
                engine: read_source(&p.engine, limits.max_module_bytes)?,
                data: p
                    .data
                    .iter()
                    .map(|d| read_source(d, limits.max_data_bytes))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

/// Loads each engine once and each of its data files into it, in the real runtime under `config`
/// (with `pack_limits` by pack id and `config.rules` by rule id), on a sandbox thread. Returns, per
/// engine, the identity of each of its packs, in order.
pub fn identify_packs(
    config: RuntimeConfig,
    packs: Vec<ReadPack>,
    pack_limits: BTreeMap<String, Limits>,
) -> Result<Vec<Vec<PackIdentity>>, ReleaseError> {
    let runtime = Runtime::new(config)?;
    let rt = runtime.clone();
    runtime.run_sandboxed(move |thread| {
        let mut out = Vec::with_capacity(packs.len());
        for ReadPack {
            engine: (name, engine),
            data,
        } in &packs
        {
            let compiled =
                rt.compile(engine, name)
                    .map_err(|error| ReleaseError::ModuleRefused {
                        name: name.clone(),
                        error,
                    })?;
            let mut identities = Vec::with_capacity(data.len());
            for (data_name, bytes) in data {
                // The pack's own limits are known by its id only once it loaded: load it under the
                // configuration's first, then again under its own if the options name it.
                let refused = |error| ReleaseError::ModuleRefused {
                    name: data_name.clone(),
                    error,
                };
                let mut pack =
                    LoadedPack::load(&rt, thread, &compiled, bytes, None).map_err(refused)?;
                if let Some(limits) = pack_limits.get(&pack.info().id) {
                    pack = LoadedPack::load(&rt, thread, &compiled, bytes, Some(limits))
                        .map_err(refused)?;
                }
                identities.push(PackIdentity {
                    id: pack.info().id.clone(),
                    version: pack.info().version.clone(),
                    rules: pack
                        .rules()
                        .map(|(info, _)| (info.id.clone(), info.version.clone()))
                        .collect(),
                });
            }
            out.push(identities);
        }
        Ok(out)
    })
}

/// The manifest entries of identified packs: one [`EngineEntry`] per engine, one [`PackEntry`] per
/// data file, with the limits `limits` names by pack id and by rule id.
pub(crate) fn pack_entries(
    read: &[ReadPack],
    identities: &[Vec<PackIdentity>],
    limits: &BTreeMap<String, Limits>,
) -> (Vec<EngineEntry>, Vec<PackEntry>) {
    let mut engines = Vec::with_capacity(read.len());
    let mut entries = Vec::new();
    for (pack, ids) in read.iter().zip(identities) {
        let engine_sha = rulebox_runtime::content_hash(&pack.engine.1);
        for ((_, data), identity) in pack.data.iter().zip(ids) {
            let sha256 = rulebox_runtime::content_hash(data);
            entries.push(PackEntry {
                id: identity.id.clone(),
                version: identity.version.clone(),
                engine: engine_sha.clone(),
                file: rulebox_runtime::content::data_file_name(&sha256),
                sha256,
                size: u64::try_from(data.len()).unwrap_or(u64::MAX),
                limits: limits.get(&identity.id).cloned(),
                rules: identity
                    .rules
                    .iter()
                    .map(|(id, version)| PackRuleEntry {
                        id: id.clone(),
                        version: version.clone(),
                        limits: limits.get(id).cloned(),
                    })
                    .collect(),
            });
        }
        // The same engine given twice is listed once.
        if !engines.iter().any(|e: &EngineEntry| e.sha256 == engine_sha) {
            engines.push(EngineEntry {
                file: rulebox_runtime::content::module_file_name(&engine_sha),
                sha256: engine_sha,
                size: u64::try_from(pack.engine.1.len()).unwrap_or(u64::MAX),
                abi_version: rulebox_runtime::sdk::abi::PACK_ABI_VERSION,
            });
        }
    }
    (engines, entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_data_files_are_named_after_their_engine_and_nothing_else() {
        for name in ["sigma.rules", "sigma.00.rules", "sigma.a.b.rules"] {
            assert!(is_rule_data_of("sigma", name), "{name}");
        }
        for name in [
            "sigma.wasm",
            "sigmax.rules",
            "other.rules",
            "sigma.rules.bak",
            "sigma",
        ] {
            assert!(!is_rule_data_of("sigma", name), "{name}");
        }
    }

    #[test]
    fn a_compiled_folder_gives_each_engine_its_data_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "sigma.wasm",
            "sigma.02.rules",
            "sigma.01.rules",
            "sigma.index.rules",
            "other.wasm",
            "sigmax.01.rules",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let found = pack_sources_in(dir.path()).unwrap();
        assert_eq!(found.len(), 1, "other.wasm has no data: not an engine here");
        let names = |s: &ModuleSource| match s {
            ModuleSource::Path(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
            ModuleSource::Bytes { name, .. } => name.clone(),
        };
        assert_eq!(names(&found[0].engine), "sigma.wasm");
        let data: Vec<String> = found[0].data.iter().map(names).collect();
        assert_eq!(data, ["sigma.01.rules", "sigma.02.rules"], "not the index");
        assert!(is_index_data_of("sigma", "sigma.index.rules"));
        assert!(!is_index_data_of("sigma", "sigma.01.rules"));
        assert!(!is_index_data_of("sig", "sigma.index.rules"));
        std::fs::remove_file(dir.path().join("sigma.01.rules")).unwrap();
        std::fs::remove_file(dir.path().join("sigma.02.rules")).unwrap();
        let err = pack_sources_in(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("no engine with rule data"),
            "{err}"
        );
    }
}
