//! The static repository: chained roots, immutable files, byte-identical republishing, the
//! timestamp a host accepts.

use std::collections::BTreeMap;

use rulebox_example_artifacts::good;
use rulebox_runtime::content::{
    REVERT_FORMAT, Revert, TimestampError, verify_bundle, verify_timestamp,
};

use super::*;
use crate::roles::{declare_role, generate_online_key};
use crate::{
    BundleOptions, KeyFile, ModuleSource, build_bundle, build_root, generate_key, sign_root,
};

const NOW: u64 = 1_800_000_000;

struct Vendor {
    root_key: KeyFile,
    timestamp: OnlineKey,
    rollout: OnlineKey,
    root_bytes: Vec<u8>,
}

fn vendor() -> Vendor {
    let root_key = generate_key().unwrap();
    let timestamp = generate_online_key(RoleName::Timestamp).unwrap();
    let rollout = generate_online_key(RoleName::Rollout).unwrap();
    let mut root = build_root(1, NOW + 86_400 * 365, &[root_key.public.as_str()], 1).unwrap();
    declare_role(
        &mut root,
        RoleName::Timestamp,
        &[timestamp.key.public.as_str()],
        1,
        NOW + 86_400 * 30,
    )
    .unwrap();
    declare_role(
        &mut root,
        RoleName::Rollout,
        &[rollout.key.public.as_str()],
        1,
        NOW + 86_400 * 30,
    )
    .unwrap();
    sign_root(&mut root, &root_key).unwrap();
    Vendor {
        root_bytes: serde_json::to_vec_pretty(&root).unwrap(),
        root_key,
        timestamp,
        rollout,
    }
}

/// A bundle of the first `n` good example modules, signed with the root key (the signing gate is
/// the vendor's tool; the repository only needs a bundle that verifies).
fn bundle(dir: &Path, key: &KeyFile, release: u64, n: usize, notes: &str) -> PathBuf {
    let out = dir.join(format!("bundle-{release}-{notes}"));
    let modules: Vec<ModuleSource> = good()
        .take(n)
        .map(|a| ModuleSource::Bytes {
            name: a.name.to_owned(),
            bytes: a.bytes.to_vec(),
        })
        .collect();
    let mut options = BundleOptions::new(release, NOW + 86_400 * 10, notes);
    options.created_unix = Some(NOW - 60);
    build_bundle(&out, &modules, &options).unwrap();
    let path = out.join("manifest.json");
    let mut envelope: Signed<Manifest> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    add_signature(&mut envelope, key).unwrap();
    std::fs::write(&path, serde_json::to_vec_pretty(&envelope).unwrap()).unwrap();
    out
}

/// Every file of the repository with its bytes (the lock file aside).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != LOCK_FILE {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn publishing_the_same_release_twice_is_byte_identical_and_modules_are_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let v = vendor();
    let repo = Repository::open(&tmp.path().join("repo")).unwrap();
    assert!(matches!(repo.newest_root(), Err(PublishError::NoRoot)));
    assert!(repo.publish_root(&v.root_bytes).unwrap().written);
    let b41 = bundle(tmp.path(), &v.root_key, 41, 2, "a");
    let b42 = bundle(tmp.path(), &v.root_key, 42, 3, "a");
    let first = repo.publish_release(&b41, NOW).unwrap();
    assert!(first.files.iter().all(|f| f.written));
    let second = repo.publish_release(&b42, NOW).unwrap();
    // Release 42 shares two modules with 41: only its third module and manifest are new.
    assert_eq!(second.files.iter().filter(|f| f.written).count(), 2);
    let modules = std::fs::read_dir(repo.path("modules")).unwrap().count();
    assert_eq!(modules, 3);
    let ts = repo
        .write_timestamp(std::slice::from_ref(&v.timestamp), NOW, 3600, false)
        .unwrap();
    assert!(ts.written);
    let before = snapshot(repo.dir());

    // Everything again: nothing changes, not even timestamp.json.
    assert!(!repo.publish_root(&v.root_bytes).unwrap().written);
    for b in [&b41, &b42] {
        let again = repo.publish_release(b, NOW + 60).unwrap();
        assert!(again.files.iter().all(|f| !f.written), "{again:?}");
    }
    let again = repo
        .write_timestamp(std::slice::from_ref(&v.timestamp), NOW + 60, 3600, false)
        .unwrap();
    assert!(!again.written);
    assert_eq!(snapshot(repo.dir()), before);

    // What a host gets: the timestamp verifies against the root, names the exact manifest bytes,
    // and the release assembled from the repository verifies as a bundle.
    let root = repo.newest_root().unwrap();
    let bytes = std::fs::read(repo.path(repo::TIMESTAMP_FILE)).unwrap();
    let host_view = verify_timestamp(&bytes, &root, NOW + 60, None).unwrap();
    let entry = host_view.release(42).unwrap();
    assert_eq!(entry.manifest_sha256, second.manifest_sha256);
    let manifest = std::fs::read(repo.path(&repo::manifest_file(42))).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&manifest)),
        entry.manifest_sha256
    );
    let assembled = tmp.path().join("assembled");
    repo.assemble_bundle(42, &assembled).unwrap();
    let verified = verify_bundle(&assembled, &root, None, NOW, &BundleLimits::default()).unwrap();
    assert_eq!(verified.modules().len(), 3);
}

#[test]
fn other_bytes_under_a_published_name_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let v = vendor();
    let repo = Repository::open(&tmp.path().join("repo")).unwrap();
    repo.publish_root(&v.root_bytes).unwrap();
    repo.publish_release(&bundle(tmp.path(), &v.root_key, 42, 2, "a"), NOW)
        .unwrap();
    let before = snapshot(repo.dir());
    // Another, validly signed release 42 with other notes.
    let other = bundle(tmp.path(), &v.root_key, 42, 2, "b");
    let err = repo.publish_release(&other, NOW).unwrap_err();
    assert!(matches!(err, PublishError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("never change"), "{err}");
    assert_eq!(snapshot(repo.dir()), before);
    // A release signed by a key the root does not name is refused before anything is written.
    let stranger = generate_key().unwrap();
    let err = repo
        .publish_release(&bundle(tmp.path(), &stranger, 43, 2, "a"), NOW)
        .unwrap_err();
    assert!(matches!(err, PublishError::Release { .. }), "{err}");
    assert_eq!(snapshot(repo.dir()), before);
}

#[test]
fn roots_are_published_only_as_a_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let v = vendor();
    let repo = Repository::open(&tmp.path().join("repo")).unwrap();
    repo.publish_root(&v.root_bytes).unwrap();
    let new_key = generate_key().unwrap();
    let make = |version: u64, signers: &[&KeyFile]| {
        let mut root = build_root(version, NOW + 86_400, &[new_key.public.as_str()], 1).unwrap();
        for k in signers {
            sign_root(&mut root, k).unwrap();
        }
        serde_json::to_vec(&root).unwrap()
    };
    // Version 3 before 2: a gap.
    let err = repo.publish_root(&make(3, &[&new_key])).unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::RootGap {
                version: 3,
                newest: 1
            }
        ),
        "{err}"
    );
    // Version 2 signed only by its own new key, not by root 1's: refused.
    let err = repo.publish_root(&make(2, &[&new_key])).unwrap_err();
    assert!(
        matches!(err, PublishError::Root { version: 2, .. }),
        "{err}"
    );
    // Signed by both: published, and the newest root is now version 2.
    repo.publish_root(&make(2, &[&v.root_key, &new_key]))
        .unwrap();
    assert_eq!(repo.newest_root().unwrap().version, 2);
    assert_eq!(repo.root_versions().unwrap(), [1, 2]);
}

#[test]
fn the_timestamp_lists_reverts_rises_and_needs_a_timestamp_role_key() {
    let tmp = tempfile::tempdir().unwrap();
    let v = vendor();
    let repo = Repository::open(&tmp.path().join("repo")).unwrap();
    repo.publish_root(&v.root_bytes).unwrap();
    repo.publish_release(&bundle(tmp.path(), &v.root_key, 42, 1, "a"), NOW)
        .unwrap();
    let keys = std::slice::from_ref(&v.timestamp);
    let first = repo.write_timestamp(keys, NOW, 3600, false).unwrap();
    assert!(first.timestamp.reverts.is_empty());

    // A revert signed by the rollout role (what the controller publishes).
    let revert = Revert {
        format: REVERT_FORMAT,
        release: 42,
        to: Some(41),
        issued_unix: NOW,
        expires_unix: NOW + 86_400,
        reason: "quarantine".to_owned(),
    };
    let mut envelope = Signed {
        signed: revert.clone(),
        signatures: Vec::new(),
    };
    add_signature(&mut envelope, &v.rollout.key).unwrap();
    let bytes = serde_json::to_vec(&envelope).unwrap();
    assert!(repo.publish_revert(&bytes, NOW).unwrap().written);
    assert!(!repo.publish_revert(&bytes, NOW).unwrap().written);
    // A second, different revert of the same release is refused.
    let mut other = envelope.clone();
    other.signed.reason = "other".to_owned();
    other.signatures.clear();
    add_signature(&mut other, &v.rollout.key).unwrap();
    assert!(matches!(
        repo.publish_revert(&serde_json::to_vec(&other).unwrap(), NOW),
        Err(PublishError::Conflict { .. })
    ));
    // A revert signed by the timestamp role is not a revert at all.
    let mut forged = envelope.clone();
    forged.signatures.clear();
    add_signature(&mut forged, &v.timestamp.key).unwrap();
    let mut forged43 = forged.clone();
    forged43.signed.release = 43;
    forged43.signatures.clear();
    add_signature(&mut forged43, &v.timestamp.key).unwrap();
    assert!(matches!(
        repo.publish_revert(&serde_json::to_vec(&forged43).unwrap(), NOW),
        Err(PublishError::Revert { .. })
    ));

    // New contents: written at once, with a higher version, listing the revert.
    let second = repo.write_timestamp(keys, NOW + 10, 3600, false).unwrap();
    assert!(second.written);
    assert!(second.timestamp.version > first.timestamp.version);
    assert_eq!(second.timestamp.reverts[0].release, 42);
    // Past half its validity, the same contents are signed again.
    let third = repo
        .write_timestamp(keys, NOW + 10 + 1801, 3600, false)
        .unwrap();
    assert!(third.written);
    // A host that saw the newer one refuses the older one.
    let root = repo.newest_root().unwrap();
    let mut old = Signed {
        signed: second.timestamp.clone(),
        signatures: Vec::new(),
    };
    add_signature(&mut old, &v.timestamp.key).unwrap();
    let err = verify_timestamp(
        &serde_json::to_vec(&old).unwrap(),
        &root,
        NOW + 1900,
        Some(third.timestamp.version),
    )
    .unwrap_err();
    assert!(matches!(err, TimestampError::Rollback { .. }), "{err}");

    // The rollout key and the root key cannot sign timestamps.
    let wrong = OnlineKey {
        role: RoleName::Timestamp,
        key: v.rollout.key.clone(),
    };
    assert!(matches!(
        repo.write_timestamp(&[wrong], NOW, 3600, true),
        Err(PublishError::TimestampKey(OnlineKeyError::NotInRole { .. }))
    ));
    let disguised = OnlineKey {
        role: RoleName::Timestamp,
        key: v.root_key.clone(),
    };
    assert!(matches!(
        repo.write_timestamp(&[disguised], NOW, 3600, true),
        Err(PublishError::TimestampKey(OnlineKeyError::RootKey { .. }))
    ));
}

#[test]
fn expired_releases_and_reverts_leave_the_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let v = vendor();
    let repo = Repository::open(&tmp.path().join("repo")).unwrap();
    repo.publish_root(&v.root_bytes).unwrap();
    repo.publish_release(&bundle(tmp.path(), &v.root_key, 42, 1, "a"), NOW)
        .unwrap();
    let (_, releases, _) = repo.timestamp_contents(NOW).unwrap();
    assert_eq!(releases.len(), 1);
    let (_, releases, _) = repo.timestamp_contents(NOW + 86_400 * 10).unwrap();
    assert!(releases.is_empty(), "the manifest expired");
}
