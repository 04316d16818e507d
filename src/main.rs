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
enum Command {
    /// Serve the strict local sandbox of the bank's API until Ctrl-C.
    Sandbox(vphone::sandbox::cli::SandboxArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Sandbox(args) => vphone::sandbox::cli::run(args).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
