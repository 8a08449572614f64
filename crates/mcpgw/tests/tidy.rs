//! House rules checked on every `cargo test`: each Rust file opens with a
//! `//!` paragraph saying what it does (`docs/STYLE.md`, rule 1), and only the
//! supervisor depends on bollard outside of tests (ARCHITECTURE.md).

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("crates"), &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` opening paragraph: {missing:#?}"
    );
}

#[test]
fn only_the_docker_runtime_depends_on_bollard() {
    let crates = workspace_root().join("crates");
    for entry in std::fs::read_dir(&crates).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let normal_deps = manifest
            .split("\n[")
            .find(|section| section.starts_with("dependencies]"))
            .unwrap_or("");
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if name != "mcpgw-docker" {
            assert!(
                !normal_deps.contains("bollard"),
                "{name} depends on bollard"
            );
        }
    }
}
