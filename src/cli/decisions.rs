//! `mailsync decisions`: the decision log of one mailbox, as the daemon (or a replay) wrote
//! it: what was decided for each message and why. Skipped mail has no addresses and no
//! subject in the log, so none are shown.

use std::io::Write;

use super::output::json_line;
use super::{CommandResult, ExitStatus, find_user, open_store};
use crate::printable;
use crate::rules::Policy;
use crate::store::LoggedDecision;

use clap::Args;

#[derive(Debug, Args)]
pub struct DecisionsArgs {
    /// The user (primary address or alias).
    #[arg(long, value_name = "EMAIL")]
    pub user: String,
    /// At most this many decisions.
    #[arg(long)]
    pub limit: Option<usize>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(policy: &Policy, args: DecisionsArgs) -> CommandResult {
    let DecisionsArgs { user, limit, json } = args;
    let user = find_user(policy, &user)?;
    let store = open_store(policy)?;
    let log = store.decision_log(&user.email, limit)?;
    let mut out = std::io::stdout().lock();
    if json {
        for entry in &log {
            json_line(&mut out, entry)?;
        }
        return Ok(ExitStatus::Success);
    }
    write_table(&mut out, &log)?;
    Ok(ExitStatus::Success)
}

pub fn write_table(out: &mut impl Write, log: &[LoggedDecision]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<18} {:<8} {:<20} CONTACTS / RULES",
        "SOURCE ID", "DECISION", "REASON"
    )?;
    for entry in log {
        let mut what = entry.contacts.clone();
        what.extend(entry.rules.iter().map(|rule| format!("[{rule}]")));
        what.extend(entry.detail.iter().map(|detail| format!("({detail})")));
        writeln!(
            out,
            "{:<18} {:<8} {:<20} {}",
            printable::escape(&entry.source_id),
            printable::escape(&entry.decision),
            printable::escape(&entry.reason),
            printable::escape(&what.join(" "))
        )?;
    }
    let synced = log
        .iter()
        .filter(|entry| entry.decision == "synced")
        .count();
    writeln!(
        out,
        "{} decision(s): {synced} synced, {} skipped",
        log.len(),
        log.len() - synced
    )
}
