//! Metadata-only capture (`capture = "metadata"`): nothing of a mailbox's subjects, bodies or
//! attachments is stored from the moment its user is switched (the store withholds them as
//! each message is recorded); what was stored before goes with `mailsync capture apply`,
//! after a `--dry-run` shows it. Content another mailbox captured in full stays: only
//! activities whose every source is a metadata-only mailbox are erased.

use crate::config::{Capture, Config};
use crate::store::{EraseSelection, Erased, Store, StoreError};

/// The mailboxes captured as metadata only, primary addresses.
pub fn metadata_mailboxes(config: &Config) -> Vec<String> {
    config
        .users
        .iter()
        .filter(|user| user.capture == Capture::Metadata)
        .map(|user| user.email.clone())
        .collect()
}

/// Erases (or with `dry_run` counts) the content stored only from metadata-only mailboxes;
/// `None` when no mailbox is captured as metadata only.
pub fn apply(
    config: &Config,
    store: &dyn Store,
    dry_run: bool,
) -> Result<Option<Erased>, StoreError> {
    let mailboxes = metadata_mailboxes(config);
    if mailboxes.is_empty() {
        return Ok(None);
    }
    store
        .erase_content(&EraseSelection::OnlyFrom(mailboxes), dry_run)
        .map(Some)
}
