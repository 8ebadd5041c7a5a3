//! `mailsync notify test`: one email through the configured relay, to check the settings.

use super::{CommandError, CommandResult, ExitStatus, runtime};
use crate::notify::Notifier;
use crate::rules::Policy;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send one test email to the [notify] ops recipients through the configured relay.
    Test,
}

pub fn test(policy: &Policy) -> CommandResult {
    let Some(config) = policy.config.notify.clone() else {
        return Err(CommandError::Usage(format!(
            "no [notify] section in {}: nothing to test",
            policy.config.source_path.display()
        )));
    };
    let notifier = Notifier::new(config);
    runtime()?
        .block_on(notifier.send_test())
        .map_err(|error| CommandError::Failed(error.into()))?;
    println!(
        "sent a test notification to {} through {}:{}",
        notifier.config().ops.join(", "),
        notifier.config().smtp_host,
        notifier.config().smtp_port
    );
    Ok(ExitStatus::Success)
}
