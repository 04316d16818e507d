//! The fleet seed is a secret (it derives every key of the fleet): it comes from a file or
//! the environment, reports and logs show only its fingerprint, and `--seed` warns.
#![allow(clippy::unwrap_used)]

use assert_cmd::Command;
use std::path::Path;
use vphone_keystore::Seed;

/// A seed nobody would type: 64 hex digits.
const SECRET: &str = "6b1f0c3e9a5d47e2b8c1f0a3d5e7c9b1a2f4e6d8c0b2a4f6e8d0c2b4a6f8e0d2";

fn load(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("vphone").unwrap();
    cmd.arg("load")
        .args(["--devices", "3", "--progress", "lines", "--fail-on-error"])
        .arg("--json")
        .arg(dir.join("r.json"))
        .arg("--save-fleet")
        .arg(dir.join("fleet.txt"))
        .args(extra)
        .env_remove("VPHONE_FLEET_SEED")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("VPHONE_SHARD_COUNT");
    cmd
}

/// Runs, and returns stdout + stderr and the JSON report's text.
fn outputs(mut cmd: Command, dir: &Path) -> (String, String) {
    let out = cmd.assert().success().get_output().clone();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        printed,
        std::fs::read_to_string(dir.join("r.json")).unwrap(),
    )
}

#[test]
fn a_seed_from_the_environment_or_a_file_is_never_printed_only_its_fingerprint() {
    let fingerprint = Seed::from_hex(SECRET).unwrap().fingerprint();
    let dir = tempfile::tempdir().unwrap();
    let mut from_env = load(dir.path(), &[]);
    from_env.env("VPHONE_FLEET_SEED", SECRET);
    let seed_file = dir.path().join("seed");
    std::fs::write(&seed_file, format!("{SECRET}\n")).unwrap();
    let mut from_file = load(dir.path(), &[]);
    from_file.arg("--seed-file").arg(&seed_file);
    for cmd in [from_env, from_file] {
        let (printed, json) = outputs(cmd, dir.path());
        for (what, text) in [("output", &printed), ("report", &json)] {
            assert!(
                !text.contains(SECRET),
                "the seed leaked into the {what}:\n{text}"
            );
            assert!(
                text.contains(&fingerprint),
                "no fingerprint in the {what}:\n{text}"
            );
        }
        assert!(!printed.contains("warning"), "{printed}");
        // The fleet file keeps the seed (that is what it is for), readable by its owner only.
        let fleet = dir.path().join("fleet.txt");
        assert!(std::fs::read_to_string(&fleet).unwrap().contains(SECRET));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&fleet).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }
}

#[test]
fn a_seed_on_the_command_line_works_but_warns() {
    let dir = tempfile::tempdir().unwrap();
    let (printed, json) = outputs(load(dir.path(), &["--seed", SECRET]), dir.path());
    assert!(printed.contains("warning: --seed"), "{printed}");
    assert!(printed.contains("VPHONE_FLEET_SEED"), "{printed}");
    assert!(!json.contains(SECRET), "{json}");
    assert!(json.contains(&Seed::from_hex(SECRET).unwrap().fingerprint()));
}

#[test]
fn a_bad_seed_is_refused_without_repeating_it() {
    let dir = tempfile::tempdir().unwrap();
    let almost = &SECRET[..63];
    let out = load(dir.path(), &[])
        .env("VPHONE_FLEET_SEED", almost)
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VPHONE_FLEET_SEED"), "{stderr}");
    assert!(!stderr.contains(almost), "{stderr}");
}
