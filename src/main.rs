//! The `mailsync` binary: parse arguments, set up logging, run the command, exit 0/1/2.

use std::process::ExitCode;

use clap::Parser;
use mailsync::cli::{self, Cli, ExitStatus};

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    mailsync::logging::init(cli.log_format, cli.command.default_log_level());
    match cli::run(cli) {
        Ok(ExitStatus::Success) => ExitCode::SUCCESS,
        Ok(ExitStatus::SomeFailed) => ExitCode::from(1),
        Err(error) => {
            let code = error.exit_code();
            if code != 0 {
                // Errors name files, message ids and rows of files others wrote.
                let message = error.to_string();
                eprintln!(
                    "mailsync: {}",
                    mailsync::printable::escape_keeping_line_breaks(&message)
                );
            }
            ExitCode::from(code)
        }
    }
}

/// glibc's malloc gives every thread that allocates an arena of its own (up to eight per
/// core) and keeps what is freed in each: the daemon's blocking pool has dozens of threads,
/// and an idle daemon of 10,000 mailboxes held a tenth more memory for it. Two arenas cost
/// no measurable speed (BENCHMARKS.md, "Idle").
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any other
    // thread exists, and a refusal (it returns 0) just leaves glibc's default.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
