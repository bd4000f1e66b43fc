//! `mesh-proxy validate` on hostile config files: each is refused with exit
//! code 1 and `FILE:LINE:COLUMN:` errors, quickly, without crashing (a stack
//! overflow would kill the process with a signal, not exit 1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const VS_HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n";

/// Runs `validate` on `file`: its exit code and stderr, within 10 s.
fn validate(file: &Path) -> (Option<i32>, String) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mesh-proxy"))
        .arg("validate")
        .arg(file)
        .output()
        .expect("run mesh-proxy validate");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_refuses_hostile_files_with_positions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut bomb = format!("{VS_HEAD}  x0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "  x{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    let mut big = String::from(VS_HEAD);
    big.push_str(&"# padding\n".repeat(1_700_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bomb.yaml", bomb.into_bytes(), ":12:"),
        (
            "deep.yaml",
            format!(
                "{VS_HEAD}  http: {}{}\n",
                "[".repeat(100_000),
                "]".repeat(100_000)
            )
            .into_bytes(),
            ":7:",
        ),
        (
            "deep-block.yaml",
            format!("{VS_HEAD}  http:\n  {}x\n", "- ".repeat(100_000)).into_bytes(),
            ":8:",
        ),
        ("big.yaml", big.into_bytes(), ":1:1:"),
        (
            "binary.yaml",
            (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
            ":1:",
        ),
        (
            "dup.yaml",
            format!("{VS_HEAD}  hosts: [x]\n").into_bytes(),
            ":7:3:",
        ),
    ];
    for (name, bytes, at) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).expect("write");
        let (code, stderr) = validate(&file);
        assert_eq!(code, Some(1), "{name}: {stderr}");
        let prefix = format!("{}{at}", file.display());
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with(&prefix), "{name}: {stderr}");
        assert!(stderr.lines().count() <= 102, "{name}: output is bounded");
    }
}

#[test]
fn validate_reads_dev_zero_no_further_than_the_limit() {
    let (code, stderr) = validate(Path::new("/dev/zero"));
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "/dev/zero:1:1: the config is larger than 16777216 bytes (limit of the config loader)"
    );
}
