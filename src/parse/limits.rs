//! How much one message may cost the parser ([`Limits`]), and how problems name a limit.

#[cfg(doc)]
use crate::parse::{Attachment, ParseError, parse_message};

/// How much one message may cost the parser. Every field bounds memory and time; the field
/// documentation says what happens to a message that goes over. `Limits::default()` is what
/// [`parse_message`] uses. Any value is accepted (zero included) without panicking; values
/// that make no sense, such as a zero `max_message_bytes`, make every message a
/// `parse_error`, so a configuration layer may want minimums.
///
/// What stays bounded without a field of its own: the subject (4 KiB), a file name (1 KiB),
/// the problems list (100 entries), addresses looked at (ten times `max_recipients`), and
/// the RFC 2047 decoding work per header line and per message (a fixed budget; a value over
/// it is used as written, not decoded). Decoded attachment bytes are hashed one part at a
/// time and never exceed the raw message, so hashing is bounded by `max_message_bytes` and
/// needs no limit of its own. Message ids, references and labels are bounded by
/// `max_header_bytes` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The whole raw message, in bytes (default 32 MiB). A larger message is not parsed at
    /// all: [`ParseError::TooLarge`], which becomes a `parse_error` decision; the rest of the
    /// mailbox carries on.
    pub max_message_bytes: usize,
    /// A header block, in bytes (default 1 MiB): the message's own and each MIME part's. In
    /// a larger block, header fields (a line with its continuation lines) are kept in order
    /// while they fit; a field that does not fit keeps the lines that still fit (its first
    /// line at least, or it is dropped), so a long folded address list keeps its first
    /// addresses; later fields that fit are kept too. A problem is noted. If none of From,
    /// To, Cc, Bcc, Subject, Date and Message-ID is among the message header fields that
    /// fit, the message is [`ParseError::UnreadableHeaders`].
    pub max_header_bytes: usize,
    /// Distinct addresses kept over From, To, Cc and Bcc together (default 10,000); later
    /// ones are dropped with a problem. At most ten times as many are looked at, duplicates
    /// included.
    pub max_recipients: usize,
    /// MIME nesting depth (default 64; the message itself is depth 0, its parts depth 1).
    /// A multipart at this depth is not opened: its parts are ignored with a problem, and
    /// structural conclusions (`calendar_only`) are not drawn. Values above 100 act as 100,
    /// the deepest `mailparse` can read.
    pub max_mime_depth: usize,
    /// MIME parts read, containers included and the message itself not counted (default
    /// 10,000). The message is cut before the first part over the limit, with a problem;
    /// the parts before it are read as usual.
    pub max_mime_parts: usize,
    /// `body_text`, in bytes of UTF-8 (default 1 MiB); cut on a character boundary, with a
    /// problem.
    pub max_body_text_bytes: usize,
    /// An HTML body part handed to the HTML-to-text conversion, in bytes (default 2 MiB); cut
    /// on a character boundary before conversion, with a problem. This is the most expensive
    /// step per byte: html2text builds a document tree that can take 100 to 200 times the
    /// input in memory (wide tables are the worst), so this limit is the one to lower when
    /// memory is tight.
    pub max_html_bytes: usize,
    /// Attachments up to this many decoded bytes keep their content in
    /// [`Attachment::content`] (default 0: none). Not a `[limits]` key: set from `[store]
    /// max_attachment_bytes` when `attachments_dir` is configured. Kept content never exceeds
    /// the raw message, so memory stays bounded by `max_message_bytes`.
    #[serde(skip)]
    pub keep_attachment_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 32 * 1024 * 1024,
            max_header_bytes: 1024 * 1024,
            max_recipients: 10_000,
            max_mime_depth: 64,
            max_mime_parts: 10_000,
            max_body_text_bytes: 1024 * 1024,
            max_html_bytes: 2 * 1024 * 1024,
            keep_attachment_bytes: 0,
        }
    }
}

impl Limits {
    /// The nesting depth actually enforced: `mailparse` gives up on a whole message that
    /// has a multipart at depth 100, so such containers are always disabled before it runs.
    pub(super) fn mime_depth(&self) -> usize {
        self.max_mime_depth.min(MAILPARSE_MAX_DEPTH)
    }

    /// Mailboxes looked at, duplicates included, so that a message made of a million copies
    /// of one address is not parsed to the end.
    pub(super) fn addresses_scanned(&self) -> usize {
        self.max_recipients.saturating_mul(10)
    }
}

/// `mailparse` reads multipart containers down to depth 99, so their children sit at depth
/// 100 at most; one level more and it rejects the whole message.
const MAILPARSE_MAX_DEPTH: usize = 100;

/// `1 MiB`, `4 KiB` or `1000 bytes`: a limit as problems name it.
pub(super) fn size_label(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_deserialize_with_defaults() {
        let limits: Limits = toml::from_str("max_recipients = 5").expect("reads");
        assert_eq!(limits.max_recipients, 5);
        assert_eq!(
            limits.max_message_bytes,
            Limits::default().max_message_bytes
        );
        assert!(toml::from_str::<Limits>("max_recipient = 5").is_err());
        assert_eq!(size_label(1024 * 1024), "1 MiB");
        assert_eq!(size_label(4096), "4 KiB");
        assert_eq!(size_label(1000), "1000 bytes");
    }
}
