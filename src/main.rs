//! The `vphone` command line: parses arguments, calls the library, returns an exit code.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use vphone::phone::cli::EXIT_CODES;

/// A software stand-in for a bank customer's phone, with a strict local sandbox of the
/// Solaris device-management API.
#[derive(Parser)]
#[command(name = "vphone", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Act as a virtual phone: create, bind, sign, approve, confirm changes.
    Phone(vphone::phone::cli::PhoneArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Phone(args) => vphone::phone::cli::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
