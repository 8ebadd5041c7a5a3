//! One user's polling loop: sync, record the outcome in `sync_state`, wait, repeat, until
//! cancelled or the user's grant is gone.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::gmail::GmailError;
use crate::gmail::auth::Credentials;
use crate::gmail::client::GmailClient;
use crate::gmail::http::{ApiClient, OAuthClient};
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

fn set_status(store: &SharedStore, user: &str, status: SyncStatus, error: Option<&str>) {
    let mut store = store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Err(store_error) = store.set_sync_status(user, status, error) {
        tracing::error!(user, error = %store_error, "cannot record sync status");
    }
}

/// Polls `user_email` until cancelled; returns why it stopped.
pub async fn run_worker(
    mut shared: Shared,
    user_email: String,
    cancel: CancellationToken,
) -> Stopped {
    let span = tracing::info_span!("sync", user = %user_email);
    async move {
        // Kept across polls so the quota bucket remembers recent requests; rebuilt when a
        // reload brings new settings or credentials.
        let mut client: Option<Arc<GmailClient>> = None;
        loop {
            let permit = tokio::select! {
                permit = shared.slots.clone().acquire_owned() => permit.expect("the slots semaphore is never closed"),
                () = cancel.cancelled() => return Stopped::Cancelled,
            };
            let settings_changed = shared.policy.has_changed().unwrap_or(false) | shared.credentials.has_changed().unwrap_or(false);
            let policy = shared.policy.borrow_and_update().clone();
            let Some(user) = policy.config.user_by_address(&user_email).filter(|user| user.sync).cloned() else {
                set_status(&shared.store, &user_email, SyncStatus::Disabled, None);
                return Stopped::SyncTurnedOff;
            };
            if settings_changed || client.is_none() {
                let credentials = shared.credentials.borrow_and_update().clone();
                client = Some(build_client(&shared, &credentials, &user.email, &policy));
            }
            let client = client.clone().expect("built just above");
            set_status(&shared.store, &user.email, SyncStatus::Syncing, None);
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
            };
            let started = std::time::Instant::now();
            let outcome = sync.run().await;
            drop(permit);
            let stats = client.stats();
            match outcome {
                Ok(report) => {
                    set_status(&shared.store, &user.email, SyncStatus::Ok, None);
                    tracing::info!(
                        full = report.full,
                        seen = report.seen,
                        fetched = report.fetched,
                        synced = report.synced,
                        skipped = report.skipped,
                        already_decided = report.already_decided,
                        requests = stats.total_requests(),
                        retries = stats.retries,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "sync finished"
                    );
                }
                Err(SyncError::Cancelled) => return Stopped::Cancelled,
                Err(SyncError::Gmail(error @ GmailError::NeedsReauth { .. })) => {
                    set_status(&shared.store, &user.email, SyncStatus::NeedsReauth, Some(&error.to_string()));
                    tracing::error!(error = %error, "authorization lost; this user's sync stops until re-authorised and reloaded");
                    return Stopped::NeedsReauth;
                }
                Err(error) => {
                    set_status(&shared.store, &user.email, SyncStatus::Error, Some(&error.to_string()));
                    tracing::warn!(error = %error, retries = stats.retries, "sync failed; will retry at the next poll");
                }
            }
            if shared.once {
                let status = shared
                    .store
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .sync_state(&user.email)
                    .ok()
                    .flatten()
                    .map(|state| state.status);
                return if status == Some(SyncStatus::Ok) { Stopped::PolledOnce } else { Stopped::FailedOnce };
            }
            let pause = Duration::from_secs(policy.config.gmail.poll_interval_secs);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
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
        let store = shared
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        store.refresh_token(user_email).unwrap_or_else(|error| {
            tracing::error!(error = %error, "cannot read the stored refresh token");
            None
        })
    } else {
        None
    };
    Arc::new(GmailClient::for_user(
        &policy.config.gmail,
        credentials,
        user_email,
        refresh_token,
        shared.api_http.clone(),
        shared.oauth_http.clone(),
    ))
}
