//! The full sync of a window: the cursor read first, the listing, the quota-aware candidate
//! search, and the batches.

use std::collections::HashSet;

use super::batch::BatchMode;
use super::store_access::{with_store, with_store_quick};
use super::{BATCH_SIZE, MailboxSync, NEWEST_ALWAYS_FETCHED, SyncError, SyncReport};
use crate::gmail::client::AddedMessage;
use crate::gmail::search::address_queries;
use crate::source::GMAIL_SOURCE;
use crate::store::Cursor;

impl MailboxSync {
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
        // Label changes before the cursor are in no history this mailbox will read.
        self.reread_labels(&mut report).await?;
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

    /// Every message id in the window, oldest first.
    pub(super) async fn list_window(&self, window: &str) -> Result<Vec<String>, SyncError> {
        let mut ids = self.list_all(window).await?;
        ids.reverse();
        Ok(ids)
    }

    /// Every message id a Gmail search lists, newest first (Gmail's order).
    pub(super) async fn list_all(&self, query: &str) -> Result<Vec<String>, SyncError> {
        self.list_pages(query, None).await
    }

    /// Every message id carrying the label `label_id`, newest first.
    pub(super) async fn list_labelled(&self, label_id: &str) -> Result<Vec<String>, SyncError> {
        self.list_pages("", Some(label_id)).await
    }

    async fn list_pages(
        &self,
        query: &str,
        label_id: Option<&str>,
    ) -> Result<Vec<String>, SyncError> {
        let mut ids = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            self.check_cancelled()?;
            let page = self
                .client
                .list_messages(query, label_id, page_token.as_deref())
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
}
