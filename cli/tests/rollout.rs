//! `rulebox policy` and `rulebox rollout` end to end: an owner-signed policy installed in a store makes
//! the store refuse a vendor release; a signed revert applied by hand takes the host back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rulebox_example_artifacts::OFFICE_SHELL;
use rulebox_release::{BundleOptions, KeyFile, ModuleSource};
use rulebox_runtime::content::{ContentStore, PolicyError, StoreError, now_unix};

fn rulebox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rulebox"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn key_and_root(dir: &Path, name: &str) -> (KeyFile, PathBuf, PathBuf) {
    let key = rulebox_release::generate_key().unwrap();
    let key_path = dir.join(format!("{name}-key.json"));
    rulebox_release::write_key_file(&key_path, &key).unwrap();
    let mut root =
        rulebox_release::build_root(1, now_unix() + 86_400, &[key.public.as_str()], 1).unwrap();
    rulebox_release::sign_root(&mut root, &key).unwrap();
    let root_path = dir.join(format!("{name}-root.json"));
    rulebox_release::write_root(&root_path, &root).unwrap();
    (key, key_path, root_path)
}

fn bundle(dir: &Path, key: &KeyFile, release: u64) -> PathBuf {
    let out = dir.join(format!("bundle-{release}"));
    let modules = [ModuleSource::Bytes {
        name: OFFICE_SHELL.name.to_owned(),
        bytes: OFFICE_SHELL.bytes.to_vec(),
    }];
    rulebox_release::build_bundle(
        &out,
        &modules,
        &BundleOptions::new(release, now_unix() + 86_400, "test"),
    )
    .unwrap();
    // The release gate: a passing validation report bound to this manifest, then the signature.
    let quick = rulebox_validate::Options {
        generated_per_kind: 4,
        ..Default::default()
    };
    let (report, _) = rulebox_release::validate_for_release(&out, &quick, key).unwrap();
    assert!(report.passed, "{}", report.failure_summary());
    rulebox_release::sign_manifest(&out, key).unwrap();
    out
}

#[test]
fn an_owner_policy_refuses_a_vendor_push_and_a_signed_revert_takes_the_host_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (vendor, vendor_key, vendor_root) = key_and_root(dir, "vendor");
    let (_owner, owner_key, owner_root) = key_and_root(dir, "owner");
    let store = dir.join("store");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    ok(&rulebox(&[
        "store",
        "init",
        "--store",
        &s(&store),
        "--root",
        &s(&vendor_root),
    ]));
    let two = {
        let mut st = ContentStore::open(&store).unwrap();
        st.install(&bundle(dir, &vendor, 1), now_unix()).unwrap();
        st.install(&bundle(dir, &vendor, 2), now_unix()).unwrap();
        st.state().installed[&2].clone()
    };

    // The owner pins release 2, by number and manifest hash (a pin without the hash is refused).
    let policy = dir.join("policy.json");
    let no_hash = rulebox(&[
        "policy",
        "sign",
        "--mode",
        "pin:2",
        "--policy-version",
        "1",
        "--key",
        &s(&owner_key),
        "--out",
        &s(&policy),
    ]);
    assert!(!no_hash.status.success());
    assert!(String::from_utf8_lossy(&no_hash.stderr).contains("--manifest-hash"));
    let out = ok(&rulebox(&[
        "policy",
        "sign",
        "--mode",
        "pin:2",
        "--manifest-hash",
        &two,
        "--policy-version",
        "1",
        "--key",
        &s(&owner_key),
        "--out",
        &s(&policy),
    ]));
    assert!(out.contains("pinned to release 2"), "{out}");
    // A policy signed with the vendor's key is not the owner's.
    let forged = dir.join("forged.json");
    ok(&rulebox(&[
        "policy",
        "sign",
        "--mode",
        "latest",
        "--policy-version",
        "2",
        "--key",
        &s(&vendor_key),
        "--out",
        &s(&forged),
    ]));
    ok(&rulebox(&[
        "policy",
        "install",
        "--store",
        &s(&store),
        "--owner-root",
        &s(&owner_root),
        &s(&policy),
    ]));
    let refused = rulebox(&["policy", "install", "--store", &s(&store), &s(&forged)]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not signed by the owner"));
    assert!(ok(&rulebox(&["policy", "show", "--store", &s(&store)])).contains("\"pin\""));

    // The vendor pushes release 3: the host refuses it.
    let err = ContentStore::open(&store)
        .unwrap()
        .install(&bundle(dir, &vendor, 3), now_unix())
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Policy(PolicyError::Refused(_))),
        "{err}"
    );
    assert!(err.to_string().contains("pins release 2"), "{err}");

    // The vendor withdraws release 2: the host stops running it and goes back to 1, but the
    // release the owner pinned is not marked bad (the owner decides when to return to it).
    let revert = dir.join("revert.json");
    ok(&rulebox(&[
        "rollout",
        "sign-revert",
        "--release",
        "2",
        "--to",
        "1",
        "--reason",
        "gate failed",
        "--key",
        &s(&vendor_key),
        "--out",
        &s(&revert),
    ]));
    let out = ok(&rulebox(&[
        "rollout",
        "apply-revert",
        "--store",
        &s(&store),
        &s(&revert),
    ]));
    assert!(out.contains("current: release 1"), "{out}");
    assert!(out.contains("not marked bad"), "{out}");
    let st = ContentStore::open_read_only(&store).unwrap();
    assert_eq!(st.state().current, Some(1));
    assert!(!st.state().bad.contains(&2));

    // A revert signed by the owner's key is refused.
    let forged_revert = dir.join("forged-revert.json");
    ok(&rulebox(&[
        "rollout",
        "sign-revert",
        "--release",
        "1",
        "--reason",
        "x",
        "--key",
        &s(&owner_key),
        "--out",
        &s(&forged_revert),
    ]));
    drop(st);
    let refused = rulebox(&[
        "rollout",
        "apply-revert",
        "--store",
        &s(&store),
        &s(&forged_revert),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("revert refused"));
}

#[test]
fn the_plan_command_prints_a_valid_plan() {
    let out = ok(&rulebox(&[
        "rollout",
        "plan",
        "--release",
        "42",
        "--previous",
        "41",
    ]));
    let plan: rulebox_rollout::RolloutPlan = serde_json::from_str(&out).unwrap();
    plan.validate().unwrap();
    assert_eq!(plan.rings.len(), 4);
    assert_eq!(plan.rings[0].percent, 1.0);
}
