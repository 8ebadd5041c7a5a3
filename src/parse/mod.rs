//! Turns raw RFC 5322 bytes into the facts mailsync decides on. Pure: no I/O, never panics; problems are data.
//!
//! A message that cannot be read at all is a [`ParseError`] for that message alone: the
//! pipeline records it as a `parse_error` decision and the rest of the batch carries on.
//! Everything short of that is a best-effort parse whose `problems` say what was guessed,
//! repaired or dropped.
//!
//! The module wraps `mailparse` and adds the tolerance that real mailboxes need. Every rule
//! below is deliberate; the tests beside the code of each rule pin it down.
//!
//! * Errors: `parse_message` fails only when there is nothing to read (`Empty`), when the
//!   message is larger than `Limits::max_message_bytes` (`TooLarge`, nothing of it is read),
//!   or when the header block cannot be read at all, including a header block that carries
//!   none of From, To, Cc, Bcc, Subject, Date and Message-ID within `max_header_bytes`
//!   (`UnreadableHeaders`). Everything else is best effort and is described in `problems`,
//!   which never quote message content. Error messages never quote it either.
//! * Before the headers, a byte order mark, blank (whitespace-only) lines and one mbox
//!   `From ` separator line are skipped, and leading whitespace on the first header line is
//!   stripped. Bare-CR line ends (classic Mac OS) are read as line breaks. If the header
//!   block still cannot be parsed, it is repaired once (a stray CR at a line start, an
//!   indented line after a line without a colon).
//! * If the MIME structure cannot be read, the headers are still returned and the body facts
//!   stay empty. Part headers that begin with whitespace are repaired once before giving up.
//! * Body: the first text/plain leaf that is not an attachment (no `attachment` disposition
//!   and no file name); if it is blank, or there is none, the first such text/html leaf,
//!   converted with `html2text`. `None` when no such leaf exists or its text is blank.
//! * Attachments: every leaf other than the chosen body that has an `attachment` disposition
//!   or a file name, or whose type is neither `text/*` nor `multipart/*`.
//! * `calendar_only` is true when the MIME tree was read completely, contains at least one
//!   text/calendar or application/ics leaf, and every other leaf is a text/plain or text/html
//!   leaf without attachment disposition or file name that sits inside a multipart/alternative
//!   which also holds a calendar leaf. Such text is the calendar system's rendering of the
//!   invitation (Google Calendar and Outlook both send exactly that shape); any other text,
//!   such as a note typed next to a forwarded invitation, makes it false.
//! * Attachment content is transfer-decoded; base64 that `mailparse` rejects is decoded
//!   leniently (stray characters skipped) rather than hashed raw, since the decoded bytes are
//!   what every mail client shows. Broken quoted-printable falls back to the raw bytes.
//! * Text charsets: a missing or US-ASCII charset on valid UTF-8 is read as UTF-8, other 8-bit
//!   text without a charset as windows-1252; an unknown charset is noted and read the same way.
//!   Invalid UTF-8 in a UTF-8 part is replaced and noted. NUL characters are removed from the
//!   body text (noted); attachment content is hashed as it is. In headers, 8-bit values that
//!   are not UTF-8 are read as Latin-1 (noted when they hold bytes that are control
//!   characters in Latin-1), and an encoded word left undecoded in the subject or a display
//!   name (unknown charset or broken encoding) is noted.
//! * Control characters never reach one-line fields: display names, subjects and labels have
//!   them replaced by spaces (so an encoded CR LF cannot start a new line anywhere the name is
//!   shown), file names and addresses have them removed, and message ids keep none but tab.
//!   File names keep path separators and `..`: they are data to show, never paths to open.
//! * Message-ID keeps the first `<...>` token as written; In-Reply-To and References keep every
//!   `<...>` token (deduplicated), or, when a value has none, its bare tokens that hold an `@`.
//! * X-Gmail-Labels is decoded first (Takeout puts non-ASCII labels in encoded words), then
//!   split on commas outside double quotes, with backslash escapes (`\'`) undone.
//! * Work and memory are bounded by [`Limits`] (whose fields say what happens at each limit)
//!   and by fixed caps: header decoding that would be quadratic inside `mailparse` is replaced
//!   by a plain reading, per line and per message; the MIME structure is held to the depth,
//!   part and header limits before `mailparse` builds its tree (`MimeBounds`); HTML input is
//!   capped and deeply nested HTML is stripped instead of rendered.
//! * Panics inside the dependencies are caught and become problems (or, outside the MIME stage,
//!   an `UnreadableHeaders` error). The default panic hook still prints the panic message to
//!   stderr, and `panic = "abort"` would defeat the guard.
//!
//! Layout: `entry` runs the stages in order for [`parse_message`]: `headers` (the header
//! block and the values read from it), `addresses`, `labels` (also read on their own by
//! [`gmail_labels`]) and `mime` (body, attachments, calendar shape). `problems`, `limits`,
//! `message`, `lines` and `text` serve them all and use none of them.

mod addresses;
mod entry;
mod headers;
mod labels;
mod limits;
mod lines;
mod message;
mod mime;
mod problems;
#[cfg(test)]
mod test_support;
mod text;

pub use entry::{parse_message, parse_message_with};
pub use labels::{gmail_labels, gmail_labels_with};
pub use limits::Limits;
pub use message::{Attachment, AutomationSignals, Mailbox, ParseError, ParsedMessage};
