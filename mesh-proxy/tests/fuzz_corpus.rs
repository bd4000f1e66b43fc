//! The fuzz targets' seed corpora (`fuzz/corpus/TARGET/`) as regression
//! tests: every file goes through the same function its `cargo fuzz` target
//! calls (`fuzz/src/lib.rs`, included here), which panics on a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::path::PathBuf;

/// Runs every file of `fuzz/corpus/<target>` through `run`; returns how many.
fn corpus(target: &str, run: fn(&[u8])) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let caught = std::panic::catch_unwind(|| run(&data));
        assert!(caught.is_ok(), "{} failed", path.display());
        n += 1;
    }
    n
}

#[test]
fn config_corpus() {
    assert!(corpus("config", targets::config) >= 5);
}

#[test]
fn route_match_corpus() {
    assert!(corpus("route_match", targets::route_match) >= 3);
}

#[test]
fn spiffe_id_corpus() {
    assert!(corpus("spiffe_id", targets::spiffe_id) >= 5);
}

#[test]
fn framing_corpus() {
    assert!(corpus("framing", targets::framing) >= 5);
}

#[test]
fn path_normalize_corpus() {
    assert!(corpus("path_normalize", targets::path_normalize) >= 5);
}
