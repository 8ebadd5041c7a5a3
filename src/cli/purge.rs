//! `mailsync purge`: offboarding or a deletion request. Removes everything that came only from
//! one user's mailbox; activities that other mailboxes also saw lose only that source.

use std::io::{BufRead, IsTerminal, Write};

use super::{CommandError, CommandResult, ExitStatus, open_store, runtime};
use crate::address;
use crate::rules::Policy;

use clap::Args;

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The user whose mailbox's contribution goes (may already be gone from the config).
    #[arg(long, value_name = "EMAIL")]
    pub user: String,
    /// Do not ask.
    #[arg(long)]
    pub yes: bool,
}

pub fn run(policy: &Policy, args: PurgeArgs) -> CommandResult {
    let PurgeArgs { user, yes } = args;
    let user = user.as_str();
    // The user may already have left the config; their mail must still be purgeable.
    let email = policy
        .config
        .user_by_address(user)
        .map_or_else(|| address::normalize(user), |known| known.email.clone());
    address::validate(&email).map_err(CommandError::Usage)?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CommandError::Usage(format!(
                "purging {email}'s mail cannot be undone: confirm with --yes"
            )));
        }
        let mut out = std::io::stdout().lock();
        write!(
            out,
            "This removes every activity that came only from {email}'s mailbox, and {email}'s source on the others. Type the address to confirm: "
        )?;
        out.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if address::normalize(&answer) != email {
            return Err(CommandError::Usage(
                "not confirmed; nothing was removed".to_string(),
            ));
        }
    }
    let store = open_store(policy)?;
    // Before the purge, which takes the user's refresh token with it.
    if policy.config.gmail.push.is_some()
        && store
            .sync_state(&email)?
            .is_some_and(|state| state.watch_expires_at.is_some())
    {
        let refresh_token = store.refresh_token(&email)?;
        match stop_watch(policy, &email, refresh_token) {
            Ok(()) => println!("stopped {email}'s Gmail watch"),
            Err(error) => println!(
                "note: could not stop {email}'s Gmail watch ({error}); it runs out by itself within 7 days, and its notifications are ignored"
            ),
        }
    }
    let purged = store.purge_user(&email)?;
    println!(
        "purged {email}: {} activities removed, {} shared activities lost this mailbox's source, {} decisions removed, {} attachment files removed",
        purged.activities_removed,
        purged.sources_removed,
        purged.decisions_removed,
        purged.attachment_files_removed
    );
    tracing::warn!(
        user = %email,
        activities_removed = purged.activities_removed,
        sources_removed = purged.sources_removed,
        decisions_removed = purged.decisions_removed,
        attachment_files_removed = purged.attachment_files_removed,
        "mailbox purged"
    );
    if policy
        .config
        .user_by_address(&email)
        .is_some_and(|user| user.sync)
    {
        println!(
            "note: {email} still has sync = true; turn it off and reload, or the daemon will sync the mailbox again"
        );
    }
    Ok(ExitStatus::Success)
}

/// `users.stop` for the purged mailbox, so Gmail stops publishing its changes.
fn stop_watch(
    policy: &Policy,
    email: &str,
    refresh_token: Option<String>,
) -> Result<(), CommandError> {
    runtime()?.block_on(async {
        let credentials = super::load_credentials(policy).await?;
        let client = crate::gmail::GmailClient::for_user(
            &policy.config.gmail,
            &credentials,
            email,
            refresh_token,
            crate::gmail::http::api_client(),
            crate::gmail::http::oauth_client(),
        );
        client
            .stop_watch()
            .await
            .map_err(|error| CommandError::Failed(error.into()))
    })
}
