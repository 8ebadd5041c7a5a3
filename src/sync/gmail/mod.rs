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

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::User;
use crate::gmail::GmailError;
use crate::gmail::client::GmailClient;
use crate::rules::Policy;
use crate::store::{StoreError, SyncState};

mod backfill;
mod batch;
mod full;
mod incremental;
mod labels;
mod store_access;
mod verify;

pub(crate) use store_access::try_without_waiting;
use store_access::with_store_quick;

/// Messages written per transaction: small enough that a crash loses little work, large
/// enough that SQLite's commit cost stays negligible.
const BATCH_SIZE: usize = 25;

/// The newest messages of a full sync's listing are fetched even when the candidate search
/// did not name them: Gmail's search index can lag delivery by minutes.
const NEWEST_ALWAYS_FETCHED: usize = 25;

/// Contact change events a backfill reads per round (so at most this many addresses); the
/// rest wait for the next poll.
const BACKFILL_EVENTS_PER_ROUND: usize = 200;

/// The `detail` of a message decided without a fetch because the candidate search left it out.
pub const DECIDED_BY_SEARCH: &str =
    "decided by search: no contact address in From, To, Cc or Bcc; not fetched";

pub use crate::store::SharedStore;

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
    /// Stored copies whose choice changed because their conversation's labels changed in
    /// Gmail (made private, visible, participants-only, or removed).
    pub label_changes: usize,
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
        crate::gmail::search::after(since)
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
}
