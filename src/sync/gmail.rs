//! One user's Gmail sync, as the spec describes it: a full sync of the `initial_sync_days`
//! window the first time (cursor from `users.getProfile` taken *before* listing, so nothing
//! that arrives meanwhile is missed), then incremental syncs from `users.history.list`.
//!
//! Nothing is fetched twice: before fetching, ids that already have a decision are dropped,
//! which is what makes a crash, a kill -9 or an expired history id (full resync) cheap and
//! duplicate-free. Messages are written in batches, each batch in one transaction with the
//! cursor it justifies.
//!
//! Quota is spent only on mail that can matter. A full sync lists the window (5 units per 500
//! ids), then asks Gmail search which of those messages have a contact address in From, To,
//! Cc or Bcc (`{from:a to:a cc:a bcc:a ...}`, a few units per query) and fetches only those
//! (20 units each); the others cannot have a qualifying party, so they are decided
//! `no_qualifying_party` without a fetch, "decided by search". When the searches would cost
//! more than they save (a small mailbox, a huge contact list) it fetches everything instead.
//! New mail from history is always fetched: search can lag delivery. When a contact (or a new
//! address on one) appears, [`MailboxSync::backfill`] searches the mailbox for earlier mail
//! with it and decides that mail again, once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::pipeline::{Prepared, prepare};
use crate::config::User;
use crate::gmail::GmailError;
use crate::gmail::client::{AddedMessage, GmailClient, RawMessage};
use crate::rules::{self, Policy};
use crate::source::{GMAIL_SOURCE, SourceMessage};
use crate::store::{Cursor, SourceRef, SqliteStore, Store, StoreError, SyncState};

/// Messages written per transaction: small enough that a crash loses little work, large
/// enough that SQLite's commit cost stays negligible.
const BATCH_SIZE: usize = 25;

/// The longest `q` a candidate or backfill search sends. Gmail documents no limit; queries
/// far longer than this are known to fail, and this keeps about ten addresses per query.
pub const MAX_QUERY_CHARS: usize = 1_500;

/// The newest messages of a full sync's listing are fetched even when the candidate search
/// did not name them: Gmail's search index can lag delivery by minutes.
const NEWEST_ALWAYS_FETCHED: usize = 25;

/// Contact change events a backfill reads per round (so at most this many addresses); the
/// rest wait for the next poll.
const BACKFILL_EVENTS_PER_ROUND: usize = 200;

/// The `detail` of a message decided without a fetch because the candidate search left it out.
pub const DECIDED_BY_SEARCH: &str =
    "decided by search: no contact address in From, To, Cc or Bcc; not fetched";

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
    /// Left out by the candidate search and decided without a fetch.
    pub decided_by_search: usize,
    /// Whether the full sync used the candidate search (else it fetched every message).
    pub candidate_search: bool,
    /// New contact addresses whose earlier mail was searched for in this run.
    pub backfilled_addresses: usize,
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

/// Runs `work` at once if the store is free and SQLite's write lock is not held elsewhere;
/// `None` when it would have had to wait (another mailbox's batch holds the store, or another
/// process the write lock), and the caller goes again where waiting is allowed. For the small
/// calls the async thread makes on every poll: a hop to the blocking pool costs more than
/// they do, and the store is almost always free.
pub(crate) fn try_without_waiting<T>(
    store: &SharedStore,
    work: &mut impl FnMut(&mut SqliteStore) -> Result<T, StoreError>,
) -> Option<Result<T, StoreError>> {
    let result = match store.try_lock() {
        Ok(mut guard) => guard.without_waiting(work),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => {
            poisoned.into_inner().without_waiting(work)
        }
        Err(std::sync::TryLockError::WouldBlock) => return None,
    };
    match result {
        Err(error) if error.is_busy() => None,
        result => Some(result),
    }
}

/// Small store work (a state row, a cursor, a batch's "already decided?"): in place when
/// [`try_without_waiting`] can, else on the blocking pool, where it runs again (every
/// caller's work is a read or an idempotent write).
async fn with_store_quick<T: Send + 'static>(
    store: &SharedStore,
    mut work: impl FnMut(&mut SqliteStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, SyncError> {
    match try_without_waiting(store, &mut work) {
        Some(result) => result.map_err(SyncError::Store),
        None => with_store(store, work).await,
    }
}

impl MailboxSync {
    fn check_cancelled(&self) -> Result<(), SyncError> {
        if self.cancel.is_cancelled() {
            Err(SyncError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// One sync: full when there is no cursor (or history expired), else incremental; then
    /// the backfill of contacts that appeared since.
    pub async fn run(&self) -> Result<SyncReport, SyncError> {
        let email = self.user.email.clone();
        let state = with_store_quick(&self.store, move |store| store.sync_state(&email)).await?;
        self.run_from(state).await
    }

    /// [`MailboxSync::run`] from the mailbox's sync state as the caller just read it (the
    /// daemon reads it at the start of every poll anyway: one store round trip less per poll).
    pub async fn run_from(&self, state: Option<SyncState>) -> Result<SyncReport, SyncError> {
        self.confirm_mailbox().await?;
        // Read with the state, before this sync: a contact added during it is seen by the
        // next poll's backfill.
        let backfill_due = state.as_ref().is_none_or(|state| state.backfill_due);
        let mut report = self.sync_new_mail(state).await?;
        if self.write && !self.refetch_decided && backfill_due {
            report.backfilled_addresses = self.backfill(&mut report).await?;
        }
        Ok(report)
    }

    /// Every way into the mailbox starts here: nothing is read or stored from a mailbox that
    /// is not this user's (the client asks Gmail once, then remembers).
    async fn confirm_mailbox(&self) -> Result<(), SyncError> {
        Ok(self.client.confirm_mailbox(self.user.addresses()).await?)
    }

    async fn sync_new_mail(&self, state: Option<SyncState>) -> Result<SyncReport, SyncError> {
        let cursor = state
            .and_then(|state| state.history_id)
            .and_then(|id| id.parse::<u64>().ok());
        match cursor {
            Some(start) if !self.refetch_decided => match self.incremental(start).await {
                Err(SyncError::Gmail(GmailError::HistoryExpired(_))) => {
                    tracing::info!(user = %self.user.email, "history id expired; running a full sync");
                    let email = self.user.email.clone();
                    if self.write {
                        with_store_quick(&self.store, move |store| store.clear_cursor(&email))
                            .await?;
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
        self.confirm_mailbox().await?;
        let mut report = SyncReport {
            full: true,
            ..SyncReport::default()
        };
        if self.write && !self.refetch_decided {
            // Before the contact addresses are read (for the candidate search, or by each
            // decision): a first sync covers every contact stored by now, and the backfill
            // after it every contact added from here on, even while this sync runs or before
            // a crashed attempt's retry. A re-sync (history expired) keeps its mark: it only
            // covers the initial window, the backfill covers `backfill_days`.
            let email = self.user.email.clone();
            with_store(&self.store, move |store| store.place_backfill_mark(&email)).await?;
        }
        let history_id = self.client.history_id().await?;
        // Oldest first, so an interrupted first sync has stored a contiguous stretch.
        // One window for the listing and the candidate searches: two `after:` computed
        // seconds apart would leave a message at the edge listed but never searched.
        let window = self.window.query();
        let ids = self.list_window(&window).await?;
        let total = ids.len();
        report.seen = total;
        let candidates = self.candidates(&ids, &window).await?;
        report.candidate_search = candidates.is_some();
        let messages: Vec<AddedMessage> = ids
            .into_iter()
            .map(|id| AddedMessage {
                id,
                label_ids: Vec::new(),
            })
            .collect();
        let mode = BatchMode {
            candidates: candidates.as_ref(),
            ..BatchMode::default()
        };
        let mut done = 0;
        for chunk in messages.chunks(BATCH_SIZE) {
            self.check_cancelled()?;
            self.process_batch(chunk, mode, None, &mut report).await?;
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
            with_store_quick(&self.store, move |store| {
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
        self.confirm_mailbox().await?;
        let ids = self.list_window(&self.window.query()).await?;
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
                self.process_batch(chunk, BatchMode::default(), None, &mut sync_report)
                    .await?;
            }
            report.repaired = sync_report.synced + sync_report.skipped;
            report.vanished = sync_report.vanished;
        }
        Ok(report)
    }

    /// Every message id in the window, oldest first.
    async fn list_window(&self, window: &str) -> Result<Vec<String>, SyncError> {
        let mut ids = self.list_all(window).await?;
        ids.reverse();
        Ok(ids)
    }

    /// Every message id a Gmail search lists, newest first (Gmail's order).
    async fn list_all(&self, query: &str) -> Result<Vec<String>, SyncError> {
        let mut ids = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            self.check_cancelled()?;
            let page = self
                .client
                .list_messages(query, page_token.as_deref())
                .await?;
            ids.extend(page.ids);
            match page.next_page_token {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        Ok(ids)
    }

    /// The messages of a full sync worth fetching: those a search over the contact addresses
    /// lists, plus the newest few. `None` means fetch everything: candidate search is off,
    /// this is a replay, an address cannot be searched for exactly, or the searches would
    /// cost more than half of what they could save.
    async fn candidates(
        &self,
        listed: &[String],
        window: &str,
    ) -> Result<Option<HashSet<String>>, SyncError> {
        let gmail = &self.policy.config.gmail;
        // The newest messages are fetched whatever a search says, so a window no larger than
        // that is fetched whole, and reading the contact addresses would be work for nothing
        // (a new, empty mailbox is the common case: every user's first sync).
        if !gmail.candidate_search
            || self.refetch_decided
            || !self.user.sync
            || listed.len() <= NEWEST_ALWAYS_FETCHED
        {
            return Ok(None);
        }
        let email = self.user.email.clone();
        let listed_ids = listed.to_vec();
        let (decided, addresses) = with_store(&self.store, move |store| {
            Ok((
                store.decided(&email, GMAIL_SOURCE, &listed_ids)?,
                store.candidate_addresses()?,
            ))
        })
        .await?;
        let undecided = listed.iter().filter(|id| !decided.contains(*id)).count();
        let Some(queries) = address_queries(&addresses, window) else {
            tracing::debug!(user = %self.user.email, "a contact address cannot be searched for exactly; fetching every message");
            return Ok(None);
        };
        let search_cost = queries.len() as u64 * u64::from(gmail.quota.messages_list);
        let most_saved = undecided.saturating_sub(NEWEST_ALWAYS_FETCHED) as u64
            * u64::from(gmail.quota.messages_get);
        if search_cost * 2 > most_saved {
            tracing::debug!(user = %self.user.email, search_cost, most_saved, "candidate search would not pay off; fetching every message");
            return Ok(None);
        }
        let mut candidates = HashSet::new();
        for query in &queries {
            self.check_cancelled()?;
            candidates.extend(self.list_all(query).await?);
        }
        candidates.extend(listed.iter().rev().take(NEWEST_ALWAYS_FETCHED).cloned());
        tracing::debug!(
            user = %self.user.email,
            listed = listed.len(),
            candidates = candidates.len(),
            searches = queries.len(),
            "candidate search done"
        );
        Ok(Some(candidates))
    }

    /// Backfill: for contact addresses that appeared since this mailbox's backfill mark (placed
    /// when its first sync started), searches the last `backfill_days` for mail with them and
    /// decides it again (a message decided `no_qualifying_party` may now qualify; a synced one
    /// gains a link to the new contact). Each address is done once: the mark then moves past
    /// it. Returns how many addresses were backfilled.
    pub async fn backfill(&self, report: &mut SyncReport) -> Result<usize, SyncError> {
        self.confirm_mailbox().await?;
        let email = self.user.email.clone();
        let pending = with_store_quick(&self.store, move |store| {
            store.pending_backfill(&email, BACKFILL_EVENTS_PER_ROUND)
        })
        .await?;
        let Some(pending) = pending else {
            // A cursor but no mark, which only a mark removed behind mailsync's back leaves
            // (the first sync places one, the migration to marks gave one to every mailbox
            // with a cursor): what was missed cannot be told, so it backfills from now on.
            let email = self.user.email.clone();
            with_store_quick(&self.store, move |store| store.place_backfill_mark(&email)).await?;
            return Ok(0);
        };
        let Some(through) = pending.through else {
            return Ok(0);
        };
        let addresses = pending.addresses;
        let days = self.policy.config.gmail.backfill_days;
        let (searchable, unsearchable): (Vec<String>, Vec<String>) = addresses
            .iter()
            .cloned()
            .partition(|address| is_searchable(address));
        if !unsearchable.is_empty() {
            tracing::warn!(
                user = %self.user.email,
                addresses = unsearchable.len(),
                "some new contact addresses cannot be searched for exactly and are not backfilled; `verify` and `replay` still cover them"
            );
        }
        if days > 0 && !searchable.is_empty() {
            let since = chrono::Utc::now().timestamp() - i64::from(days) * 86_400;
            let queries = address_queries(&searchable, &format!("after:{since}"))
                .expect("only searchable addresses");
            let mut found: Vec<String> = Vec::new();
            let mut seen = HashSet::new();
            for query in &queries {
                self.check_cancelled()?;
                for id in self.list_all(query).await? {
                    if seen.insert(id.clone()) {
                        found.push(id);
                    }
                }
            }
            // Oldest first, as everywhere else.
            found.reverse();
            let email = self.user.email.clone();
            let ids = found.clone();
            let reasons = with_store(&self.store, move |store| {
                store.decision_reasons(&email, GMAIL_SOURCE, &ids)
            })
            .await?;
            // Only what the new contact can change: undecided mail, mail no party qualified
            // for, and synced mail (to link the contact). Blocked, excluded and unreadable
            // messages stay as they are.
            let to_decide: Vec<AddedMessage> = found
                .into_iter()
                .filter(|id| {
                    reasons.get(id).is_none_or(|reason| {
                        reason == rules::Reason::NoQualifyingParty.as_str()
                            || reason == rules::Reason::Synced.as_str()
                    })
                })
                .map(|id| AddedMessage {
                    id,
                    label_ids: Vec::new(),
                })
                .collect();
            let mode = BatchMode {
                redecide: true,
                ..BatchMode::default()
            };
            for chunk in to_decide.chunks(BATCH_SIZE) {
                self.check_cancelled()?;
                self.process_batch(chunk, mode, None, report).await?;
            }
            tracing::info!(
                user = %self.user.email,
                addresses = searchable.len(),
                messages = to_decide.len(),
                "backfilled new contacts' earlier mail"
            );
        }
        // Never-sync changes among the events read need nothing from a mailbox: the mark
        // moves past them too.
        let email = self.user.email.clone();
        with_store(&self.store, move |store| {
            store.finish_backfill(&email, through)
        })
        .await?;
        Ok(addresses.len())
    }

    /// Reads history from `start` page by page; each page's messages are written with the
    /// cursor that page reached.
    pub async fn incremental(&self, start: u64) -> Result<SyncReport, SyncError> {
        self.confirm_mailbox().await?;
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
                    with_store_quick(&self.store, move |store| {
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
                    let mode = BatchMode {
                        labels_known: true,
                        ..BatchMode::default()
                    };
                    self.process_batch(chunk, mode, cursor, &mut report).await?;
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
        mode: BatchMode<'_>,
        cursor: Option<Cursor>,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let labels_known = mode.labels_known;
        let ids: Vec<String> = batch.iter().map(|message| message.id.clone()).collect();
        let decided = if self.refetch_decided || mode.redecide {
            HashSet::new()
        } else {
            let email = self.user.email.clone();
            with_store_quick(&self.store, move |store| {
                store.decided(&email, GMAIL_SOURCE, &ids)
            })
            .await?
        };
        report.already_decided += decided.len();
        let mut without_fetch = Vec::new();
        let mut by_search = Vec::new();
        let mut to_fetch = Vec::new();
        for message in batch
            .iter()
            .filter(|message| !decided.contains(&message.id))
        {
            if mode
                .candidates
                .is_some_and(|candidates| !candidates.contains(&message.id))
            {
                by_search.push(message.id.clone());
            } else if labels_known
                && rules::decide_before_fetch(&self.user, &message.label_ids).is_some()
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
        report.decided_without_fetch += without_fetch.len() + by_search.len();
        report.decided_by_search += by_search.len();

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
            let mut prepared: Vec<Prepared> = messages
                .iter()
                .map(|message| prepare(&policy, &*store, &user, GMAIL_SOURCE, message))
                .collect::<Result<_, _>>()?;
            prepared.extend(by_search.into_iter().map(|id| {
                Prepared::without_message(
                    SourceRef {
                        user_email: user.email.clone(),
                        source: GMAIL_SOURCE.to_string(),
                        source_id: id,
                    },
                    rules::decide_by_search(&user, DECIDED_BY_SEARCH),
                )
            }));
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

/// How a batch is decided.
#[derive(Debug, Clone, Copy, Default)]
struct BatchMode<'a> {
    /// History said what labels each message has, so spam or drafts need no fetch.
    labels_known: bool,
    /// Only these may be fetched; the others are decided by search without a fetch.
    candidates: Option<&'a HashSet<String>>,
    /// Decide again what already has a decision (backfill).
    redecide: bool,
}

/// Whether Gmail search can be asked for `address` exactly: the characters that Gmail's
/// query language gives a meaning to (spaces, quotes, braces, parentheses, a leading `-`)
/// would change the query, so such an address turns the candidate search off.
pub fn is_searchable(address: &str) -> bool {
    !address.is_empty()
        && !address.starts_with('-')
        && address.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '@' | '.'
                        | '_'
                        | '-'
                        | '+'
                        | '\''
                        | '%'
                        | '='
                        | '!'
                        | '#'
                        | '$'
                        | '&'
                        | '*'
                        | '/'
                        | '?'
                        | '^'
                        | '`'
                        | '|'
                        | '~'
                )
        })
}

/// Gmail searches for messages with any of `addresses` in From, To, Cc or Bcc, each with
/// `suffix` (the window) and at most [`MAX_QUERY_CHARS`] long. `None` if an address cannot be
/// searched for exactly. No addresses → no queries.
pub fn address_queries(addresses: &[String], suffix: &str) -> Option<Vec<String>> {
    let mut queries = Vec::new();
    let mut terms = String::new();
    for address in addresses {
        if !is_searchable(address) {
            return None;
        }
        let term = format!("from:{address} to:{address} cc:{address} bcc:{address}");
        if !terms.is_empty() && terms.len() + term.len() + suffix.len() + 4 > MAX_QUERY_CHARS {
            queries.push(format!("{{{terms}}} {suffix}"));
            terms.clear();
        }
        if !terms.is_empty() {
            terms.push(' ');
        }
        terms.push_str(&term);
    }
    if !terms.is_empty() {
        queries.push(format!("{{{terms}}} {suffix}"));
    }
    Some(queries)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(count: usize) -> Vec<String> {
        (0..count)
            .map(|i| format!("person.{i}@customer-{i}.example"))
            .collect()
    }

    #[test]
    fn queries_cover_every_address_in_every_header_within_the_length_limit() {
        let addresses = addresses(100);
        let queries = address_queries(&addresses, "after:1700000000").expect("searchable");
        assert!(queries.len() > 1, "100 addresses do not fit one query");
        for query in &queries {
            assert!(query.len() <= MAX_QUERY_CHARS, "{} chars", query.len());
            assert!(query.starts_with('{') && query.ends_with("} after:1700000000"));
        }
        let terms: Vec<String> = queries
            .iter()
            .flat_map(|query| query.split_whitespace())
            .map(|term| term.trim_matches(['{', '}']).to_string())
            .collect();
        for address in &addresses {
            for header in ["from", "to", "cc", "bcc"] {
                let term = format!("{header}:{address}");
                assert_eq!(
                    terms.iter().filter(|t| **t == term).count(),
                    1,
                    "{term} appears exactly once"
                );
            }
        }
    }

    #[test]
    fn no_addresses_no_queries_and_unsearchable_addresses_turn_search_off() {
        assert_eq!(address_queries(&[], "after:1"), Some(Vec::new()));
        for hostile in [
            "a b@x.example",
            "\"quoted\"@x.example",
            "a}@x.example",
            "-a@x.example",
            "a(b)@x.example",
        ] {
            assert!(!is_searchable(hostile), "{hostile}");
            assert_eq!(
                address_queries(&[hostile.to_string()], "after:1"),
                None,
                "{hostile}"
            );
        }
        assert!(is_searchable("o'brien+crm@sub.example.co.uk"));
    }
}
