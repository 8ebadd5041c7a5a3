//! One user's polling loop: sync, record the outcome in `sync_state` (and metrics), tell a
//! person when needed, wait, repeat — until cancelled or the user's grant is gone.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::push::{PushHealth, Wakes};

use crate::gmail::GmailError;
use crate::gmail::auth::Credentials;
use crate::gmail::client::{self as gmail_client, GmailClient};
use crate::gmail::http::{ApiClient, OAuthClient};
use crate::metrics::Metrics;
use crate::notify::{Alert, Notifier};
use crate::rules::Policy;
use crate::store::{PushState, Store, SyncStatus};
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
    /// Each running worker's wake-up, for push notifications.
    pub wakes: Wakes,
    /// Whether push notifications arrive.
    pub push: watch::Receiver<PushHealth>,
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
    /// Another instance took the mailbox's lease over.
    LeaseLost,
}

/// A small store call (a state row, a notification mark), made on the async thread: when
/// the store is free, which is almost always, that costs less than a hop to the blocking
/// pool. It never waits there, though: when another mailbox's batch holds the store, or
/// another process (the CRM) holds SQLite's write lock, it goes again in `block_in_place`, so
/// the daemon's one async thread hands its other mailboxes to a new thread meanwhile. Every
/// caller's work is a read or an idempotent write, so running it twice is safe.
fn with_store_or_error<T>(
    store: &SharedStore,
    mut work: impl FnMut(&dyn Store) -> Result<T, crate::store::StoreError>,
) -> Result<T, crate::store::StoreError> {
    if let Some(result) = crate::sync::gmail::try_without_waiting(store, &mut |store| work(store)) {
        return result;
    }
    let mut waiting = || work(&**store);
    // `block_in_place` needs a multi-thread runtime (the daemon's); anywhere else (a test on
    // a current-thread runtime) the wait happens where it is.
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(waiting),
        _ => waiting(),
    }
}

/// [`with_store_or_error`] for the sync state's bookkeeping: a failure is logged, and the
/// poll carries on.
fn with_store<T>(
    store: &SharedStore,
    work: impl FnMut(&dyn Store) -> Result<T, crate::store::StoreError>,
) -> Option<T> {
    match with_store_or_error(store, work) {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::error!(error = %error, "cannot update the store's sync state");
            None
        }
    }
}

/// Sends `alert` unless one of its kind went out for this user within the interval; the
/// send runs in the background so a slow relay never delays syncing.
pub(super) fn notify(shared: &Shared, policy: &Policy, alert: Alert) {
    let Some(config) = policy.config.notify.clone() else {
        return;
    };
    let now = chrono::Utc::now().timestamp();
    let last = with_store(&shared.store, |store| {
        store.last_notified(alert.key(), alert.kind())
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
        store.set_notified(alert.key(), alert.kind(), now)
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
    shared: Arc<Shared>,
    user_email: String,
    cancel: CancellationToken,
) -> Stopped {
    // Each worker follows the settings with receivers of its own; everything else is shared
    // by reference (a copy per user would cost about a kilobyte per user).
    let mut policy_updates = shared.policy.clone();
    let mut credential_updates = shared.credentials.clone();
    let mut push_updates = shared.push.clone();
    let mut push_followed = true;
    let wake = shared.wakes.register(&user_email);
    let span = tracing::info_span!("worker", user = %user_email);
    async move {
        // Kept across polls so the quota bucket remembers recent requests; rebuilt when a
        // reload brings new settings or credentials.
        let mut client: Option<Arc<GmailClient>> = None;
        let mut polls: u64 = 0;
        // Whether this worker has made the mailbox's watch: it does at its first poll, so a
        // watch lost while no daemon ran (stopped elsewhere, a topic made anew) comes back
        // with a restart.
        let mut watched = false;
        // Whether this poll is the mailbox's first sync (no cursor yet): its retries show.
        let first_sync: FirstSync = Arc::default();
        let stored = with_store(&shared.store, |store| store.sync_state(&user_email)).flatten();
        let mut failures = stored.as_ref().map_or(0, |state| state.consecutive_failures);
        // The label names label rules matched when this mailbox's labels were last read: a
        // reload that names others reads them again, so a new label rule counts for the
        // conversations labelled before it, not only for later label changes.
        let mut labels_read_for: Option<Vec<String>> = None;
        shared.metrics.register_user(
            &user_email,
            stored.as_ref().map_or(SyncStatus::Syncing, |state| state.status),
        );
        loop {
            let permit = tokio::select! {
                permit = shared.slots.clone().acquire_owned() => permit.expect("the slots semaphore is never closed"),
                () = cancel.cancelled() => return Stopped::Cancelled,
            };
            let settings_changed = policy_updates.has_changed().unwrap_or(false) | credential_updates.has_changed().unwrap_or(false);
            let policy = policy_updates.borrow_and_update().clone();
            let Some(user) = policy.config.user_by_address(&user_email).filter(|user| user.sync).cloned() else {
                with_store(&shared.store, |store| store.set_sync_status(&user_email, SyncStatus::Disabled, None));
                shared.metrics.user_state(&user_email, SyncStatus::Disabled);
                shared.metrics.stopped_syncing(&user_email);
                return Stopped::SyncTurnedOff;
            };
            if settings_changed || client.is_none() {
                let credentials = credential_updates.borrow_and_update().clone();
                client = Some(build_client(&shared, &credentials, &user.email, &policy, &first_sync));
            }
            let client = client.clone().expect("built just above");
            let label_names = crate::rules::rule_label_names(&policy, &user);
            let reread_labels = *labels_read_for.get_or_insert_with(|| label_names.clone()) != label_names;
            // `syncing` is worth a write only when a full sync (no cursor yet) is ahead; an
            // incremental poll of an idle mailbox then costs the store one write, at its end.
            // Read once per poll: the sync and the reconciliation check below use it too. A
            // failed read fails the poll (it must not pass for "no cursor yet").
            let state = with_store_or_error(&shared.store, |store| store.sync_state(&user.email));
            // The watch and push state as stored: written again only when they change.
            let mut recorded_push = state
                .as_ref()
                .ok()
                .and_then(Option::as_ref)
                .map_or((None, None), |state| (state.watch_expires_at, state.push_state));
            let mut watch_expires_at = recorded_push.0;
            let first = state.as_ref().is_ok_and(|state| state.as_ref().is_none_or(|state| state.history_id.is_none()));
            *first_sync.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = first;
            if first {
                with_store(&shared.store, |store| store.set_sync_status(&user.email, SyncStatus::Syncing, None));
                shared.metrics.user_state(&user.email, SyncStatus::Syncing);
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
            // Boxed: a sleeping worker then holds only the loop's state, not the largest
            // state of a sync (kilobytes, times every user of the company).
            let (outcome, last_verify_at) = match state {
                Ok(state) => {
                    let last_verify_at = state.as_ref().and_then(|state| state.last_verify_at);
                    // Shutdown does not wait for a sync stuck in Gmail's retries and backoff:
                    // the poll is dropped, in-flight requests and sleeps with it. Every write
                    // is a transaction of its own, so nothing half-done is left behind.
                    let run = Box::pin(
                        async {
                            let mut report = sync.run_from(state).await?;
                            // A full sync read them already.
                            if reread_labels && !report.full {
                                sync.reread_labels(&mut report).await?;
                            }
                            Ok(report)
                        }
                        .instrument(poll_span.clone()),
                    );
                    let outcome = tokio::select! {
                        outcome = run => outcome,
                        () = cancel.cancelled() => Err(SyncError::Cancelled),
                    };
                    (outcome, last_verify_at)
                }
                Err(error) => (Err(SyncError::Store(error)), None),
            };
            drop(permit);
            // Retries of this poll no longer speak for it: its outcome is written next.
            *first_sync.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = false;
            let entered = poll_span.enter();
            let stats = client.stats();
            let poll_interval = Duration::from_secs(policy.config.gmail.poll_interval_secs);
            let next_poll_at = chrono::Utc::now().timestamp() + poll_interval.as_secs() as i64;
            match outcome {
                Ok(report) => {
                    failures = 0;
                    labels_read_for = Some(label_names);
                    with_store(&shared.store, |store| {
                        store.finish_poll(&user.email, SyncStatus::Ok, None, 0, (!shared.once).then_some(next_poll_at))
                    });
                    shared.metrics.synced(&user.email);
                    shared.metrics.user_state(&user.email, SyncStatus::Ok);
                    if report.full {
                        // A full sync listed the whole window: it was a reconciliation too.
                        let now = chrono::Utc::now().timestamp();
                        with_store(&shared.store, |store| store.set_verify_result(&user.email, 0, now));
                    } else {
                        tokio::select! {
                            () = Box::pin(reconcile_if_due(&shared, &sync, &policy, last_verify_at)) => {}
                            () = cancel.cancelled() => return Stopped::Cancelled,
                        }
                    }
                    if let Some(push) = &policy.config.gmail.push
                        && (!watched || report.full || watch_due(watch_expires_at))
                        && let Some(expires) = tokio::select! {
                            expires = Box::pin(renew_watch(&shared, &client, &push.topic)) => expires,
                            () = cancel.cancelled() => return Stopped::Cancelled,
                        }
                    {
                        watch_expires_at = Some(expires);
                        watched = true;
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
                Err(SyncError::Store(error)) if error.is_fenced() => {
                    // Another instance holds the mailbox now (this one stalled past its
                    // lease): nothing of this poll was written, and the mailbox is theirs.
                    tracing::warn!("the mailbox's lease went to another instance; dropping it");
                    shared.metrics.stopped_syncing(&user.email);
                    return Stopped::LeaseLost;
                }
                Err(SyncError::Gmail(error)) if error.needs_reauth() => {
                    let message = error.to_string();
                    with_store(&shared.store, |store| {
                        store.finish_poll(&user.email, SyncStatus::NeedsReauth, Some(&message), failures, None)
                    });
                    shared.metrics.sync_failures.get_or_create(&shared.metrics.user(&user.email)).inc();
                    shared.metrics.user_state(&user.email, SyncStatus::NeedsReauth);
                    tracing::error!(error = %error, "authorization lost; this user's sync stops until re-authorised and reloaded");
                    notify(&shared, &policy, Alert::NeedsReauth { user: user.email.clone(), error: message });
                    shared.metrics.stopped_syncing(&user.email);
                    return Stopped::NeedsReauth;
                }
                Err(error) => {
                    failures += 1;
                    let message = error.to_string();
                    with_store(&shared.store, |store| {
                        store.finish_poll(&user.email, SyncStatus::Error, Some(&message), failures, (!shared.once).then_some(next_poll_at))
                    });
                    shared.metrics.sync_failures.get_or_create(&shared.metrics.user(&user.email)).inc();
                    shared.metrics.user_state(&user.email, SyncStatus::Error);
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
            // Until the next poll: a notification for the mailbox, or the poll interval that
            // fits how new mail arrives now (it changes when pulling fails or works again).
            let polled_at = tokio::time::Instant::now();
            loop {
                let push_state = push_state(&policy, *push_updates.borrow_and_update(), watch_expires_at);
                if (watch_expires_at, push_state) != recorded_push {
                    with_store(&shared.store, |store| store.set_push(&user.email, watch_expires_at, push_state));
                    recorded_push = (watch_expires_at, push_state);
                }
                let interval = match (push_state, &policy.config.gmail.push) {
                    (Some(PushState::Push), Some(push)) => Duration::from_secs(push.safety_poll_secs),
                    _ => poll_interval,
                };
                tokio::select! {
                    () = tokio::time::sleep_until(polled_at + interval) => break,
                    () = wake.woken() => {
                        tracing::debug!("woken by a push notification");
                        break;
                    }
                    changed = push_updates.changed(), if push_followed => {
                        // Without push nothing ever changes, and the sender may be gone.
                        push_followed = changed.is_ok();
                    }
                    () = cancel.cancelled() => return Stopped::Cancelled,
                }
            }
        }
    }
    .instrument(span)
    .await
}

fn build_client(
    shared: &Arc<Shared>,
    credentials: &Credentials,
    user_email: &str,
    policy: &Policy,
    first_sync: &FirstSync,
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
        .with_metrics(shared.metrics.clone())
        .with_retry_hook(first_sync_errors(shared, user_email, first_sync)),
    )
}

/// While a mailbox's first sync retries a request (a token endpoint or Gmail unreachable), its
/// state is `error` with the error, instead of `syncing` for as long as the retries last; once
/// a retried request succeeds it is `syncing` again, and the sync's end writes `ok` or the
/// failure. A mailbox already synced keeps its state through a retried request. The flag is
/// held while the state is written, and the worker clears it (under the same lock) before it
/// writes the poll's own outcome, so a late write cannot overwrite that outcome.
fn first_sync_errors(
    shared: &Arc<Shared>,
    user_email: &str,
    first_sync: &FirstSync,
) -> gmail_client::RetryHook {
    let shared = shared.clone();
    let user_email = user_email.to_string();
    let first_sync = first_sync.clone();
    Arc::new(move |error: Option<&GmailError>| {
        let (shared, user, first_sync) = (shared.clone(), user_email.clone(), first_sync.clone());
        let (status, message) = match error {
            Some(error) => (SyncStatus::Error, Some(error.to_string())),
            None => (SyncStatus::Syncing, None),
        };
        // A store write may wait: off the async thread, and nothing waits for it.
        tokio::task::spawn_blocking(move || {
            let during_first_sync = first_sync
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !*during_first_sync {
                return;
            }
            shared.metrics.user_state(&user, status);
            if let Err(error) = shared
                .store
                .set_sync_status(&user, status, message.as_deref())
            {
                tracing::error!(user = %user, error = %error, "cannot record sync status");
            }
        });
    })
}

/// Whether the worker's current poll is the mailbox's first sync, behind the lock that orders
/// the retry hook's writes before the poll's outcome.
type FirstSync = Arc<std::sync::Mutex<bool>>;

/// Ends the Gmail watch of a mailbox whose sync was turned off, so Gmail stops publishing
/// its changes. A failure is logged: the watch then runs out by itself within 7 days, and
/// its notifications are ignored meanwhile.
pub(super) async fn stop_watch(shared: Arc<Shared>, user_email: String) {
    let watched = with_store(&shared.store, |store| store.sync_state(&user_email))
        .flatten()
        .is_some_and(|state| state.watch_expires_at.is_some());
    if !watched {
        return;
    }
    let policy = shared.policy.borrow().clone();
    let credentials = shared.credentials.borrow().clone();
    // Not a sync: its retries change no state.
    let not_syncing: FirstSync = Arc::default();
    let client = build_client(&shared, &credentials, &user_email, &policy, &not_syncing);
    match client.stop_watch().await {
        Ok(()) => {
            crate::metrics::Metrics::outcome(&shared.metrics.push_watches, "stopped");
            with_store(&shared.store, |store| {
                store.set_push(&user_email, None, None)
            });
            tracing::info!(user = %user_email, "sync turned off; Gmail watch stopped");
        }
        Err(error) => {
            crate::metrics::Metrics::outcome(&shared.metrics.push_watches, "stop_failed");
            tracing::warn!(user = %user_email, error = %error, "users.stop failed; the watch runs out by itself within 7 days");
        }
    }
}

/// A watch is renewed when it has less than this left: Google asks for a new `users.watch`
/// daily, and a watch runs for 7 days.
const WATCH_RENEW_WITHIN_SECS: i64 = 6 * 86_400;

/// Whether the mailbox's watch must be made again: it has none, or it is a day old.
fn watch_due(expires_at: Option<i64>) -> bool {
    expires_at.is_none_or(|at| at - chrono::Utc::now().timestamp() <= WATCH_RENEW_WITHIN_SECS)
}

/// `users.watch` for the mailbox, after a poll: at a worker's first, when the watch is a day
/// old, and after a full sync (which follows a `404` on history: the old watch's
/// notifications named history the mailbox no longer has). Returns the new watch's expiry;
/// `None` when the call failed (the mailbox is polled meanwhile, and the watch is tried again
/// after the next poll).
async fn renew_watch(shared: &Shared, client: &GmailClient, topic: &str) -> Option<i64> {
    match client.watch(topic).await {
        Ok(expires) => {
            crate::metrics::Metrics::outcome(&shared.metrics.push_watches, "watched");
            tracing::debug!(expires_at = expires, "watch renewed");
            Some(expires)
        }
        Err(error) => {
            crate::metrics::Metrics::outcome(&shared.metrics.push_watches, "watch_failed");
            tracing::warn!(error = %error, "users.watch failed; the mailbox is polled every poll_interval_secs and the watch is tried again after the next poll");
            None
        }
    }
}

/// How new mail reaches a mailbox: by push while notifications are pulled and its watch is
/// live, by polling otherwise; `None` without `[gmail.push]`.
fn push_state(
    policy: &Policy,
    health: PushHealth,
    watch_expires_at: Option<i64>,
) -> Option<PushState> {
    policy.config.gmail.push.as_ref()?;
    let watched = watch_expires_at.is_some_and(|at| at > chrono::Utc::now().timestamp());
    Some(if health == PushHealth::Pulling && watched {
        PushState::Push
    } else {
        PushState::Polling
    })
}

/// Runs reconciliation after a successful poll when `verify_interval_secs` has passed since the
/// last one: every listed message without a decision is a gap, counted and repaired at once.
/// `last_verify_at` is the state's as the poll began (a poll that got here was incremental,
/// and only a full sync or this function changes it).
async fn reconcile_if_due(
    shared: &Shared,
    sync: &MailboxSync,
    policy: &Policy,
    last_verify_at: Option<i64>,
) {
    let interval = policy.config.gmail.verify_interval_secs;
    if interval == 0 {
        return;
    }
    let now = chrono::Utc::now().timestamp();
    if last_verify_at.is_some_and(|last| now - last < interval as i64) {
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
                .get_or_create(&shared.metrics.user(&sync.user.email))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::rules::RuleSet;
    use crate::store::SqliteStore;

    /// A sleeping worker holds its whole future: with 10,000 users, every kilobyte of it is
    /// ten megabytes of the daemon's memory. The sync itself is boxed while it runs, so
    /// what stays is the loop's own state.
    #[test]
    fn a_worker_task_is_small_while_it_sleeps() {
        let config = Config::from_toml(
            std::path::Path::new("/cfg/mailsync.toml"),
            "[company]\ndomains = [\"abcorp.com\"]\n[store]\npath = \"crm.sqlite3\"\n\
             [[users]]\nemail = \"dave@abcorp.com\"\nsync = true\n"
                .to_string(),
        )
        .expect("valid test config");
        let (_policy_tx, policy) =
            watch::channel(Arc::new(Policy::new(config, RuleSet::default())));
        let secret = yup_oauth2::ApplicationSecret::default();
        let (_credentials_tx, credentials) =
            watch::channel(Credentials::InstalledApp(Arc::new(secret)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        let shared = Shared {
            store: Arc::new(SqliteStore::open_in_memory().expect("store")),
            policy,
            credentials,
            api_http: crate::gmail::http::api_client(),
            oauth_http: crate::gmail::http::oauth_client(),
            slots: Arc::new(Semaphore::new(1)),
            once: false,
            metrics: Metrics::new(),
            wakes: Wakes::default(),
            push: watch::channel(PushHealth::Off).1,
        };
        let worker = run_worker(
            Arc::new(shared),
            "dave@abcorp.com".to_string(),
            CancellationToken::new(),
        );
        let size = std::mem::size_of_val(&worker);
        println!("worker future: {size} bytes");
        assert!(size <= 2048, "a worker future of {size} bytes");
    }

    /// The CRM holding SQLite's write lock must not stop the daemon's one async thread: the
    /// small write goes to `block_in_place` instead of SQLite's busy wait on that thread, the
    /// other tasks keep running meanwhile, and the write lands once the lock is released.
    #[test]
    fn a_busy_store_never_holds_up_the_async_thread() {
        let folder = tempfile::tempdir().expect("temp dir");
        let path = folder.path().join("crm.sqlite3");
        let store: SharedStore = Arc::new(SqliteStore::open(&path).expect("store"));
        let crm = rusqlite::Connection::open(&path).expect("the CRM's connection");
        crm.execute_batch("BEGIN IMMEDIATE")
            .expect("the CRM takes the write lock");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (ticks, written) = runtime.block_on(async {
            let ticker = tokio::spawn(async {
                let mut ticks = 0;
                let started = std::time::Instant::now();
                while started.elapsed() < Duration::from_millis(600) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks += 1;
                }
                ticks
            });
            let writer = {
                let store = store.clone();
                tokio::spawn(async move {
                    with_store(&store, |store| {
                        store.set_sync_status("dave@abcorp.com", SyncStatus::Ok, None)
                    })
                })
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
            crm.execute_batch("COMMIT").expect("the CRM lets go");
            (ticker.await.expect("ticker"), writer.await.expect("writer"))
        });
        assert_eq!(written, Some(()), "the write landed after the CRM let go");
        assert!(
            ticks >= 40,
            "the async thread was held up: {ticks} ticks in 600 ms"
        );
        let state = store
            .sync_state("dave@abcorp.com")
            .unwrap()
            .expect("a state row");
        assert_eq!(state.status, SyncStatus::Ok);
    }
}
