//! Builds the page's E2EE engine (the `aparte-e2ee-wasm` crate, for
//! wasm32, through wasm-bindgen's library) and embeds it with every file under
//! `web/` into the binary: the page needs nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    // Read at run time, not baked in with `env!`: cargo reuses a compiled
    // build script across checkouts that share a target directory (a
    // worktree measured against main), and a baked-in path would build the
    // other checkout's page and engine, or fail once it is gone.
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set by cargo");
    let root = Path::new(&manifest).join("../..");
    let web = root.join("web");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    println!("cargo:rerun-if-changed={}", web.display());
    let mut files = Vec::new();
    collect(&web, &web, &mut files);
    let wasm_dir = out_dir.join("wasm");
    files.sort();
    for (rel, _) in &files {
        println!("cargo:rerun-if-changed={}", web.join(rel).display());
    }
    build_wasm(&root, &wasm_dir);
    // Generated files: embedded, but not watched (they change on every build).
    for name in ["aparte_e2ee_wasm.js", "aparte_e2ee_wasm_bg.wasm"] {
        files.push((format!("wasm/{name}"), wasm_dir.join(name)));
    }
    let mut out = String::from(
        "/// Embedded web assets: (path under web/, bytes).\npub static ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for (rel, abs) in &files {
        out.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?})),\n",
            abs.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo")).join("assets.rs");
    fs::write(dest, out).expect("writing assets.rs");
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            let abs = fs::canonicalize(&path).unwrap_or(path);
            out.push((rel, abs));
        }
    }
}

/// Compiles the E2EE engine for the browser and generates its JS bindings
/// into `dest` (`aparte_e2ee_wasm.js` and `aparte_e2ee_wasm_bg.wasm`).
fn build_wasm(root: &Path, dest: &Path) {
    for dir in ["crates/aparte-e2ee", "crates/aparte-e2ee-wasm"] {
        for sub in ["src", "Cargo.toml"] {
            println!(
                "cargo:rerun-if-changed={}",
                root.join(dir).join(sub).display()
            );
        }
    }
    ensure_wasm_target();
    // A separate target directory: the outer build holds the lock on ours.
    let target_dir = root.join("target/wasm-build");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "aparte-e2ee-wasm",
            "--target",
            WASM_TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(root)
        // Flags meant for the host build must not reach the wasm build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        // No debug info in what browsers download.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .status()
        .expect("running cargo to build the E2EE engine for wasm32");
    assert!(
        status.success(),
        "building the E2EE engine (aparte-e2ee-wasm) for wasm32 failed"
    );
    let wasm = target_dir
        .join(WASM_TARGET)
        .join("release/aparte_e2ee_wasm.wasm");
    fs::create_dir_all(dest).expect("creating the wasm output directory");
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .web(true)
        .expect("wasm-bindgen web target")
        .typescript(false)
        .generate(dest)
        .expect("generating the E2EE engine's JS bindings");
}

/// Adds the wasm32 target with rustup when it is missing, or stops with one
/// sentence saying how.
fn ensure_wasm_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET)
        });
    match installed {
        Ok(true) => {}
        Ok(false) => {
            let ok = Command::new("rustup")
                .args(["target", "add", WASM_TARGET])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "could not add the {WASM_TARGET} target: run `rustup target add {WASM_TARGET}` and build again"
            );
        }
        Err(_) => {
            // No rustup: the toolchain must already hold the target's standard library.
            println!(
                "cargo:warning=rustup not found; assuming the {WASM_TARGET} target is installed"
            );
        }
    }
}
