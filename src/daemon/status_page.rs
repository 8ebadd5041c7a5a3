//! `/status` on the metrics listener: each mailbox's health at a glance, as a server-rendered
//! page that reads without JavaScript (it refreshes itself every 30 seconds with a meta tag).
//! It holds no mail content: user addresses, states, times, counts and the last error, which
//! names statuses and reasons, never a message. Like `/metrics` it has no authentication, so
//! the listener belongs on loopback or a private network.

use std::collections::HashMap;
use std::fmt::Write;

use crate::rules::Policy;
use crate::store::{SharedStore, StoreError, SyncState, SyncStatus};

/// One mailbox's row.
#[derive(Debug, Clone, PartialEq)]
pub struct MailboxRow {
    pub user: String,
    pub state: SyncStatus,
    /// Seconds since the epoch.
    pub last_sync_at: Option<i64>,
    pub lag_secs: Option<i64>,
    pub last_error: Option<String>,
    pub activities: u64,
    /// Gmail quota units spent today (UTC) by this instance.
    pub quota_today: u64,
}

/// Everything the page shows, gathered at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct PageData {
    pub generated_at: i64,
    pub version: &'static str,
    pub mailboxes: Vec<MailboxRow>,
    /// Messages synced in each of the last 24 hours, oldest first (`(hour start, count)`).
    pub per_hour: Vec<(i64, u64)>,
}

impl PageData {
    /// Reads the store and the day's quota as of now. Blocking: call it off the async threads.
    /// With `hash_users` (`[metrics] hash_users`), users are shown as their metric label
    /// (`user_label`) and errors not at all: the page says no more than the metrics do.
    pub fn gather(
        store: &SharedStore,
        policy: &Policy,
        quota_today: &dyn Fn(&str) -> u64,
        user_label: &dyn Fn(&str) -> String,
        hash_users: bool,
    ) -> Result<PageData, StoreError> {
        let now = chrono::Utc::now().timestamp();
        let states: HashMap<String, SyncState> = store
            .sync_states()?
            .into_iter()
            .map(|state| (state.user_email.clone(), state))
            .collect();
        let activities = store.sources_per_user()?;
        let this_hour = now - now.rem_euclid(3600);
        let since = this_hour - 23 * 3600;
        let counted: HashMap<i64, u64> = store.synced_per_hour(since)?.into_iter().collect();
        let per_hour = (0..24)
            .map(|index| {
                let hour = since + index * 3600;
                (hour, counted.get(&hour).copied().unwrap_or(0))
            })
            .collect();
        let mailboxes = policy
            .config
            .users
            .iter()
            .map(|user| {
                let state = states.get(&user.email);
                MailboxRow {
                    user: user_label(&user.email),
                    state: if user.sync {
                        state.map_or(SyncStatus::Syncing, |state| state.status)
                    } else {
                        SyncStatus::Disabled
                    },
                    last_sync_at: state.and_then(|state| state.last_sync_at),
                    lag_secs: state
                        .and_then(|state| state.last_sync_at)
                        .map(|last| (now - last).max(0)),
                    last_error: state
                        .and_then(|state| state.last_error.clone())
                        .map(|error| {
                            if hash_users {
                                "(hidden: hash_users is on; see `mailsync status`)".to_string()
                            } else {
                                error
                            }
                        }),
                    activities: activities.get(&user.email).copied().unwrap_or(0),
                    quota_today: quota_today(&user.email),
                }
            })
            .collect();
        Ok(PageData {
            generated_at: now,
            version: crate::cli::VERSION,
            mailboxes,
            per_hour,
        })
    }
}

/// What a state is called on the page.
fn state_label(state: SyncStatus) -> &'static str {
    match state {
        SyncStatus::Ok => "ok",
        SyncStatus::Syncing => "syncing",
        SyncStatus::NeedsReauth => "needs re-authorisation",
        SyncStatus::Error => "error",
        SyncStatus::Disabled => "sync off",
    }
}

fn escape(text: &str) -> String {
    html_escape::encode_text(text).into_owned()
}

fn escape_attribute(text: &str) -> String {
    html_escape::encode_double_quoted_attribute(text).into_owned()
}

fn time(seconds: Option<i64>) -> String {
    seconds
        .and_then(|seconds| chrono::DateTime::from_timestamp(seconds, 0))
        .map_or_else(
            || "never".to_string(),
            |at| at.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
}

fn lag(seconds: Option<i64>) -> String {
    match seconds {
        None => "–".to_string(),
        Some(seconds) if seconds < 120 => format!("{seconds} s"),
        Some(seconds) if seconds < 7200 => format!("{} min", seconds / 60),
        Some(seconds) => format!("{} h", seconds / 3600),
    }
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:2em;color:#1d1d1f;background:#fff}\
h1{font-size:1.6em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em}\
p.meta{color:#555;margin:0 0 1.2em}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.45em .7em;border-bottom:1px solid #ddd;vertical-align:top}\
th{background:#f3f3f5;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;font-weight:600;white-space:nowrap}\
.badge.ok{background:#d9f2dd;color:#14532d}.badge.syncing{background:#dbeafe;color:#1e3a8a}\
.badge.needs_reauth{background:#fde2e2;color:#7f1d1d}.badge.error{background:#ffedd5;color:#7c2d12}\
.badge.disabled{background:#eee;color:#444}tr.needs_reauth td,tr.error td{background:#fff7f7}\
td.when{white-space:nowrap}\
svg text{font:11px system-ui,sans-serif;fill:#555}svg rect.bar{fill:#3b82f6}";

/// The page.
pub fn render(data: &PageData) -> String {
    let mut html = String::with_capacity(8192);
    let attention = data
        .mailboxes
        .iter()
        .filter(|row| matches!(row.state, SyncStatus::NeedsReauth | SyncStatus::Error))
        .count();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>mailsync status</title><style>{STYLE}</style></head><body>\
         <h1>mailsync status</h1>\
         <p class=\"meta\">{} mailboxes, {attention} needing attention · mailsync {} · {}</p>",
        data.mailboxes.len(),
        escape(data.version),
        time(Some(data.generated_at)),
    );
    html.push_str(
        "<table><thead><tr><th>Mailbox</th><th>State</th><th>Last sync</th><th>Lag</th>\
         <th>Activities</th><th>Quota today</th><th>Last error</th></tr></thead><tbody>",
    );
    for row in &data.mailboxes {
        let state = row.state.as_str();
        let _ = write!(
            html,
            "<tr class=\"{state}\" data-user=\"{attribute}\" data-state=\"{state}\"><td>{user}</td>\
             <td><span class=\"badge {state}\">{label}</span></td><td class=\"when\">{last}</td>\
             <td class=\"num\">{lag}</td><td class=\"num\">{activities}</td>\
             <td class=\"num\">{quota}</td><td>{error}</td></tr>",
            user = escape(&row.user),
            attribute = escape_attribute(&row.user),
            label = state_label(row.state),
            last = time(row.last_sync_at),
            lag = lag(row.lag_secs),
            activities = row.activities,
            quota = row.quota_today,
            error = escape(row.last_error.as_deref().unwrap_or("")),
        );
    }
    html.push_str("</tbody></table>");
    render_chart(&mut html, &data.per_hour);
    html.push_str("</body></html>\n");
    html
}

/// Messages synced per hour as an inline SVG bar chart, each bar with its hour and count.
fn render_chart(html: &mut String, per_hour: &[(i64, u64)]) {
    let total: u64 = per_hour.iter().map(|(_, count)| count).sum();
    let _ = write!(
        html,
        "<h2>Messages synced per hour, last 24 hours ({total} in all)</h2>"
    );
    let highest = per_hour
        .iter()
        .map(|(_, count)| *count)
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, height, bar) = (24 * 30 + 40, 160, 22);
    let _ = write!(
        html,
        "<svg role=\"img\" aria-label=\"Messages synced per hour\" width=\"{width}\" height=\"{}\" viewBox=\"0 0 {width} {}\">",
        height + 30,
        height + 30
    );
    let _ = write!(
        html,
        "<text x=\"0\" y=\"12\">{highest}</text><line x1=\"34\" y1=\"{height}\" x2=\"{width}\" y2=\"{height}\" stroke=\"#999\"/>"
    );
    for (index, (hour, count)) in per_hour.iter().enumerate() {
        let x = 40 + index as i64 * 30;
        let bar_height = (*count as f64 / highest as f64 * (height - 20) as f64).round() as i64;
        let label = chrono::DateTime::from_timestamp(*hour, 0)
            .map(|at| at.format("%H:00").to_string())
            .unwrap_or_default();
        let _ = write!(
            html,
            "<rect class=\"bar\" x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{bar_height}\"><title>{label} UTC: {count}</title></rect>",
            height - bar_height
        );
        if index % 3 == 0 {
            let _ = write!(html, "<text x=\"{x}\" y=\"{}\">{label}</text>", height + 16);
        }
    }
    html.push_str("</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> PageData {
        PageData {
            generated_at: 1_764_900_000,
            version: "0.1.0 (commit abc, built 2026-12-05)",
            mailboxes: vec![
                MailboxRow {
                    user: "dave\"@abcorp.com".to_string(),
                    state: SyncStatus::NeedsReauth,
                    last_sync_at: None,
                    lag_secs: None,
                    last_error: Some("authorization for dave is revoked <script>".to_string()),
                    activities: 0,
                    quota_today: 12,
                },
                MailboxRow {
                    user: "michelle@abcorp.com".to_string(),
                    state: SyncStatus::Ok,
                    last_sync_at: Some(1_764_899_990),
                    lag_secs: Some(10),
                    last_error: None,
                    activities: 7,
                    quota_today: 140,
                },
            ],
            per_hour: (0..24)
                .map(|hour| (1_764_813_600 + hour * 3600, hour as u64))
                .collect(),
        }
    }

    #[test]
    fn each_mailbox_is_a_row_with_its_state_and_text_is_escaped() {
        let html = render(&data());
        assert!(html.contains(
            "<tr class=\"needs_reauth\" data-user=\"dave&quot;@abcorp.com\" data-state=\"needs_reauth\">"
        ), "a quote cannot end the attribute");
        assert!(html.contains("needs re-authorisation"));
        assert!(html.contains("1 needing attention"));
        assert!(
            html.contains("&lt;script&gt;") && !html.contains("<script"),
            "no script, escaped text"
        );
        assert!(html.contains("<td class=\"num\">140</td>"));
        assert_eq!(html.matches("<rect class=\"bar\"").count(), 24);
        assert!(html.contains("(276 in all)"));
    }
}
