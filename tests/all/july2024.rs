//! The July 2024 class end to end: a template rule whose content reads one input field more than
//! the host supplies (`faulty/field-count`) is rejected by the validator before release, so the
//! signing gate refuses it; forced onto an endpoint anyway (signed by other means), it is
//! quarantined on its first event while every other rule keeps detecting.

use rulebox_example_artifacts::by_name;
use rulebox_release::{BundleOptions, ModuleSource, ReleaseError};
use rulebox_runtime::content::{ContentStore, Manifest, Signed, now_unix};
use rulebox_runtime::{Alert, Reason, RuleSet};
use rulebox_validate::{GateError, Options};

use crate::common::runtime;
use crate::faults::demo_events;

#[test]
fn field_count_rule_is_refused_before_release_and_contained_if_forced_on_an_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let key = rulebox_release::generate_key().unwrap();
    let mut root =
        rulebox_release::build_root(1, now_unix() + 86_400, &[key.public.as_str()], 1).unwrap();
    rulebox_release::sign_root(&mut root, &key).unwrap();

    // The vendor builds a release with a good rule and the bad template instance.
    let bundle = tmp.path().join("release-291");
    let modules: Vec<ModuleSource> = ["office-shell", "field-count"]
        .iter()
        .map(|n| ModuleSource::Bytes {
            name: (*n).to_owned(),
            bytes: by_name(n).unwrap().bytes.to_vec(),
        })
        .collect();
    // It loads (its metadata is fine): load-time checks alone would have let it through.
    rulebox_release::build_bundle(
        &bundle,
        &modules,
        &BundleOptions::new(291, now_unix() + 86_400, "channel file 291"),
    )
    .unwrap();

    // 1. The validator, which is the production runtime, rejects it.
    let quick = Options {
        generated_per_kind: 8,
        ..Options::default()
    };
    let (report, _) = rulebox_release::validate_for_release(&bundle, &quick, &key).unwrap();
    assert!(!report.passed);
    let bad = report
        .rules
        .iter()
        .find(|r| r.rule_id.as_deref() == Some("faulty-field-count"))
        .unwrap();
    assert_eq!(bad.fault.as_ref().unwrap().reason, "out_of_bounds");
    assert!(
        report
            .rules
            .iter()
            .filter(|r| r.rule_id.as_deref() != Some("faulty-field-count"))
            .all(|r| r.passed)
    );

    // 2. The signing gate refuses.
    let err = rulebox_release::sign_manifest(&bundle, &key).unwrap_err();
    assert!(
        matches!(err, ReleaseError::NotValidated(GateError::Failed { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("faulty-field-count"), "{err}");

    // 3. Forced: signed by hand, installed on an endpoint whose store trusts the key.
    let manifest_path = bundle.join("manifest.json");
    let mut envelope: Signed<Manifest> =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    rulebox_release::add_signature(&mut envelope, &key).unwrap();
    std::fs::write(&manifest_path, serde_json::to_vec(&envelope).unwrap()).unwrap();
    let store_dir = tmp.path().join("store");
    let mut store = ContentStore::init(&store_dir, &serde_json::to_vec(&root).unwrap()).unwrap();
    store.install(&bundle, now_unix()).unwrap();
    let verified = store.load_release(291).unwrap();

    // 4. The agent's run time: the bad rule is quarantined, the host and the other rule carry on.
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        for (entry, bytes) in verified.modules() {
            let compiled = rt.compile(bytes, &entry.file).unwrap();
            set.upsert_with_limits(thread, &compiled, entry.limits.as_ref())
                .unwrap();
        }
        let mut quarantined = Vec::new();
        let mut office = 0;
        for event in demo_events() {
            let outcome = set
                .process(thread, &event)
                .expect("the host keeps processing");
            office += outcome
                .detections
                .iter()
                .filter(|d| d.rule.id == "office-spawns-shell")
                .count();
            for alert in outcome.alerts {
                if let Alert::RuleQuarantined(r) = alert {
                    quarantined.push((r.rule_id.clone(), r.reason));
                }
            }
        }
        assert_eq!(
            quarantined,
            vec![("faulty-field-count".to_owned(), Reason::OutOfBounds)]
        );
        assert!(!set.is_active("faulty-field-count"));
        assert!(set.is_active("office-spawns-shell"));
        assert!(office >= 1, "the good rule still detects");
    });
}
