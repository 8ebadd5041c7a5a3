//! What a parse yields: a [`ParsedMessage`] and its parts, or a [`ParseError`] when there is
//! nothing to read.

#[cfg(doc)]
use crate::parse::Limits;

/// One mailbox from an address header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mailbox {
    pub display_name: Option<String>,
    /// Lower-cased, trimmed, as written otherwise.
    pub address: String,
}

/// One attachment, described by its decoded content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attachment {
    pub file_name: Option<String>,
    /// Lower-case mime type, no params.
    pub content_type: String,
    /// Decoded size.
    pub size_bytes: u64,
    /// Lower hex of the SHA-256 of the decoded content.
    pub sha256: String,
    /// The decoded content, kept only when [`Limits::keep_attachment_bytes`] allows (for a
    /// store that keeps attachment content); never serialized.
    #[serde(skip)]
    pub content: Option<Vec<u8>>,
}

/// Header and structure facts that tell machine-sent mail from mail a person wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AutomationSignals {
    pub list_id: bool,
    pub list_unsubscribe: bool,
    /// Precedence: bulk|list|junk.
    pub precedence_bulk: bool,
    /// Auto-Submitted present and not "no".
    pub auto_submitted: bool,
    /// See the [module documentation](crate::parse) for the exact rule.
    pub calendar_only: bool,
}

impl AutomationSignals {
    /// Bulk or machine-sent mail: any list or auto-submission header (calendar-only is a
    /// separate question).
    pub fn is_automated(&self) -> bool {
        self.list_id || self.list_unsubscribe || self.precedence_bulk || self.auto_submitted
    }

    /// The headers that made the message automated, for `explain`.
    pub fn reasons(&self) -> Vec<&'static str> {
        [
            (self.list_id, "List-Id"),
            (self.list_unsubscribe, "List-Unsubscribe"),
            (self.precedence_bulk, "Precedence"),
            (self.auto_submitted, "Auto-Submitted"),
        ]
        .into_iter()
        .filter_map(|(present, header)| present.then_some(header))
        .collect()
    }
}

/// Everything mailsync needs to know about one message.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParsedMessage {
    pub from: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    /// RFC 2047 decoded, whitespace-unfolded.
    pub subject: Option<String>,
    pub date: Option<chrono::DateTime<chrono::Utc>>,
    /// The header value trimmed, with its angle brackets, as written (not lower-cased).
    pub message_id: Option<String>,
    /// Msg-ids with angle brackets.
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// The text/plain part; else HTML converted to text; None if neither.
    pub body_text: Option<String>,
    pub attachments: Vec<Attachment>,
    /// X-Gmail-Labels (Google Takeout): comma-separated, trimmed, surrounding double quotes removed.
    pub gmail_labels: Vec<String>,
    pub automation: AutomationSignals,
    /// Best-effort notes. They name a header or a part, never addresses, subject or body text.
    pub problems: Vec<String>,
}

impl ParsedMessage {
    /// The conversation this message belongs to, the same in every mailbox
    /// (docs/spec/decisions.md, "Conversations"): the first Message-ID of its References,
    /// else its In-Reply-To, else its own Message-ID. `None` for a message with none of them,
    /// whose conversation is its own key.
    pub fn conversation(&self) -> Option<&str> {
        self.references
            .first()
            .or(self.in_reply_to.first())
            .or(self.message_id.as_ref())
            .map(String::as_str)
    }
}

/// Why a message could not be read at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("message is empty")]
    Empty,
    /// The string never contains message content.
    #[error("message headers are unreadable: {0}")]
    UnreadableHeaders(String),
    /// The raw message is larger than `Limits::max_message_bytes`; nothing of it was read.
    #[error("message is {bytes} bytes, over the {limit}-byte limit ([limits] max_message_bytes)")]
    TooLarge { bytes: usize, limit: usize },
}
