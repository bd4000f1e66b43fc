//! The README's first command, `mesh-proxy demo`, shortened.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// The success rate printed after "clients: N requests, M succeeded (".
fn success(section: &str) -> f64 {
    let line = section
        .lines()
        .find(|l| l.trim_start().starts_with("clients:"))
        .unwrap();
    let pct = line.split('(').nth(1).unwrap().split('%').next().unwrap();
    pct.parse().unwrap()
}

#[test]
fn the_demo_runs_and_the_policies_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_mesh-proxy"))
        .args(["demo", "--seconds", "1.5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let (without, with) = stdout
        .split_once("With the mesh's policies")
        .expect("two tables");
    for table in [without, with] {
        for endpoint in ["reviews-v1", "reviews-v2", "reviews-v3"] {
            assert!(table.contains(endpoint), "{table}");
        }
    }
    let (plain, meshed) = (success(without), success(with));
    assert!(
        plain < 95.0,
        "v2's failures reach clients without policies: {plain}"
    );
    assert!(
        meshed > 99.0,
        "retries and ejection hide them: {meshed}\n{stdout}"
    );
    assert!(stdout.contains("mutual TLS"));
}
