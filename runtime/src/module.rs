//! Compiling a rule module and checking it against the ABI before it ever runs.

use std::sync::Arc;

use rulebox_sdk::abi::{self, exports, imports};
use sha2::{Digest, Sha256};
use wasmtime::{ExternType, InstancePre, Module, ValType};

use crate::host::HostState;
use crate::quarantine::{Fault, Reason};
use crate::runtime::Runtime;

/// Why a module was refused at load. Every variant names what was wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The bytes do not start with the WebAssembly header.
    #[error("not a WebAssembly module: the first bytes are not `\\0asm` version 1")]
    NotWasm,
    /// The module is larger than the runtime accepts.
    #[error("module is {size} bytes; the limit is {limit}")]
    ModuleTooLarge {
        /// The module's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The module does not validate or compile.
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// A required export is missing.
    #[error("missing export `{0}`")]
    MissingExport(&'static str),
    /// An export has the wrong type.
    #[error("export `{name}` has type {found}; the ABI requires {expected}")]
    WrongExportType {
        /// The export.
        name: String,
        /// What it is.
        found: String,
        /// What the ABI requires.
        expected: &'static str,
    },
    /// The module imports something the runtime does not provide.
    #[error("forbidden import `{module}.{name}` ({detail})")]
    ForbiddenImport {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
        /// Why it is refused.
        detail: String,
    },
    /// The module's memory is larger than the cap, at declaration or at load.
    #[error("memory of {declared} bytes is over the rule's cap of {cap} bytes")]
    MemoryOverCap {
        /// Bytes declared (or reached during the start routine).
        declared: u64,
        /// The cap.
        cap: u64,
    },
    /// The module's table is larger than the cap.
    #[error("table of {declared} elements is over the cap of {cap}")]
    TableOverCap {
        /// Elements declared.
        declared: u64,
        /// The cap.
        cap: u64,
    },
    /// The module reports an unsupported ABI version.
    #[error("module implements ABI version {found}; this runtime implements {expected}")]
    AbiVersion {
        /// The module's version.
        found: i64,
        /// The runtime's.
        expected: u32,
    },
    /// The module was built against another event schema.
    #[error("module was built for event-schema version {found}; this runtime supplies {expected}")]
    SchemaVersion {
        /// The module's version.
        found: u32,
        /// The runtime's.
        expected: u32,
    },
    /// Loading (instantiation, wasm `start`, `_initialize`, the metadata call, a pack's
    /// `rulebox_load` of its rule data) ran out of fuel or time.
    #[error("loading (start routine, metadata, rule data) did not finish within its budget: {0}")]
    StartTooLong(Fault),
    /// Loading (as for [`StartTooLong`](Self::StartTooLong)) trapped.
    #[error("loading (start routine, metadata, rule data) trapped: {0}")]
    StartFailed(Fault),
    /// The metadata is invalid.
    #[error("bad metadata: {0}")]
    BadMetadata(String),
    /// Another loaded rule has the same id.
    #[error("another loaded rule already has the id `{0}`")]
    DuplicateId(String),
    /// Several modules loaded together declare the same rule id: every claimant is refused (the
    /// text names them all).
    #[error("{0}")]
    DuplicateClaim(String),
    /// A rule pack refused its rule data, or the data is larger than the runtime accepts.
    #[error("rule data refused: {0}")]
    BadRuleData(String),
    /// The module implements the other ABI than the call expects: a rule pack given where one rule
    /// is expected (`LoadedRule`), or a one-rule module where a pack is.
    #[error(
        "module implements ABI version {found}; this call loads ABI version {expected} (a {what})"
    )]
    WrongAbi {
        /// The module's ABI.
        found: u32,
        /// The ABI the call loads.
        expected: u32,
        /// What the call loads: `one-rule module` or `rule pack`.
        what: &'static str,
    },
    /// A refusal under the limits of one rule (or pack), known once its metadata was read (a
    /// per-rule memory cap): the id, version and limits go into the quarantine record, so that
    /// `replay` reproduces the refusal under the same limits.
    #[error("`{id}` version `{version}`: {error}")]
    UnderRuleLimits {
        /// The rule's (or pack's) id, from its metadata.
        id: String,
        /// Its version.
        version: String,
        /// The limits it was refused under.
        limits: Box<crate::config::Limits>,
        /// Why it was refused.
        error: Box<LoadError>,
    },
}

impl LoadError {
    /// The typed reason recorded in the quarantine list.
    pub fn reason(&self) -> Reason {
        match self {
            LoadError::UnderRuleLimits { error, .. } => error.reason(),
            LoadError::NotWasm => Reason::NotWasm,
            LoadError::ModuleTooLarge { .. } => Reason::ModuleTooLarge,
            LoadError::InvalidModule(_) => Reason::InvalidModule,
            LoadError::MissingExport(_) => Reason::MissingExport,
            LoadError::WrongExportType { .. } => Reason::WrongExportType,
            LoadError::ForbiddenImport { .. } => Reason::ForbiddenImport,
            LoadError::MemoryOverCap { .. } => Reason::MemoryOverCap,
            LoadError::TableOverCap { .. } => Reason::TableOverCap,
            LoadError::AbiVersion { .. } => Reason::AbiVersion,
            LoadError::SchemaVersion { .. } => Reason::SchemaVersion,
            LoadError::StartTooLong(_) => Reason::StartTooLong,
            LoadError::StartFailed(_) => Reason::StartFailed,
            LoadError::BadMetadata(_) => Reason::BadMetadata,
            LoadError::DuplicateId(_) | LoadError::DuplicateClaim(_) => Reason::DuplicateId,
            LoadError::BadRuleData(_) => Reason::BadRuleData,
            LoadError::WrongAbi { .. } => Reason::AbiVersion,
        }
    }

    /// The error as a [`Fault`] (with the trap backtrace, when there was one).
    pub fn to_fault(&self) -> Fault {
        match self {
            LoadError::UnderRuleLimits { error, .. } => Fault {
                message: self.to_string(),
                ..error.to_fault()
            },
            LoadError::StartTooLong(f) | LoadError::StartFailed(f) => Fault {
                reason: self.reason(),
                message: self.to_string(),
                backtrace: f.backtrace.clone(),
            },
            _ => Fault {
                reason: self.reason(),
                message: self.to_string(),
                backtrace: None,
            },
        }
    }
}

/// A module that compiled and passed every static check, ready to instantiate. Cheap to clone;
/// shareable across threads.
#[derive(Clone)]
pub struct CompiledRule {
    pub(crate) inner: Arc<CompiledInner>,
}

pub(crate) struct CompiledInner {
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) content_hash: String,
    pub(crate) source: String,
    pub(crate) wasi: bool,
    pub(crate) has_initialize: bool,
    pub(crate) has_last_panic: bool,
    pub(crate) declared_memory: u64,
    /// The ABI the exports implement: [`abi::ABI_VERSION`] (one rule) or
    /// [`abi::PACK_ABI_VERSION`] (a pack).
    pub(crate) abi: u32,
}

impl std::fmt::Debug for CompiledRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRule")
            .field("source", &self.inner.source)
            .field("content_hash", &self.inner.content_hash)
            .field("wasi", &self.inner.wasi)
            .finish()
    }
}

impl CompiledRule {
    /// SHA-256 of the module bytes, hex.
    pub fn content_hash(&self) -> &str {
        &self.inner.content_hash
    }

    /// Where the module came from.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Whether the module uses WASI preview 1.
    pub fn uses_wasi(&self) -> bool {
        self.inner.wasi
    }

    /// The memory size the module declares, in bytes.
    pub fn declared_memory(&self) -> u64 {
        self.inner.declared_memory
    }

    /// The ABI the module's exports implement: 2 (one rule, `rulebox_on_event`) or 3 (a rule pack,
    /// `rulebox_on_events`). The module's own `rulebox_abi_version` is checked against it at load.
    pub fn abi_version(&self) -> u32 {
        self.inner.abi
    }

    /// Whether the module is a rule pack (ABI 3).
    pub fn is_pack(&self) -> bool {
        self.inner.abi == abi::PACK_ABI_VERSION
    }
}

/// SHA-256 of `bytes`, hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

const WASM_HEADER: [u8; 8] = [0, b'a', b's', b'm', 1, 0, 0, 0];

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => format!("func {f}"),
        ExternType::Memory(m) => format!("memory {m:?}"),
        ExternType::Table(t) => format!("table {t:?}"),
        ExternType::Global(g) => format!("global {g:?}"),
        ExternType::Tag(_) => "tag".to_owned(),
    }
}

fn func_matches(ty: &ExternType, params: &[ValType], results: &[ValType]) -> bool {
    let ExternType::Func(f) = ty else {
        return false;
    };
    f.params().len() == params.len()
        && f.results().len() == results.len()
        && f.params().zip(params).all(|(a, b)| ValType::eq(&a, b))
        && f.results().zip(results).all(|(a, b)| ValType::eq(&a, b))
}

pub(crate) fn compile(
    runtime: &Runtime,
    bytes: &[u8],
    source: &str,
) -> Result<CompiledRule, LoadError> {
    let config = runtime.config();
    if bytes.len() > config.max_module_bytes {
        return Err(LoadError::ModuleTooLarge {
            size: bytes.len(),
            limit: config.max_module_bytes,
        });
    }
    if bytes.get(..8) != Some(&WASM_HEADER[..]) {
        return Err(LoadError::NotWasm);
    }
    let module = Module::new(runtime.engine(), bytes)
        .map_err(|e| LoadError::InvalidModule(format!("{e:#}")))?;
    check(runtime, &module, content_hash(bytes), source)
}

/// The ABI checks on a compiled `module` (imports, exports, declared memory and tables), shared by a
/// cold compile and a module deserialized from the host's own precompiled cache: a cached artifact
/// passes exactly the checks its source did.
pub(crate) fn check(
    runtime: &Runtime,
    module: &Module,
    content_hash: String,
    source: &str,
) -> Result<CompiledRule, LoadError> {
    let config = runtime.config();
    // A pack exports `rulebox_on_events`; a one-rule module `rulebox_on_event`.
    let is_pack = module.get_export(exports::ON_EVENTS).is_some();
    // Imports: only `rulebox.log`, WASI preview 1 functions, and for a pack the calling-sequence
    // functions of ABI 3.
    let mut wasi = false;
    for import in module.imports() {
        let ty = import.ty();
        let forbidden = |detail: &str| LoadError::ForbiddenImport {
            module: import.module().to_owned(),
            name: import.name().to_owned(),
            detail: detail.to_owned(),
        };
        match (import.module(), import.name()) {
            (imports::MODULE, imports::LOG) => {
                if !func_matches(&ty, &[ValType::I32, ValType::I32, ValType::I32], &[]) {
                    return Err(forbidden(&format!(
                        "has type {}; the ABI defines (i32, i32, i32)",
                        describe(&ty)
                    )));
                }
            }
            (
                imports::MODULE,
                name @ (imports::EVENT_BEGIN | imports::RULE_BEGIN | imports::RULE_END),
            ) => {
                if !is_pack {
                    return Err(forbidden(
                        "only a rule pack (a module exporting `rulebox_on_events`) may import it",
                    ));
                }
                let (params, results, text): (&[ValType], &[ValType], &str) =
                    if name == imports::RULE_END {
                        (&[ValType::I32, ValType::I32], &[], "(i32, i32)")
                    } else {
                        (&[ValType::I32], &[ValType::I32], "(i32) -> i32")
                    };
                if !func_matches(&ty, params, results) {
                    return Err(forbidden(&format!(
                        "has type {}; the ABI defines {text}",
                        describe(&ty)
                    )));
                }
            }
            (imports::WASI_P1_MODULE, _) => {
                if !matches!(ty, ExternType::Func(_)) {
                    return Err(forbidden("only WASI functions can be imported"));
                }
                wasi = true;
            }
            _ => {
                return Err(forbidden(
                    "the runtime provides only `rulebox.log`, a pack's `rulebox.event_begin`, \
                     `rulebox.rule_begin` and `rulebox.rule_end`, and WASI preview 1",
                ));
            }
        }
    }

    // Exports the ABI requires, with their exact types.
    let export = |name: &'static str| module.get_export(name);
    let (call_first, call_events) = if is_pack {
        (exports::LOAD, exports::ON_EVENTS)
    } else {
        (exports::METADATA, exports::ON_EVENT)
    };
    let required: [(&'static str, &[ValType], &[ValType], &'static str); 4] = [
        (exports::ABI_VERSION, &[], &[ValType::I32], "func () -> i32"),
        if is_pack {
            (
                call_first,
                &[ValType::I32],
                &[ValType::I64],
                "func (i32) -> i64",
            )
        } else {
            (call_first, &[], &[ValType::I64], "func () -> i64")
        },
        (
            exports::INPUT,
            &[ValType::I32],
            &[ValType::I32],
            "func (i32) -> i32",
        ),
        (
            call_events,
            &[ValType::I32],
            &[ValType::I64],
            "func (i32) -> i64",
        ),
    ];
    for (name, params, results, expected) in required {
        let ty = export(name).ok_or(LoadError::MissingExport(name))?;
        if !func_matches(&ty, params, results) {
            return Err(LoadError::WrongExportType {
                name: name.to_owned(),
                found: describe(&ty),
                expected,
            });
        }
    }
    let optional: [(&'static str, &[ValType], &[ValType], &'static str); 2] = [
        (exports::LAST_PANIC, &[], &[ValType::I64], "func () -> i64"),
        (exports::INITIALIZE, &[], &[], "func ()"),
    ];
    let mut present = [false; 2];
    for (i, (name, params, results, expected)) in optional.into_iter().enumerate() {
        if let Some(ty) = export(name) {
            if !func_matches(&ty, params, results) {
                return Err(LoadError::WrongExportType {
                    name: name.to_owned(),
                    found: describe(&ty),
                    expected,
                });
            }
            present[i] = true;
        }
    }

    // The memory: exported, 32-bit, declared within the default cap (per-rule caps are checked again
    // once the rule's id is known).
    let memory = match export(exports::MEMORY) {
        Some(ExternType::Memory(m)) => m,
        Some(other) => {
            return Err(LoadError::WrongExportType {
                name: exports::MEMORY.to_owned(),
                found: describe(&other),
                expected: "memory",
            });
        }
        None => return Err(LoadError::MissingExport(exports::MEMORY)),
    };
    if memory.is_64() || memory.is_shared() {
        return Err(LoadError::WrongExportType {
            name: exports::MEMORY.to_owned(),
            found: format!("{memory:?}"),
            expected: "an unshared 32-bit memory",
        });
    }
    let declared_memory = memory.minimum().saturating_mul(memory.page_size());
    let cap = config.limits.memory_bytes.max(
        config
            .rules
            .values()
            .map(|l| l.memory_bytes)
            .max()
            .unwrap_or(0),
    );
    if declared_memory > cap {
        return Err(LoadError::MemoryOverCap {
            declared: declared_memory,
            cap,
        });
    }
    for export in module.exports() {
        if let ExternType::Table(t) = export.ty() {
            let cap = config.limits.table_elements;
            if t.minimum() > cap {
                return Err(LoadError::TableOverCap {
                    declared: t.minimum(),
                    cap,
                });
            }
        }
    }

    let pre = runtime
        .linker()
        .instantiate_pre(module)
        .map_err(|e| LoadError::ForbiddenImport {
            module: String::new(),
            name: String::new(),
            detail: format!("{e:#}"),
        })?;

    Ok(CompiledRule {
        inner: Arc::new(CompiledInner {
            pre,
            content_hash,
            source: source.to_owned(),
            wasi,
            has_last_panic: present[0],
            has_initialize: present[1],
            declared_memory,
            abi: if is_pack {
                abi::PACK_ABI_VERSION
            } else {
                abi::ABI_VERSION
            },
        }),
    })
}
