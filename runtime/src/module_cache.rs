//! [`ModuleCache`]: rule modules this host compiled itself, kept on disk so that the next start or
//! content update instantiates them without compiling again.
//!
//! # Trust boundary
//!
//! Deserializing a precompiled module runs machine code that wasmtime produced, without validating
//! it again: a forged artifact would be native code in the agent's process. So:
//!
//! - only artifacts this host serialized itself are ever deserialized: the cache is filled by
//!   [`ModuleCache::compile`] from wasm bytes the caller already verified (against a signed manifest),
//!   never from anything that arrived over the network or in a bundle;
//! - the folder is created mode `0700` and refused (treated as absent, with a warning) if another
//!   user owns it or if group or others may write to it, or to any folder above it
//!   ([`check_private_folder`](crate::content::check_private_folder), the content store's own
//!   check; Unix), so only the agent's own user (or root) can place a file there, and that user can
//!   already replace the agent's binary;
//! - every artifact carries the SHA-256 of its bytes, written with it and checked right before
//!   deserializing, so a torn write or a flipped bit is a cache miss, never undefined behaviour;
//! - the file name binds the wasm content hash and the engine (wasmtime version and every setting
//!   that changes generated code), and wasmtime checks its own header again;
//! - a deserialized module passes the same ABI checks as a cold compile.
//!
//! A cache that cannot be read or written only costs time: [`ModuleCache::compile`] falls back to a
//! cold compile and says why in the log.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Module;

use crate::content::fsutil;
use crate::module::{self, CompiledRule, LoadError};
use crate::runtime::Runtime;

/// The first bytes of a cache file, then the SHA-256 of the artifact, then the artifact.
const MAGIC: &[u8; 8] = b"RBXCWSM1";
const HEADER: usize = MAGIC.len() + 32;

/// Precompiled rule modules on disk, keyed by module content and engine. `Send + Sync`.
#[derive(Debug)]
pub struct ModuleCache {
    dir: Option<PathBuf>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Counters of a [`ModuleCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Modules instantiated from a precompiled artifact.
    pub hits: u64,
    /// Modules compiled cold (absent, unusable or disabled cache).
    pub misses: u64,
}

impl ModuleCache {
    /// A cache in `dir`, created (mode `0700`) if absent. A folder that is unsafe to trust (see the
    /// module docs) or cannot be created gives a cache that always compiles cold; the reason is logged.
    pub fn open(dir: &Path) -> ModuleCache {
        let dir = match prepare(dir) {
            Ok(()) => Some(dir.to_path_buf()),
            Err(why) => {
                tracing::warn!(dir = %dir.display(), %why, "module cache disabled; rules will be compiled cold");
                None
            }
        };
        ModuleCache {
            dir,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Whether artifacts are read and written (false when the folder was refused).
    pub fn is_enabled(&self) -> bool {
        self.dir.is_some()
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Like [`Runtime::compile`], from this host's precompiled artifact of `bytes` when there is a
    /// valid one; otherwise compiles cold and stores the artifact for next time. The result is the
    /// same either way, checks included.
    pub fn compile(
        &self,
        runtime: &Runtime,
        bytes: &[u8],
        source: &str,
    ) -> Result<CompiledRule, LoadError> {
        let Some(path) = self.path_for(runtime, bytes) else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return runtime.compile(bytes, source);
        };
        if let Some(module) = self.read(runtime, &path) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return module::check(runtime, &module, module::content_hash(bytes), source);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let compiled = runtime.compile(bytes, source)?;
        self.write(&compiled, &path);
        Ok(compiled)
    }

    /// `<wasm sha256>-<engine key>.cwasm`, with the wasm size capped like a cold compile.
    fn path_for(&self, runtime: &Runtime, bytes: &[u8]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        if bytes.len() > runtime.config().max_module_bytes {
            return None;
        }
        let mut engine = DefaultHasher::new();
        runtime
            .engine()
            .precompile_compatibility_hash()
            .hash(&mut engine);
        Some(dir.join(format!(
            "{}-{:016x}.cwasm",
            module::content_hash(bytes),
            engine.finish()
        )))
    }

    fn read(&self, runtime: &Runtime, path: &Path) -> Option<Module> {
        if !path.exists() {
            return None;
        }
        // Generated code is larger than the wasm it comes from; 64 times the module cap is far above
        // anything real and still a bound.
        let cap = u64::try_from(runtime.config().max_module_bytes)
            .unwrap_or(u64::MAX)
            .saturating_mul(64);
        let file = match fsutil::read_capped(path, cap) {
            Ok(f) => f,
            Err(e) => {
                self.discard(path, &format!("{e:?}"));
                return None;
            }
        };
        let (Some(magic), Some(digest), Some(artifact)) = (
            file.get(..MAGIC.len()),
            file.get(MAGIC.len()..HEADER),
            file.get(HEADER..),
        ) else {
            self.discard(path, "shorter than its header");
            return None;
        };
        if magic != MAGIC || Sha256::digest(artifact).as_slice() != digest {
            self.discard(path, "header or SHA-256 does not match the artifact");
            return None;
        }
        // SAFETY: `Module::deserialize` requires bytes produced by `Module::serialize` on a compatible
        // engine. These bytes were written by `ModuleCache::write` of this host (no other code path
        // puts files in the cache), in a folder that only this user can write (checked in `open`), and
        // their SHA-256, recorded at write time, was verified just above, so they are exactly what
        // `serialize` returned. wasmtime also checks its own version and engine-settings header.
        match unsafe { Module::deserialize(runtime.engine(), artifact) } {
            Ok(m) => Some(m),
            Err(e) => {
                self.discard(path, &format!("{e:#}"));
                None
            }
        }
    }

    fn write(&self, compiled: &CompiledRule, path: &Path) {
        let artifact = match compiled.inner.pre.module().serialize() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(%e, "cannot serialize a compiled rule; not cached");
                return;
            }
        };
        let mut file = Vec::with_capacity(HEADER + artifact.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&Sha256::digest(&artifact));
        file.extend_from_slice(&artifact);
        if let Err(e) = fsutil::write_atomic(path, &file) {
            tracing::warn!(path = %path.display(), %e, "cannot write the module cache; not cached");
        }
    }

    fn discard(&self, path: &Path, why: &str) {
        tracing::warn!(path = %path.display(), why, "unusable precompiled module removed; compiling cold");
        let _ = std::fs::remove_file(path);
    }
}

/// Creates `dir` (0700) or checks that an existing one is safe to trust.
fn prepare(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .map_err(|e| format!("cannot create it: {e}"))?;
    }
    crate::content::check_private_folder(dir).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuntimeConfig;

    /// A minimal ABI-conforming rule, with metadata encoded by the SDK's own types.
    fn rule_bytes() -> Vec<u8> {
        let meta = rulebox_sdk::RuleMetadata {
            schema_version: rulebox_sdk::abi::SCHEMA_VERSION,
            id: "cached".into(),
            name: "cached".into(),
            version: "1.0.0".into(),
            severity: rulebox_sdk::Severity::Low,
            subscriptions: rulebox_sdk::EventKinds::all(),
        };
        let data: String = postcard::to_allocvec(&meta)
            .unwrap()
            .iter()
            .map(|b| format!("\\{b:02x}"))
            .collect();
        let packed = ((data.len() as u64 / 3) << 32) | 16;
        wat::parse_str(format!(
            r#"(module
              (memory (export "memory") 1)
              (data (i32.const 16) "{data}")
              (func (export "rulebox_abi_version") (result i32) i32.const {abi})
              (func (export "rulebox_metadata") (result i64) i64.const {packed})
              (func (export "rulebox_input") (param i32) (result i32) i32.const 1024)
              (func (export "rulebox_on_event") (param i32) (result i64) i64.const 0))"#,
            abi = rulebox_sdk::abi::ABI_VERSION,
        ))
        .unwrap()
    }

    #[test]
    fn a_second_compile_is_a_hit_and_a_corrupted_artifact_a_miss() {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::open(&dir.path().join("cache"));
        assert!(cache.is_enabled());
        let bytes = rule_bytes();
        let cold = cache.compile(&runtime, &bytes, "t").unwrap();
        assert_eq!(cache.stats(), CacheStats { hits: 0, misses: 1 });
        let warm = cache.compile(&runtime, &bytes, "t").unwrap();
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 1 });
        assert_eq!(cold.content_hash(), warm.content_hash());

        // Flip one byte of the artifact: the digest no longer matches, so it is never deserialized.
        let file = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .unwrap();
        let mut data = std::fs::read(&file).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        std::fs::write(&file, &data).unwrap();
        cache.compile(&runtime, &bytes, "t").unwrap();
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 2 });
        // ... and the fresh artifact written by that miss is good again.
        cache.compile(&runtime, &bytes, "t").unwrap();
        assert_eq!(cache.stats(), CacheStats { hits: 2, misses: 2 });
    }

    #[test]
    fn a_cached_module_still_gets_the_abi_checks() {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::open(dir.path());
        let bad = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
        assert!(cache.compile(&runtime, &bad, "bad").is_err());
        assert!(cache.compile(&runtime, &bad, "bad").is_err());
        assert_eq!(cache.stats().hits, 0, "a refused module is never cached");
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_others_can_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!ModuleCache::open(dir.path()).is_enabled());
    }
}
