//! What makes two copies one message, for every backend: the Message-ID (or the raw bytes'
//! hash when there is none), unless the content differs. Copies differ in transport headers
//! (Received, Delivered-To, labels), so raw bytes cannot tell "the same message" from
//! "another message with the same Message-ID"; sender, date, subject, body and attachments
//! can.

use super::{MessageToStore, StoreError};

/// The key an activity is stored under, and the fingerprint of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageIdentity {
    /// The Message-ID as written, or `sha256:<hex>` of the raw bytes when there is none.
    pub message_key: String,
    pub fingerprint: String,
    /// The conversation's key (`ParsedMessage::conversation`, else the message's own key).
    pub conversation: String,
}

impl MessageIdentity {
    pub fn of(message: &MessageToStore<'_>) -> Result<MessageIdentity, StoreError> {
        let parsed = message.parsed;
        let message_key = match &parsed.message_id {
            Some(id) => id.clone(),
            None => format!(
                "sha256:{}",
                message.raw_sha256.ok_or(StoreError::MissingMessage)?
            ),
        };
        Ok(MessageIdentity {
            conversation: parsed
                .conversation()
                .map_or_else(|| message_key.clone(), str::to_string),
            message_key,
            fingerprint: content_fingerprint(parsed),
        })
    }

    /// Whether an activity stored with `stored_fingerprint` under the same key holds this
    /// message. The same Message-ID with different content is a different message (a
    /// forgery, or a broken client): merging them would show one's content under the
    /// other's visibility.
    pub fn same_content(&self, stored_fingerprint: &str) -> bool {
        self.fingerprint == stored_fingerprint
    }

    /// How a decision row names its conversation: a SHA-256, so that the decision log of a
    /// skipped copy, which keeps no address and no subject, keeps no Message-ID either.
    pub fn conversation_hash(&self) -> String {
        conversation_hash(&self.conversation)
    }

    /// The key of a message that reuses another's Message-ID: the ID and its fingerprint.
    pub fn distinct_key(&self) -> String {
        format!("{}#{}", self.message_key, &self.fingerprint[..16])
    }
}

/// [`MessageIdentity::conversation_hash`] of a conversation key.
pub fn conversation_hash(conversation: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(conversation.as_bytes()))
}

fn content_fingerprint(parsed: &crate::parse::ParsedMessage) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for mailbox in &parsed.from {
        hasher.update(mailbox.address.as_bytes());
        hasher.update([0]);
    }
    hasher.update([1]);
    hasher.update(
        parsed
            .date
            .map(|date| date.timestamp())
            .unwrap_or_default()
            .to_be_bytes(),
    );
    for part in [&parsed.subject, &parsed.body_text] {
        hasher.update(part.as_deref().unwrap_or("").as_bytes());
        hasher.update([1]);
    }
    for attachment in &parsed.attachments {
        hasher.update(attachment.sha256.as_bytes());
    }
    hex::encode(hasher.finalize())
}
