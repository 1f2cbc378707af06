//! What loading a folder of modules together gives: a rule id claimed by more than one module is
//! refused for every claimant, so an impostor that declares a good rule's id never wins by loading
//! first.

use std::sync::Arc;

use crate::quarantine::QuarantineRecord;
use crate::rule_info::RuleInfo;

/// One module that declared a contested rule id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    /// Where the module came from (its file).
    pub source: String,
    /// The module's content hash.
    pub content_hash: String,
    /// The version it declared for the rule.
    pub version: String,
}

/// A rule id that several modules of the folder (or a module and a rule already loaded) claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateClaim {
    /// The contested rule id.
    pub id: String,
    /// Every module that claims it, in load order; none of them was loaded.
    pub claimants: Vec<Claimant>,
}

/// What [`RuleSet::load_folder`](crate::RuleSet::load_folder) did.
#[derive(Debug, Default)]
pub struct FolderLoad {
    /// The rules loaded, in load order.
    pub loaded: Vec<Arc<RuleInfo>>,
    /// The record of every module refused, duplicate claimants included (each names all the
    /// claimants of its id).
    pub refused: Vec<Arc<QuarantineRecord>>,
    /// Each contested id once, with all its claimants: one alert each.
    pub duplicates: Vec<DuplicateClaim>,
}

impl DuplicateClaim {
    /// The claimants in words (files and hashes), for messages.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .claimants
            .iter()
            .map(|c| format!("{} ({})", c.source, c.content_hash))
            .collect();
        format!(
            "rule id `{}` is claimed by {} modules, so none of them is loaded: {}",
            self.id,
            self.claimants.len(),
            names.join(", ")
        )
    }
}
