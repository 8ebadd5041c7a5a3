//! Retroactive rules: the stored activities decided again against the current rules, as the
//! spec asks on every reload: an activity a `skip` rule now matches is removed; visibility is
//! recomputed. Run by `mailsync rules apply` and by the daemon after each reload.

use std::collections::HashMap;

use crate::rules::{self, Policy, Reason, Recheck};
use crate::store::{AppliedChanges, SourceChange, Store, StoreError, StoredSource};

/// What would change, and (unless a dry run) what did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesApplied {
    pub changes: Vec<SourceChange>,
    /// What `changes` do, counted before anything is written (what a dry run reports).
    pub planned: AppliedChanges,
    pub applied: Option<AppliedChanges>,
}

/// The changes to the stored sources, and what they add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<SourceChange>,
    /// The counts applying `changes` would report: an activity is removed when every one of
    /// its sources is.
    pub counts: AppliedChanges,
}

/// The changes the current rules (and never-sync contacts) make to the stored sources; pure
/// apart from reading.
pub fn plan(policy: &Policy, store: &dyn Store) -> Result<Plan, StoreError> {
    plan_with_never_sync(policy, store, &[])
}

/// As [`plan`], as if `also_never_sync` were marked never-sync too: the preview of
/// `contacts set --no-sync --dry-run`.
pub fn plan_with_never_sync(
    policy: &Policy,
    store: &dyn Store,
    also_never_sync: &[String],
) -> Result<Plan, StoreError> {
    let never_sync_hashes: std::collections::HashSet<String> = store
        .never_sync_addresses()?
        .iter()
        .chain(also_never_sync)
        .map(|address| rules::address_hash(address))
        .collect();
    let mut changes = Vec::new();
    // Sources per activity, and of those the ones removed: an activity goes with its last.
    let mut sources_of_activity: HashMap<i64, (u64, u64)> = HashMap::new();
    let sources = store.stored_sources()?;
    let labels = LabelsByConversation::of(&sources);
    for source in sources {
        sources_of_activity.entry(source.activity_id).or_default().0 += 1;
        let conversation_labels = labels.of_source(&source);
        match decide_again_with(
            policy,
            &source,
            &source.labels,
            &conversation_labels,
            source_override(&source),
            &never_sync_hashes,
        ) {
            Some(change @ SourceChange::Remove { .. }) => {
                sources_of_activity.entry(source.activity_id).or_default().1 += 1;
                changes.push(change)
            }
            Some(change) => changes.push(change),
            None => {}
        }
    }
    let sources_removed = sources_of_activity
        .values()
        .map(|(_, removed)| removed)
        .sum();
    let counts = AppliedChanges {
        sources_removed,
        activities_removed: sources_of_activity
            .values()
            .filter(|(total, removed)| removed == total)
            .count() as u64,
        visibility_changed: changes.len() as u64 - sources_removed,
    };
    Ok(Plan { changes, counts })
}

/// Plans and, unless `dry_run`, applies in one transaction.
pub fn apply(
    policy: &Policy,
    store: &dyn Store,
    dry_run: bool,
) -> Result<RulesApplied, StoreError> {
    let Plan { changes, counts } = plan(policy, store)?;
    let applied = if dry_run || changes.is_empty() {
        None
    } else {
        Some(store.apply_source_changes(&changes)?)
    };
    Ok(RulesApplied {
        changes,
        planned: counts,
        applied,
    })
}

/// The labels each mailbox's stored copies of each conversation carry: a label on one copy
/// counts for the whole conversation in that mailbox.
pub struct LabelsByConversation(HashMap<(String, String), Vec<String>>);

impl LabelsByConversation {
    pub fn of(sources: &[StoredSource]) -> Self {
        let mut labels: HashMap<(String, String), Vec<String>> = HashMap::new();
        for source in sources.iter().filter(|source| !source.labels.is_empty()) {
            let known = labels
                .entry((source.user_email.clone(), source.conversation.clone()))
                .or_default();
            for label in &source.labels {
                if !known.contains(label) {
                    known.push(label.clone());
                }
            }
        }
        LabelsByConversation(labels)
    }

    /// The labels that count for `source`: its own and its conversation's in its mailbox.
    pub fn of_source(&self, source: &StoredSource) -> Vec<String> {
        let mut labels = self
            .0
            .get(&(source.user_email.clone(), source.conversation.clone()))
            .cloned()
            .unwrap_or_default();
        labels.sort_unstable();
        labels
    }
}

/// The owner's override a stored source carries.
pub fn source_override(source: &StoredSource) -> Option<rules::Visibility> {
    (source.decided_by == rules::DecidedBy::Owner).then_some(source.visibility)
}

/// The change deciding a stored source again makes, if any, with the copy's own labels, the
/// labels that count for its conversation in its mailbox (its own included), and its owner's
/// choice: for rules changed, a label changed in Gmail, or an override set or undone.
pub fn decide_again_with(
    policy: &Policy,
    source: &StoredSource,
    own_labels: &[String],
    conversation_labels: &[String],
    owner_choice: Option<rules::Visibility>,
    never_sync_hashes: &std::collections::HashSet<String>,
) -> Option<SourceChange> {
    // A user who left the config keeps their stored mail until it is purged, and
    // colleagues may still see it: skip rules and never-sync contacts must reach it too.
    let mailbox = match policy.config.user_by_address(&source.user_email) {
        Some(user) => rules::Mailbox::User(user),
        None => rules::Mailbox::Departed {
            stored_visibility: source.visibility,
            stored_decided_by: source.decided_by,
        },
    };
    let stored = rules::StoredParties {
        parties: &source.parties,
        contacts: &source.contacts,
        facts: &source.facts,
        labels: conversation_labels,
        owner_choice,
    };
    match rules::recheck(policy, mailbox, stored, never_sync_hashes) {
        Recheck::Blocked { rules } => Some(SourceChange::Remove {
            source: source.clone(),
            reason: Reason::BlockedByRule,
            rules,
            labels: own_labels.to_vec(),
        }),
        Recheck::Keep {
            visibility,
            decided_by,
            rules,
        } if visibility != source.visibility
            || decided_by != source.decided_by
            || own_labels != source.labels.as_slice() =>
        {
            Some(SourceChange::SetVisibility {
                source: source.clone(),
                visibility,
                decided_by,
                labels: own_labels.to_vec(),
                rules,
            })
        }
        Recheck::Keep { .. } => None,
    }
}

/// The address hashes of contacts marked never-sync, which block like a skip rule.
pub fn never_sync_hashes(
    store: &dyn Store,
) -> Result<std::collections::HashSet<String>, StoreError> {
    Ok(store
        .never_sync_addresses()?
        .iter()
        .map(|address| rules::address_hash(address))
        .collect())
}
