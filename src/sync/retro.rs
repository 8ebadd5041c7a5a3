//! Retroactive rules: the stored activities decided again against the current rules, as the
//! spec asks on every reload: an activity a `skip` rule now matches is removed; visibility is
//! recomputed. Run by `mailsync rules apply` and by the daemon after each reload.

use crate::rules::{self, Policy, Recheck};
use crate::store::{AppliedChanges, SourceChange, Store, StoreError};

/// What would change, and (unless a dry run) what did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesApplied {
    pub changes: Vec<SourceChange>,
    pub applied: Option<AppliedChanges>,
}

/// The changes the current rules (and never-sync contacts) make to the stored sources; pure
/// apart from reading.
pub fn plan(policy: &Policy, store: &dyn Store) -> Result<Vec<SourceChange>, StoreError> {
    plan_with_never_sync(policy, store, &[])
}

/// As [`plan`], as if `also_never_sync` were marked never-sync too: the preview of
/// `contacts set --no-sync --dry-run`.
pub fn plan_with_never_sync(
    policy: &Policy,
    store: &dyn Store,
    also_never_sync: &[String],
) -> Result<Vec<SourceChange>, StoreError> {
    let never_sync_hashes: std::collections::HashSet<String> = store
        .never_sync_addresses()?
        .iter()
        .chain(also_never_sync)
        .map(|address| rules::address_hash(address))
        .collect();
    let mut changes = Vec::new();
    for source in store.stored_sources()? {
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
            Recheck::Blocked { rules } => changes.push(SourceChange::Remove { source, rules }),
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
    Ok(changes)
}

/// Plans and, unless `dry_run`, applies in one transaction.
pub fn apply(
    policy: &Policy,
    store: &mut dyn Store,
    dry_run: bool,
) -> Result<RulesApplied, StoreError> {
    let changes = plan(policy, store)?;
    let applied = if dry_run || changes.is_empty() {
        None
    } else {
        Some(store.apply_source_changes(&changes)?)
    };
    Ok(RulesApplied { changes, applied })
}
