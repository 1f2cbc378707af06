//! # rulebox-sigma: Sigma rules as sandboxed rulebox content
//!
//! [`compile`] turns a Sigma rule (YAML) into a [`Program`]: `logsource` mapped onto rulebox event
//! kinds, every selection and modifier lowered to plain field tests (wildcards, `contains`,
//! `startswith`, `endswith`, `all`, `windash`, `base64`, `base64offset`, `wide`, `re`, `cidr`,
//! `exists`, `fieldref`, `lt`/`lte`/`gt`/`gte`, `cased`, null values, keywords), the condition parsed
//! (`and`, `or`, `not`, parentheses, `1 of` / `all of` patterns, `them`). Anything it does not
//! support is refused with a [`SigmaError`] naming the construct; a rule never compiles into
//! something that matches differently.
//!
//! [`rule_data`] frames compiled programs as the rule data of the sandboxed evaluator (crate
//! `rulebox-sigma-eval`, built to WebAssembly once: a rule pack whose rules are data), so that a
//! whole rule set is one engine and one data load; [`build_module`] instead embeds one program in
//! the evaluator, giving a one-rule pack module that loads without data. The host never
//! interprets rule data: only the evaluator in the sandbox does. [`cases`] runs folders of rules
//! with their recorded events through the real sandbox.
//!
//! ```
//! let rule = r#"
//! title: Whoami
//! id: 0b4e1d2c-0000-4000-8000-000000000001
//! logsource: {product: windows, category: process_creation}
//! detection:
//!     selection:
//!         Image|endswith: '\whoami.exe'
//!     condition: selection
//! level: low
//! "#;
//! let program = rulebox_sigma::compile(rule).unwrap();
//! assert_eq!(program.id, "0b4e1d2c-0000-4000-8000-000000000001");
//!
//! let refused = rulebox_sigma::compile(&rule.replace("|endswith", "|expand")).unwrap_err();
//! assert!(refused.to_string().contains("unsupported modifier `|expand`"));
//! ```

mod automaton;
mod case;
pub mod cases;
mod condition;
mod error;
mod gate;
pub mod ir;
mod literals;
mod logsource;
mod lower;
mod module;
mod needs;
mod pack;
mod refusals;
mod regex;
mod rule;
mod value;

pub use error::SigmaError;
pub use logsource::{EventSource, Lookup, Source, event_sources, map as map_logsource};
pub use module::{MAX_PROGRAM_BYTES, build_module};
pub use pack::{
    MAX_PACK_DATA_BYTES, RULE_OVERHEAD_BYTES, index_data, pack_order, rule_data, rule_record,
    split_packs, split_packs_in_order, split_packs_indexed, split_packs_with_rows,
    without_prefilter,
};
pub use refusals::Refusals;
pub use rule::compile;
pub use rulebox_sigma_eval::{Evaluator, Program, split_data};
