//! **The example rules as one rule pack.**
//!
//! The eight rules of `example-rules/rules/`, unchanged, exported from one module with
//! [`rulebox_sdk::export_rules!`] (ABI 3): one sandbox evaluates all of them on one copy of each
//! batch of events, and each keeps its own metadata, state, fuel budget, counters and quarantine.
//! Rule index `i` is the `i`th type below, in the order of [`RULES`].
//!
//! Each rule's own crate exports it as a module of its own (feature `module`, on by default); this
//! crate turns that feature off, so the rules' code is linked here without their exports.
#![cfg_attr(target_arch = "wasm32", no_std)]

pub use rule_attack_pipe::AttackPipe;
pub use rule_dns_random_name::DnsRandomName;
pub use rule_encoded_powershell::EncodedPowerShell;
pub use rule_lsass_access::LsassAccess;
pub use rule_mass_rename::MassRename;
pub use rule_office_shell::OfficeShell;
pub use rule_run_key::RunKey;
pub use rule_script_host_network::ScriptHostNetwork;
use rulebox_sdk::{PackMeta, Rule};

/// The pack's identity.
pub const PACK: PackMeta = PackMeta {
    id: "example-pack",
    name: "The example rules, as one pack",
    version: "1.0.0",
};

/// The ids of the pack's rules, in index order.
pub const RULES: [&str; 8] = [
    AttackPipe::META.id,
    DnsRandomName::META.id,
    EncodedPowerShell::META.id,
    LsassAccess::META.id,
    MassRename::META.id,
    OfficeShell::META.id,
    RunKey::META.id,
    ScriptHostNetwork::META.id,
];

rulebox_sdk::export_rules!(
    pack: PACK;
    AttackPipe,
    DnsRandomName,
    EncodedPowerShell,
    LsassAccess,
    MassRename,
    OfficeShell,
    RunKey,
    ScriptHostNetwork,
);
