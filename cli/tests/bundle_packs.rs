//! `rulebox bundle build --packs` takes a compiled Sigma folder (one engine, its rule data) into a
//! signed release: validated by the release gate, signed, verified as an endpoint would.

use std::path::Path;
use std::process::{Command, Output};

fn rulebox(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rulebox"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("rulebox runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn rule(id: &str, image: &str) -> String {
    format!(
        "title: Runs {image}\nid: {id}\nlogsource: {{product: windows, category: process_creation}}\n\
         detection:\n    selection:\n        Image|endswith: '\\{image}'\n    condition: selection\nlevel: high\n"
    )
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {stdout}\n{}",
        text(&out.stderr)
    );
    stdout
}

#[test]
fn a_compiled_sigma_folder_becomes_a_signed_release_of_one_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = |args: &[&str]| rulebox(args, dir);
    std::fs::write(
        dir.join("a.yml"),
        rule("0b4e1d2c-0000-4000-8000-0000000000a1", "whoami.exe"),
    )
    .unwrap();
    std::fs::write(
        dir.join("b.yml"),
        rule("0b4e1d2c-0000-4000-8000-0000000000b2", "notepad.exe"),
    )
    .unwrap();
    ok(
        &run(&["sigma", "compile", "a.yml", "b.yml", "-o", "out"]),
        "compile",
    );
    ok(&run(&["keygen", "--out", "k.json"]), "keygen");
    let built = ok(
        &run(&[
            "bundle",
            "build",
            "--out",
            "rel",
            "--release",
            "7",
            "--packs",
            "out",
        ]),
        "build",
    );
    assert!(built.contains("2 rules in 1 packs of 1 engines"), "{built}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("rel/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["signed"]["format"], 2);
    let pack = &manifest["signed"]["packs"][0];
    assert_eq!(pack["rules"].as_array().unwrap().len(), 2);
    let data_file = pack["file"].as_str().unwrap().to_owned();
    assert!(data_file.starts_with("data/") && dir.join("rel").join(&data_file).is_file());

    // The release gate validates every rule of the pack in its engine; signing then passes.
    ok(
        &run(&[
            "validate",
            "rel",
            "--generated",
            "4",
            "--gate-key",
            "k.json",
        ]),
        "validate",
    );
    ok(&run(&["bundle", "sign", "rel", "--key", "k.json"]), "sign");
    ok(
        &run(&["root", "build", "--out", "root.json", "--key", "k.json"]),
        "root build",
    );
    ok(
        &run(&["root", "sign", "root.json", "--key", "k.json"]),
        "root sign",
    );
    let verified = ok(
        &run(&["bundle", "verify", "rel", "--root", "root.json"]),
        "verify",
    );
    assert!(verified.contains("2 rules (2 in 1 packs)"), "{verified}");

    // A tampered data file: refused by name.
    let path = dir.join("rel").join(&data_file);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let refused = run(&["bundle", "verify", "rel", "--root", "root.json"]);
    let stdout = text(&refused.stdout);
    assert_ne!(refused.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&data_file) && stdout.contains("SHA-256"),
        "{stdout}"
    );
}
