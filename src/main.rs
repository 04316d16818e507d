//! The `vphone` command line: parses arguments, calls the library, returns an exit code.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// A software stand-in for a bank customer's phone, with a strict local sandbox of the
/// Solaris device-management API.
#[derive(Parser)]
#[command(name = "vphone", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {}
}
