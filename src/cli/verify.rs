//! `mailsync verify`: no silent gaps. Lists the user's Gmail window, compares it with the
//! decision log, and reports every message that was never decided; `--repair` runs those
//! through the pipeline.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::output::json_line;
use super::{CommandError, CommandResult, ExitStatus, find_user, open_store, runtime};
use crate::gmail::{GmailClient, http};
use crate::rules::Policy;
use crate::sync::gmail::{MailboxSync, Window};

use clap::Args;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The user whose mailbox to check.
    #[arg(long, value_name = "EMAIL")]
    pub user: String,
    /// The window start (YYYY-MM-DD); default: the initial_sync_days window.
    #[arg(long, value_name = "DATE")]
    pub since: Option<chrono::NaiveDate>,
    /// Run every undecided message through the pipeline now.
    #[arg(long)]
    pub repair: bool,
    /// The report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(policy: &Policy, args: VerifyArgs) -> CommandResult {
    let user = find_user(policy, &args.user)?;
    let gmail = &policy.config.gmail;
    let window = Window::since_or_days(args.since, gmail.initial_sync_days);
    let store = open_store(policy)?;
    let refresh_token = store.refresh_token(&user.email)?;
    let report = runtime()?.block_on(async {
        let credentials = super::load_credentials(policy).await?;
        let client = GmailClient::for_user(
            gmail,
            &credentials,
            &user.email,
            refresh_token,
            http::api_client(),
            http::oauth_client(),
        );
        let sync = MailboxSync {
            client: Arc::new(client),
            store: store.clone(),
            policy: Arc::new(policy.clone()),
            user: user.clone(),
            cancel: CancellationToken::new(),
            window,
            write: args.repair,
            refetch_decided: false,
            on_decided: None,
            on_progress: None,
            metrics: None,
        };
        sync.verify(args.repair)
            .await
            .context("reconciliation failed")
            .map_err(CommandError::Failed)
    })?;
    store.set_verify_result(
        &user.email,
        report.gaps.len() as u64,
        chrono::Utc::now().timestamp(),
    )?;
    let mut out = std::io::stdout().lock();
    if args.json {
        json_line(&mut out, &report)?;
    } else {
        writeln!(
            out,
            "{}: {} message(s) listed in the window, {} without a decision",
            user.email,
            report.listed,
            report.gaps.len()
        )?;
        for id in &report.gaps {
            writeln!(out, "  never decided: {}", crate::printable::escape(id))?;
        }
        if args.repair {
            writeln!(
                out,
                "repaired: {} decided now, {} deleted from Gmail meanwhile",
                report.repaired, report.vanished
            )?;
        } else if !report.gaps.is_empty() {
            writeln!(out, "run again with --repair to decide them now")?;
        }
    }
    let unrepaired = report
        .gaps
        .len()
        .saturating_sub(report.repaired + report.vanished);
    let remaining = if args.repair {
        unrepaired
    } else {
        report.gaps.len()
    };
    Ok(if remaining == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::SomeFailed
    })
}
