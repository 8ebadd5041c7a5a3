//! One user's Gmail sync, as the spec describes it: a full sync of the `initial_sync_days`
//! window the first time (cursor from `users.getProfile` taken *before* listing, so nothing
//! that arrives meanwhile is missed), then incremental syncs from `users.history.list`.
//!
//! Nothing is fetched twice: before fetching, ids that already have a decision are dropped,
//! which is what makes a crash, a kill -9 or an expired history id (full resync) cheap and
//! duplicate-free. Messages are written in batches, each batch in one transaction with the
//! cursor it justifies.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::pipeline::{Prepared, prepare};
use crate::config::User;
use crate::gmail::GmailError;
use crate::gmail::client::{AddedMessage, GmailClient, RawMessage};
use crate::rules::{self, Policy};
use crate::source::SourceMessage;
use crate::store::{Cursor, SqliteStore, Store, StoreError};

/// The `source` name of every decision that came from Gmail.
pub const GMAIL_SOURCE: &str = "gmail";

/// Messages written per transaction: small enough that a crash loses little work, large
/// enough that SQLite's commit cost stays negligible.
const BATCH_SIZE: usize = 25;

/// A message can 404 for a moment right after it arrives; history-driven fetches retry a few
/// times before concluding it was deleted.
const NOT_FOUND_RETRIES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// The store, shared by the users' tasks. SQLite has one writer at a time anyway; the lock
/// is held only for short, blocking store calls (made off the async threads).
pub type SharedStore = Arc<Mutex<SqliteStore>>;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Gmail(#[from] GmailError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sync cancelled")]
    Cancelled,
    #[error("sync task failed: {0}")]
    Task(String),
}

/// What one sync run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    pub full: bool,
    /// The listing or history said these were new.
    pub seen: usize,
    /// Already decided before; neither fetched nor written again.
    pub already_decided: usize,
    /// Decided from labels alone (drafts, spam, ...), without a fetch.
    pub decided_without_fetch: usize,
    pub fetched: usize,
    pub synced: usize,
    pub skipped: usize,
    /// Gone between listing and fetching.
    pub vanished: usize,
    pub history_id: Option<String>,
}

/// Hears about each message decided.
pub type OnDecided = Box<dyn Fn(&crate::sync::Processed) + Send + Sync>;

/// Hears (done, total) as a full sync progresses.
pub type OnProgress = Box<dyn Fn(usize, usize) + Send + Sync>;

/// What reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Messages Gmail lists in the window.
    pub listed: usize,
    /// Listed messages without a decision, oldest first.
    pub gaps: Vec<String>,
    /// Gaps decided by `repair`.
    pub repaired: usize,
    /// Gaps deleted from Gmail before they could be repaired.
    pub vanished: usize,
}

/// Everything one user's sync needs.
pub struct MailboxSync {
    pub client: Arc<GmailClient>,
    pub store: SharedStore,
    pub policy: Arc<Policy>,
    pub user: User,
    pub cancel: CancellationToken,
    /// How the window of the full sync is chosen.
    pub window: Window,
    /// Whether decisions and the cursor are written (false: `replay --dry-run`).
    pub write: bool,
    /// Fetch and decide again even what already has a decision (`replay`), without moving the
    /// cursor.
    pub refetch_decided: bool,
    /// Called with each message's result, for `replay`'s output.
    pub on_decided: Option<OnDecided>,
    /// Called with (done, total) as a full sync progresses.
    pub on_progress: Option<OnProgress>,
    pub metrics: Option<crate::metrics::Metrics>,
}

/// Which messages a full sync lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last N days.
    Days(u32),
    /// Since a point in time (seconds since the epoch).
    Since(i64),
}

impl Window {
    /// From midnight (UTC) of `since`, or else the configured `initial_sync_days`.
    pub fn since_or_days(since: Option<chrono::NaiveDate>, days: u32) -> Window {
        match since {
            Some(date) => Window::Since(
                date.and_hms_opt(0, 0, 0)
                    .expect("midnight exists")
                    .and_utc()
                    .timestamp(),
            ),
            None => Window::Days(days),
        }
    }

    pub fn query(self) -> String {
        let since = match self {
            Window::Days(days) => chrono::Utc::now().timestamp() - i64::from(days) * 86_400,
            Window::Since(epoch) => epoch,
        };
        format!("after:{since}")
    }
}

/// Runs blocking store work off the async threads.
async fn with_store<T: Send + 'static>(
    store: &SharedStore,
    work: impl FnOnce(&mut SqliteStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, SyncError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&mut store)
    })
    .await
    .map_err(|error| SyncError::Task(error.to_string()))?
    .map_err(SyncError::Store)
}

impl MailboxSync {
    fn check_cancelled(&self) -> Result<(), SyncError> {
        if self.cancel.is_cancelled() {
            Err(SyncError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// One sync: full when there is no cursor (or history expired), else incremental.
    pub async fn run(&self) -> Result<SyncReport, SyncError> {
        let email = self.user.email.clone();
        let state = with_store(&self.store, move |store| store.sync_state(&email)).await?;
        let cursor = state
            .and_then(|state| state.history_id)
            .and_then(|id| id.parse::<u64>().ok());
        match cursor {
            Some(start) if !self.refetch_decided => match self.incremental(start).await {
                Err(SyncError::Gmail(GmailError::HistoryExpired(_))) => {
                    tracing::info!(user = %self.user.email, "history id expired; running a full sync");
                    let email = self.user.email.clone();
                    if self.write {
                        with_store(&self.store, move |store| store.clear_cursor(&email)).await?;
                    }
                    self.full().await
                }
                other => other,
            },
            _ => self.full().await,
        }
    }

    /// Lists the window and processes every message not decided yet, then sets the cursor to
    /// the history id read before listing.
    pub async fn full(&self) -> Result<SyncReport, SyncError> {
        let mut report = SyncReport {
            full: true,
            ..SyncReport::default()
        };
        let history_id = self.client.history_id().await?;
        // Oldest first, so an interrupted first sync has stored a contiguous stretch.
        let ids = self.list_window().await?;
        let total = ids.len();
        report.seen = total;
        let messages: Vec<AddedMessage> = ids
            .into_iter()
            .map(|id| AddedMessage {
                id,
                label_ids: Vec::new(),
            })
            .collect();
        let mut done = 0;
        for chunk in messages.chunks(BATCH_SIZE) {
            self.check_cancelled()?;
            self.process_batch(chunk, false, None, &mut report).await?;
            done += chunk.len();
            if let Some(progress) = &self.on_progress {
                progress(done, total);
            }
        }
        let cursor = history_id.to_string();
        if self.write && !self.refetch_decided {
            let cursor = Cursor {
                user_email: self.user.email.clone(),
                history_id: cursor.clone(),
            };
            with_store(&self.store, move |store| {
                store.record_all(&[], Some(&cursor)).map(|_| ())
            })
            .await?;
        }
        report.history_id = Some(cursor);
        Ok(report)
    }

    /// Reconciliation: lists the window (cheap: 5 units per page of up to 500 ids), compares it
    /// with the decision log, and reports every listed message that was never decided. With
    /// `repair`, those go through the pipeline now. Listing omits spam and trash, as the full
    /// sync does, so they are never gaps.
    pub async fn verify(&self, repair: bool) -> Result<VerifyReport, SyncError> {
        let ids = self.list_window().await?;
        let email = self.user.email.clone();
        let listed = ids.clone();
        let decided = with_store(&self.store, move |store| {
            store.decided(&email, GMAIL_SOURCE, &listed)
        })
        .await?;
        let gaps: Vec<String> = ids
            .iter()
            .filter(|id| !decided.contains(*id))
            .cloned()
            .collect();
        let mut report = VerifyReport {
            listed: ids.len(),
            gaps: gaps.clone(),
            ..VerifyReport::default()
        };
        if repair && self.write && !gaps.is_empty() {
            let mut sync_report = SyncReport::default();
            let messages: Vec<AddedMessage> = gaps
                .into_iter()
                .map(|id| AddedMessage {
                    id,
                    label_ids: Vec::new(),
                })
                .collect();
            for chunk in messages.chunks(BATCH_SIZE) {
                self.check_cancelled()?;
                self.process_batch(chunk, false, None, &mut sync_report)
                    .await?;
            }
            report.repaired = sync_report.synced + sync_report.skipped;
            report.vanished = sync_report.vanished;
        }
        Ok(report)
    }

    /// Every message id in the window, oldest first.
    async fn list_window(&self) -> Result<Vec<String>, SyncError> {
        let query = self.window.query();
        let mut ids = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            self.check_cancelled()?;
            let page = self
                .client
                .list_messages(&query, page_token.as_deref())
                .await?;
            ids.extend(page.ids);
            match page.next_page_token {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        ids.reverse();
        Ok(ids)
    }

    /// Reads history from `start` page by page; each page's messages are written with the
    /// cursor that page reached.
    pub async fn incremental(&self, start: u64) -> Result<SyncReport, SyncError> {
        let mut report = SyncReport::default();
        let mut page_token: Option<String> = None;
        let mut reached = start;
        loop {
            self.check_cancelled()?;
            let page = self.client.history(start, page_token.as_deref()).await?;
            let last_page = page.next_page_token.is_none();
            if let Some(id) = page.last_record_id {
                reached = reached.max(id);
            }
            if last_page && let Some(current) = page.history_id {
                reached = reached.max(current);
            }
            report.seen += page.added.len();
            let mut added = page.added;
            let mut seen_on_page = HashSet::new();
            added.retain(|message| seen_on_page.insert(message.id.clone()));
            let cursor = Cursor {
                user_email: self.user.email.clone(),
                history_id: reached.to_string(),
            };
            let chunks: Vec<&[AddedMessage]> = added.chunks(BATCH_SIZE).collect();
            if chunks.is_empty() {
                if self.write && reached > start {
                    with_store(&self.store, move |store| {
                        store.record_all(&[], Some(&cursor)).map(|_| ())
                    })
                    .await?;
                }
            } else {
                let count = chunks.len();
                for (index, chunk) in chunks.into_iter().enumerate() {
                    self.check_cancelled()?;
                    // Only the page's last batch carries the cursor: until it is written, a
                    // restart reads the page again and skips what is decided.
                    let cursor = (index + 1 == count).then(|| cursor.clone());
                    self.process_batch(chunk, true, cursor, &mut report).await?;
                }
            }
            match page.next_page_token {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        report.history_id = Some(reached.to_string());
        Ok(report)
    }

    /// Decides and writes one batch, fetching only what needs fetching.
    async fn process_batch(
        &self,
        batch: &[AddedMessage],
        labels_known: bool,
        cursor: Option<Cursor>,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let ids: Vec<String> = batch.iter().map(|message| message.id.clone()).collect();
        let decided = if self.refetch_decided {
            HashSet::new()
        } else {
            let email = self.user.email.clone();
            with_store(&self.store, move |store| {
                store.decided(&email, GMAIL_SOURCE, &ids)
            })
            .await?
        };
        report.already_decided += decided.len();
        let mut without_fetch = Vec::new();
        let mut to_fetch = Vec::new();
        for message in batch
            .iter()
            .filter(|message| !decided.contains(&message.id))
        {
            if labels_known && rules::decide_before_fetch(&self.user, &message.label_ids).is_some()
            {
                without_fetch.push(SourceMessage {
                    source_id: message.id.clone(),
                    raw: Vec::new(),
                    labels: message.label_ids.clone(),
                });
            } else {
                to_fetch.push(message.id.clone());
            }
        }
        report.decided_without_fetch += without_fetch.len();

        let mut fetches = tokio::task::JoinSet::new();
        for id in to_fetch {
            let client = self.client.clone();
            let retry_not_found = labels_known;
            fetches.spawn(async move {
                fetch(&client, &id, retry_not_found)
                    .await
                    .map(|raw| (id, raw))
            });
        }
        let mut fetched: Vec<RawMessage> = Vec::new();
        let mut first_error = None;
        while let Some(result) = tokio::select! {
            result = fetches.join_next() => result,
            () = self.cancel.cancelled() => {
                fetches.abort_all();
                return Err(SyncError::Cancelled);
            }
        } {
            match result.map_err(|error| SyncError::Task(error.to_string()))? {
                Ok((_, Some(raw))) => fetched.push(raw),
                Ok((id, None)) => {
                    report.vanished += 1;
                    tracing::debug!(user = %self.user.email, message = %id, "message vanished before it could be fetched");
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            // Nothing of this batch is written and the cursor does not move: the next sync
            // fetches the batch again.
            return Err(error.into());
        }
        report.fetched += fetched.len();
        if let Some(metrics) = &self.metrics {
            metrics
                .messages_fetched
                .get_or_create(&crate::metrics::UserLabels {
                    user: self.user.email.clone(),
                })
                .inc_by(fetched.len() as u64);
        }
        // Keep the batch in listing order, so writes are deterministic.
        let order: Vec<&str> = batch.iter().map(|message| message.id.as_str()).collect();
        fetched.sort_by_key(|message| order.iter().position(|id| *id == message.id));

        let messages: Vec<SourceMessage> = without_fetch
            .into_iter()
            .chain(fetched.into_iter().map(|message| SourceMessage {
                source_id: message.id,
                raw: message.raw,
                labels: message.label_ids,
            }))
            .collect();
        let policy = self.policy.clone();
        let user = self.user.clone();
        let write = self.write;
        let write_timer = self
            .metrics
            .as_ref()
            .map(|metrics| metrics.store_write_seconds.clone());
        let processed = with_store(&self.store, move |store| {
            let prepared: Vec<Prepared> = messages
                .iter()
                .map(|message| prepare(&policy, &*store, &user, GMAIL_SOURCE, message))
                .collect::<Result<_, _>>()?;
            let to_record: Vec<_> = prepared
                .iter()
                .filter(|p| p.is_recorded())
                .map(Prepared::record)
                .collect();
            let started = std::time::Instant::now();
            let recorded = if write {
                store
                    .record_all(&to_record, cursor.as_ref())?
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                vec![None; prepared.len()]
            };
            if let (true, Some(timer)) = (write, &write_timer) {
                timer.observe(started.elapsed().as_secs_f64());
            }
            let mut recorded = recorded.into_iter();
            Ok(prepared
                .into_iter()
                .map(|prepared| {
                    let outcome = if prepared.is_recorded() {
                        recorded.next().flatten()
                    } else {
                        None
                    };
                    prepared.into_processed(outcome)
                })
                .collect::<Vec<_>>())
        })
        .await?;
        for processed in &processed {
            match processed.decision.outcome() {
                rules::Outcome::Synced => report.synced += 1,
                rules::Outcome::Skipped => report.skipped += 1,
            }
            if let Some(metrics) = &self.metrics {
                metrics.decided(
                    processed.decision.outcome().as_str(),
                    processed.decision.reason.as_str(),
                );
            }
            if let Some(callback) = &self.on_decided {
                callback(processed);
            }
        }
        Ok(())
    }
}

/// Fetches one raw message; `None` when it no longer exists.
async fn fetch(
    client: &GmailClient,
    id: &str,
    retry_not_found: bool,
) -> Result<Option<RawMessage>, GmailError> {
    let mut pauses = NOT_FOUND_RETRIES.iter();
    loop {
        match client.get_raw(id).await {
            Ok(message) => return Ok(Some(message)),
            Err(GmailError::MessageNotFound(_)) => {
                match pauses.next().filter(|_| retry_not_found) {
                    Some(pause) => tokio::time::sleep(*pause).await,
                    None => return Ok(None),
                }
            }
            Err(error) => return Err(error),
        }
    }
}
