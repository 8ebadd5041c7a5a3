//! The `mailsync` binary: parse arguments, set up logging, run the command, exit 0/1/2.

use std::process::ExitCode;

use clap::Parser;
use mailsync::cli::{self, Cli, ExitStatus};
use mailsync::logging::{self, LogFormat};

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    let format = cli.log_format;
    logging::install_panic_hook(format);
    logging::init(format, cli.command.default_log_level());
    match cli::run(cli) {
        Ok(ExitStatus::Success) => ExitCode::SUCCESS,
        Ok(ExitStatus::SomeFailed) => ExitCode::from(1),
        Err(error) => {
            let code = error.exit_code();
            if code != 0 {
                logging::fatal(format, &error.to_string());
            }
            ExitCode::from(code)
        }
    }
}

/// clap's own report (help and version on standard output, exit 0; mistakes exit 2), except
/// that with `--log-format json` a mistake is one JSON line like every other line on
/// standard error.
fn usage_error(error: clap::Error) -> ExitCode {
    // args_os: an argument that is not UTF-8 is itself a usage mistake to report, not a
    // reason to panic while reporting one.
    let args: Vec<_> = std::env::args_os().collect();
    let wants_json = args
        .windows(2)
        .any(|pair| pair[0] == "--log-format" && pair[1] == "json")
        || args.iter().any(|arg| arg == "--log-format=json");
    if wants_json && error.use_stderr() {
        let rendered = error.render().to_string();
        let message = rendered.lines().next().unwrap_or("invalid arguments");
        logging::fatal(LogFormat::Json, message.trim_start_matches("error: "));
        return ExitCode::from(2);
    }
    error.exit()
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
