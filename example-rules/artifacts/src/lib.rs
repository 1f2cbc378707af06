//! The example rules of `example-rules/`, built to WebAssembly from source and embedded as bytes.
//!
//! `build.rs` builds every crate under `example-rules/rules/` (the good rules) and
//! `example-rules/faulty/` (the faulty-content set) for `wasm32-unknown-unknown`, and every crate under
//! `example-rules/wasi/` for `wasm32-wasip1`, and every crate under `example-rules/engines/` (evaluators
//! that content is embedded into, [`SIGMA_EVAL`]) and `example-rules/packs/` (rule packs:
//! [`EXAMPLE_PACK`], the good rules in one module; [`MANY_RULES`], a test engine whose rules are
//! data; [`HOSTILE_PACK`], hand-written exports that break the ABI on command) for
//! `wasm32-unknown-unknown`, then generates one [`Artifact`] constant per module
//! (named after the crate's folder in SCREAMING_SNAKE_CASE: [`OFFICE_SHELL`], [`FIELD_COUNT`], ...)
//! and the table [`ALL`]. The `.wasm` files are never committed; building this crate needs the wasm
//! targets (`rustup target add wasm32-unknown-unknown wasm32-wasip1`).
//!
//! [`native`] has the same good rules as ordinary Rust types, so a test or benchmark can run each rule
//! natively and sandboxed from the same source.
//!
//! ```
//! use rulebox_example_artifacts::{ArtifactKind, by_name, good};
//!
//! let office = by_name("office-shell").unwrap();
//! assert_eq!(office.kind, ArtifactKind::Good);
//! assert!(office.bytes.starts_with(b"\0asm"));
//! assert!(good().all(|a| a.kind == ArtifactKind::Good));
//! ```

/// Which set an example module belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArtifactKind {
    /// A real detection rule (`example-rules/rules/`), `wasm32-unknown-unknown`.
    Good,
    /// One fault class of the faulty-content set (`example-rules/faulty/`), `wasm32-unknown-unknown`.
    Faulty,
    /// A rule that links `std`, built for `wasm32-wasip1` (`example-rules/wasi/`).
    Wasi,
    /// An evaluator that content is embedded into before it is a rule (`example-rules/engines/`),
    /// `wasm32-unknown-unknown`. Loaded as it is, it is refused (it has no rule yet).
    Engine,
    /// A rule pack (ABI 3: many rules in one module, `example-rules/packs/`),
    /// `wasm32-unknown-unknown`.
    Pack,
}

impl ArtifactKind {
    /// `"good"`, `"faulty"`, `"wasi"`, `"engine"` or `"pack"`.
    pub const fn name(self) -> &'static str {
        match self {
            ArtifactKind::Good => "good",
            ArtifactKind::Faulty => "faulty",
            ArtifactKind::Wasi => "wasi",
            ArtifactKind::Engine => "engine",
            ArtifactKind::Pack => "pack",
        }
    }
}

/// One example rule module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Artifact {
    /// The crate's folder name, e.g. `"office-shell"` or `"field-count"`.
    pub name: &'static str,
    /// Which set it belongs to.
    pub kind: ArtifactKind,
    /// Where the module was written at build time (inside this crate's `OUT_DIR`).
    pub path: &'static str,
    /// The module itself.
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The artifact whose crate folder is `name`.
pub fn by_name(name: &str) -> Option<&'static Artifact> {
    ALL.iter().find(|a| a.name == name)
}

/// The good rules.
pub fn good() -> impl Iterator<Item = &'static Artifact> {
    of_kind(ArtifactKind::Good)
}

/// The faulty-content set.
pub fn faulty() -> impl Iterator<Item = &'static Artifact> {
    of_kind(ArtifactKind::Faulty)
}

/// The WASI rules.
pub fn wasi() -> impl Iterator<Item = &'static Artifact> {
    of_kind(ArtifactKind::Wasi)
}

/// The engines.
pub fn engines() -> impl Iterator<Item = &'static Artifact> {
    of_kind(ArtifactKind::Engine)
}

/// The rule packs.
pub fn packs() -> impl Iterator<Item = &'static Artifact> {
    of_kind(ArtifactKind::Pack)
}

fn of_kind(kind: ArtifactKind) -> impl Iterator<Item = &'static Artifact> {
    ALL.iter().filter(move |a| a.kind == kind)
}

/// The demo intrusion (`example-rules/events/demo.jsonl`): one event a line in rulebox's JSON event
/// format, attacks that each good rule detects mixed with ordinary activity.
pub const DEMO_EVENTS: &str = include_str!("../../events/demo.jsonl");

/// The good rules as native Rust types, from the same source as their modules.
pub mod native {
    use rulebox_sdk::{
        Detection, Detections, Event, EventView, Rule, RuleMeta, run_native, run_native_view,
    };

    pub use rule_attack_pipe::AttackPipe;
    pub use rule_dns_random_name::DnsRandomName;
    pub use rule_encoded_powershell::EncodedPowerShell;
    pub use rule_lsass_access::LsassAccess;
    pub use rule_mass_rename::MassRename;
    pub use rule_office_shell::OfficeShell;
    pub use rule_run_key::RunKey;
    pub use rule_script_host_network::ScriptHostNetwork;

    /// A rule run natively, behind a trait object (any [`Rule`] is one).
    pub trait NativeRule {
        /// The rule's id ([`RuleMeta::id`]).
        fn id(&self) -> &'static str;
        /// The rule's metadata.
        fn meta(&self) -> RuleMeta;
        /// Runs the rule on one event as the host would (only kinds it subscribes to reach it); returns
        /// its detections.
        fn on_event(&mut self, event: &Event<'_>) -> Vec<Detection<'static>>;
        /// Runs the rule on an already-encoded event as the host would, into `out` (cleared first;
        /// make it with [`NativeRule::detections`]).
        fn on_view(&mut self, event: &EventView<'_>, out: &mut Detections);
        /// An empty detection list carrying this rule's id and severity.
        fn detections(&self) -> Detections;
    }

    impl<R: Rule> NativeRule for R {
        fn id(&self) -> &'static str {
            R::META.id
        }

        fn meta(&self) -> RuleMeta {
            R::META
        }

        fn on_event(&mut self, event: &Event<'_>) -> Vec<Detection<'static>> {
            run_native(self, event)
        }

        fn on_view(&mut self, event: &EventView<'_>, out: &mut Detections) {
            run_native_view(self, event, out);
        }

        fn detections(&self) -> Detections {
            Detections::new(R::META.id, R::META.severity)
        }
    }

    /// The artifact names (crate folders) of the good rules, which [`new_native`] knows.
    pub const NAMES: &[&str] = &[
        "attack-pipe",
        "dns-random-name",
        "encoded-powershell",
        "lsass-access",
        "mass-rename",
        "office-shell",
        "run-key",
        "script-host-network",
    ];

    /// A fresh native instance of the good rule whose crate folder is `name` (the artifact's name);
    /// `None` for faulty, WASI or unknown names.
    pub fn new_native(name: &str) -> Option<Box<dyn NativeRule>> {
        Some(match name {
            "attack-pipe" => Box::new(AttackPipe),
            "dns-random-name" => Box::new(DnsRandomName),
            "encoded-powershell" => Box::new(EncodedPowerShell),
            "lsass-access" => Box::new(LsassAccess),
            "mass-rename" => Box::new(MassRename::default()),
            "office-shell" => Box::new(OfficeShell),
            "run-key" => Box::new(RunKey),
            "script-host-network" => Box::new(ScriptHostNetwork),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The crate folders under `example-rules/<dir>/`.
    fn folders(dir: &str) -> BTreeSet<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
        std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("Cargo.toml").is_file())
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect()
    }

    fn names(kind: ArtifactKind) -> BTreeSet<String> {
        of_kind(kind).map(|a| a.name.to_owned()).collect()
    }

    #[test]
    fn every_artifact_is_a_wasm_module() {
        assert!(!ALL.is_empty());
        for a in ALL {
            assert!(a.bytes.starts_with(b"\0asm"), "{} is not wasm", a.name);
            // Version 1 of the binary format (a core module, not a component).
            assert_eq!(&a.bytes[4..8], &[1, 0, 0, 0], "{}", a.name);
            assert_eq!(std::fs::read(a.path).unwrap(), a.bytes, "{}", a.name);
        }
    }

    #[test]
    fn all_has_every_crate_folder() {
        assert_eq!(names(ArtifactKind::Good), folders("rules"));
        assert_eq!(names(ArtifactKind::Faulty), folders("faulty"));
        assert_eq!(names(ArtifactKind::Wasi), folders("wasi"));
        assert_eq!(names(ArtifactKind::Engine), folders("engines"));
        assert_eq!(names(ArtifactKind::Pack), folders("packs"));
        let unique: BTreeSet<_> = ALL.iter().map(|a| a.name).collect();
        assert_eq!(unique.len(), ALL.len());
    }

    #[test]
    fn the_faulty_set_is_complete() {
        let expected = [
            "deep-recursion",
            "endless-loop",
            "endless-start",
            "field-count",
            "garbage-result",
            "memory-bomb",
            "null-deref",
            "panics",
        ];
        assert_eq!(
            names(ArtifactKind::Faulty),
            expected.map(String::from).into()
        );
    }

    #[test]
    fn lookups() {
        assert_eq!(by_name("office-shell"), Some(&OFFICE_SHELL));
        assert_eq!(
            by_name("field-count").map(|a| a.kind),
            Some(ArtifactKind::Faulty)
        );
        assert_eq!(by_name("chatty").map(|a| a.kind), Some(ArtifactKind::Wasi));
        assert_eq!(by_name("no-such-rule"), None);
        assert_eq!(FIELD_COUNT.name, "field-count");
        assert_eq!(
            good().count()
                + faulty().count()
                + wasi().count()
                + engines().count()
                + packs().count(),
            ALL.len()
        );
        assert!(faulty().all(|a| a.kind == ArtifactKind::Faulty));
    }

    #[test]
    fn every_good_rule_has_a_native_build_with_the_same_id() {
        let native_names: BTreeSet<String> = native::NAMES.iter().map(|s| s.to_string()).collect();
        assert_eq!(native_names, names(ArtifactKind::Good));
        for a in good() {
            let rule = native::new_native(a.name).unwrap_or_else(|| panic!("{}", a.name));
            // The id is a string constant of the module's metadata, so it is in its data section.
            let id = rule.id().as_bytes();
            assert!(
                a.bytes.windows(id.len()).any(|w| w == id),
                "{}: module does not contain the native rule's id {}",
                a.name,
                rule.id()
            );
            assert_eq!(rule.meta().id, rule.id());
        }
        assert_eq!(by_name("sigma-eval"), Some(&SIGMA_EVAL));
        assert_eq!(SIGMA_EVAL.kind, ArtifactKind::Engine);
        for a in faulty().chain(wasi()).chain(engines()).chain(packs()) {
            assert!(native::new_native(a.name).is_none(), "{}", a.name);
        }
    }

    #[test]
    fn native_rules_detect_on_the_demo_events() {
        let events: Vec<rulebox_sdk::Event<'_>> = DEMO_EVENTS
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert!(events.len() >= 20, "{} demo events parse", events.len());
        for name in native::NAMES {
            let mut rule = native::new_native(name).unwrap();
            let hits: usize = events.iter().map(|e| rule.on_event(e).len()).sum();
            assert!(hits >= 1, "{name} detects nothing in the demo");
            assert!(
                hits < events.len() / 2,
                "{name} fires on {hits} of {} events",
                events.len()
            );
        }
    }
}
