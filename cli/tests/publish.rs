//! The vendor's side of the static repository from the command line: online keys (`rulebox keygen
//! --role`), a root declaring the roles (`rulebox root build --rollout-key --timestamp-key`),
//! `rulebox publish` twice leaving every byte as it was, and an operator's credential
//! (`rulebox controller add-operator`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rulebox_release::{BundleOptions, ModuleSource};
use rulebox_runtime::content::{Manifest, RoleName, Signed, now_unix, verify_timestamp};

fn rulebox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rulebox"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with(rulebox_release::LOCK_FILE) {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_root_with_online_roles_and_a_repository_published_twice_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (root_key, rollout, timestamp) = (
        d.join("root-key.json"),
        d.join("rollout.json"),
        d.join("ts.json"),
    );
    ok(rulebox(&["keygen", "--out", &s(&root_key)]));
    let out = ok(rulebox(&[
        "keygen",
        "--role",
        "rollout",
        "--out",
        &s(&rollout),
    ]));
    assert!(out.contains("rollout key"), "{out}");
    ok(rulebox(&[
        "keygen",
        "--role",
        "timestamp",
        "--out",
        &s(&timestamp),
    ]));
    // A role key given for the other role is refused by name.
    let root = d.join("root.json");
    let out = rulebox(&[
        "root",
        "build",
        "--out",
        &s(&root),
        "--key",
        &s(&root_key),
        "--rollout-key",
        &s(&timestamp),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a `timestamp` key"));
    // An online key is not a root key.
    let out = rulebox(&["root", "build", "--out", &s(&root), "--key", &s(&rollout)]);
    assert!(!out.status.success());
    let out = ok(rulebox(&[
        "root",
        "build",
        "--out",
        &s(&root),
        "--key",
        &s(&root_key),
        "--rollout-key",
        &s(&rollout),
        "--timestamp-key",
        &s(&timestamp),
    ]));
    assert!(out.contains("role `rollout`: 1 key(s)"), "{out}");
    ok(rulebox(&[
        "root",
        "sign",
        &s(&root),
        "--key",
        &s(&root_key),
    ]));
    let parsed = rulebox_runtime::content::load_trusted_root(&root).unwrap();
    assert!(parsed.roles.get(RoleName::Rollout).is_some());
    assert!(parsed.roles.get(RoleName::Timestamp).is_some());

    // A signed bundle (signed through the library: the repository needs a bundle that verifies).
    let bundle = d.join("bundle-42");
    rulebox_release::build_bundle(
        &bundle,
        &[ModuleSource::Bytes {
            name: "office".into(),
            bytes: rulebox_example_artifacts::OFFICE_SHELL.bytes.to_vec(),
        }],
        &BundleOptions::new(42, now_unix() + 86_400, "test"),
    )
    .unwrap();
    let key = rulebox_release::read_key_file(&root_key).unwrap();
    let path = bundle.join("manifest.json");
    let mut envelope: Signed<Manifest> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    rulebox_release::add_signature(&mut envelope, &key).unwrap();
    std::fs::write(&path, serde_json::to_vec_pretty(&envelope).unwrap()).unwrap();

    let repo = d.join("repo");
    let args = [
        "publish",
        "--repo",
        &s(&repo),
        "--root",
        &s(&root),
        "--bundle",
        &s(&bundle),
        "--timestamp-key",
        &s(&timestamp),
    ];
    let first = ok(rulebox(&args));
    assert!(
        first.contains("wrote     releases/42/manifest.json"),
        "{first}"
    );
    let before = snapshot(&repo);
    let second = ok(rulebox(&args));
    assert!(!second.contains("wrote"), "{second}");
    assert_eq!(snapshot(&repo), before, "publishing twice changes no byte");
    let ts = std::fs::read(repo.join("timestamp.json")).unwrap();
    let ts = verify_timestamp(&ts, &parsed, now_unix(), None).unwrap();
    assert_eq!(ts.releases.len(), 1);
    // The root's own key cannot sign timestamp.json.
    let out = rulebox(&[
        "publish",
        "--repo",
        &s(&repo),
        "--timestamp-key",
        &s(&root_key),
    ]);
    assert!(!out.status.success());

    // An operator's credential: the token file is private, the operators file holds its hash.
    let ops = d.join("operators.json");
    let token = d.join("alice.token");
    ok(rulebox(&[
        "controller",
        "add-operator",
        "--operators",
        &s(&ops),
        "--name",
        "alice",
        "--token-out",
        &s(&token),
    ]));
    let text = std::fs::read_to_string(&ops).unwrap();
    let secret = std::fs::read_to_string(&token).unwrap();
    assert!(!text.contains(secret.trim()));
    assert!(text.contains("alice"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let out = rulebox(&[
        "controller",
        "add-operator",
        "--operators",
        &s(&ops),
        "--name",
        "alice",
        "--token-out",
        &s(&d.join("again")),
    ]);
    assert!(!out.status.success(), "an operator is added once");
}
