//! Backfill: when a contact (or an address of one) appears, the earlier mail with it is
//! searched for and decided again, once per address and mailbox.

use std::collections::HashSet;

use super::BATCH_SIZE;
use super::batch::BatchMode;
use super::store_access::{with_store, with_store_quick};
use super::{BACKFILL_EVENTS_PER_ROUND, MailboxSync, SyncError, SyncReport};
use crate::gmail::client::AddedMessage;
use crate::gmail::search::{address_queries, after, is_searchable};
use crate::rules;
use crate::source::GMAIL_SOURCE;

impl MailboxSync {
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
            let queries =
                address_queries(&searchable, &after(since)).expect("only searchable addresses");
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
}
