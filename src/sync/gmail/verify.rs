//! Reconciliation: what Gmail lists in the window and was never decided.

use super::batch::BatchMode;
use super::store_access::with_store;
use super::{BATCH_SIZE, MailboxSync, SyncError, SyncReport, VerifyReport};
use crate::gmail::client::AddedMessage;
use crate::source::GMAIL_SOURCE;

impl MailboxSync {
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
}
