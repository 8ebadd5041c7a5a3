//! The `mailsync-sandbox` binary: the Gmail-compatible server on its own, for tests and demos
//! of any sync client. Exit codes: 0 after SIGTERM/SIGINT, 1 on a failure, 2 on bad arguments.

use std::process::ExitCode;

use clap::Parser;
use mailsync_sandbox::cli::{self, CliError, SandboxArgs};

/// Serve mailboxes from folders of .eml files over a Gmail-compatible API (with OAuth, quota,
/// history and fault injection), on loopback only.
#[derive(Debug, Parser)]
#[command(name = "mailsync-sandbox", version, max_term_width = 100)]
struct Arguments {
    #[command(flatten)]
    sandbox: SandboxArgs,
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli::run(arguments.sandbox) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mailsync-sandbox: {error:#}");
            ExitCode::from(match error {
                CliError::Usage(_) => 2,
                CliError::Failed(_) => 1,
            })
        }
    }
}
