//! Builds every example rule crate to WebAssembly and generates the `Artifact` table.
//!
//! * `example-rules/rules/*` (good) and `example-rules/faulty/*` (faulty) are built for
//!   `wasm32-unknown-unknown`, all in one `cargo build` invocation;
//! * `example-rules/engines/*` (evaluators that other content is embedded into, such as the Sigma
//!   evaluator) for `wasm32-unknown-unknown`, in the same invocation as the rules;
//! * `example-rules/wasi/*` for `wasm32-wasip1`, in a second one;
//! * `example-rules/packs/*` (rule packs, ABI 3) for `wasm32-unknown-unknown`, in a third one: a
//!   pack links rules of `rules/` and `faulty/` with their feature `module` off (no exports of
//!   their own), and cargo unifies features across one invocation, so built together with those
//!   rules' own modules the packs would link the rules' exports too.
//!
//! The nested cargo uses its own target directory (`$CARGO_TARGET_DIR/guest`, or
//! `<workspace>/target/guest`), so it never waits on the lock of the outer build, and it is shared by
//! every profile of the outer build (dev, test, release, clippy). It builds with the release profile,
//! tuned for small modules through `CARGO_PROFILE_RELEASE_*` overrides, and with the outer build's
//! environment cleaned of everything that would confuse it (host RUSTFLAGS, the outer target dir,
//! the jobserver, clippy's workspace wrapper, the build-script variables of this crate).
//!
//! The modules are copied into `OUT_DIR/wasm/` and embedded with `include_bytes!` by the generated
//! `OUT_DIR/artifacts.rs`, and into `<target>/example-modules/{rules,faulty,wasi,engines}/`, one
//! folder per set, for people to run (`rulebox run --rules target/example-modules/rules`).

use std::collections::BTreeSet;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const WASI_TARGET: &str = "wasm32-wasip1";
const NOT_INSTALLED: &str = "the wasm32-unknown-unknown target is not installed; run: rustup target add wasm32-unknown-unknown wasm32-wasip1";

/// Profile overrides for the guest build: optimised for speed, abort on panic, debug info stripped
/// but function names (the `name` section, about 8% of a module) kept: a quarantine record's
/// backtrace then names the function that faulted (`faulty_field_count::FieldCountRule::matches`
/// rather than `<wasm function 12>`), and `RuntimeConfig::perf_map` profiles show the rules' own
/// functions.
///
/// `opt-level = 3` rather than `"s"`: with events read in place, the rules' own code is most of a
/// call, and on the example set `3` halved the sandboxed time per event (1,362 → 489 ns with the
/// lazy event, against 921 ns at `"s"`; `docs/performance.md`) for modules of about 30 KB.
const PROFILE: &[(&str, &str)] = &[
    ("CARGO_PROFILE_RELEASE_DEBUG", "false"),
    ("CARGO_PROFILE_RELEASE_STRIP", "debuginfo"),
    ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3"),
    ("CARGO_PROFILE_RELEASE_LTO", "true"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1"),
    ("CARGO_PROFILE_RELEASE_PANIC", "abort"),
];

/// Variables removed from the nested cargo's environment, by exact name.
const REMOVE: &[&str] = &[
    // Flags meant for the host build (`-C target-cpu=native` would break wasm).
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    // Where and for what the outer build builds.
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
    "CARGO_BUILD_TARGET",
    // The outer build's jobserver.
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    // `cargo clippy` runs build scripts with clippy-driver as the workspace wrapper: the guests would
    // be built by clippy, and rebuilt whenever one switches between clippy and build.
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    // Build-script variables of this crate, which the guests' own build scripts must not inherit.
    "OUT_DIR",
    "TARGET",
    "HOST",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
    "RUSTC_LINKER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "CARGO_RUSTC_CURRENT_DIR",
];
/// Variables removed from the nested cargo's environment, by prefix.
const REMOVE_PREFIXES: &[&str] = &[
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "DEP_",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Good,
    Faulty,
    Wasi,
    Engine,
    Pack,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Good => "rules",
            Kind::Faulty => "faulty",
            Kind::Wasi => "wasi",
            Kind::Engine => "engines",
            Kind::Pack => "packs",
        }
    }

    fn variant(self) -> &'static str {
        match self {
            Kind::Good => "Good",
            Kind::Faulty => "Faulty",
            Kind::Wasi => "Wasi",
            Kind::Engine => "Engine",
            Kind::Pack => "Pack",
        }
    }

    fn target(self) -> &'static str {
        match self {
            Kind::Good | Kind::Faulty | Kind::Engine | Kind::Pack => WASM_TARGET,
            Kind::Wasi => WASI_TARGET,
        }
    }
}

/// One example crate.
#[derive(Debug)]
struct Guest {
    /// Folder name, e.g. `office-shell`.
    name: String,
    kind: Kind,
    package: String,
    description: String,
    dir: PathBuf,
}

impl Guest {
    fn wasm_file(&self) -> String {
        format!("{}.wasm", self.package.replace('-', "_"))
    }
}

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let examples = manifest_dir.parent().expect("example-rules").to_path_buf();
    let workspace = examples.parent().expect("workspace root").to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));

    rerun_if_changed(&workspace.join("rules-sdk/src"));
    rerun_if_changed(&workspace.join("rules-sdk/Cargo.toml"));
    rerun_if_changed(&workspace.join("Cargo.toml"));
    rerun_if_changed(&workspace.join("Cargo.lock"));
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let mut guests = Vec::new();
    for kind in [
        Kind::Good,
        Kind::Faulty,
        Kind::Wasi,
        Kind::Engine,
        Kind::Pack,
    ] {
        let dir = examples.join(kind.dir());
        // The folder itself, so that a crate added or removed reruns the script.
        rerun_if_changed(&dir);
        guests.extend(discover(&dir, kind));
    }
    check_names(&guests);

    let targets: BTreeSet<&str> = guests.iter().map(|g| g.kind.target()).collect();
    check_targets_installed(&targets);

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| {
            if d.is_absolute() {
                d
            } else {
                workspace.join(d)
            }
        })
        .unwrap_or_else(|| workspace.join("target"))
        .join("guest");

    // One invocation per target, and the packs in one of their own (see the module docs).
    for target in &targets {
        for packs in [false, true] {
            let packages: Vec<&str> = guests
                .iter()
                .filter(|g| g.kind.target() == *target && (g.kind == Kind::Pack) == packs)
                .map(|g| g.package.as_str())
                .collect();
            if !packages.is_empty() {
                cargo_build(&workspace, &target_dir, target, &packages);
            }
        }
    }

    let wasm_out = out_dir.join("wasm");
    fs::create_dir_all(&wasm_out).expect("create OUT_DIR/wasm");
    for g in &guests {
        let built = target_dir
            .join(g.kind.target())
            .join("release")
            .join(g.wasm_file());
        let bytes = fs::read(&built)
            .unwrap_or_else(|e| panic!("{} was not built at {}: {e}", g.package, built.display()));
        assert!(
            bytes.starts_with(b"\0asm"),
            "{} is not a wasm module",
            built.display()
        );
        let copy = wasm_out.join(format!("{}.wasm", g.name));
        if fs::read(&copy).ok().as_deref() != Some(&bytes[..]) {
            fs::write(&copy, &bytes).expect("copy module into OUT_DIR");
        }
    }

    fs::write(out_dir.join("artifacts.rs"), generate(&guests, &wasm_out))
        .expect("write artifacts.rs");
    publish(
        &guests,
        &wasm_out,
        &target_dir.with_file_name("example-modules"),
    );
}

/// Copies the modules to `<target>/example-modules/<rules|faulty|wasi|engines>/<name>.wasm`, one
/// folder per set, so that `rulebox run --rules target/example-modules/rules` loads the good rules
/// only. A module no longer built is removed from its folder.
fn publish(guests: &[Guest], wasm_out: &Path, root: &Path) {
    for kind in [Kind::Good, Kind::Faulty, Kind::Wasi, Kind::Engine] {
        let dir = root.join(kind.dir());
        fs::create_dir_all(&dir).expect("create target/example-modules");
        let names: BTreeSet<String> = guests
            .iter()
            .filter(|g| g.kind == kind)
            .map(|g| format!("{}.wasm", g.name))
            .collect();
        for name in &names {
            let bytes = fs::read(wasm_out.join(name)).expect("read a built module");
            let copy = dir.join(name);
            if fs::read(&copy).ok().as_deref() != Some(&bytes[..]) {
                fs::write(&copy, &bytes).expect("copy a module into target/example-modules");
            }
        }
        for entry in fs::read_dir(&dir)
            .expect("list target/example-modules")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".wasm") && !names.contains(&name) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn rerun_if_changed(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

/// Every crate directly under `dir` (a folder with a `Cargo.toml`), sorted by name.
fn discover(dir: &Path, kind: Kind) -> Vec<Guest> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut guests: Vec<Guest> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("crate folder names are UTF-8")
                .to_owned();
            rerun_if_changed(&path.join("Cargo.toml"));
            rerun_if_changed(&path.join("src"));
            let manifest = fs::read_to_string(path.join("Cargo.toml")).expect("read Cargo.toml");
            let package = package_key(&manifest, "name")
                .unwrap_or_else(|| panic!("{}: no package name", path.display()));
            let description = package_key(&manifest, "description").unwrap_or_default();
            Guest {
                name,
                kind,
                package,
                description,
                dir: path,
            }
        })
        .collect();
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    guests
}

/// A `key = "value"` string of the `[package]` table (enough TOML for our own manifests).
fn package_key(manifest: &str, key: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == key {
            let v = v.trim();
            if let Some(s) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                return Some(s.replace("\\\"", "\""));
            }
        }
    }
    None
}

/// Artifact names must be unique, and so must their constant names.
fn check_names(guests: &[Guest]) {
    let mut seen = BTreeSet::new();
    for g in guests {
        assert!(
            g.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && g.name.starts_with(|c: char| c.is_ascii_lowercase()),
            "example crate folder `{}` must be kebab-case ASCII",
            g.dir.display()
        );
        assert!(
            seen.insert(const_name(&g.name)),
            "two example crates are both named `{}`",
            g.name
        );
    }
}

fn const_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// Panics with [`NOT_INSTALLED`] unless the sysroot has every target in `targets`.
fn check_targets_installed(targets: &BTreeSet<&str>) {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", rustc.to_string_lossy()));
    assert!(
        output.status.success(),
        "`rustc --print sysroot` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    for target in targets {
        if !sysroot.join("lib/rustlib").join(target).is_dir() {
            panic!("{NOT_INSTALLED}");
        }
    }
}

fn cargo_build(workspace: &Path, target_dir: &Path, target: &str, packages: &[&str]) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", target, "--target-dir"])
        .arg(target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    for (key, value) in PROFILE {
        cmd.env(key, value);
    }
    for key in REMOVE {
        cmd.env_remove(key);
    }
    for (key, _) in env::vars_os() {
        if let Some(key) = key.to_str()
            && REMOVE_PREFIXES.iter().any(|p| key.starts_with(p))
        {
            cmd.env_remove(key);
        }
    }
    // Miri configures its own sysroot and rustc wrapper; the guests need the real compiler.
    if env::var_os("CARGO_CFG_MIRI").is_some() {
        cmd.env_remove("RUSTC").env_remove("RUSTC_WRAPPER");
    }
    eprintln!("running: {cmd:?}");
    let output = cmd.output().expect("run the nested cargo");
    if !output.status.success() {
        panic!(
            "building the example rules for {target} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Keep the nested build's output (warnings, timings) in this script's log (`cargo build -vv`).
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
}

/// The generated table: one constant per module, `ALL`, in folder-name order within each kind.
fn generate(guests: &[Guest], wasm_out: &Path) -> String {
    let mut code = String::from("// @generated by example-rules/artifacts/build.rs\n\n");
    for g in guests {
        let path = wasm_out.join(format!("{}.wasm", g.name));
        let path = path.to_str().expect("OUT_DIR is UTF-8");
        let kind = g.kind.variant();
        let description = if g.description.is_empty() {
            String::new()
        } else {
            format!("\n///\n/// {}", g.description.replace('\n', " "))
        };
        writeln!(
            code,
            "/// `{name}`: the {kind_lower} module built from `example-rules/{dir}/{name}` \
             (package `{package}`, target `{target}`).{description}\n\
             pub const {konst}: Artifact = Artifact {{\n    \
                 name: {name:?},\n    \
                 kind: ArtifactKind::{kind},\n    \
                 path: {path:?},\n    \
                 bytes: include_bytes!({path:?}),\n\
             }};\n",
            name = g.name,
            kind_lower = kind.to_ascii_lowercase(),
            dir = g.kind.dir(),
            package = g.package,
            target = g.kind.target(),
            konst = const_name(&g.name),
        )
        .expect("write to String");
    }
    code.push_str(
        "/// Every example module: the good rules, then the faulty set, then the WASI rules, then the engines, then the packs.\n",
    );
    code.push_str("pub const ALL: &[Artifact] = &[\n");
    for g in guests {
        writeln!(code, "    {},", const_name(&g.name)).expect("write to String");
    }
    code.push_str("];\n");
    code
}
