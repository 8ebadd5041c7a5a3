//! `mailsync sandbox`: the Gmail-compatible server of the `mailsync-sandbox` crate, for tests,
//! demos and trying mailsync without a Google account. A build without the `sandbox` feature
//! (a production build) says how to get it.

use super::{CommandError, CommandResult};

#[cfg(feature = "sandbox")]
pub use mailsync_sandbox::cli::SandboxArgs;

#[cfg(feature = "sandbox")]
pub fn run(args: SandboxArgs) -> CommandResult {
    use mailsync_sandbox::cli::CliError;

    use super::ExitStatus;
    match mailsync_sandbox::cli::run(args) {
        Ok(()) => Ok(ExitStatus::Success),
        Err(CliError::Usage(message)) => Err(CommandError::Usage(message)),
        Err(CliError::Failed(error)) => Err(CommandError::Failed(error)),
    }
}

/// Without the feature the command still parses (so its help is honest), and refuses.
#[cfg(not(feature = "sandbox"))]
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    ignored: Vec<String>,
}

#[cfg(not(feature = "sandbox"))]
pub fn run(_args: SandboxArgs) -> CommandResult {
    Err(CommandError::Usage(WITHOUT_SANDBOX.to_string()))
}

/// What `demo` and `sandbox` say in a build without the test server.
#[cfg(not(feature = "sandbox"))]
pub const WITHOUT_SANDBOX: &str = "this mailsync was built without the Gmail-compatible test server (cargo feature `sandbox`): build it with the default features (`cargo install --locked --path .`), or run the stand-alone `mailsync-sandbox` (`cargo install --locked --path crates/sandbox`)";
