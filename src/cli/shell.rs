//! `mailsync completions SHELL` and `mailsync man`: help where the shell looks for it, both
//! written to standard output from the same argument definitions `--help` shows.

use std::io::Write;

use clap::{Args, CommandFactory};

use super::{Cli, CommandResult, ExitStatus};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// The completion script for `shell`, e.g. `mailsync completions bash >
/// /usr/share/bash-completion/completions/mailsync`.
pub fn completions(args: CompletionsArgs) -> CommandResult {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut Cli::command(), "mailsync", &mut out);
    out.flush()?;
    Ok(ExitStatus::Success)
}

/// The man page, `mailsync.1` in roff, e.g. `mailsync man > /usr/share/man/man1/mailsync.1`.
pub fn man() -> CommandResult {
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    out.flush()?;
    Ok(ExitStatus::Success)
}
