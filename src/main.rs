//! The `mailsync` binary: parse arguments, set up logging, run the command, exit 0/1/2.

use std::process::ExitCode;

use clap::Parser;
use mailsync::cli::{self, Cli, ExitStatus};

fn main() -> ExitCode {
    let cli = Cli::parse();
    mailsync::logging::init(cli.log_format, cli.command.default_log_level());
    match cli::run(cli) {
        Ok(ExitStatus::Success) => ExitCode::SUCCESS,
        Ok(ExitStatus::SomeFailed) => ExitCode::from(1),
        Err(error) => {
            let code = error.exit_code();
            if code != 0 {
                eprintln!("mailsync: {error}");
            }
            ExitCode::from(code)
        }
    }
}
