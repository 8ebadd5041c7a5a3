//! Exit codes and printing: 0 success, 1 ran but something failed, 2 usage or config error.
//! A closed pipe (`mailsync feed ... | head`) is success, as in ripgrep.

use crate::diagnostic::Diagnostics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    /// The command ran to the end, but some items failed (reported as they happened).
    SomeFailed,
}

pub type CommandResult = Result<ExitStatus, CommandError>;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command line itself is wrong (unknown user, bad argument).
    #[error("{0}")]
    Usage(String),
    /// The config or rules have problems; every one is listed.
    #[error("{0}")]
    Config(Diagnostics),
    /// The command could not do its job.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage(_) | CommandError::Config(_) => 2,
            CommandError::Failed(error) if is_broken_pipe(error) => 0,
            CommandError::Failed(_) => 1,
        }
    }
}

impl From<anyhow::Error> for CommandError {
    fn from(error: anyhow::Error) -> Self {
        CommandError::Failed(error)
    }
}

impl From<std::io::Error> for CommandError {
    fn from(error: std::io::Error) -> Self {
        CommandError::Failed(error.into())
    }
}

impl From<crate::store::StoreError> for CommandError {
    fn from(error: crate::store::StoreError) -> Self {
        CommandError::Failed(error.into())
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints one JSON value as one line. Every command's JSON goes through here, so none can
/// print a raw control or bidi character (they are `\uXXXX` escapes, which parsers decode).
pub fn json_line(
    out: &mut impl std::io::Write,
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    crate::printable::json::to_writer(out, value)?;
    writeln!(out)
}
