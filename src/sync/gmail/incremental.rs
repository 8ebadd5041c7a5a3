//! The incremental sync: history from the cursor, page by page, each page written with the
//! cursor it reached.

use std::collections::HashSet;

use super::batch::BatchMode;
use super::store_access::with_store_quick;
use super::{BATCH_SIZE, MailboxSync, SyncError, SyncReport};
use crate::store::Cursor;

impl MailboxSync {
    /// Reads history from `start` page by page; each page's messages are written with the
    /// cursor that page reached.
    pub async fn incremental(&self, start: u64) -> Result<SyncReport, SyncError> {
        self.confirm_mailbox().await?;
        let mut report = SyncReport::default();
        let mut page_token: Option<String> = None;
        let mut reached = start;
        loop {
            self.check_cancelled()?;
            let page = self.client.history(start, page_token.as_deref()).await?;
            let last_page = page.next_page_token.is_none();
            if let Some(id) = page.last_record_id {
                reached = reached.max(id);
            }
            if last_page && let Some(current) = page.history_id {
                reached = reached.max(current);
            }
            report.seen += page.added.len();
            let mut added = page.added;
            let mut seen_on_page = HashSet::new();
            added.retain(|message| seen_on_page.insert(message.id.clone()));
            let cursor = Cursor {
                user_email: self.user.email.clone(),
                history_id: reached.to_string(),
            };
            for chunk in added.chunks(BATCH_SIZE) {
                self.check_cancelled()?;
                let mode = BatchMode {
                    labels_known: true,
                    ..BatchMode::default()
                };
                self.process_batch(chunk, mode, None, &mut report).await?;
            }
            // After the page's new messages are stored (a label change may be about one of
            // them), before its cursor moves: until then a restart reads the page again,
            // skips what is decided, and applies the label changes again, which changes
            // nothing the second time.
            self.apply_label_changes(page.label_changes, &mut report)
                .await?;
            if self.write && (reached > start || !added.is_empty()) {
                with_store_quick(&self.store, move |store| {
                    store.record_all(&[], Some(&cursor)).map(|_| ())
                })
                .await?;
            }
            match page.next_page_token {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        report.history_id = Some(reached.to_string());
        Ok(report)
    }
}
