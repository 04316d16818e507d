//! The `vphone` command line: parses arguments, calls the library, returns an exit code.

/// mimalloc instead of glibc malloc: in fleet profiles glibc's arena locks and frees took
/// about 8% of the CPU, across thousands of tasks allocating small request buffers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;
use vphone::phone::cli::{CliError, EXIT_CODES};

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
    /// Walk one phone through every flow against an in-process sandbox (or --api URL).
    Demo(vphone::demo::DemoArgs),
    /// Act as a virtual phone: create, bind, sign, approve, confirm changes.
    Phone(vphone::phone::cli::PhoneArgs),
    /// Serve the strict local sandbox of the bank's API until Ctrl-C.
    Sandbox(vphone::sandbox::cli::SandboxArgs),
    /// Run a fleet of simulated phones (load test), or merge load reports.
    Load(Box<vphone::fleet::cli::LoadArgs>),
    /// Walk every call of the API once with a throwaway person and tell what the server
    /// supports: status, shape read, time, and which phone flows work. Every request is sent
    /// once (no retries) unless --retries N asks for them; a call that then passed only after
    /// retries says so.
    Probe(vphone::probe::ProbeArgs),
    /// Host many phones behind an HTTP control API (JSON, SSE events, OpenAPI at
    /// /openapi.json) for test rigs in any language and a browser.
    Serve(Box<vphone::control::cli::ServeArgs>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match cli.command {
        Command::Demo(args) => finish(vphone::demo::run(args)),
        Command::Phone(args) => finish(vphone::phone::cli::run(args)),
        Command::Load(args) => vphone::fleet::cli::main(*args),
        Command::Probe(args) => finish(vphone::probe::run(args)),
        Command::Serve(args) => match vphone::control::cli::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Sandbox(args) => match vphone::sandbox::cli::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        },
    }
}

/// Prints the error and turns it into the documented exit code.
fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Reports a command line clap refused. With `--json` among the arguments, stdout also gets
/// `{"error": {"message", "exit_code"}}`, like every other `--json` failure; `--help` and
/// `--version` print as usual.
fn usage_error(e: clap::Error) -> ExitCode {
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if !e.use_stderr() || !json {
        e.exit();
    }
    let rendered = e.render().to_string();
    // The error proper: the lines before the blank line that precedes the usage.
    let message = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.trim_start_matches("error: ");
    let code = u8::try_from(e.exit_code()).unwrap_or(2);
    let doc = serde_json::json!({"error": {"message": message, "exit_code": code}});
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{doc:#}");
    let _ = out.flush();
    let _ = e.print();
    ExitCode::from(code)
}
