//! The incremental sync: history from the cursor, page by page, each page written with the
//! cursor it reached.

use std::collections::HashSet;

use super::batch::BatchMode;
use super::store_access::with_store_quick;
use super::{BATCH_SIZE, MailboxSync, SyncError, SyncReport};
use crate::gmail::client::AddedMessage;
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
            // Before the page's cursor is written, so that a crash reads them again.
            self.apply_label_changes(page.label_changes, &seen_on_page, &mut report)
                .await?;
            let cursor = Cursor {
                user_email: self.user.email.clone(),
                history_id: reached.to_string(),
            };
            let chunks: Vec<&[AddedMessage]> = added.chunks(BATCH_SIZE).collect();
            if chunks.is_empty() {
                if self.write && reached > start {
                    with_store_quick(&self.store, move |store| {
                        store.record_all(&[], Some(&cursor)).map(|_| ())
                    })
                    .await?;
                }
            } else {
                let count = chunks.len();
                for (index, chunk) in chunks.into_iter().enumerate() {
                    self.check_cancelled()?;
                    // Only the page's last batch carries the cursor: until it is written, a
                    // restart reads the page again and skips what is decided.
                    let cursor = (index + 1 == count).then(|| cursor.clone());
                    let mode = BatchMode {
                        labels_known: true,
                        ..BatchMode::default()
                    };
                    self.process_batch(chunk, mode, cursor, &mut report).await?;
                }
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
