//! `mailsync status`: each user's sync health, as a dashboard would show it, and which
//! instance syncs each mailbox; `status --instances`: the live instances on the store.

use std::io::{IsTerminal, Write};

use super::output::json_line;
use super::{CommandResult, ExitStatus};
use crate::config::StoreLocation;
use crate::printable;
use crate::rules::Policy;
use crate::store::{PushState, StoreLock, SyncStatus};

use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// The live instances sharing the store (PostgreSQL), instead of the users.
    #[arg(long)]
    pub instances: bool,
    /// Refresh every --interval seconds until interrupted (in place on a terminal).
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2, value_name = "SECS", requires = "watch")]
    pub interval: u64,
}

/// Whether a daemon runs on the store, as `status` says it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct DaemonPresence {
    running: bool,
    /// The SQLite daemon's process id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    /// The live instances on a PostgreSQL store.
    #[serde(skip_serializing_if = "Option::is_none")]
    instances: Option<usize>,
    /// Seconds since the daemon (the oldest instance) started.
    #[serde(skip_serializing_if = "Option::is_none")]
    uptime_secs: Option<i64>,
}

impl DaemonPresence {
    fn of(policy: &Policy, store: &dyn crate::store::Store) -> Result<Self, super::CommandError> {
        let now = chrono::Utc::now().timestamp();
        Ok(match &policy.config.store {
            StoreLocation::Sqlite { path } => match StoreLock::holder(path)? {
                Some(holder) => DaemonPresence {
                    running: true,
                    pid: Some(holder.pid),
                    instances: None,
                    uptime_secs: (holder.since > 0).then(|| (now - holder.since).max(0)),
                },
                None => DaemonPresence {
                    running: false,
                    pid: None,
                    instances: None,
                    uptime_secs: None,
                },
            },
            StoreLocation::Postgres { .. } => {
                let instances = store.instances()?;
                let oldest = instances
                    .first()
                    .and_then(|instance| instance.started_at.as_deref())
                    .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                    .map(|at| (now - at.timestamp()).max(0));
                DaemonPresence {
                    running: !instances.is_empty(),
                    pid: None,
                    instances: Some(instances.len()),
                    uptime_secs: oldest,
                }
            }
        })
    }

    fn describe(&self, policy: &Policy) -> String {
        let uptime = self
            .uptime_secs
            .map(|secs| format!(", up {}", duration(secs)))
            .unwrap_or_default();
        match (self.running, self.pid, self.instances) {
            (true, Some(pid), _) => format!("daemon: running (pid {pid}{uptime})"),
            (true, None, Some(count)) => {
                format!("daemon: {count} instance(s) running (oldest{uptime})")
            }
            _ => format!(
                "daemon: not running on {}: states below are as the last daemon left them",
                policy.config.store
            ),
        }
    }
}

/// `3h 12m`, `5m 02s`, `2d 4h`.
fn duration(secs: i64) -> String {
    let (days, hours, minutes, seconds) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m")
    } else {
        format!("{minutes}m {seconds:02}s")
    }
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
    /// Whether a daemon runs on the store (the same on every line).
    daemon: DaemonPresence,
}

pub fn run(policy: &Policy, args: StatusArgs) -> CommandResult {
    // Never creates a store: a missing one is named, not made.
    let store = crate::store::open_existing(&policy.config)
        .map_err(|error| super::CommandError::Failed(anyhow::Error::new(error)))?;
    if !args.watch {
        let mut out = std::io::stdout().lock();
        return show(policy, &*store, &args, &mut out);
    }
    let on_terminal = std::io::stdout().is_terminal();
    loop {
        let mut screen = Vec::new();
        if on_terminal {
            // Home and clear: the new table replaces the old one.
            screen.extend_from_slice(b"\x1b[H\x1b[2J");
        }
        if let Err(error) = show(policy, &*store, &args, &mut screen) {
            // One failed look (a busy store) is shown, and the next one tried.
            screen.extend_from_slice(format!("status unavailable now: {error}\n").as_bytes());
        }
        if !on_terminal {
            screen.push(b'\n');
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&screen)?;
        out.flush()?;
        drop(out);
        std::thread::sleep(std::time::Duration::from_secs(args.interval.max(1)));
    }
}

/// One rendering of `status` (or `status --instances`).
fn show(
    policy: &Policy,
    store: &dyn crate::store::Store,
    args: &StatusArgs,
    out: &mut impl Write,
) -> CommandResult {
    if args.instances {
        return instances(policy, store, args.json, out);
    }
    let json = args.json;
    let daemon = DaemonPresence::of(policy, store)?;
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
                daemon: daemon.clone(),
            }
        })
        .collect();
    if json {
        for row in &rows {
            json_line(&mut *out, row)?;
        }
        return Ok(ExitStatus::Success);
    }
    writeln!(out, "{}", printable::escape(&daemon.describe(policy)))?;
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
fn instances(
    policy: &Policy,
    store: &dyn crate::store::Store,
    json: bool,
    out: &mut impl Write,
) -> CommandResult {
    let instances = store.instances()?;
    if json {
        for instance in &instances {
            json_line(&mut *out, instance)?;
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
