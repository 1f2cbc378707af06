//! Hot update of a rule set: only the changed rule is replaced, the others keep their state, and a new
//! version that is quarantined gives way to the version it replaced, on the same event.

use rulebox_example_artifacts::{ALL, ArtifactKind};
use rulebox_runtime::{Alert, RuleSet, Upsert};
use rulebox_sdk::abi::{ABI_VERSION, SCHEMA_VERSION, pack};
use rulebox_sdk::{Detections, EventKind, EventKinds, RuleMetadata, Severity};

use crate::common::{process, runtime};

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// A hand-written rule `id` at `version`: it reports one detection titled `title` on every process
/// start, or traps on every event when `title` is `None`.
pub fn wat_rule(id: &str, version: &str, title: Option<&str>) -> Vec<u8> {
    let meta = postcard::to_allocvec(&RuleMetadata {
        schema_version: SCHEMA_VERSION,
        id: id.into(),
        name: "wat".into(),
        version: version.into(),
        severity: Severity::Medium,
        subscriptions: EventKinds::of(&[EventKind::ProcessStart]),
    })
    .unwrap();
    let body = match title {
        Some(title) => {
            let mut list = Detections::new("unused", Severity::Medium);
            list.detect(title);
            let result = list.as_bytes().to_vec();
            format!(
                r#"(data (i32.const 2048) "{}") (func (export "rulebox_on_event") (param i32) (result i64) i64.const {})"#,
                escape(&result),
                pack(2048, u32::try_from(result.len()).unwrap()).cast_signed()
            )
        }
        None => {
            r#"(func (export "rulebox_on_event") (param i32) (result i64) unreachable)"#.to_owned()
        }
    };
    let text = format!(
        r#"(module (memory (export "memory") 1)
            (data (i32.const 1024) "{meta}")
            (func (export "rulebox_abi_version") (result i32) i32.const {ABI_VERSION})
            (func (export "rulebox_metadata") (result i64) i64.const {packed})
            (func (export "rulebox_input") (param i32) (result i32) i32.const 8192)
            {body})"#,
        meta = escape(&meta),
        packed = pack(1024, u32::try_from(meta.len()).unwrap()).cast_signed(),
    );
    wat::parse_str(text).unwrap()
}

#[test]
fn a_quarantined_new_version_gives_way_to_the_previous_one_on_the_same_event() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        let v1 = rt.compile(&wat_rule("updated", "1", Some("seen by v1")), "v1").unwrap();
        let v2 = rt.compile(&wat_rule("updated", "2", None), "v2").unwrap();
        assert!(matches!(set.upsert(thread, &v1), Ok(Upsert::Added(_))));
        assert!(matches!(set.upsert(thread, &v1), Ok(Upsert::Unchanged(_))), "same bytes: no change");
        match set.upsert(thread, &v2) {
            Ok(Upsert::Replaced { new, old }) => assert_eq!((new.version.as_str(), old.version.as_str()), ("2", "1")),
            other => panic!("{other:?}"),
        }
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        assert!(
            matches!(&outcome.alerts[..], [Alert::RuleQuarantined(r), Alert::PreviousVersionRestored { restored, .. }]
                if r.rule_version == "2" && restored.version == "1"),
            "{:?}",
            outcome.alerts
        );
        assert_eq!(outcome.detections.len(), 1, "v1 saw the event that quarantined v2");
        assert_eq!(outcome.detections[0].detection.title, "seen by v1");
        assert!(set.is_active("updated"));
        let outcome = set.process(thread, &process("b.exe", "", "")).unwrap();
        assert_eq!((outcome.detections.len(), outcome.alerts.len()), (1, 0));
    });
}

#[test]
fn after_settle_a_quarantined_new_version_stays_quarantined() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        set.upsert(
            thread,
            &rt.compile(&wat_rule("updated", "1", Some("v1")), "v1")
                .unwrap(),
        )
        .unwrap();
        set.upsert(
            thread,
            &rt.compile(&wat_rule("updated", "2", None), "v2").unwrap(),
        )
        .unwrap();
        set.settle();
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        assert!(matches!(&outcome.alerts[..], [Alert::RuleQuarantined(_)]));
        assert!(!set.is_active("updated"));
    });
}

#[test]
fn a_new_version_that_does_not_load_leaves_the_old_one_running() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        set.upsert(
            thread,
            &rt.compile(&wat_rule("updated", "1", Some("v1")), "v1")
                .unwrap(),
        )
        .unwrap();
        let mut broken = wat_rule("updated", "2", Some("v2"));
        patch_abi_version(&mut broken);
        let compiled = rt.compile(&broken, "v2-broken").unwrap();
        assert!(set.upsert(thread, &compiled).is_err());
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        assert_eq!(outcome.detections[0].detection.title, "v1");
    });
}

/// Rewrites the module so `rulebox_abi_version` returns 9 instead of `ABI_VERSION` (`i32.const 2` is `41 02`
/// followed by `0b` in that function body, the only such sequence in this small module).
fn patch_abi_version(bytes: &mut [u8]) {
    let pos = bytes
        .windows(3)
        .position(|w| w == [0x41, u8::try_from(ABI_VERSION).unwrap(), 0x0b])
        .expect("abi constant");
    bytes[pos + 1] = 9;
}

#[test]
fn updating_one_rule_keeps_the_others_running_with_their_state() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        for a in ALL.iter().filter(|a| a.kind == ArtifactKind::Good) {
            set.load(thread, a.bytes, a.name).unwrap();
        }
        // Ten renames by one process, then an update of another rule, then ten more: the stateful
        // mass-rename rule must still see twenty renames in one burst.
        let rename = |i: u64| {
            let mut body = rulebox_sdk::FileRename::default();
            body.image = "C:\\Temp\\locker.exe".into();
            body.source_filename = format!("C:\\Docs\\f{i}.xlsx").into();
            body.target_filename = format!("C:\\Docs\\f{i}.xlsx.locked").into();
            let mut e = rulebox_sdk::Event::new(rulebox_sdk::EventData::FileRename(body));
            e.pid = 6666;
            e.timestamp = 1_700_000_000_000 + i * 100;
            e
        };
        let mut detections = 0;
        let mut processed = 0;
        for i in 0..10 {
            detections += set.process(thread, &rename(i)).unwrap().detections.len();
            processed += 1;
        }
        let other = rt
            .compile(
                &wat_rule("office-spawns-shell", "2", Some("replaced office rule")),
                "office-v2",
            )
            .unwrap();
        assert!(matches!(
            set.upsert(thread, &other),
            Ok(Upsert::Replaced { .. })
        ));
        for i in 10..25 {
            detections += set.process(thread, &rename(i)).unwrap().detections.len();
            processed += 1;
        }
        assert_eq!(
            detections, 1,
            "mass-rename kept its count across the update of another rule"
        );
        assert_eq!(
            set.stats().events,
            processed,
            "every event in was processed"
        );
        assert!(set.remove("office-spawns-shell"));
        assert!(!set.ids().any(|id| id == "office-spawns-shell"));
        let outcome = set
            .process(
                thread,
                &process(
                    "C:\\Windows\\System32\\cmd.exe",
                    "",
                    "C:\\Office\\WINWORD.EXE",
                ),
            )
            .unwrap();
        assert!(
            outcome
                .detections
                .iter()
                .all(|d| d.rule.id != "office-spawns-shell")
        );
    });
}
