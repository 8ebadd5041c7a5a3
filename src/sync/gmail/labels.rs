//! Labels changed in Gmail (history's `labelsAdded` / `labelsRemoved`): a conversation
//! labelled for a label rule changes its activities within one sync, without fetching the
//! message again (docs/spec/decisions.md, "The level of a synced message"). A copy keeps the
//! labels label rules match; when they change, every copy of the conversation in this mailbox
//! is decided again from what the store keeps. A message a `skip` label kept out, once the
//! label is gone, is fetched and decided again: nothing of it was stored.
//!
//! History only tells of changes since the cursor, and of labels the rules named then. A full
//! sync (history expired), and a reload whose label rules name other labels, read the labels
//! as they are instead ([`MailboxSync::reread_labels`]), so that a conversation labelled
//! while no daemon ran, or before its rule was written, is not left visible.

use std::collections::{BTreeMap, BTreeSet};

use super::batch::BatchMode;
use super::store_access::with_store;
use super::{MailboxSync, SyncError, SyncReport};
use crate::gmail::client::{AddedMessage, LabelChange};
use crate::rules;
use crate::source::GMAIL_SOURCE;
use crate::store::SourceChange;
use crate::sync::retro::{self, LabelsByConversation};

impl MailboxSync {
    /// Applies a history page's label changes, once the page's new messages are stored.
    pub(super) async fn apply_label_changes(
        &self,
        changes: Vec<LabelChange>,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        if !self.write
            || !self
                .policy
                .rules
                .rules
                .iter()
                .any(|rule| rule.matcher.is_label_rule())
        {
            return Ok(());
        }
        let mut to_fetch: Vec<AddedMessage> = Vec::new();
        let skip_rules = self.skip_label_rule_names();
        for change in changes {
            self.check_cancelled()?;
            let names = self.client.label_names(&change.label_ids).await?;
            let own = rules::rule_labels(&self.policy, &self.user, &names);
            let skipping = rules::skip_label_rules(&self.policy, &self.user, &names);
            let skip_rules = skip_rules.clone();
            let policy = self.policy.clone();
            let user = self.user.clone();
            let id = change.id.clone();
            let outcome = with_store(&self.store, move |store| {
                let Some(stored) = store.stored_source(&user.email, GMAIL_SOURCE, &id)? else {
                    // Not stored: perhaps a skip label kept it out, and is gone now. Should
                    // the fetch below fail, the message is left without a decision, which
                    // reconciliation finds and repairs (a message never decided, outside the
                    // sync window, is not fetched for a label change).
                    let refetch = skipping.is_empty()
                        && store.forget_blocked_decision(
                            &user.email,
                            GMAIL_SOURCE,
                            &id,
                            &skip_rules,
                        )?;
                    return Ok(LabelOutcome::Refetch(refetch));
                };
                if stored.labels == own {
                    return Ok(LabelOutcome::Changed(0));
                }
                let mut sources = store.sources_of(stored.activity_id, true)?;
                sources.retain(|source| source.user_email == user.email);
                for source in &mut sources {
                    if source.activity_id == stored.activity_id {
                        source.labels = own.clone();
                    }
                }
                let labels = LabelsByConversation::of(&sources);
                let never_sync = retro::never_sync_hashes(store)?;
                let mut changes: Vec<SourceChange> = Vec::new();
                for source in &sources {
                    // The changed copy is compared with what is stored, the others as stored.
                    let mut as_stored = source.clone();
                    if source.activity_id == stored.activity_id {
                        as_stored.labels = stored.labels.clone();
                    }
                    changes.extend(retro::decide_again_with(
                        &policy,
                        &as_stored,
                        &source.labels,
                        &labels.of_source(source),
                        retro::source_override(source),
                        &never_sync,
                    ));
                }
                let applied = store.apply_mailbox_changes(&user.email, &changes)?;
                Ok(LabelOutcome::Changed(
                    (applied.visibility_changed + applied.sources_removed) as usize,
                ))
            })
            .await?;
            match outcome {
                LabelOutcome::Changed(count) => report.label_changes += count,
                LabelOutcome::Refetch(true) => to_fetch.push(AddedMessage {
                    id: change.id,
                    label_ids: change.label_ids,
                }),
                LabelOutcome::Refetch(false) => {}
            }
        }
        for chunk in to_fetch.chunks(super::BATCH_SIZE) {
            let mode = BatchMode {
                labels_known: true,
                ..BatchMode::default()
            };
            self.process_batch(chunk, mode, None, report).await?;
        }
        Ok(())
    }

    /// Compares the labels label rules name, as the mailbox has them now, with what the store
    /// keeps, and applies the differences as history's label changes: one `labels.list`
    /// and a `messages.list` per label. For a full sync, whose cursor skips whatever changed
    /// before it (on a first sync it finds nothing to change), and after a reload that
    /// names other labels.
    pub async fn reread_labels(&self, report: &mut SyncReport) -> Result<(), SyncError> {
        let wanted = rules::rule_label_names(&self.policy, &self.user);
        if !self.write || self.refetch_decided || wanted.is_empty() {
            return Ok(());
        }
        // Message id -> the ids of the rule labels it carries now.
        let mut carrying: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for label_id in self.client.label_ids_named(&wanted).await? {
            for id in self.list_labelled(&label_id).await? {
                carrying.entry(id).or_default().push(label_id.clone());
            }
        }
        let email = self.user.email.clone();
        let skip_rules = self.skip_label_rule_names();
        let (labelled, blocked) = with_store(&self.store, move |store| {
            let labelled = store.labelled_sources(&email, GMAIL_SOURCE)?;
            let blocked = if skip_rules.is_empty() {
                Vec::new()
            } else {
                store.blocked_by(&email, GMAIL_SOURCE, &skip_rules)?
            };
            Ok((labelled, blocked))
        })
        .await?;
        // Whatever carries a rule label now, or carried one when it was decided.
        let ids: BTreeSet<String> = carrying
            .keys()
            .cloned()
            .chain(labelled.into_iter().map(|source| source.source_id))
            .chain(blocked)
            .collect();
        let changes = ids
            .into_iter()
            .map(|id| LabelChange {
                label_ids: carrying.remove(&id).unwrap_or_default(),
                id,
            })
            .collect();
        self.apply_label_changes(changes, report).await
    }

    /// The names of the label rules whose action is skip (a decision blocked by one of them
    /// is forgotten once its label is gone).
    fn skip_label_rule_names(&self) -> Vec<String> {
        self.policy
            .rules
            .rules
            .iter()
            .filter(|rule| rule.matcher.is_label_rule() && rule.action == rules::Action::Skip)
            .map(|rule| rule.name.clone())
            .collect()
    }
}

/// What one label change did.
enum LabelOutcome {
    /// Sources changed or removed (0: nothing a label rule weighs changed).
    Changed(usize),
    /// Not stored; whether its decision was forgotten to fetch it again.
    Refetch(bool),
}
