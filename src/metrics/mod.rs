//! Prometheus metrics for the daemon, served at `/metrics` on `[metrics] listen`.
//!
//! Label values are user emails (or, with `[metrics] hash_users`, a hash of each), Gmail
//! method names, HTTP statuses and decision reasons — never contact addresses, so a scrape
//! reveals nothing about who anyone emails. Every counter is exported from the first scrape,
//! at 0 until it counts something, so that an alert on its rate has a series to look at.

mod process;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::store::SyncStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UserLabels {
    pub user: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UserStateLabels {
    pub user: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub commit: String,
    pub build_date: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub status: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

/// Every metric the daemon keeps. Cheap to clone; clones share the values.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub messages_fetched: Family<UserLabels, Counter>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub gmail_requests: Family<RequestLabels, Counter>,
    pub gmail_retries: Counter,
    pub gmail_backoff_seconds: FloatCounter,
    pub sync_failures: Family<UserLabels, Counter>,
    pub verify_gaps: Family<UserLabels, Counter>,
    pub last_success: Family<UserLabels, FloatGauge>,
    sync_lag: Family<UserLabels, FloatGauge>,
    pub store_write_seconds: Histogram,
    leases_held: Gauge,
    live_instances: Gauge,
    config_mismatches: Gauge,
    runner: Gauge,
    push_pulling: Gauge,
    pub push_notifications: Family<OutcomeLabels, Counter>,
    pub push_watches: Family<OutcomeLabels, Counter>,
    user_state: Family<UserStateLabels, Gauge>,
    last_success_by_user: Arc<Mutex<HashMap<String, f64>>>,
    /// Gmail quota units spent per user today (UTC), for the status page: `(day, units)`.
    quota_today: Arc<Mutex<HashMap<String, (i64, u64)>>>,
    /// Label users by a hash of their address instead of the address.
    hash_users: bool,
}

/// The states `mailsync_user_state` has a series for, per user.
const USER_STATES: [SyncStatus; 5] = [
    SyncStatus::Ok,
    SyncStatus::Syncing,
    SyncStatus::NeedsReauth,
    SyncStatus::Error,
    SyncStatus::Disabled,
];

/// The outcomes of `mailsync_push_notifications_total` and `mailsync_push_watches_total`.
const NOTIFICATION_OUTCOMES: [&str; 4] = ["woke", "forwarded", "ignored", "malformed"];
const WATCH_OUTCOMES: [&str; 4] = ["watched", "watch_failed", "stopped", "stop_failed"];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::with_hashed_users(false)
    }

    /// With `hash_users`, user labels are the first 16 hex digits of the SHA-256 of the
    /// address (`[metrics] hash_users`, for installs whose scrapes leave the company).
    pub fn with_hashed_users(hash_users: bool) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics {
            registry: Arc::new(Registry::default()),
            messages_fetched: Family::default(),
            decisions: Family::default(),
            gmail_requests: Family::default(),
            gmail_retries: Counter::default(),
            gmail_backoff_seconds: FloatCounter::default(),
            sync_failures: Family::default(),
            verify_gaps: Family::default(),
            last_success: Family::default(),
            sync_lag: Family::default(),
            store_write_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            leases_held: Gauge::default(),
            live_instances: Gauge::default(),
            config_mismatches: Gauge::default(),
            runner: Gauge::default(),
            push_pulling: Gauge::default(),
            push_notifications: Family::default(),
            push_watches: Family::default(),
            user_state: Family::default(),
            last_success_by_user: Arc::default(),
            quota_today: Arc::default(),
            hash_users,
        };
        registry.register(
            "mailsync_messages_fetched",
            "Messages fetched from Gmail (format=raw)",
            metrics.messages_fetched.clone(),
        );
        registry.register(
            "mailsync_decisions",
            "Messages decided, by decision and reason",
            metrics.decisions.clone(),
        );
        registry.register(
            "mailsync_gmail_requests",
            "Gmail API requests, by method and outcome (HTTP status or error kind)",
            metrics.gmail_requests.clone(),
        );
        registry.register(
            "mailsync_gmail_retries",
            "Gmail requests retried after a transient error",
            metrics.gmail_retries.clone(),
        );
        registry.register(
            "mailsync_gmail_backoff_seconds",
            "Time spent backing off before retries",
            metrics.gmail_backoff_seconds.clone(),
        );
        registry.register(
            "mailsync_sync_failures",
            "Failed polls, by user",
            metrics.sync_failures.clone(),
        );
        registry.register(
            "mailsync_verify_gaps",
            "Listed messages reconciliation found without a decision (then repaired)",
            metrics.verify_gaps.clone(),
        );
        registry.register(
            "mailsync_last_success_timestamp_seconds",
            "When each user's last successful sync ended",
            metrics.last_success.clone(),
        );
        registry.register(
            "mailsync_sync_lag_seconds",
            "Seconds since each user's last successful sync",
            metrics.sync_lag.clone(),
        );
        registry.register(
            "mailsync_store_write_seconds",
            "Time to write one batch of decisions to the store",
            metrics.store_write_seconds.clone(),
        );
        registry.register(
            "mailsync_leases_held",
            "Mailboxes this instance holds a lease on (all sync-enabled mailboxes with SQLite)",
            metrics.leases_held.clone(),
        );
        registry.register(
            "mailsync_instances_live",
            "Live instances on this store, this one included",
            metrics.live_instances.clone(),
        );
        registry.register(
            "mailsync_config_mismatches",
            "Live instances running a config or rules that differ from this instance's",
            metrics.config_mismatches.clone(),
        );
        registry.register(
            "mailsync_runner",
            "1 when this instance runs the work that must happen once (retention, rules, contact changes)",
            metrics.runner.clone(),
        );
        registry.register(
            "mailsync_push_pulling",
            "1 while push notifications are pulled; 0 when pulling fails (every mailbox is polled at poll_interval_secs) or push is not configured",
            metrics.push_pulling.clone(),
        );
        registry.register(
            "mailsync_push_notifications",
            "Push notifications pulled, by outcome: woke (a mailbox of this instance), forwarded (to the instance holding it), ignored (no synced mailbox), malformed",
            metrics.push_notifications.clone(),
        );
        registry.register(
            "mailsync_push_watches",
            "users.watch and users.stop calls, by outcome",
            metrics.push_watches.clone(),
        );
        registry.register(
            "mailsync_user_state",
            "Each user's sync state: 1 for the current one (ok, syncing, needs_reauth, error, disabled), 0 for the others",
            metrics.user_state.clone(),
        );
        let build_info: Family<BuildLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                commit: env!("MAILSYNC_COMMIT").to_string(),
                build_date: env!("MAILSYNC_BUILD_DATE").to_string(),
            })
            .set(1);
        registry.register(
            "mailsync_build_info",
            "Always 1; the labels say which build runs",
            build_info,
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        // Every counter from the first scrape: the decisions by every reason, and the
        // outcomes of push.
        for reason in crate::rules::Reason::ALL {
            let decision = if reason == crate::rules::Reason::Synced {
                "synced"
            } else {
                "skipped"
            };
            let _ = metrics.decisions.get_or_create(&DecisionLabels {
                decision: decision.to_string(),
                reason: reason.as_str().to_string(),
            });
        }
        for outcome in NOTIFICATION_OUTCOMES {
            let _ = metrics.push_notifications.get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            });
        }
        for outcome in WATCH_OUTCOMES {
            let _ = metrics.push_watches.get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            });
        }
        Metrics {
            registry: Arc::new(registry),
            ..metrics
        }
    }

    /// The label set of `user`: the address, or its hash.
    pub fn user(&self, user: &str) -> UserLabels {
        UserLabels {
            user: if self.hash_users {
                use sha2::{Digest, Sha256};
                hex::encode(Sha256::digest(user.as_bytes()))[..16].to_string()
            } else {
                user.to_string()
            },
        }
    }

    /// A user's series from the start, each counter at 0: called for every configured user
    /// when the daemon starts and reloads.
    pub fn register_user(&self, user: &str, state: SyncStatus) {
        let labels = self.user(user);
        let _ = self.messages_fetched.get_or_create(&labels);
        let _ = self.sync_failures.get_or_create(&labels);
        let _ = self.verify_gaps.get_or_create(&labels);
        self.user_state(user, state);
    }

    /// The series of each of `methods` that every request answered gets (`status="200"`),
    /// at 0 until one is: what a rate of requests, or of refusals beside them, divides by.
    pub fn register_methods<'a>(&self, methods: impl IntoIterator<Item = &'a str>) {
        for method in methods {
            let _ = self.gmail_requests.get_or_create(&RequestLabels {
                method: method.to_string(),
                status: "200".to_string(),
            });
        }
    }

    /// A mailbox this instance no longer syncs (turned off, needing re-authorisation, its
    /// lease gone): its lag and last success go, so that no lag alert fires for it; its state
    /// stays.
    pub fn stopped_syncing(&self, user: &str) {
        let labels = self.user(user);
        self.last_success.remove(&labels);
        self.sync_lag.remove(&labels);
        self.last_success_by_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&labels.user);
    }

    /// Counts `units` of Gmail quota spent for `user` today.
    pub fn quota_used(&self, user: &str, units: u64) {
        let today = chrono::Utc::now().timestamp().div_euclid(86_400);
        let mut spent = self
            .quota_today
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = spent.entry(user.to_string()).or_insert((today, 0));
        if entry.0 != today {
            *entry = (today, 0);
        }
        entry.1 += units;
    }

    /// The Gmail quota units spent for `user` today (UTC), by this process.
    pub fn quota_today(&self, user: &str) -> u64 {
        let today = chrono::Utc::now().timestamp().div_euclid(86_400);
        self.quota_today
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(user)
            .filter(|(day, _)| *day == today)
            .map_or(0, |(_, units)| *units)
    }

    /// `user`'s state now: 1 for `state`, 0 for the others.
    pub fn user_state(&self, user: &str, state: SyncStatus) {
        let labels = self.user(user);
        for candidate in USER_STATES {
            self.user_state
                .get_or_create(&UserStateLabels {
                    user: labels.user.clone(),
                    state: candidate.as_str().to_string(),
                })
                .set(i64::from(candidate == state));
        }
    }

    /// Whether push notifications are being pulled.
    pub fn push_pulling(&self, pulling: bool) {
        self.push_pulling.set(i64::from(pulling));
    }

    /// Counts one of `family`'s outcomes.
    pub fn outcome(family: &Family<OutcomeLabels, Counter>, outcome: &str) {
        family
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// What the last lease round left this instance with.
    pub fn leases(&self, round: &crate::store::LeaseRound) {
        self.leases_held.set(round.held.len() as i64);
        self.live_instances.set(round.live_instances as i64);
        self.config_mismatches.set(round.config_mismatches as i64);
        self.runner.set(i64::from(round.runner));
    }

    /// Records a successful sync of `user` now.
    pub fn synced(&self, user: &str) {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let labels = self.user(user);
        self.last_success.get_or_create(&labels).set(now);
        self.last_success_by_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(labels.user, now);
    }

    pub fn decided(&self, decision: &str, reason: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                decision: decision.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn request(&self, method: &str, status: &str) {
        self.gmail_requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric, lag computed as of now.
    pub fn render(&self) -> String {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        for (user, last) in self
            .last_success_by_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            self.sync_lag
                .get_or_create(&UserLabels { user: user.clone() })
                .set((now - last).max(0.0));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Renders the status page (blocking: it reads the store); the error is said without detail.
pub type StatusPage = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Serves `/metrics`, and `/status` when given a page, until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    page: Option<StatusPage>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(error = %error, "metrics endpoint cannot accept a connection");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let metrics = metrics.clone();
        let page = page.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                let page = page.clone();
                async move {
                    let response = match (request.uri().path(), page) {
                        ("/metrics", _) => Response::builder()
                            .header(
                                "content-type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )
                            .body(Full::new(Bytes::from(metrics.render()))),
                        ("/status", Some(page)) => {
                            match tokio::task::spawn_blocking(move || page()).await {
                                Ok(Ok(html)) => Response::builder()
                                    .header("content-type", "text/html; charset=utf-8")
                                    .header("cache-control", "no-store")
                                    .body(Full::new(Bytes::from(html))),
                                outcome => {
                                    let why = match outcome {
                                        Ok(Err(error)) => error,
                                        _ => "the page could not be made".to_string(),
                                    };
                                    tracing::warn!(error = %why, "status page unavailable");
                                    Response::builder()
                                        .status(503)
                                        .header("content-type", "text/plain; charset=utf-8")
                                        .body(Full::new(Bytes::from(format!(
                                            "status page unavailable: {why}\n"
                                        ))))
                                }
                            }
                        }
                        _ => Response::builder()
                            .status(404)
                            .header("content-type", "text/plain; charset=utf-8")
                            .body(Full::new(Bytes::from_static(
                                b"not found; try /metrics or /status\n",
                            ))),
                    };
                    Ok::<_, hyper::http::Error>(response.expect("a valid response"))
                }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %error, "metrics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_holds_what_was_counted() {
        let metrics = Metrics::new();
        metrics.decided("synced", "synced");
        metrics.decided("synced", "synced");
        metrics.request("users.messages.get", "200");
        metrics.synced("dave@abcorp.com");
        let text = metrics.render();
        assert!(
            text.contains("mailsync_decisions_total{decision=\"synced\",reason=\"synced\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "mailsync_gmail_requests_total{method=\"users.messages.get\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("mailsync_sync_lag_seconds{user=\"dave@abcorp.com\"}"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn every_counter_and_the_build_and_process_series_are_there_from_the_start() {
        let metrics = Metrics::new();
        metrics.register_user("dave@abcorp.com", SyncStatus::Syncing);
        let text = metrics.render();
        for series in [
            "mailsync_verify_gaps_total{user=\"dave@abcorp.com\"} 0",
            "mailsync_sync_failures_total{user=\"dave@abcorp.com\"} 0",
            "mailsync_messages_fetched_total{user=\"dave@abcorp.com\"} 0",
            "mailsync_decisions_total{decision=\"skipped\",reason=\"blocked_by_rule\"} 0",
            "mailsync_push_notifications_total{outcome=\"malformed\"} 0",
            "mailsync_gmail_retries_total 0",
            "mailsync_user_state{user=\"dave@abcorp.com\",state=\"syncing\"} 1",
            "mailsync_user_state{user=\"dave@abcorp.com\",state=\"needs_reauth\"} 0",
            "mailsync_build_info{version=\"",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        metrics.user_state("dave@abcorp.com", SyncStatus::NeedsReauth);
        let text = metrics.render();
        assert!(
            text.contains("mailsync_user_state{user=\"dave@abcorp.com\",state=\"needs_reauth\"} 1")
        );
        assert!(text.contains("mailsync_user_state{user=\"dave@abcorp.com\",state=\"syncing\"} 0"));
    }

    #[test]
    fn hashed_user_labels_hold_no_address() {
        let metrics = Metrics::with_hashed_users(true);
        metrics.register_user("dave@abcorp.com", SyncStatus::Ok);
        metrics.synced("dave@abcorp.com");
        let text = metrics.render();
        assert!(!text.contains("dave"), "{text}");
        let hashed = &metrics.user("dave@abcorp.com").user;
        assert_eq!(hashed.len(), 16);
        assert!(text.contains(&format!(
            "mailsync_user_state{{user=\"{hashed}\",state=\"ok\"}} 1"
        )));
    }
}
