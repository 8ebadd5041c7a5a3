//! Retroactive rules: the stored activities decided again against the current rules, as the
//! spec asks on every reload: an activity a `skip` rule now matches is removed; visibility is
//! recomputed. Run by `mailsync rules apply` and by the daemon after each reload.

use std::collections::HashMap;

use crate::rules::{self, Policy, Recheck};
use crate::store::{AppliedChanges, SourceChange, Store, StoreError};

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
    for source in store.stored_sources()? {
        sources_of_activity.entry(source.activity_id).or_default().0 += 1;
        // A user who left the config keeps their stored mail until it is purged, and
        // colleagues may still see it: skip rules and never-sync contacts must reach it too.
        let mailbox = match policy.config.user_by_address(&source.user_email) {
            Some(user) => rules::Mailbox::User(user),
            None => rules::Mailbox::Departed {
                stored_visibility: source.visibility,
            },
        };
        let stored = rules::StoredParties {
            parties: &source.parties,
            contacts: &source.contacts,
            facts: &source.facts,
        };
        match rules::recheck(policy, mailbox, stored, &never_sync_hashes) {
            Recheck::Blocked { rules } => {
                sources_of_activity.entry(source.activity_id).or_default().1 += 1;
                changes.push(SourceChange::Remove { source, rules })
            }
            Recheck::Keep { visibility, rules } if visibility != source.visibility => {
                changes.push(SourceChange::SetVisibility {
                    source,
                    visibility,
                    rules,
                })
            }
            Recheck::Keep { .. } => {}
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
