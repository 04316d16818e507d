//! Replays the committed fuzz corpus (`fuzz/corpus/TARGET/`) through the targets' bodies in
//! `vphone::fuzzing`, on stable: every input a fuzzer kept, and every finding fixed since,
//! stays checked by `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use vphone::fuzzing::TARGETS;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(corpus(target))
        .unwrap_or_else(|e| panic!("{}: {e}", corpus(target).display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

#[test]
fn every_target_replays_its_committed_corpus() {
    for (target, body) in TARGETS {
        let inputs = inputs(target);
        assert!(
            inputs.len() >= 3,
            "{target}: the corpus holds only {} inputs",
            inputs.len()
        );
        for (path, bytes) in inputs {
            let outcome = std::panic::catch_unwind(|| body(&bytes));
            assert!(outcome.is_ok(), "{target} fails on {}", path.display());
        }
    }
}

#[test]
fn every_fuzz_target_file_has_a_body_and_a_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.sort();
    assert_eq!(files, names);
}

#[test]
fn the_signature_seed_is_the_fixed_keys_valid_signature() {
    // The differential only compares verdicts on a signature that verifies if the corpus
    // starts from one.
    let seed = std::fs::read(corpus("der_signature").join("valid")).unwrap();
    assert_eq!(seed, vphone::fuzzing::valid_signature());
}

/// Writes the seeds that are built from code (a signature, keys, reports) into the corpus.
/// Run it after changing their shape: `cargo test --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "rewrites fuzz/corpus; run by hand"]
fn write_generated_seeds() {
    use vphone::fleet::{Report, ShardRun};
    let write = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(corpus(target)).unwrap();
        std::fs::write(corpus(target).join(name), bytes).unwrap();
    };
    write(
        "der_signature",
        "valid",
        &vphone::fuzzing::valid_signature(),
    );
    let key = vphone_keystore::SigningKey::derive(
        &vphone_keystore::Seed::from_u64(7),
        0,
        vphone_keystore::KeyPurpose::Unrestricted,
    );
    write("values", "public_key", key.public_key_hex().as_bytes());
    write("values", "signature", key.sign_hex(b"x").as_bytes());
    let shard = |k: u64| {
        let mut r = Report::new("bind", "closed concurrency=1", "f1", 1_000 + k);
        r.devices = 4;
        r.iterations = 2;
        r.elapsed_secs = 1.5;
        let mut stats = vphone::fleet::OpStats {
            ok: 2,
            ..Default::default()
        };
        vphone::fleet::record_us(&mut stats.latency_us, 1_200 + k);
        r.ops.insert("bind".to_owned(), stats);
        r.shards.push(ShardRun {
            shard: format!("{k}/2"),
            first_device: (k - 1) * 2,
            end_device: k * 2,
            peak_memory_bytes: 1,
            elapsed_secs: 1.5,
            threads: 1,
            signer: "aws-lc".into(),
        });
        r.to_json().unwrap()
    };
    write(
        "report_merge",
        "two_shards",
        format!("{}\0{}", shard(1), shard(2)).as_bytes(),
    );
    write("report_merge", "same_shard_twice", shard(1).as_bytes());
}
