//! `vphone load` on the command line, the same for every fleet test.

use assert_cmd::Command;

/// `vphone load ARGS`, with nothing from the environment that would change the run: no
/// shard index or count of a Kubernetes Job, no agreed start time, no credentials.
pub fn vphone_load(args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("vphone").unwrap();
    cmd.arg("load")
        .args(args)
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("VPHONE_SHARD_COUNT")
        .env_remove("VPHONE_START_AT")
        .env_remove("VPHONE_CLIENT_ID")
        .env_remove("VPHONE_CLIENT_SECRET")
        .env_remove("VPHONE_CREDENTIALS");
    cmd
}
