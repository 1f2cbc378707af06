use rulebox_example_artifacts::{by_name, good};
use rulebox_runtime::content::{ContentStore, SignatureError, parse_trusted_root, update_root};

use super::*;

const NOW: u64 = 1_700_000_000;
const LATER: u64 = NOW + 86_400;

fn options(release: u64) -> BundleOptions {
    BundleOptions {
        created_unix: Some(NOW),
        ..BundleOptions::new(release, LATER, "test release")
    }
}

/// Validation options that keep the tests quick (few generated events, no corpus).
fn quick() -> rulebox_validate::Options {
    rulebox_validate::Options {
        generated_per_kind: 8,
        ..Default::default()
    }
}

fn good_modules(n: usize) -> Vec<ModuleSource> {
    good()
        .take(n)
        .map(|a| ModuleSource::Bytes {
            name: a.name.to_owned(),
            bytes: a.bytes.to_vec(),
        })
        .collect()
}

fn root_file(dir: &Path, keys: &[&KeyFile], threshold: u32) -> PathBuf {
    let publics: Vec<&str> = keys.iter().map(|k| k.public.as_str()).collect();
    let mut root = build_root(1, LATER, &publics, threshold).unwrap();
    for k in keys {
        sign_root(&mut root, k).unwrap();
    }
    let path = dir.join("root.json");
    write_root(&path, &root).unwrap();
    path
}

#[test]
fn keys_are_random_consistent_and_private() {
    let (a, b) = (generate_key().unwrap(), generate_key().unwrap());
    assert_ne!(a.secret, b.secret);
    assert_eq!(a.keyid.len(), 64);
    assert_eq!(a.signing_key().unwrap().to_bytes().len(), 32);
    assert!(!format!("{a:?}").contains(&a.secret));

    let mut tampered = a.clone();
    tampered.public = b.public.clone();
    assert!(tampered.signing_key().is_err());
    let mut tampered = a.clone();
    tampered.keyid = b.keyid.clone();
    assert!(tampered.signing_key().is_err());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    write_key_file(&path, &a).unwrap();
    assert_eq!(read_key_file(&path).unwrap(), a);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwritten.
    assert!(matches!(
        write_key_file(&path, &b),
        Err(ReleaseError::Io { .. })
    ));
    assert_eq!(read_key_file(&path).unwrap(), a);
    std::fs::write(&path, br#"{"keyid":"x","public":"y","secret":"z"}"#).unwrap();
    let err = read_key_file(&path).unwrap_err();
    assert!(err.to_string().contains("key.json"), "{err}");
}

#[test]
fn roots_are_built_signed_and_rotated() {
    let (k1, k2, k3) = (
        generate_key().unwrap(),
        generate_key().unwrap(),
        generate_key().unwrap(),
    );
    let err = build_root(1, LATER, &[&k1.public], 2).unwrap_err();
    assert!(err.to_string().contains("threshold"), "{err}");
    assert!(build_root(1, LATER, &["12"], 1).is_err());

    let dir = tempfile::tempdir().unwrap();
    let path = root_file(dir.path(), &[&k1, &k2], 2);
    // Signing twice with one key changes nothing.
    let again = sign_root_file(&path, &k1).unwrap();
    assert_eq!(again.signatures.len(), 2);
    let v1 = parse_trusted_root(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v1.threshold, 2);

    let mut v2 = build_root(2, LATER, &[&k2.public, &k3.public], 1).unwrap();
    sign_root(&mut v2, &k3).unwrap();
    let bytes = serde_json::to_vec(&v2).unwrap();
    assert!(matches!(
        update_root(&v1, &bytes),
        Err(RootError::NotSignedByCurrent {
            error: SignatureError::UnknownKey { .. },
            ..
        })
    ));
    sign_root(&mut v2, &k2).unwrap();
    assert!(matches!(
        update_root(&v1, &serde_json::to_vec(&v2).unwrap()),
        Err(RootError::NotSignedByCurrent {
            error: SignatureError::BelowThreshold { have: 1, need: 2 },
            ..
        })
    ));
    sign_root(&mut v2, &k1).unwrap();
    let v2 = update_root(&v1, &serde_json::to_vec(&v2).unwrap()).unwrap();
    assert_eq!(v2.version, 2);
}

#[test]
fn build_sign_verify_install() {
    let key = generate_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = root_file(dir.path(), &[&key], 1);
    let bundle = dir.path().join("bundle");
    let manifest = build_bundle(&bundle, &good_modules(3), &options(7)).unwrap();
    assert_eq!(manifest.release, 7);
    assert_eq!(manifest.rules.len(), 3);
    assert_eq!(manifest.min_runtime, RUNTIME_VERSION);
    // The ids and versions come from the modules themselves.
    let office = by_name("office-shell").unwrap();
    let m = build_bundle(
        &dir.path().join("office"),
        &[ModuleSource::Bytes {
            name: "x".into(),
            bytes: office.bytes.to_vec(),
        }],
        &options(1),
    )
    .unwrap();
    assert_eq!(m.rules[0].id, "office-spawns-shell");
    assert_eq!(m.rules[0].version, "1.0.0");

    // Unsigned: refused by the endpoint checks.
    let err = verify_release(&bundle, &root, None, NOW).unwrap_err();
    assert!(
        matches!(
            err,
            ReleaseError::Bundle(BundleError::BelowThreshold { have: 0, need: 1 })
        ),
        "{err}"
    );
    // Not validated: the gate refuses to sign.
    let err = sign_manifest(&bundle, &key).unwrap_err();
    assert!(
        matches!(
            err,
            ReleaseError::NotValidated(rulebox_validate::GateError::Missing { .. })
        ),
        "{err}"
    );
    let (report, _) = validate_for_release(&bundle, &quick(), &key).unwrap();
    assert!(report.passed, "{}", report.failure_summary());
    let envelope = sign_manifest(&bundle, &key).unwrap();
    assert_eq!(envelope.signatures.len(), 1);
    let envelope = sign_manifest(&bundle, &key).unwrap();
    assert_eq!(envelope.signatures.len(), 1);
    assert_eq!(envelope.signed, manifest);
    let verified = verify_release(&bundle, &root, Some(6), NOW).unwrap();
    assert_eq!(verified.manifest(), &manifest);

    // An endpoint store trusting this root installs it.
    let store_dir = dir.path().join("store");
    let mut store = ContentStore::init(&store_dir, &std::fs::read(&root).unwrap()).unwrap();
    let outcome = store.install(&bundle, NOW).unwrap();
    assert_eq!(outcome.release, 7);
}

#[test]
fn per_rule_limits_go_into_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let office = by_name("office-shell").unwrap();
    let limits = Limits {
        fuel_per_event: 5_000_000,
        ..Limits::default()
    };
    let mut opts = options(1);
    opts.limits
        .insert("office-spawns-shell".into(), limits.clone());
    let modules = [ModuleSource::Bytes {
        name: "office".into(),
        bytes: office.bytes.to_vec(),
    }];
    let m = build_bundle(&dir.path().join("a"), &modules, &opts).unwrap();
    assert_eq!(m.rules[0].limits, Some(limits));

    opts.limits.insert("no-such-rule".into(), Limits::default());
    let err = build_bundle(&dir.path().join("b"), &modules, &opts).unwrap_err();
    assert!(
        matches!(err, ReleaseError::UnknownRuleLimits { ref rule_id } if rule_id == "no-such-rule"),
        "{err}"
    );
}

#[test]
fn modules_that_do_not_load_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = build_bundle(
        &dir.path().join("a"),
        &[ModuleSource::Bytes {
            name: "junk.wasm".into(),
            bytes: b"not wasm".to_vec(),
        }],
        &options(1),
    )
    .unwrap_err();
    assert!(
        matches!(err, ReleaseError::ModuleRefused { ref name, error: LoadError::NotWasm } if name == "junk.wasm"),
        "{err}"
    );
    let endless = by_name("endless-start").unwrap();
    let err = build_bundle(
        &dir.path().join("b"),
        &[ModuleSource::Bytes {
            name: "endless".into(),
            bytes: endless.bytes.to_vec(),
        }],
        &options(1),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ReleaseError::ModuleRefused {
                error: LoadError::StartTooLong(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        !dir.path().join("b").exists(),
        "nothing written for a refused build"
    );

    let office = by_name("office-shell").unwrap();
    let twice = [
        ModuleSource::Bytes {
            name: "one".into(),
            bytes: office.bytes.to_vec(),
        },
        ModuleSource::Bytes {
            name: "two".into(),
            bytes: office.bytes.to_vec(),
        },
    ];
    let err = build_bundle(&dir.path().join("c"), &twice, &options(1)).unwrap_err();
    assert!(matches!(err, ReleaseError::DuplicateRule { .. }), "{err}");

    let missing = [ModuleSource::Path(dir.path().join("missing.wasm"))];
    assert!(matches!(
        build_bundle(&dir.path().join("d"), &missing, &options(1)),
        Err(ReleaseError::Io { .. })
    ));
}

#[test]
fn build_refuses_a_non_empty_output_and_bad_times() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x"), b"x").unwrap();
    assert!(matches!(
        build_bundle(dir.path(), &good_modules(1), &options(1)),
        Err(ReleaseError::OutputNotEmpty { .. })
    ));
    let mut opts = options(1);
    opts.expires_unix = NOW;
    assert!(matches!(
        build_bundle(&dir.path().join("y"), &good_modules(1), &opts),
        Err(ReleaseError::Options(_))
    ));
}

#[test]
fn verify_catches_a_manifest_that_misstates_a_module() {
    let key = generate_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = root_file(dir.path(), &[&key], 1);
    let bundle = dir.path().join("bundle");
    build_bundle(&bundle, &good_modules(2), &options(3)).unwrap();
    // Rewrite an entry's version, then sign: the signature is valid, the claim is not.
    let path = bundle.join("manifest.json");
    let mut envelope: Signed<Manifest> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    envelope.signed.rules[1].version = "9.9.9".into();
    std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
    // The validator catches it first, so the gate refuses to sign.
    let (report, _) = validate_for_release(&bundle, &quick(), &key).unwrap();
    assert!(!report.passed);
    assert!(
        report.failure_summary().contains("the manifest says rule"),
        "{}",
        report.failure_summary()
    );
    let err = sign_manifest(&bundle, &key).unwrap_err();
    assert!(
        matches!(
            err,
            ReleaseError::NotValidated(rulebox_validate::GateError::Failed { .. })
        ),
        "{err}"
    );
    // Signed by other means anyway: verification still catches it.
    add_signature(&mut envelope, &key).unwrap();
    std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
    let err = verify_release(&bundle, &root, None, NOW).unwrap_err();
    assert!(
        matches!(err, ReleaseError::ManifestMismatch { ref version, .. } if version == "9.9.9"),
        "{err}"
    );
}

#[test]
fn signing_requires_a_passing_report_bound_to_this_manifest_and_runtime() {
    let key = generate_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    build_bundle(&bundle, &good_modules(1), &options(5)).unwrap();
    let (report, report_file) = validate_for_release(&bundle, &quick(), &key).unwrap();
    assert!(report.passed);
    assert!(
        report_file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("bundle.validation-"),
        "{}",
        report_file.display()
    );

    // The manifest changes after validation: the report is for other content.
    let path = bundle.join("manifest.json");
    let mut envelope: Signed<Manifest> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    envelope.signed.notes = "edited after validation".into();
    std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
    let err = sign_manifest(&bundle, &key).unwrap_err();
    assert!(
        matches!(
            err,
            ReleaseError::NotValidated(rulebox_validate::GateError::Missing { .. })
        ),
        "{err}"
    );
    // A report copied to the new name is bound to the old hash.
    let hash = rulebox_runtime::content::manifest_hash(&envelope.signed).unwrap();
    let new_file = rulebox_validate::report_path(&bundle, &hash).unwrap();
    std::fs::copy(&report_file, &new_file).unwrap();
    let err = sign_manifest(&bundle, &key).unwrap_err();
    assert!(
        matches!(
            err,
            ReleaseError::NotValidated(rulebox_validate::GateError::WrongHash { .. })
        ),
        "{err}"
    );
    // Bound to the right hash but made by another runtime, or failed: refused.
    let attest = |report: &rulebox_validate::Report, signer: &KeyFile| {
        let mut attested = Signed {
            signed: report.clone(),
            signatures: Vec::new(),
        };
        add_signature(&mut attested, signer).unwrap();
        rulebox_validate::write_attested_report(&new_file, &attested).unwrap();
    };
    let mut edited = report.clone();
    edited.target.manifest_hash = Some(hash.clone());
    edited.runtime_version = "0.0.1".into();
    attest(&edited, &key);
    assert!(matches!(
        sign_manifest(&bundle, &key).unwrap_err(),
        ReleaseError::NotValidated(rulebox_validate::GateError::OtherRuntime { .. })
    ));
    edited.runtime_version = report.runtime_version.clone();
    edited.format = rulebox_validate::REPORT_FORMAT - 1;
    attest(&edited, &key);
    assert!(matches!(
        sign_manifest(&bundle, &key).unwrap_err(),
        ReleaseError::NotValidated(rulebox_validate::GateError::OtherFormat { .. })
    ));
    edited.format = rulebox_validate::REPORT_FORMAT;
    edited.rules[0].passed = false;
    edited.rules[0].failures.push("trap".into());
    attest(&edited, &key);
    assert!(matches!(
        sign_manifest(&bundle, &key).unwrap_err(),
        ReleaseError::NotValidated(rulebox_validate::GateError::Failed { .. })
    ));
    // Validating the new content makes it signable.
    validate_for_release(&bundle, &quick(), &key).unwrap();
    assert_eq!(sign_manifest(&bundle, &key).unwrap().signatures.len(), 1);
}

#[test]
fn a_validation_report_edited_to_passed_is_refused_by_the_signing_gate() {
    let key = generate_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let trapping = by_name("null-deref").unwrap();
    build_bundle(
        &bundle,
        &[ModuleSource::Bytes {
            name: trapping.name.into(),
            bytes: trapping.bytes.to_vec(),
        }],
        &options(9),
    )
    .unwrap();
    let (report, path) = validate_for_release(&bundle, &quick(), &key).unwrap();
    assert!(!report.passed);
    // The attack: the report file edited by hand to say every rule passed.
    let mut attested = rulebox_validate::read_attested_report(&path).unwrap();
    attested.signed.passed = true;
    for rule in &mut attested.signed.rules {
        rule.passed = true;
        rule.failures.clear();
        rule.fault = None;
    }
    rulebox_validate::write_attested_report(&path, &attested).unwrap();
    let err = sign_manifest(&bundle, &key).unwrap_err();
    assert!(
        matches!(
            err,
            ReleaseError::NotValidated(rulebox_validate::GateError::NotAttested {
                error: SignatureError::BadSignature { .. },
                ..
            })
        ),
        "{err}"
    );
    // Its signatures removed: unsigned, refused.
    attested.signatures.clear();
    rulebox_validate::write_attested_report(&path, &attested).unwrap();
    assert!(matches!(
        sign_manifest(&bundle, &key).unwrap_err(),
        ReleaseError::NotValidated(rulebox_validate::GateError::Unsigned { .. })
    ));
    // Signed again by a key the signer does not trust (the attacker's own): refused.
    let stranger = generate_key().unwrap();
    add_signature(&mut attested, &stranger).unwrap();
    rulebox_validate::write_attested_report(&path, &attested).unwrap();
    assert!(matches!(
        sign_manifest(&bundle, &key).unwrap_err(),
        ReleaseError::NotValidated(rulebox_validate::GateError::NotAttested {
            error: SignatureError::UnknownKey { .. },
            ..
        })
    ));
    let manifest = bundle.join("manifest.json");
    let envelope: Signed<Manifest> =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert!(envelope.signatures.is_empty(), "nothing was signed");
}

#[test]
fn a_report_signed_by_a_trusted_gate_key_lets_another_signer_sign() {
    let (gate, signer) = (generate_key().unwrap(), generate_key().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    build_bundle(&bundle, &good_modules(1), &options(4)).unwrap();
    validate_for_release(&bundle, &quick(), &gate).unwrap();
    // The signer does not trust the gate's key by default.
    assert!(matches!(
        sign_manifest(&bundle, &signer).unwrap_err(),
        ReleaseError::NotValidated(rulebox_validate::GateError::NotAttested { .. })
    ));
    // Given the gate's public half (as `keygen --public-out` writes it), it signs.
    let public = dir.path().join("gate.pub.json");
    write_public_key_file(&public, &gate).unwrap();
    let entry = read_public_key_file(&public).unwrap();
    assert_eq!(entry, gate.key_entry());
    let signed = sign_manifest_trusting(&bundle, &signer, &[entry]).unwrap();
    assert_eq!(signed.signatures.len(), 1);
    assert_eq!(signed.signatures[0].keyid, signer.keyid);
}
