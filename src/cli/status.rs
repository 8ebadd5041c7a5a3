//! `mailsync status`: each user's sync health, as a dashboard would show it, and which
//! instance syncs each mailbox; `status --instances`: the live instances on the store.

use std::io::Write;

use super::output::json_line;
use super::{CommandResult, ExitStatus, open_store};
use crate::printable;
use crate::rules::Policy;
use crate::store::{PushState, SyncStatus};

use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// The live instances sharing the store (PostgreSQL), instead of the users.
    #[arg(long)]
    pub instances: bool,
}

#[derive(Debug, serde::Serialize)]
struct UserStatus {
    user: String,
    sync: bool,
    state: SyncStatus,
    history_id: Option<String>,
    /// RFC 3339, UTC.
    last_sync_at: Option<String>,
    last_error: Option<String>,
    /// Activities this user's mailbox contributed.
    activities: u64,
    /// Seconds since the last successful sync.
    lag_secs: Option<i64>,
    /// Failed polls in a row.
    consecutive_failures: u32,
    /// When the daemon plans to poll next (RFC 3339, UTC); none when it is not polling.
    next_poll_at: Option<String>,
    /// Undecided messages the last reconciliation found (and repaired).
    verify_gaps: u64,
    last_verify_at: Option<String>,
    /// The instance holding this mailbox's lease (PostgreSQL); none when no instance does,
    /// and always none with SQLite, whose one daemon syncs every mailbox.
    instance: Option<String>,
    /// Until when that instance holds it (RFC 3339, UTC).
    lease_expires_at: Option<String>,
    /// How new mail reaches the mailbox with `[gmail.push]`: `push` (its watch is live and
    /// notifications are pulled), or `polling` (no watch yet, or pulling fails); none
    /// without push.
    push: Option<PushState>,
    /// When the mailbox's Gmail watch runs out (RFC 3339, UTC); none without one.
    watch_expires_at: Option<String>,
}

pub fn run(policy: &Policy, args: StatusArgs) -> CommandResult {
    if args.instances {
        return instances(policy, args.json);
    }
    let json = args.json;
    let store = open_store(policy)?;
    let states = store.sync_states()?;
    let activities = store.sources_per_user()?;
    let leases = store.leases()?;
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<UserStatus> = policy
        .config
        .users
        .iter()
        .map(|user| {
            let state = states.iter().find(|state| state.user_email == user.email);
            let lease = leases
                .iter()
                .find(|lease| lease.user_email == user.email && lease.instance.is_some());
            UserStatus {
                user: user.email.clone(),
                sync: user.sync,
                // The config is the truth for the toggle; the store may not have caught up
                // with a change the daemon has not reloaded yet.
                state: if !user.sync {
                    SyncStatus::Disabled
                } else {
                    state.map_or(SyncStatus::Syncing, |state| state.status)
                },
                history_id: state.and_then(|state| state.history_id.clone()),
                last_sync_at: state.and_then(|state| state.last_sync_at).map(rfc3339),
                last_error: state.and_then(|state| state.last_error.clone()),
                activities: activities.get(&user.email).copied().unwrap_or(0),
                lag_secs: state
                    .and_then(|state| state.last_sync_at)
                    .map(|last| (now - last).max(0)),
                consecutive_failures: state.map_or(0, |state| state.consecutive_failures),
                next_poll_at: state
                    .filter(|_| user.sync)
                    .and_then(|state| state.next_poll_at)
                    .map(rfc3339),
                verify_gaps: state.map_or(0, |state| state.verify_gaps),
                last_verify_at: state.and_then(|state| state.last_verify_at).map(rfc3339),
                instance: lease.and_then(|lease| lease.instance.clone()),
                lease_expires_at: lease.and_then(|lease| lease.expires_at.clone()),
                push: state
                    .filter(|_| user.sync && policy.config.gmail.push.is_some())
                    .and_then(|state| state.push_state),
                watch_expires_at: state
                    .filter(|_| user.sync)
                    .and_then(|state| state.watch_expires_at)
                    .map(rfc3339),
            }
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        for row in &rows {
            json_line(&mut out, row)?;
        }
        return Ok(ExitStatus::Success);
    }
    // The instance column only where there are instances to tell apart, and the push
    // column only with push.
    let shared = !leases.is_empty();
    let pushing = policy.config.gmail.push.is_some();
    let push_header = if pushing {
        format!(" {:<8}", "PUSH")
    } else {
        String::new()
    };
    let instance_header = if shared {
        format!(" {:<28}", "INSTANCE")
    } else {
        String::new()
    };
    writeln!(
        out,
        "{:<32} {:<5} {:<13} {:<12} {:<21} {:>10}{instance_header}{push_header}  LAST ERROR",
        "USER", "SYNC", "STATE", "HISTORY ID", "LAST SYNC", "ACTIVITIES"
    )?;
    for row in &rows {
        let instance = if shared {
            format!(
                " {:<28}",
                printable::escape(row.instance.as_deref().unwrap_or("-"))
            )
        } else {
            String::new()
        };
        let push = if pushing {
            format!(" {:<8}", row.push.map_or("-", PushState::as_str))
        } else {
            String::new()
        };
        writeln!(
            out,
            "{:<32} {:<5} {:<13} {:<12} {:<21} {:>10}{instance}{push}  {}",
            printable::escape(&row.user),
            if row.sync { "on" } else { "off" },
            row.state.as_str(),
            printable::escape(row.history_id.as_deref().unwrap_or("-")),
            row.last_sync_at.as_deref().unwrap_or("never"),
            row.activities,
            printable::escape(row.last_error.as_deref().unwrap_or("")),
        )?;
    }
    Ok(ExitStatus::Success)
}

/// `status --instances`: the live instances, oldest first; a config that differs from the
/// first instance's is pointed out.
fn instances(policy: &Policy, json: bool) -> CommandResult {
    let store = open_store(policy)?;
    let instances = store.instances()?;
    let mut out = std::io::stdout().lock();
    if json {
        for instance in &instances {
            json_line(&mut out, instance)?;
        }
        return Ok(ExitStatus::Success);
    }
    if instances.is_empty() {
        writeln!(
            out,
            "no live instance on {} (with SQLite the one daemon holds the store's lock file and every mailbox)",
            policy.config.store
        )?;
        return Ok(ExitStatus::Success);
    }
    writeln!(
        out,
        "{:<28} {:<20} {:>8} {:<21} {:<21} {:>9}  CONFIG",
        "INSTANCE", "HOST", "PID", "STARTED", "HEARTBEAT", "MAILBOXES"
    )?;
    let reference = &instances[0].config_fingerprint;
    for instance in &instances {
        let config = &instance.config_fingerprint[..12.min(instance.config_fingerprint.len())];
        let differs = if &instance.config_fingerprint == reference {
            ""
        } else {
            " (differs)"
        };
        writeln!(
            out,
            "{:<28} {:<20} {:>8} {:<21} {:<21} {:>9}  {config}{differs}",
            printable::escape(&instance.instance),
            printable::escape(&instance.host),
            instance.pid,
            instance.started_at.as_deref().unwrap_or("-"),
            instance.heartbeat_at.as_deref().unwrap_or("-"),
            instance.mailboxes,
        )?;
    }
    Ok(ExitStatus::Success)
}

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|date| date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
