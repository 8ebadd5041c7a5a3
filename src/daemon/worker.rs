//! One user's polling loop: sync, record the outcome in `sync_state` (and metrics), tell a
//! person when needed, wait, repeat — until cancelled or the user's grant is gone.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::gmail::GmailError;
use crate::gmail::auth::Credentials;
use crate::gmail::client::GmailClient;
use crate::gmail::http::{ApiClient, OAuthClient};
use crate::metrics::{Metrics, UserLabels};
use crate::notify::{Alert, Notifier};
use crate::rules::Policy;
use crate::store::{Store, SyncStatus};
use crate::sync::gmail::{MailboxSync, SharedStore, SyncError, Window};

/// What every worker shares.
#[derive(Clone)]
pub struct Shared {
    pub store: SharedStore,
    pub policy: watch::Receiver<Arc<Policy>>,
    pub credentials: watch::Receiver<Credentials>,
    pub api_http: ApiClient,
    pub oauth_http: OAuthClient,
    /// The global cap on mailboxes synced at the same time.
    pub slots: Arc<Semaphore>,
    /// Sync every mailbox once and stop (`mailsync run --once`).
    pub once: bool,
    pub metrics: Metrics,
}

/// Why a worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Cancelled,
    SyncTurnedOff,
    NeedsReauth,
    /// `--once`: one poll done.
    PolledOnce,
    /// `--once`: the poll failed.
    FailedOnce,
}

fn with_store<T>(
    store: &SharedStore,
    work: impl FnOnce(&mut dyn Store) -> Result<T, crate::store::StoreError>,
) -> Option<T> {
    let mut store = store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match work(&mut *store) {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::error!(error = %error, "cannot update the store's sync state");
            None
        }
    }
}

/// Sends `alert` unless one of its kind went out for this user within the interval; the
/// send runs in the background so a slow relay never delays syncing.
fn notify(shared: &Shared, policy: &Policy, alert: Alert) {
    let Some(config) = policy.config.notify.clone() else {
        return;
    };
    let now = chrono::Utc::now().timestamp();
    let last = with_store(&shared.store, |store| {
        store.last_notified(alert.user(), alert.kind())
    })
    .flatten();
    if last.is_some_and(|last| now - last < config.notify_interval_secs as i64) {
        tracing::debug!(
            kind = alert.kind(),
            "notification suppressed: one was sent within notify_interval_secs"
        );
        return;
    }
    // Marked before sending: a crash mid-send must not turn into a burst of duplicates.
    with_store(&shared.store, |store| {
        store.set_notified(alert.user(), alert.kind(), now)
    });
    tokio::spawn(async move {
        let notifier = Notifier::new(config);
        match notifier.send(&alert).await {
            Ok(()) => tracing::info!(
                kind = alert.kind(),
                recipients = notifier.recipients(&alert).len(),
                "notification sent"
            ),
            Err(error) => {
                tracing::error!(kind = alert.kind(), error = %error, "cannot send notification")
            }
        }
    });
}

/// Polls `user_email` until cancelled; returns why it stopped.
pub async fn run_worker(
    mut shared: Shared,
    user_email: String,
    cancel: CancellationToken,
) -> Stopped {
    let span = tracing::info_span!("worker", user = %user_email);
    async move {
        // Kept across polls so the quota bucket remembers recent requests; rebuilt when a
        // reload brings new settings or credentials.
        let mut client: Option<Arc<GmailClient>> = None;
        let mut polls: u64 = 0;
        let mut failures = with_store(&shared.store, |store| store.sync_state(&user_email))
            .flatten()
            .map_or(0, |state| state.consecutive_failures);
        loop {
            let permit = tokio::select! {
                permit = shared.slots.clone().acquire_owned() => permit.expect("the slots semaphore is never closed"),
                () = cancel.cancelled() => return Stopped::Cancelled,
            };
            let settings_changed = shared.policy.has_changed().unwrap_or(false) | shared.credentials.has_changed().unwrap_or(false);
            let policy = shared.policy.borrow_and_update().clone();
            let Some(user) = policy.config.user_by_address(&user_email).filter(|user| user.sync).cloned() else {
                with_store(&shared.store, |store| store.set_sync_status(&user_email, SyncStatus::Disabled, None));
                return Stopped::SyncTurnedOff;
            };
            if settings_changed || client.is_none() {
                let credentials = shared.credentials.borrow_and_update().clone();
                client = Some(build_client(&shared, &credentials, &user.email, &policy));
            }
            let client = client.clone().expect("built just above");
            // `syncing` is worth a write only when a full sync (no cursor yet) is ahead; an
            // incremental poll of an idle mailbox then costs the store one write, at its end.
            let state = with_store(&shared.store, |store| store.sync_state(&user.email)).flatten();
            if state.as_ref().is_none_or(|state| state.history_id.is_none()) {
                with_store(&shared.store, |store| store.set_sync_status(&user.email, SyncStatus::Syncing, None));
            }
            let sync = MailboxSync {
                client: client.clone(),
                store: shared.store.clone(),
                policy: policy.clone(),
                user: user.clone(),
                cancel: cancel.child_token(),
                window: Window::Days(policy.config.gmail.initial_sync_days),
                write: true,
                refetch_decided: false,
                on_decided: None,
                on_progress: None,
                metrics: Some(shared.metrics.clone()),
            };
            polls += 1;
            // One span per poll, so every line of one sync can be found together.
            let poll_span = tracing::info_span!("sync", user = %user.email, poll = polls);
            let started = std::time::Instant::now();
            let outcome = sync.run().instrument(poll_span.clone()).await;
            drop(permit);
            let entered = poll_span.enter();
            let stats = client.stats();
            let poll_interval = Duration::from_secs(policy.config.gmail.poll_interval_secs);
            let next_poll_at = chrono::Utc::now().timestamp() + poll_interval.as_secs() as i64;
            match outcome {
                Ok(report) => {
                    failures = 0;
                    with_store(&shared.store, |store| {
                        store.record_poll(&user.email, SyncStatus::Ok, None, 0, (!shared.once).then_some(next_poll_at))
                    });
                    shared.metrics.synced(&user.email);
                    if report.full {
                        // A full sync listed the whole window: it was a reconciliation too.
                        let now = chrono::Utc::now().timestamp();
                        with_store(&shared.store, |store| store.set_verify_result(&user.email, 0, now));
                    } else {
                        reconcile_if_due(&shared, &sync, &policy).await;
                    }
                    // An idle poll is the common case: at info it would be one line per user per
                    // minute, noise for ops and CPU for a 10,000-user daemon.
                    let idle = !report.full && report.seen == 0 && report.backfilled_addresses == 0;
                    macro_rules! finished {
                        ($level:expr) => {
                            tracing::event!(
                                $level,
                                full = report.full,
                                seen = report.seen,
                                fetched = report.fetched,
                                synced = report.synced,
                                skipped = report.skipped,
                                already_decided = report.already_decided,
                                decided_by_search = report.decided_by_search,
                                backfilled_addresses = report.backfilled_addresses,
                                requests = stats.total_requests(),
                                retries = stats.retries,
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                "sync finished"
                            )
                        };
                    }
                    if idle {
                        finished!(tracing::Level::DEBUG);
                    } else {
                        finished!(tracing::Level::INFO);
                    }
                }
                Err(SyncError::Cancelled) => return Stopped::Cancelled,
                Err(SyncError::Gmail(error @ GmailError::NeedsReauth { .. })) => {
                    let message = error.to_string();
                    with_store(&shared.store, |store| {
                        store.record_poll(&user.email, SyncStatus::NeedsReauth, Some(&message), failures, None)
                    });
                    shared.metrics.sync_failures.get_or_create(&UserLabels { user: user.email.clone() }).inc();
                    tracing::error!(error = %error, "authorization lost; this user's sync stops until re-authorised and reloaded");
                    notify(&shared, &policy, Alert::NeedsReauth { user: user.email.clone(), error: message });
                    return Stopped::NeedsReauth;
                }
                Err(error) => {
                    failures += 1;
                    let message = error.to_string();
                    with_store(&shared.store, |store| {
                        store.record_poll(&user.email, SyncStatus::Error, Some(&message), failures, (!shared.once).then_some(next_poll_at))
                    });
                    shared.metrics.sync_failures.get_or_create(&UserLabels { user: user.email.clone() }).inc();
                    tracing::warn!(error = %error, failures, retries = stats.retries, "sync failed; will retry at the next poll");
                    let threshold = policy.config.notify.as_ref().map_or(u32::MAX, |notify| notify.failure_threshold);
                    if failures >= threshold {
                        notify(&shared, &policy, Alert::RepeatedFailures { user: user.email.clone(), failures, error: message });
                    }
                }
            }
            drop(entered);
            if shared.once {
                return if failures == 0 { Stopped::PolledOnce } else { Stopped::FailedOnce };
            }
            tokio::select! {
                () = tokio::time::sleep(poll_interval) => {}
                () = cancel.cancelled() => return Stopped::Cancelled,
            }
        }
    }
    .instrument(span)
    .await
}

fn build_client(
    shared: &Shared,
    credentials: &Credentials,
    user_email: &str,
    policy: &Policy,
) -> Arc<GmailClient> {
    let refresh_token = if credentials.needs_refresh_tokens() {
        with_store(&shared.store, |store| store.refresh_token(user_email)).flatten()
    } else {
        None
    };
    Arc::new(
        GmailClient::for_user(
            &policy.config.gmail,
            credentials,
            user_email,
            refresh_token,
            shared.api_http.clone(),
            shared.oauth_http.clone(),
        )
        .with_metrics(shared.metrics.clone()),
    )
}

/// Runs reconciliation after a successful poll when `verify_interval_secs` has passed since the
/// last one: every listed message without a decision is a gap, counted and repaired at once.
async fn reconcile_if_due(shared: &Shared, sync: &MailboxSync, policy: &Policy) {
    let interval = policy.config.gmail.verify_interval_secs;
    if interval == 0 {
        return;
    }
    let now = chrono::Utc::now().timestamp();
    let last = with_store(&shared.store, |store| store.sync_state(&sync.user.email))
        .flatten()
        .and_then(|state| state.last_verify_at);
    if last.is_some_and(|last| now - last < interval as i64) {
        return;
    }
    match sync.verify(true).await {
        Ok(report) => {
            let gaps = report.gaps.len() as u64;
            with_store(&shared.store, |store| {
                store.set_verify_result(&sync.user.email, gaps, now)
            });
            shared
                .metrics
                .verify_gaps
                .get_or_create(&UserLabels {
                    user: sync.user.email.clone(),
                })
                .inc_by(gaps);
            if gaps > 0 {
                tracing::warn!(
                    listed = report.listed,
                    gaps,
                    repaired = report.repaired,
                    "reconciliation found undecided messages and repaired them"
                );
            } else {
                tracing::info!(listed = report.listed, "reconciliation found no gaps");
            }
        }
        Err(error) => {
            tracing::warn!(error = %error, "reconciliation failed; it runs again after the next poll")
        }
    }
}
