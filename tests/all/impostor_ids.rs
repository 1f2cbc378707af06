//! Impostor rule ids: a module that declares the id of a good rule never takes it over by loading
//! first. Loaded together (a folder), every claimant of a contested id is refused, and one claim
//! names them all.

use rulebox_runtime::{Reason, RuleSet};

use crate::common::runtime;
use crate::wat::{Pack, Rule};

#[test]
fn an_impostor_id_in_a_folder_refuses_every_claimant_and_names_both_files() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let impostor = Rule::firing("good").build();
        let mut genuine = Rule::firing("good");
        genuine.body = "i64.const 0".into();
        let genuine = genuine.build();
        let other = Rule::firing("other").build();
        let mut set = RuleSet::new(&rt);
        let load = set.load_folder(
            thread,
            &[
                (&impostor, "a-impostor.wasm"),
                (&genuine, "b-good.wasm"),
                (&other, "c-other.wasm"),
            ],
        );
        let ids: Vec<&str> = load.loaded.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["other"], "only the uncontested rule loads");
        let [claim] = &load.duplicates[..] else {
            panic!("{:?}", load.duplicates);
        };
        assert_eq!(claim.id, "good");
        let sources: Vec<&str> = claim.claimants.iter().map(|c| c.source.as_str()).collect();
        assert_eq!(sources, ["a-impostor.wasm", "b-good.wasm"]);
        assert_eq!(
            claim.claimants[0].content_hash,
            rulebox_runtime::content_hash(&impostor)
        );
        assert_eq!(load.refused.len(), 2, "both claimants refused");
        for record in &load.refused {
            assert_eq!(record.reason, Reason::DuplicateId);
            assert_eq!(record.rule_id, "good");
            assert!(
                record.message.contains("a-impostor.wasm")
                    && record.message.contains("b-good.wasm"),
                "{}",
                record.message
            );
        }
        assert!(set.rules().all(|(r, _, _)| r.id != "good"));
    });
}

#[test]
fn an_impostor_of_a_loaded_rule_or_a_pack_member_is_refused_with_the_pack() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        let loaded = Rule::firing("loaded").build();
        set.load(thread, &loaded, "loaded.wasm").unwrap();
        // A folder whose pack claims the id of a rule already running: the pack is refused, the
        // running rule stays, and the claim names both.
        let pack = Pack::new("impostor-pack", &[("fine", ""), ("loaded", "")]).build();
        let load = set.load_folder(thread, &[(&pack, "pack.wasm")]);
        assert!(load.loaded.is_empty());
        let [claim] = &load.duplicates[..] else {
            panic!("{:?}", load.duplicates);
        };
        let sources: Vec<&str> = claim.claimants.iter().map(|c| c.source.as_str()).collect();
        assert_eq!(sources, ["loaded.wasm", "pack.wasm"]);
        let [record] = &load.refused[..] else {
            panic!("{:?}", load.refused);
        };
        assert_eq!(record.reason, Reason::DuplicateId);
        assert_eq!(
            record.pack.as_ref().map(|p| p.id.as_str()),
            Some("impostor-pack")
        );
        let ids: Vec<String> = set.rules().map(|(r, _, _)| r.id.clone()).collect();
        assert_eq!(ids, ["loaded"]);
    });
}
