//! One batch of listed messages: which are decided already, which are decided without a
//! fetch (labels, the candidate search), which are fetched; then all decided and written in
//! one transaction with the cursor that covers them.

use std::collections::HashSet;
use std::time::Duration;

use super::store_access::{with_store, with_store_quick};
use super::{DECIDED_BY_SEARCH, MailboxSync, SyncError, SyncReport};
use crate::config::User;
use crate::gmail::GmailError;
use crate::gmail::client::{AddedMessage, GmailClient, RawMessage};
use crate::rules;
use crate::source::{GMAIL_SOURCE, SourceMessage};
use crate::store::{Cursor, SourceRef};
use crate::sync::pipeline::{Prepared, prepare_all};

impl MailboxSync {
    /// Decides and writes one batch, fetching only what needs fetching.
    pub(super) async fn process_batch(
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
        let Triage {
            without_fetch,
            by_search,
            to_fetch,
        } = triage(batch, &decided, &mode, &self.user);
        let without_fetch: Vec<SourceMessage> = without_fetch
            .into_iter()
            .map(|message| SourceMessage {
                source_id: message.id,
                raw: Vec::new(),
                labels: message.label_ids,
            })
            .collect();
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
                .get_or_create(&metrics.user(&self.user.email))
                .inc_by(fetched.len() as u64);
        }
        // Keep the batch in listing order, so writes are deterministic.
        let order: Vec<&str> = batch.iter().map(|message| message.id.as_str()).collect();
        fetched.sort_by_key(|message| order.iter().position(|id| *id == message.id));

        let mut messages: Vec<SourceMessage> = without_fetch
            .into_iter()
            .chain(fetched.into_iter().map(|message| SourceMessage {
                source_id: message.id,
                raw: message.raw,
                labels: message.label_ids,
            }))
            .collect();
        // Label rules match names (`CRM/Private`); Gmail gives user labels by id.
        for message in &mut messages {
            message.labels = self.client.label_names(&message.labels).await?;
        }
        let policy = self.policy.clone();
        let user = self.user.clone();
        let write = self.write;
        let write_timer = self
            .metrics
            .as_ref()
            .map(|metrics| metrics.store_write_seconds.clone());
        let processed = with_store(&self.store, move |store| {
            let mut prepared = prepare_all(&policy, store, &user, GMAIL_SOURCE, &messages)?;
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

/// What becomes of a batch's messages that have no decision yet, before anything is fetched.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Triage {
    /// Decided from the user and their labels alone (sync off, drafts, spam, ...).
    pub(super) without_fetch: Vec<AddedMessage>,
    /// Left out by the candidate search: decided `no_qualifying_party` without a fetch.
    pub(super) by_search: Vec<String>,
    /// Everything else: fetched and decided from its content.
    pub(super) to_fetch: Vec<String>,
}

/// Sorts a batch, in listing order, leaving out what is `decided` already. The candidate
/// search comes first: a message it left out cannot qualify, whatever its labels. Labels are
/// used only when history told them (a listing does not), and only [`rules::decide_before_fetch`]
/// may decide from them, so the spec's order holds in one place.
pub(super) fn triage(
    batch: &[AddedMessage],
    decided: &HashSet<String>,
    mode: &BatchMode<'_>,
    user: &User,
) -> Triage {
    let mut triage = Triage::default();
    for message in batch
        .iter()
        .filter(|message| !decided.contains(&message.id))
    {
        if mode
            .candidates
            .is_some_and(|candidates| !candidates.contains(&message.id))
        {
            triage.by_search.push(message.id.clone());
        } else if mode.labels_known
            && rules::decide_before_fetch(user, &message.label_ids).is_some()
        {
            triage.without_fetch.push(message.clone());
        } else {
            triage.to_fetch.push(message.id.clone());
        }
    }
    triage
}

/// How a batch is decided.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct BatchMode<'a> {
    /// History said what labels each message has, so spam or drafts need no fetch.
    pub(super) labels_known: bool,
    /// Only these may be fetched; the others are decided by search without a fetch.
    pub(super) candidates: Option<&'a HashSet<String>>,
    /// Decide again what already has a decision (backfill).
    pub(super) redecide: bool,
}

/// A message can 404 for a moment right after it arrives; history-driven fetches retry a few
/// times before concluding it was deleted.
const NOT_FOUND_RETRIES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

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

    /// One message of a test batch: `id` with its labels.
    fn message(id: &str, labels: &[&str]) -> AddedMessage {
        AddedMessage {
            id: id.to_string(),
            label_ids: labels.iter().map(|label| label.to_string()).collect(),
        }
    }

    fn user(sync: bool) -> User {
        crate::config::Config::from_toml(
            std::path::Path::new("/cfg/mailsync.toml"),
            format!(
                "[company]\ndomains = [\"abcorp.com\"]\n[store]\npath = \"s.sqlite3\"\n[[users]]\nemail = \"dave@abcorp.com\"\nsync = {sync}\n"
            ),
        )
        .expect("a valid config")
        .users
        .remove(0)
    }

    /// Each case: a batch (id and labels), what is decided already, the candidate search's
    /// ids (if it ran), whether history told the labels, whether the user's sync is on, and
    /// the expected (without fetch, by search, to fetch) ids.
    #[test]
    fn a_batch_is_sorted_before_anything_is_fetched() {
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a [&'a str])],
            &'a [&'a str],
            Option<&'a [&'a str]>,
            bool,
            bool,
            [&'a [&'a str]; 3],
        );
        let cases: &[Case] = &[
            (
                "everything new is fetched",
                &[("a", &["INBOX"]), ("b", &[])],
                &[],
                None,
                true,
                true,
                [&[], &[], &["a", "b"]],
            ),
            (
                "what has a decision is left out entirely",
                &[("a", &["INBOX"]), ("b", &["INBOX"]), ("c", &["SPAM"])],
                &["b", "c"],
                None,
                true,
                true,
                [&[], &[], &["a"]],
            ),
            (
                "spam, drafts, trash and chat from history need no fetch",
                &[
                    ("s", &["SPAM"]),
                    ("d", &["DRAFT"]),
                    ("t", &["TRASH"]),
                    ("c", &["CHAT"]),
                    ("i", &["INBOX"]),
                ],
                &[],
                None,
                true,
                true,
                [&["s", "d", "t", "c"], &[], &["i"]],
            ),
            (
                "a listing does not tell labels: everything is fetched",
                &[("s", &["SPAM"]), ("i", &["INBOX"])],
                &[],
                None,
                false,
                true,
                [&[], &[], &["s", "i"]],
            ),
            (
                "left out by the candidate search: decided by search, labels or not",
                &[("a", &["INBOX"]), ("b", &["SPAM"]), ("c", &["INBOX"])],
                &[],
                Some(&["a"]),
                true,
                true,
                [&[], &["b", "c"], &["a"]],
            ),
            (
                "a decided message stays out of the search's share too",
                &[("a", &[]), ("b", &[])],
                &["b"],
                Some(&[]),
                false,
                true,
                [&[], &["a"], &[]],
            ),
            (
                "a user whose sync is off: decided without a fetch when labels are known",
                &[("a", &["INBOX"])],
                &[],
                None,
                true,
                false,
                [&["a"], &[], &[]],
            ),
        ];
        for (name, batch, decided, candidates, labels_known, sync, expected) in cases {
            let batch: Vec<AddedMessage> = batch
                .iter()
                .map(|(id, labels)| message(id, labels))
                .collect();
            let decided: HashSet<String> = decided.iter().map(|id| id.to_string()).collect();
            let candidates: Option<HashSet<String>> =
                candidates.map(|ids| ids.iter().map(|id| id.to_string()).collect());
            let mode = BatchMode {
                labels_known: *labels_known,
                candidates: candidates.as_ref(),
                redecide: false,
            };
            let triage = triage(&batch, &decided, &mode, &user(*sync));
            let without_fetch: Vec<&str> =
                triage.without_fetch.iter().map(|m| m.id.as_str()).collect();
            assert_eq!(
                [
                    without_fetch.as_slice(),
                    &triage
                        .by_search
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>(),
                    &triage
                        .to_fetch
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                ],
                *expected,
                "{name}"
            );
        }
    }
}
