//! Turns raw RFC 5322 bytes into the facts mailsync decides on. Pure: no I/O, never panics; problems are data.
//!
//! The module wraps `mailparse` and adds the tolerance that real mailboxes need. Every rule
//! below is deliberate; the tests at the bottom of this file pin each one down.
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

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mailparse::body::Body;
use mailparse::{DispositionType, MailHeader, MailParseError, ParsedMail};
use sha2::{Digest, Sha256};

mod addresses;
mod headers;
mod labels;
mod limits;
mod lines;
mod message;
mod problems;
#[cfg(test)]
mod test_support;
mod text;

pub use labels::{gmail_labels, gmail_labels_with};
pub use limits::Limits;
pub use message::{Attachment, AutomationSignals, Mailbox, ParseError, ParsedMessage};

use addresses::{AddressBudget, addresses_for};
use headers::{
    DecodeBudget, HeaderBlock, HeaderFields, auto_submitted_is_set, date_from, fit_header_fields,
    limit_header_block, message_id_from, msg_ids_from, normalize_bare_cr, precedence_is_bulk,
    repair_header_lines, strip_preamble, subject_from,
};
use labels::labels_from_headers;
use limits::size_label;
use lines::{next_newline, split_first_line, trim_start_wsp};
use problems::Problems;
use text::truncate_on_char_boundary;

/// html2text's time grows with the square of the element nesting depth (10,000 nested
/// elements take half a second, 100,000 take a minute), so deeper HTML is tag-stripped.
const MAX_HTML_NESTING: usize = 2_000;
const HTML_WIDTH: usize = 100;
const MAX_FILE_NAME_BYTES: usize = 1024;
/// RFC 2046 limits a boundary to 70 characters; far longer ones only serve to make
/// `mailparse`'s boundary search slow.
const MAX_BOUNDARY_BYTES: usize = 200;
/// Parses one message with the default [`Limits`]. See the module documentation for the rules.
pub fn parse_message(raw: &[u8]) -> Result<ParsedMessage, ParseError> {
    parse_message_with(raw, &Limits::default())
}

/// Parses one message within `limits`. See the module documentation for the rules.
pub fn parse_message_with(raw: &[u8], limits: &Limits) -> Result<ParsedMessage, ParseError> {
    // The dependencies are not known to panic on any input, but a daemon must not die on one
    // odd message, so a panic that escapes the finer-grained guards below becomes an error.
    match catch_unwind(AssertUnwindSafe(|| parse_message_inner(raw, limits))) {
        Ok(result) => result,
        Err(_) => Err(ParseError::UnreadableHeaders(
            "internal error while reading the headers".to_string(),
        )),
    }
}

fn parse_message_inner(raw: &[u8], limits: &Limits) -> Result<ParsedMessage, ParseError> {
    if raw.is_empty() {
        return Err(ParseError::Empty);
    }
    if raw.len() > limits.max_message_bytes {
        return Err(ParseError::TooLarge {
            bytes: raw.len(),
            limit: limits.max_message_bytes,
        });
    }
    let mut problems = Problems::default();
    let converted = normalize_bare_cr(raw, &mut problems);
    let start = strip_preamble(&converted, &mut problems);
    if start.is_empty() {
        return Err(ParseError::Empty);
    }
    let (limited, headers_dropped) =
        limit_header_block(start, limits.max_header_bytes, &mut problems);
    let block = HeaderBlock::read(&limited, &mut problems)?;
    let headers = match mailparse::parse_headers(&block.bytes) {
        Ok((headers, _)) => headers,
        Err(_) => {
            return Err(ParseError::UnreadableHeaders(
                "the header block could not be parsed".to_string(),
            ));
        }
    };
    let fields = HeaderFields::collect(&headers);
    if !fields.looks_like_mail() {
        let message = if headers_dropped {
            format!(
                "none of From, To, Cc, Bcc, Subject, Date or Message-ID is among the header \
                 fields that fit the {}-byte limit ([limits] max_header_bytes)",
                limits.max_header_bytes
            )
        } else {
            "none of From, To, Cc, Bcc, Subject, Date or Message-ID is present".to_string()
        };
        return Err(ParseError::UnreadableHeaders(message));
    }

    let mut decode = DecodeBudget::default();
    let mut budget = AddressBudget::new(limits);
    let mut fields_of = |headers: &[&MailHeader], name: &'static str| {
        addresses_for(headers, name, &mut budget, &mut decode, &mut problems)
    };
    let from = fields_of(&fields.from, "from");
    let to = fields_of(&fields.to, "to");
    let cc = fields_of(&fields.cc, "cc");
    let bcc = fields_of(&fields.bcc, "bcc");

    let subject = fields
        .subject
        .map(|h| subject_from(h, &mut decode, &mut problems));
    let date = fields
        .date
        .and_then(|h| date_from(h, &mut decode, &mut problems));
    let message_id = fields.message_id.and_then(message_id_from);
    let in_reply_to = msg_ids_from(&fields.in_reply_to, "in-reply-to", &mut problems);
    let references = msg_ids_from(&fields.references, "references", &mut problems);
    let gmail_labels = labels_from_headers(&fields.gmail_labels, &mut decode, &mut problems);

    let mime = match catch_unwind(AssertUnwindSafe(|| {
        let mut mime_problems = Problems::default();
        let facts = read_mime(&block.bytes, limits, &mut mime_problems);
        (facts, mime_problems)
    })) {
        Ok((facts, mime_problems)) => {
            problems.absorb(mime_problems);
            facts
        }
        Err(_) => {
            problems.note(
                "internal error while reading the MIME structure; body and attachments skipped",
            );
            MimeFacts::default()
        }
    };

    let automation = AutomationSignals {
        list_id: !fields.list_id.is_empty(),
        list_unsubscribe: !fields.list_unsubscribe.is_empty(),
        precedence_bulk: fields.precedence.is_some_and(precedence_is_bulk),
        auto_submitted: fields.auto_submitted.is_some_and(auto_submitted_is_set),
        calendar_only: mime.calendar_only,
    };

    Ok(ParsedMessage {
        from,
        to,
        cc,
        bcc,
        subject,
        date,
        message_id,
        in_reply_to,
        references,
        body_text: mime.body_text,
        attachments: mime.attachments,
        gmail_labels,
        automation,
        problems: problems.into_vec(),
    })
}

#[derive(Default)]
struct MimeFacts {
    body_text: Option<String>,
    attachments: Vec<Attachment>,
    calendar_only: bool,
}

fn mime_error_kind(e: &MailParseError) -> &'static str {
    // Only the error kind is reported; mailparse's generic messages are fixed strings.
    match e {
        MailParseError::Generic(message) => message,
        MailParseError::QuotedPrintableDecodeError(_) => "quoted-printable error",
        MailParseError::Base64DecodeError(_) => "base64 error",
        MailParseError::EncodingError(_) => "encoding error",
    }
}

fn read_mime(buf: &[u8], limits: &Limits, problems: &mut Problems) -> MimeFacts {
    let defanged = defang_costly_mime_lines(buf);
    if defanged.is_some() {
        problems.note("pathological MIME header line neutralised before parsing");
    }
    let source: &[u8] = defanged.as_deref().unwrap_or(buf);

    let bounded = MimeBounds::apply(source, limits);
    let bounded_source: &[u8] = bounded.bytes.as_deref().unwrap_or(source);
    let repaired_storage: Vec<u8>;
    let repaired_bounds: MimeBounds;
    let (parsed, bounds) = match mailparse::parse_mail(bounded_source) {
        Ok(parsed) => (parsed, &bounded),
        Err(first_error) => match repair_part_headers(source) {
            Some(repaired) => {
                // The repair can change the structure, so the bounds are worked out again.
                repaired_storage = repaired;
                repaired_bounds = MimeBounds::apply(&repaired_storage, limits);
                let repaired_source: &[u8] = repaired_bounds
                    .bytes
                    .as_deref()
                    .unwrap_or(&repaired_storage);
                match mailparse::parse_mail(repaired_source) {
                    Ok(parsed) => {
                        problems.note("MIME part headers repaired (whitespace at a part start)");
                        (parsed, &repaired_bounds)
                    }
                    Err(e) => {
                        problems.note(format!(
                            "MIME structure unreadable ({}); body and attachments skipped",
                            mime_error_kind(&e)
                        ));
                        return MimeFacts::default();
                    }
                }
            }
            None => {
                problems.note(format!(
                    "MIME structure unreadable ({}); body and attachments skipped",
                    mime_error_kind(&first_error)
                ));
                return MimeFacts::default();
            }
        },
    };
    if bounds.headers_trimmed {
        problems.note(format!(
            "MIME part header block larger than {}; header fields or lines that did not fit were dropped",
            size_label(limits.max_header_bytes)
        ));
    }
    if bounds.parts_cut {
        problems.note(format!(
            "more than {} MIME parts; the rest were ignored",
            limits.max_mime_parts
        ));
    }

    let mut walker = Walker {
        leaves: Vec::new(),
        alternative_has_calendar: Vec::new(),
        incomplete: bounds.parts_cut,
        base: parsed.raw_bytes.as_ptr() as usize,
        too_deep: &bounds.too_deep,
        max_depth: limits.mime_depth(),
        max_leaves: limits.max_mime_parts,
        problems,
    };
    let mut path = Vec::new();
    walker.walk(&parsed, &mut path, 0, None);
    let Walker {
        leaves,
        alternative_has_calendar,
        incomplete,
        problems,
        ..
    } = walker;

    let calendar_only = !incomplete && is_calendar_only(&leaves, &alternative_has_calendar);

    let is_inline_text = |leaf: &Leaf, mime: &str| {
        leaf.mime_or_text() == mime && !leaf.disposition_attachment && leaf.file_name.is_none()
    };
    let plain = leaves.iter().position(|l| is_inline_text(l, "text/plain"));
    let html = leaves.iter().position(|l| is_inline_text(l, "text/html"));

    let mut chosen = None;
    let mut body_text = None;
    if let Some(i) = plain
        && let Some(leaf) = leaves.get(i)
    {
        let text = part_text(leaf, problems);
        if !text.trim().is_empty() {
            chosen = Some(i);
            body_text = Some(text);
        }
    }
    if chosen.is_none()
        && let Some(i) = html
        && let Some(leaf) = leaves.get(i)
    {
        let html_source = part_text(leaf, problems);
        let text = html_to_text(html_source, limits, &leaf.path, problems);
        if !text.trim().is_empty() {
            body_text = Some(text);
        }
        chosen = Some(i);
    }
    if chosen.is_none() {
        chosen = plain;
    }
    if let Some(text) = body_text.as_mut() {
        if text.contains('\0') {
            text.retain(|c| c != '\0');
            problems.note("NUL characters removed from body text");
        }
        if truncate_on_char_boundary(text, limits.max_body_text_bytes) {
            problems.note(format!(
                "body text truncated to {}",
                size_label(limits.max_body_text_bytes)
            ));
        }
    }
    let body_text = body_text.filter(|text| !text.trim().is_empty());

    let mut attachments = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        if Some(i) == chosen {
            continue;
        }
        let mime = leaf.mime_or_text();
        let is_attachment = leaf.disposition_attachment
            || leaf.file_name.is_some()
            || !(mime.starts_with("text/") || mime.starts_with("multipart/"));
        if !is_attachment {
            continue;
        }
        let content_type = match &leaf.mime {
            Some(m) => m.clone(),
            None => {
                problems.note(format!(
                    "invalid content type in part {}; reported as application/octet-stream",
                    leaf.path
                ));
                "application/octet-stream".to_string()
            }
        };
        let bytes = part_bytes(leaf, problems);
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let size_bytes = bytes.len() as u64;
        let keep = limits.keep_attachment_bytes > 0 && bytes.len() <= limits.keep_attachment_bytes;
        attachments.push(Attachment {
            file_name: leaf.file_name.clone(),
            content_type,
            size_bytes,
            sha256,
            content: keep.then_some(bytes),
        });
    }

    MimeFacts {
        body_text,
        attachments,
        calendar_only,
    }
}

/// Applies `repair_header_lines` to every part header block, that is to the lines after each
/// line that starts with `--` (a boundary candidate). Returns None when nothing changed.
fn repair_part_headers(buf: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(buf.len());
    let mut changed = false;
    let mut rest = buf;
    loop {
        let (line, next) = split_first_line(rest);
        out.extend_from_slice(line);
        let Some(next) = next else { break };
        out.push(b'\n');
        rest = next;
        if line.starts_with(b"--") {
            // Repair only the header block of this part; the repair stops at its blank line.
            let block_len = header_block_extent(rest);
            let block = rest.get(..block_len).unwrap_or(rest);
            let needs = matches!(block.first(), Some(b' ' | b'\t' | b'\r'))
                || mailparse::parse_headers(block).is_err();
            if needs {
                let fixed = repair_header_lines(block);
                if fixed != block {
                    changed = true;
                    out.extend_from_slice(&fixed);
                    rest = rest.get(block_len..).unwrap_or(&[]);
                }
            }
        }
    }
    if changed { Some(out) } else { None }
}

/// The length of the header block at the start of `s`: up to, not including, the first blank
/// line or the next boundary candidate. A whitespace-only first line is included, since the
/// repair turns it into the blank line that ends the block.
fn header_block_extent(s: &[u8]) -> usize {
    let mut offset = 0;
    let mut rest = s;
    loop {
        let (line, next) = split_first_line(rest);
        let stripped = trim_start_wsp(line);
        if stripped.is_empty() || stripped == b"\r" {
            if offset == 0 && !line.is_empty() && line != b"\r" {
                offset += line.len() + usize::from(next.is_some());
            }
            return offset;
        }
        if line.starts_with(b"--") {
            return offset;
        }
        offset += line.len() + usize::from(next.is_some());
        match next {
            Some(n) => rest = n,
            None => return offset,
        }
    }
}

/// Keeps what `mailparse::parse_mail` builds within `Limits`, before it runs. `mailparse`
/// builds the whole MIME tree at once, with a node per part and an entry per part header
/// field, so 30 MB of empty parts would cost it over a gigabyte; and it rejects a whole
/// message that nests multiparts more than 100 levels deep. One linear pass over the lines
/// follows the structure the way `mailparse` finds it (a part ends at the next line that
/// starts with the delimiter of its multipart or of any enclosing one, the outermost
/// winning; a delimiter followed by `--` closes its multipart) and rewrites the buffer where
/// a limit is reached:
///
/// * a part header block larger than `max_header_bytes` loses the fields that do not fit,
///   as `fit_header_fields` chooses;
/// * a multipart at the depth limit has its Content-Type header renamed, so that `mailparse`
///   reads it as a single leaf; its offset is kept, and the walker reports it as too deep
///   instead of reading it;
/// * the buffer is cut before the delimiter line of the first part over `max_mime_parts`.
///
/// Every delimiter line that opens a part is counted, which can only overcount the parts
/// `mailparse` builds. Ordinary mail needs none of this and is parsed from its own bytes.
struct MimeBounds {
    /// The rewritten buffer; None when nothing had to change.
    bytes: Option<Vec<u8>>,
    /// Offsets, in the buffer that is parsed, of the parts whose multipart Content-Type was
    /// disabled because of their depth.
    too_deep: HashSet<usize>,
    parts_cut: bool,
    headers_trimmed: bool,
}

impl MimeBounds {
    fn apply(buf: &[u8], limits: &Limits) -> MimeBounds {
        let mut pass = BoundsPass {
            buf,
            max_depth: limits.mime_depth(),
            max_parts: limits.max_mime_parts,
            max_header_bytes: limits.max_header_bytes,
            open: Vec::new(),
            parts: 0,
            edits: Vec::new(),
            skipped: 0,
            too_deep: HashSet::new(),
            parts_cut: false,
            headers_trimmed: false,
        };
        pass.run();
        let bytes = if pass.edits.is_empty() {
            None
        } else {
            Some(apply_edits(buf, &pass.edits))
        };
        MimeBounds {
            bytes,
            too_deep: pass.too_deep,
            parts_cut: pass.parts_cut,
            headers_trimmed: pass.headers_trimmed,
        }
    }
}

/// One change `BoundsPass` makes to the buffer.
enum Edit {
    /// Leave out `start..end`.
    Skip(usize, usize),
    /// Replace the byte at this position.
    Patch(usize, u8),
    /// Leave out everything from here on.
    Cut(usize),
}

impl Edit {
    fn position(&self) -> usize {
        match *self {
            Edit::Skip(start, _) | Edit::Patch(start, _) | Edit::Cut(start) => start,
        }
    }
}

/// A multipart whose parts are being read: its delimiter (`--` and the boundary), the
/// depth of the multipart itself, and whether its first delimiter has been seen.
struct OpenMultipart {
    delimiter: Vec<u8>,
    depth: usize,
    started: bool,
}

struct BoundsPass<'b> {
    buf: &'b [u8],
    max_depth: usize,
    max_parts: usize,
    max_header_bytes: usize,
    /// Enclosing multiparts, outermost first.
    open: Vec<OpenMultipart>,
    parts: usize,
    /// In buffer order.
    edits: Vec<Edit>,
    /// Bytes left out by the edits so far, to turn input offsets into output offsets.
    skipped: usize,
    too_deep: HashSet<usize>,
    parts_cut: bool,
    headers_trimmed: bool,
}

impl BoundsPass<'_> {
    fn run(&mut self) {
        let buf = self.buf;
        // The header block being read: where it starts, and the depth of its part.
        let mut header: Option<(usize, usize)> = Some((0, 0));
        let mut pos = 0;
        while pos < buf.len() {
            let end = next_newline(buf, pos).map_or(buf.len(), |lf| lf + 1);
            let line = buf.get(pos..end).unwrap_or(&[]);
            let delimiter_of = if line.starts_with(b"--") {
                self.open
                    .iter()
                    .position(|m| line.starts_with(&m.delimiter))
            } else {
                None
            };
            if let Some(index) = delimiter_of {
                if let Some((start, depth)) = header.take() {
                    self.finish_header(start, pos, depth, false);
                }
                let (delimiter_len, depth, started) = self
                    .open
                    .get(index)
                    .map_or((0, 0, true), |m| (m.delimiter.len(), m.depth, m.started));
                self.open.truncate(index + 1);
                if let Some(multipart) = self.open.last_mut() {
                    multipart.started = true;
                }
                // `mailparse` looks for the closing `--` only after a part: its first
                // delimiter always opens one.
                if started && line.get(delimiter_len..delimiter_len + 2) == Some(b"--") {
                    // The closing delimiter: what follows is the multipart's epilogue.
                    self.open.truncate(index);
                } else {
                    self.parts += 1;
                    if self.parts > self.max_parts {
                        self.edits
                            .push(Edit::Cut(without_line_end_before(buf, pos)));
                        self.parts_cut = true;
                        return;
                    }
                    header = Some((end, depth + 1));
                }
            } else if let Some((start, depth)) = header
                && (line == b"\n" || line == b"\r\n")
            {
                header = None;
                self.finish_header(start, pos, depth, true);
            }
            pos = end;
        }
        if let Some((start, depth)) = header {
            self.finish_header(start, buf.len(), depth, false);
        }
    }

    /// Handles the header block `start..end` of a part at `depth`: drops the fields over
    /// `max_header_bytes`, and opens the part's multipart or, at the depth limit, disables it.
    fn finish_header(&mut self, start: usize, end: usize, depth: usize, has_body: bool) {
        let buf = self.buf;
        let block = buf.get(start..end).unwrap_or(&[]);
        let mut local: Vec<Edit> = Vec::new();
        let mut content_type: Option<(usize, usize)> = None;
        let mut content_type_keys: Vec<usize> = Vec::new();
        let mut skip_run: Option<(usize, usize)> = None;
        let dropped = fit_header_fields(block, self.max_header_bytes, |from, kept_end, to| {
            if kept_end > from {
                if let Some((run_start, run_end)) = skip_run.take() {
                    local.push(Edit::Skip(start + run_start, start + run_end));
                }
                let field = block.get(from..kept_end).unwrap_or(&[]);
                if field
                    .get(..13)
                    .is_some_and(|key| key.eq_ignore_ascii_case(b"content-type:"))
                {
                    content_type.get_or_insert((from, kept_end));
                    content_type_keys.push(start + from);
                }
            }
            if kept_end < to {
                skip_run = Some(match skip_run {
                    Some((run_start, _)) => (run_start, to),
                    None => (kept_end, to),
                });
            }
        });
        if let Some((run_start, run_end)) = skip_run {
            local.push(Edit::Skip(start + run_start, start + run_end));
        }
        if dropped {
            self.headers_trimmed = true;
        }
        if has_body
            && let Some((from, to)) = content_type
            && let Some(boundary) = multipart_boundary(block.get(from..to).unwrap_or(&[]))
        {
            if depth >= self.max_depth {
                self.too_deep.insert(start - self.skipped);
                for key in content_type_keys {
                    // `Content-Type` becomes `Xontent-Type`, a header `mailparse` ignores.
                    local.push(Edit::Patch(key, b'X'));
                }
            } else {
                let mut delimiter = b"--".to_vec();
                delimiter.extend_from_slice(boundary.as_bytes());
                self.open.push(OpenMultipart {
                    delimiter,
                    depth,
                    started: false,
                });
            }
        }
        local.sort_by_key(Edit::position);
        for edit in local {
            if let Edit::Skip(from, to) = edit {
                self.skipped += to - from;
            }
            self.edits.push(edit);
        }
    }
}

/// The boundary of a Content-Type header field, read exactly as `mailparse` reads it, when
/// it declares a multipart.
fn multipart_boundary(field: &[u8]) -> Option<String> {
    let (header, _) = mailparse::parse_header(field).ok()?;
    let ctype = mailparse::parse_content_type(&header.get_value());
    if !ctype.mimetype.starts_with("multipart") {
        return None;
    }
    ctype.params.get("boundary").cloned()
}

/// `pos` moved back over the LF or CRLF that ends the line before it, which `mailparse`
/// counts as part of the delimiter rather than of the part before it.
fn without_line_end_before(buf: &[u8], pos: usize) -> usize {
    let mut p = pos;
    if p > 0 && buf.get(p - 1) == Some(&b'\n') {
        p -= 1;
        if p > 0 && buf.get(p - 1) == Some(&b'\r') {
            p -= 1;
        }
    }
    p
}

/// Copies `buf` with `edits` (in buffer order) applied.
fn apply_edits(buf: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len());
    let mut cursor = 0;
    for edit in edits {
        match *edit {
            Edit::Skip(from, to) => {
                if from >= cursor {
                    out.extend_from_slice(buf.get(cursor..from).unwrap_or(&[]));
                }
                cursor = cursor.max(to);
            }
            Edit::Patch(at, byte) => {
                if at >= cursor {
                    out.extend_from_slice(buf.get(cursor..at).unwrap_or(&[]));
                    out.push(byte);
                    cursor = at + 1;
                }
            }
            Edit::Cut(at) => {
                if at > cursor {
                    out.extend_from_slice(buf.get(cursor..at).unwrap_or(&[]));
                }
                return out;
            }
        }
    }
    out.extend_from_slice(buf.get(cursor..).unwrap_or(&[]));
    out
}

/// Finds MIME header lines that would make `mailparse` do unbounded work and returns a copy
/// with them neutralised, or None when there are none. `mailparse` decodes the values of
/// Content-Type, Content-Disposition and Content-Transfer-Encoding itself, so only lines that
/// start with `Content-` and indented lines (possible continuations) are looked at: their
/// encoded-word cost is checked (see `HEADER_DECODE_BUDGET` and `MESSAGE_DECODE_BUDGET`;
/// once the message's budget is spent, every later line with an encoded word is
/// neutralised), and a Content-Type boundary
/// longer than `MAX_BOUNDARY_BYTES` is renamed so that the part is read as a leaf.
fn defang_costly_mime_lines(buf: &[u8]) -> Option<Vec<u8>> {
    let mut costly: Vec<(usize, usize)> = Vec::new();
    let mut decode = DecodeBudget::default();
    let mut offset = 0;
    let mut rest = buf;
    loop {
        let (line, next) = split_first_line(rest);
        let is_content = line.len() >= 8
            && line
                .get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"content-"));
        let indented = matches!(line.first(), Some(b' ' | b'\t'));
        if (is_content || indented) && (!decode.allows(line) || has_long_boundary(line)) {
            costly.push((offset, line.len()));
        }
        offset += line.len() + 1;
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    if costly.is_empty() {
        return None;
    }
    let mut out = buf.to_vec();
    for (start, len) in costly {
        if let Some(line) = out.get_mut(start..start + len) {
            // `=?` becomes `=_`, which cannot start an encoded word.
            let mut from = 0;
            while let Some(i) = line
                .get(from..)
                .and_then(|rest| rest.iter().position(|&b| b == b'='))
            {
                let at = from + i;
                if let Some(b) = line.get_mut(at + 1)
                    && *b == b'?'
                {
                    *b = b'_';
                }
                from = at + 1;
            }
            neutralise_boundary(line);
        }
    }
    Some(out)
}

/// Finds `boundary=` (any case) in a line; returns where the key starts and how many bytes
/// its value has (without quotes).
fn boundary_value_range(line: &[u8]) -> Option<(usize, usize)> {
    const KEY: &[u8] = b"boundary=";
    // The first `=` that ends a `boundary` key; looking for the `=` first is what keeps
    // this cheap on long lines.
    let mut from = 0;
    let pos = loop {
        let eq = from + line.get(from..)?.iter().position(|&b| b == b'=')?;
        let key_start = (eq + 1).checked_sub(KEY.len());
        if let Some(key_start) = key_start
            && line
                .get(key_start..=eq)
                .is_some_and(|w| w.eq_ignore_ascii_case(KEY))
        {
            break key_start;
        }
        from = eq + 1;
    };
    let mut start = pos + KEY.len();
    let quoted = line.get(start) == Some(&b'"');
    if quoted {
        start += 1;
    }
    let tail = line.get(start..)?;
    let len = tail
        .iter()
        .position(|&b| {
            if quoted {
                b == b'"'
            } else {
                b == b';' || b.is_ascii_whitespace()
            }
        })
        .unwrap_or(tail.len());
    Some((pos, len))
}

fn has_long_boundary(line: &[u8]) -> bool {
    // A line too short to hold `boundary=` and a long value needs no search.
    line.len() > MAX_BOUNDARY_BYTES + b"boundary=".len()
        && boundary_value_range(line).is_some_and(|(_, len)| len > MAX_BOUNDARY_BYTES)
}

fn neutralise_boundary(line: &mut [u8]) {
    if line.len() <= MAX_BOUNDARY_BYTES + b"boundary=".len() {
        return;
    }
    if let Some((pos, len)) = boundary_value_range(line)
        && len > MAX_BOUNDARY_BYTES
        && let Some(b) = line.get_mut(pos)
    {
        // `boundary=` becomes `xoundary=`, an unknown parameter.
        *b = b'x';
    }
}

/// One non-multipart part, with what the body and attachment rules need to know.
struct Leaf<'p, 'a> {
    part: &'p ParsedMail<'a>,
    /// IMAP-style part number (`1`, `2.1`, ...), used to name the part in problems.
    path: String,
    /// The lower-case `type/subtype`, or None when the Content-Type value is not one.
    mime: Option<String>,
    disposition_attachment: bool,
    file_name: Option<String>,
    /// The outermost multipart/alternative this leaf is inside, as an index into
    /// `Walker::alternative_has_calendar`.
    alternative: Option<usize>,
}

impl Leaf<'_, '_> {
    /// RFC 2045 says a part whose Content-Type is unreadable is text/plain.
    fn mime_or_text(&self) -> &str {
        self.mime.as_deref().unwrap_or("text/plain")
    }

    fn is_calendar(&self) -> bool {
        matches!(self.mime_or_text(), "text/calendar" | "application/ics")
    }
}

struct Walker<'p, 'a, 'q> {
    leaves: Vec<Leaf<'p, 'a>>,
    alternative_has_calendar: Vec<bool>,
    /// Set when parts were skipped, so that structural conclusions are not drawn.
    incomplete: bool,
    /// The address of the parsed buffer, to find parts by offset.
    base: usize,
    /// Parts whose multipart Content-Type `MimeBounds` disabled (see there).
    too_deep: &'q HashSet<usize>,
    max_depth: usize,
    max_leaves: usize,
    problems: &'q mut Problems,
}

impl<'p, 'a> Walker<'p, 'a, '_> {
    fn note_too_deep(&mut self) {
        self.incomplete = true;
        self.problems.note(format!(
            "MIME nesting deeper than {} levels; deeper parts ignored",
            self.max_depth
        ));
    }

    fn walk(
        &mut self,
        part: &'p ParsedMail<'a>,
        path: &mut Vec<usize>,
        depth: usize,
        alternative: Option<usize>,
    ) {
        let offset = (part.raw_bytes.as_ptr() as usize).wrapping_sub(self.base);
        if depth > self.max_depth || self.too_deep.contains(&offset) {
            self.note_too_deep();
            return;
        }
        if self.leaves.len() >= self.max_leaves {
            self.incomplete = true;
            self.problems.note(format!(
                "more than {} MIME parts; the rest were ignored",
                self.max_leaves
            ));
            return;
        }
        let mimetype = part.ctype.mimetype.trim();
        if mimetype.starts_with("multipart/") {
            if part.subparts.is_empty() {
                self.incomplete = true;
                self.problems.note(format!(
                    "multipart part {} has no readable parts",
                    path_name(path)
                ));
                return;
            }
            let alternative = match alternative {
                None if mimetype == "multipart/alternative" => {
                    self.alternative_has_calendar.push(false);
                    Some(self.alternative_has_calendar.len() - 1)
                }
                other => other,
            };
            for (i, sub) in part.subparts.iter().enumerate() {
                path.push(i + 1);
                self.walk(sub, path, depth + 1, alternative);
                path.pop();
            }
            return;
        }

        let disposition = part.get_content_disposition();
        let file_name = disposition
            .params
            .get("filename")
            .or_else(|| part.ctype.params.get("name"))
            .and_then(|n| clean_file_name(n, &path_name(path), self.problems));
        let leaf = Leaf {
            part,
            path: path_name(path),
            mime: valid_mime(mimetype),
            disposition_attachment: disposition.disposition == DispositionType::Attachment,
            file_name,
            alternative,
        };
        if leaf.is_calendar()
            && let Some(flag) = alternative.and_then(|a| self.alternative_has_calendar.get_mut(a))
        {
            *flag = true;
        }
        self.leaves.push(leaf);
    }
}

fn path_name(path: &[usize]) -> String {
    if path.is_empty() {
        return "1".to_string();
    }
    path.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// Accepts `type/subtype` made of RFC 2045 token characters, lower-cased.
fn valid_mime(mimetype: &str) -> Option<String> {
    let (kind, sub) = mimetype.split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    if token(kind) && token(sub) {
        Some(mimetype.to_ascii_lowercase())
    } else {
        None
    }
}

/// Removes control characters and surrounding whitespace from a file name. Path separators
/// stay: the name is data to show, never a path to open.
fn clean_file_name(name: &str, path: &str, problems: &mut Problems) -> Option<String> {
    let mut cleaned: String = name.chars().filter(|c| !c.is_control()).collect();
    cleaned = cleaned.trim().to_string();
    if truncate_on_char_boundary(&mut cleaned, MAX_FILE_NAME_BYTES) {
        problems.note(format!("file name in part {path} truncated to 1 KiB"));
    }
    if cleaned.is_empty() {
        None
    } else {
        Some(cleaned)
    }
}

fn is_calendar_only(leaves: &[Leaf], alternative_has_calendar: &[bool]) -> bool {
    if !leaves.iter().any(Leaf::is_calendar) {
        return false;
    }
    leaves.iter().all(|leaf| {
        if leaf.is_calendar() {
            return true;
        }
        let generated_text = matches!(leaf.mime_or_text(), "text/plain" | "text/html")
            && !leaf.disposition_attachment
            && leaf.file_name.is_none();
        generated_text
            && leaf
                .alternative
                .and_then(|a| alternative_has_calendar.get(a).copied())
                .unwrap_or(false)
    })
}

/// The part's content with its transfer encoding removed. Base64 that `mailparse` rejects is
/// decoded leniently (skipping stray characters, restarting after inner padding), because
/// that is what mail clients show; any other decoding failure yields the raw bytes.
fn part_bytes(leaf: &Leaf, problems: &mut Problems) -> Vec<u8> {
    match leaf.part.get_body_raw() {
        Ok(bytes) => bytes,
        Err(_) => match leaf.part.get_body_encoded() {
            Body::Base64(body) => {
                problems.note(format!(
                    "invalid base64 in part {}; decoded leniently",
                    leaf.path
                ));
                lenient_base64(body.get_raw())
            }
            Body::QuotedPrintable(body) => {
                problems.note(format!(
                    "invalid quoted-printable in part {}; used raw bytes",
                    leaf.path
                ));
                body.get_raw().to_vec()
            }
            Body::SevenBit(body) | Body::EightBit(body) => body.get_raw().to_vec(),
            Body::Binary(body) => body.get_raw().to_vec(),
        },
    }
}

fn lenient_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for &b in input {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                // Padding ends a chunk; some senders concatenate padded chunks.
                acc = 0;
                bits = 0;
                continue;
            }
            _ => continue,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xFF) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The part's text: transfer-decoded, then charset-decoded (see `decode_text`).
fn part_text(leaf: &Leaf, problems: &mut Problems) -> String {
    let bytes = part_bytes(leaf, problems);
    let label = leaf
        .part
        .ctype
        .params
        .get("charset")
        .map(|c| c.trim().to_ascii_lowercase());
    decode_text(&bytes, label.as_deref(), &leaf.path, problems)
}

/// Decodes text bytes. Text that declares no charset or US-ASCII but is valid UTF-8 is read
/// as UTF-8: US-ASCII cannot hold the 8-bit bytes, and senders that forget the charset almost
/// always send UTF-8. Other 8-bit text without a charset is read as windows-1252, which is
/// what `mailparse` (through encoding_rs) does for US-ASCII. An unknown charset is noted and
/// read as UTF-8 when valid, else windows-1252.
fn decode_text(bytes: &[u8], label: Option<&str>, path: &str, problems: &mut Problems) -> String {
    match label {
        None | Some("" | "us-ascii" | "ascii" | "us_ascii" | "ansi_x3.4-1968") => {
            match std::str::from_utf8(bytes) {
                Ok(s) => s.to_string(),
                Err(_) => decode_with_charset(bytes, "windows-1252"),
            }
        }
        Some("utf-8" | "utf8") => match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            Err(_) => {
                problems.note(format!("invalid UTF-8 in body part {path}; replaced"));
                String::from_utf8_lossy(bytes).into_owned()
            }
        },
        Some(label) if charset_is_known(label) => decode_with_charset(bytes, label),
        Some(label) => {
            problems.note(format!(
                "unknown charset {} in body part {path}",
                loggable_label(label)
            ));
            match std::str::from_utf8(bytes) {
                Ok(s) => s.to_string(),
                Err(_) => decode_with_charset(bytes, "windows-1252"),
            }
        }
    }
}

/// A charset label is header data, not message content, but it is still cut to a short
/// run of safe characters before it goes into a log line.
fn loggable_label(label: &str) -> String {
    let safe: String = label
        .chars()
        .map(|c| if is_label_char(c) { c } else { '?' })
        .take(40)
        .collect();
    safe
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._:+-()".contains(c)
}

/// Whether `mailparse` knows the charset. The charset table lives in a crate this module does
/// not depend on directly, so the question is put to `mailparse` itself: it decodes an
/// encoded word only when it knows the word's charset, and leaves it as written otherwise.
fn charset_is_known(label: &str) -> bool {
    if label.is_empty() || label.len() > 64 || !label.chars().all(is_label_char) {
        return false;
    }
    let probe = format!("=?{label}?B?QQ==?=");
    let header = format!("X: {probe}");
    match mailparse::parse_header(header.as_bytes()) {
        Ok((h, _)) => h.get_value() != probe,
        Err(_) => false,
    }
}

/// Decodes bytes with a charset `mailparse` knows, by handing them to it as the body of a
/// one-part message that declares the charset.
fn decode_with_charset(bytes: &[u8], label: &str) -> String {
    let mut message = format!(
        "Content-Type: text/plain; charset=\"{label}\"\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    )
    .into_bytes();
    message.extend_from_slice(bytes);
    match mailparse::parse_mail(&message).and_then(|m| m.get_body()) {
        Ok(text) => text,
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn html_to_text(mut html: String, limits: &Limits, path: &str, problems: &mut Problems) -> String {
    let max_input = limits.max_html_bytes;
    if truncate_on_char_boundary(&mut html, max_input) {
        problems.note(format!(
            "HTML body part {path} truncated to {} before conversion",
            size_label(max_input)
        ));
    }
    if html_nesting_estimate(&html) > MAX_HTML_NESTING {
        problems.note(format!(
            "HTML body part {path} nested too deeply; tags stripped instead of rendered"
        ));
        return strip_tags(&html);
    }
    let converted = catch_unwind(AssertUnwindSafe(|| {
        html2text::from_read(html.as_bytes(), HTML_WIDTH)
    }));
    match converted {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            problems.note(format!(
                "HTML body part {path} could not be rendered; tags stripped"
            ));
            strip_tags(&html)
        }
        Err(_) => {
            problems.note(format!(
                "internal error while rendering HTML body part {path}; tags stripped"
            ));
            strip_tags(&html)
        }
    }
}

/// Estimates the deepest element nesting: opening tags add one, closing tags subtract one.
/// Void elements and elements whose end tag the HTML parser supplies itself (`p`, `li`, `td`,
/// ...) are not counted, since they do not nest in the parsed tree. One linear pass.
fn html_nesting_estimate(html: &str) -> usize {
    const NOT_NESTING: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr", "p", "li", "td", "th", "tr", "dt", "dd", "option", "optgroup",
        "tbody", "thead", "tfoot", "colgroup", "rt", "rp", "!doctype",
    ];
    let bytes = html.as_bytes();
    let mut depth: usize = 0;
    let mut max_depth: usize = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) != Some(&b'<') {
            i += 1;
            continue;
        }
        let closing = bytes.get(i + 1) == Some(&b'/');
        let name_start = i + 1 + usize::from(closing);
        let name_len = bytes
            .get(name_start..)
            .unwrap_or(&[])
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'!')
            .count();
        if name_len == 0 {
            i += 1;
            continue;
        }
        let name = html
            .get(name_start..name_start + name_len)
            .unwrap_or("")
            .to_ascii_lowercase();
        let tag_end = bytes
            .get(name_start + name_len..)
            .unwrap_or(&[])
            .iter()
            .position(|&b| b == b'>')
            .map(|p| name_start + name_len + p);
        let self_closing = tag_end.is_some_and(|e| e > 0 && bytes.get(e - 1) == Some(&b'/'));
        if !NOT_NESTING.contains(&name.as_str()) && !self_closing {
            if closing {
                depth = depth.saturating_sub(1);
            } else {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
        }
        i = name_start + name_len;
    }
    max_depth
}

/// A plain fallback for HTML that html2text cannot take: drops tags, script and style
/// contents and decodes the common entities. Linear in the input.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        push_text(&mut out, rest.get(..lt).unwrap_or(""));
        let after = rest.get(lt..).unwrap_or("");
        let lower_head: String = after
            .chars()
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        let skip_to = if lower_head.starts_with("<script") {
            find_ci(after, "</script").map(|p| p + 1)
        } else if lower_head.starts_with("<style") {
            find_ci(after, "</style").map(|p| p + 1)
        } else {
            Some(0)
        };
        let Some(skip_to) = skip_to else { break };
        let tail = after.get(skip_to..).unwrap_or("");
        match tail.find('>') {
            Some(gt) => {
                out.push(' ');
                rest = tail.get(gt + 1..).unwrap_or("");
            }
            None => {
                rest = "";
            }
        }
    }
    push_text(&mut out, rest);
    let mut collapsed = String::with_capacity(out.len());
    let mut last_space = true;
    for c in out.chars() {
        if c.is_whitespace() {
            if !last_space {
                collapsed.push(' ');
            }
            last_space = true;
        } else {
            collapsed.push(c);
            last_space = false;
        }
    }
    collapsed.trim_end().to_string()
}

/// Finds an ASCII needle case-insensitively; returns a byte offset in `haystack`.
fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn push_text(out: &mut String, text: &str) {
    out.push_str(
        &text
            .replace("&nbsp;", " ")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    );
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::{addrs, has_problem, parse};

    #[test]
    fn plain_message() {
        let m = parse(
            "From: Alice <Alice@Example.COM>\r\nTo: bob@example.com\r\nSubject: Hello\r\n\
             Date: Sun, 02 Oct 2016 07:06:22 -0700 (PDT)\r\nMessage-ID: <Abc.1@Example.com>\r\n\r\nHi Bob\r\n",
        );
        assert_eq!(
            m.from,
            vec![Mailbox {
                display_name: Some("Alice".into()),
                address: "alice@example.com".into()
            }]
        );
        assert_eq!(addrs(&m.to), ["bob@example.com"]);
        assert_eq!(m.subject.as_deref(), Some("Hello"));
        assert_eq!(m.date.map(|d| d.timestamp()), Some(1_475_417_182));
        assert_eq!(m.message_id.as_deref(), Some("<Abc.1@Example.com>"));
        assert_eq!(m.body_text.as_deref(), Some("Hi Bob\r\n"));
        assert!(m.attachments.is_empty());
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        assert_eq!(m.automation, AutomationSignals::default());
    }

    #[test]
    fn html_only_body() {
        let m = parse(
            "Subject: s\nContent-Type: text/html; charset=utf-8\n\n<html><body><p>Hello <b>there</b></p><script>x()</script></body></html>",
        );
        let body = m.body_text.unwrap_or_default();
        assert!(body.contains("Hello"));
        assert!(!body.contains("<p>"));
        assert!(m.attachments.is_empty());
    }

    #[test]
    fn multipart_alternative_prefers_plain() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/alternative; boundary=b\n\n",
            "--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n",
            "Proof by Euro: =E2=82=AC\n",
            "--b\nContent-Type: text/html\n\n<p>HTML</p>\n--b--\n"
        ));
        assert_eq!(m.body_text.as_deref(), Some("Proof by Euro: €"));
        assert!(m.attachments.is_empty());
        assert!(!m.automation.calendar_only);
    }

    #[test]
    fn blank_plain_part_falls_back_to_html() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/alternative; boundary=b\n\n",
            "--b\nContent-Type: text/plain\n\n  \n",
            "--b\nContent-Type: text/html\n\n<p>Real text</p>\n--b--\n"
        ));
        assert!(m.body_text.unwrap_or_default().contains("Real text"));
    }

    #[test]
    fn attachments_with_known_hashes() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=\"xx\"\n\n",
            "--xx\nContent-Type: text/plain\n\nbody\n",
            "--xx\nContent-Type: application/pdf; name=\"ignored.pdf\"\n",
            "Content-Disposition: attachment; filename=\"r\u{e9}sum\u{e9}/../x.pdf\"\n",
            "Content-Transfer-Encoding: base64\n\naGVsbG8g\nd29ybGQ=\n",
            "--xx\nContent-Type: image/png\nContent-Disposition: inline\n",
            "Content-Transfer-Encoding: base64\n\naGVsbG8gd29ybGQ=\n",
            "--xx\nContent-Type: text/plain; name=notes.txt\n\nhello world\n",
            "--xx--\n"
        ));
        let hello = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        assert_eq!(m.body_text.as_deref(), Some("body"));
        assert_eq!(m.attachments.len(), 3, "{:?}", m.attachments);
        let pdf = &m.attachments[0];
        assert_eq!(pdf.content_type, "application/pdf");
        assert_eq!(pdf.file_name.as_deref(), Some("résumé/../x.pdf"));
        assert_eq!(pdf.size_bytes, 11);
        assert_eq!(pdf.sha256, hello);
        // A bare inline image counts, without a name.
        assert_eq!(m.attachments[1].file_name, None);
        assert_eq!(m.attachments[1].content_type, "image/png");
        assert_eq!(m.attachments[1].sha256, hello);
        // A named text part is an attachment, not the body.
        assert_eq!(m.attachments[2].file_name.as_deref(), Some("notes.txt"));
        assert_eq!(m.attachments[2].sha256, hello);
    }

    #[test]
    fn rfc2231_file_name() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\ntext\n--b\n",
            "Content-Type: application/octet-stream\n",
            "Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rates.txt\n\nabc\n--b--\n"
        ));
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].file_name.as_deref(), Some("€ rates.txt"));
    }

    #[test]
    fn bad_base64_is_decoded_leniently() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\ntext\n--b\n",
            "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n",
            "aGVs!!bG8g\nd29y*bGQ=\n--b--\n"
        ));
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].size_bytes, 11);
        assert!(has_problem(&m, "invalid base64 in part 2"));
    }

    #[test]
    fn unknown_charset_is_noted() {
        let m = parse("Subject: s\nContent-Type: text/plain; charset=x-foo\n\nplain words");
        assert_eq!(m.body_text.as_deref(), Some("plain words"));
        assert!(has_problem(&m, "unknown charset x-foo in body"));
        let m =
            parse_message(b"Subject: s\nContent-Type: text/plain; charset=iso-8859-1\n\ncaf\xe9")
                .expect("parses");
        assert_eq!(m.body_text.as_deref(), Some("caf\u{e9}"));
        assert!(m.problems.is_empty());
    }

    #[test]
    fn undeclared_utf8_body_is_read_as_utf8() {
        let m = parse("Subject: s\n\ncafé");
        assert_eq!(m.body_text.as_deref(), Some("café"));
    }

    #[test]
    fn latin1_bytes_in_undeclared_body() {
        let m = parse_message(b"Subject: s\n\ncaf\xe9").expect("parses");
        assert_eq!(m.body_text.as_deref(), Some("café"));
    }

    #[test]
    fn part_starting_with_space_is_repaired() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n",
            "--b\n Content-Type: text/plain\n\nhello\n--b--\n"
        ));
        assert_eq!(m.body_text.as_deref(), Some("hello"));
        assert!(has_problem(&m, "MIME part headers repaired"));
    }

    #[test]
    fn errors() {
        assert_eq!(parse_message(b""), Err(ParseError::Empty));
        assert_eq!(parse_message(b"\r\n  \n"), Err(ParseError::Empty));
        assert!(matches!(
            parse_message(b"just some text\nwith no headers\n\nat all"),
            Err(ParseError::UnreadableHeaders(_))
        ));
        assert!(matches!(
            parse_message(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Err(ParseError::UnreadableHeaders(_))
        ));
        assert!(matches!(
            parse_message(b"X-Only: 1\n\nbody"),
            Err(ParseError::UnreadableHeaders(_))
        ));
    }

    #[test]
    fn headers_only_message() {
        let m = parse("From: a@x.com\r\nSubject: no body");
        assert_eq!(m.subject.as_deref(), Some("no body"));
        assert_eq!(m.body_text, None);
        assert!(m.attachments.is_empty());
    }

    #[test]
    fn unreadable_mime_keeps_headers() {
        // A part header block that ends in a lone CR: `mailparse` rejects the whole tree and
        // the repair finds nothing to change.
        let m = parse(concat!(
            "Subject: broken\nContent-Type: multipart/mixed; boundary=b\n\n",
            "--b\nContent-Type: text/plain\n\r"
        ));
        assert_eq!(m.subject.as_deref(), Some("broken"));
        assert_eq!(m.body_text, None);
        assert!(
            has_problem(&m, "MIME structure unreadable"),
            "{:?}",
            m.problems
        );
    }

    #[test]
    fn nesting_beyond_mailparse_depth_is_capped_not_rejected() {
        // `mailparse` alone rejects more than 100 levels; the cap keeps the top of the tree.
        let nested: String = (0..120)
            .map(|i| format!("Content-Type: multipart/mixed; boundary=b{i}x\n\n--b{i}x\n"))
            .collect();
        let m = parse(&format!("Subject: deep\n{nested}\ninner\n"));
        assert_eq!(m.subject.as_deref(), Some("deep"));
        assert_eq!(m.body_text, None);
        assert!(has_problem(&m, "deeper than 64"), "{:?}", m.problems);
        assert!(!has_problem(&m, "unreadable"), "{:?}", m.problems);
        let limits = Limits {
            max_mime_depth: 1_000,
            ..Limits::default()
        };
        let m = parse_message_with(
            format!("Subject: deep\n{nested}\ninner\n").as_bytes(),
            &limits,
        )
        .expect("parses");
        assert!(has_problem(&m, "deeper than 100"), "{:?}", m.problems);
    }

    #[test]
    fn mime_bounds_follow_mailparse() {
        // Nothing to change in ordinary mail.
        let plain = b"Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n";
        assert!(MimeBounds::apply(plain, &Limits::default()).bytes.is_none());
        // The cut lands before the delimiter of the first part over the limit, without the
        // line end that belongs to that delimiter.
        let limits = Limits {
            max_mime_parts: 2,
            ..Limits::default()
        };
        let three =
            b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\n1\n--b\n\n2\n--b\n\n3\n--b--\n";
        let bounds = MimeBounds::apply(three, &limits);
        assert!(bounds.parts_cut);
        assert_eq!(
            bounds.bytes.as_deref(),
            Some(&b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\n1\n--b\n\n2"[..])
        );
        // An outer delimiter ends an inner part; a closed multipart's delimiter is text.
        let nested = concat!(
            "Content-Type: multipart/mixed; boundary=a\n\n--a\n",
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nin\n--a\n\nout\n--a--\n--a\n\nepilogue\n"
        );
        let three_parts = Limits {
            max_mime_parts: 3,
            ..Limits::default()
        };
        let bounds = MimeBounds::apply(nested.as_bytes(), &three_parts);
        assert!(!bounds.parts_cut, "three parts counted, not four");
        assert!(bounds.bytes.is_none());
        let m = parse_message_with(format!("Subject: s\n{nested}").as_bytes(), &three_parts)
            .expect("parses");
        assert_eq!(m.body_text.as_deref(), Some("in"));
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        // Depth: the multipart at the limit is disabled in place and remembered by offset.
        let limits = Limits {
            max_mime_depth: 1,
            ..Limits::default()
        };
        let bounds = MimeBounds::apply(nested.as_bytes(), &limits);
        let rewritten = bounds.bytes.expect("rewritten");
        let inner = nested
            .find("Content-Type: multipart/mixed; boundary=b")
            .expect("inner");
        assert_eq!(rewritten.get(inner), Some(&b'X'));
        assert_eq!(bounds.too_deep, HashSet::from([inner]));
        // Header fields over the limit are dropped; the ones that fit stay, in order.
        let limits = Limits {
            max_header_bytes: 45,
            ..Limits::default()
        };
        let long = "0123456789".repeat(5);
        let headers = format!(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\nA: 1\nB: {long}\nC: 3\n\nbody\n--b--\n"
        );
        let bounds = MimeBounds::apply(headers.as_bytes(), &limits);
        assert!(bounds.headers_trimmed);
        assert_eq!(
            bounds.bytes.as_deref(),
            Some(
                &b"Content-Type: multipart/mixed; boundary=b\n\n--b\nA: 1\nC: 3\n\nbody\n--b--\n"[..]
            )
        );
    }

    #[test]
    fn too_large_is_an_error_without_content() {
        let limits = Limits {
            max_message_bytes: 10,
            ..Limits::default()
        };
        let error = parse_message_with(b"Subject: secret words\n\nx", &limits).unwrap_err();
        assert_eq!(
            error,
            ParseError::TooLarge {
                bytes: 24,
                limit: 10
            }
        );
        assert_eq!(
            error.to_string(),
            "message is 24 bytes, over the 10-byte limit ([limits] max_message_bytes)"
        );
        assert_eq!(parse_message_with(b"", &limits), Err(ParseError::Empty));
    }

    #[test]
    fn nul_and_control_characters() {
        let m = parse_message(
            b"From: \"A\0B\" <a@x.com>\nMessage-ID: <id\0\x1b@x>\nSubject: s\0t\n\nbo\0dy",
        )
        .expect("parses");
        assert_eq!(m.from[0].display_name.as_deref(), Some("A B"));
        assert_eq!(m.message_id.as_deref(), Some("<id@x>"));
        assert_eq!(m.subject.as_deref(), Some("s t"));
        assert_eq!(m.body_text.as_deref(), Some("body"));
        assert!(has_problem(&m, "NUL characters removed"));
    }

    #[test]
    fn mime_depth_cap() {
        let mut raw = String::from("Subject: deep\n");
        for i in 0..80 {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}x\n\n--b{i}x\n"
            ));
        }
        raw.push_str("\ninner\n");
        let m = parse(&raw);
        assert!(has_problem(&m, "deeper than 64"), "{:?}", m.problems);
        assert_eq!(m.body_text, None);
    }

    const INVITE_ALTERNATIVE: &str = concat!(
        "--alt\nContent-Type: text/plain\n\nInvitation: Meeting\n",
        "--alt\nContent-Type: text/html\n\n<p>Invitation</p>\n",
        "--alt\nContent-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR\nEND:VCALENDAR\n",
        "--alt--\n"
    );

    #[test]
    fn calendar_only_invitations() {
        let outlook = format!(
            "Subject: s\nContent-Type: multipart/alternative; boundary=alt\n\n{INVITE_ALTERNATIVE}"
        );
        assert!(parse(&outlook).automation.calendar_only);

        let google = format!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=mix\n\n--mix\n\
             Content-Type: multipart/alternative; boundary=alt\n\n{INVITE_ALTERNATIVE}\n--mix\n\
             Content-Type: application/ics; name=invite.ics\nContent-Disposition: attachment; filename=invite.ics\n\n\
             BEGIN:VCALENDAR\nEND:VCALENDAR\n--mix--\n"
        );
        let m = parse(&google);
        assert!(m.automation.calendar_only);
        assert_eq!(m.body_text.as_deref(), Some("Invitation: Meeting"));
        assert_eq!(m.attachments.len(), 1);

        let bare = "Subject: s\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\nEND:VCALENDAR\n";
        assert!(parse(bare).automation.calendar_only);
    }

    #[test]
    fn human_text_is_not_calendar_only() {
        let forwarded = format!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=mix\n\n--mix\n\
             Content-Type: text/plain\n\nSee you there!\n--mix\n\
             Content-Type: multipart/alternative; boundary=alt\n\n{INVITE_ALTERNATIVE}\n--mix--\n"
        );
        assert!(!parse(&forwarded).automation.calendar_only);
        let with_ics = "Subject: s\nContent-Type: multipart/mixed; boundary=m\n\n--m\n\nNotes\n--m\n\
             Content-Type: application/ics; name=a.ics\n\nBEGIN:VCALENDAR\n--m--\n";
        assert!(!parse(with_ics).automation.calendar_only);
        assert!(!parse("Subject: s\n\nhello").automation.calendar_only);
    }

    #[test]
    fn deep_html_is_stripped_not_rendered() {
        let html = format!("{}deep text", "<div>".repeat(5_000));
        let m = parse(&format!("Subject: s\nContent-Type: text/html\n\n{html}"));
        assert_eq!(m.body_text.as_deref(), Some("deep text"));
        assert!(has_problem(&m, "nested too deeply"));
    }

    #[test]
    fn body_is_capped() {
        let m = parse(&format!("Subject: s\n\n{}", "ü".repeat(600_000)));
        let body = m.body_text.clone().unwrap_or_default();
        assert!(body.len() <= Limits::default().max_body_text_bytes);
        assert!(body.chars().all(|c| c == 'ü'));
        assert!(has_problem(&m, "body text truncated"));
    }

    #[test]
    fn long_boundary_is_neutralised() {
        let boundary = "-".repeat(5_000) + "x";
        let m = parse(&format!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\n\n{}",
            "-".repeat(200_000)
        ));
        assert!(has_problem(&m, "pathological MIME header line"));
    }

    #[test]
    fn html_nesting_estimate_counts_real_nesting() {
        assert_eq!(html_nesting_estimate("<p>a<p>b<br><img src=x/>"), 0);
        assert_eq!(html_nesting_estimate("<div><span>a</span></div><div>"), 2);
        assert_eq!(strip_tags("<style>p{}</style><b>a &amp; b</b>"), "a & b");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        const HEADER: &str = "From: a@x.com\r\nTo: \"B, b\" <b@x.com>\r\nSubject: s\r\n\
                              Content-Type: multipart/mixed; boundary=b\r\n\r\n";

        /// Fragments that steer random input into the parser's interesting states.
        fn fragment() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                any::<Vec<u8>>(),
                Just(b"--b\r\n".to_vec()),
                Just(b"--b--\r\n".to_vec()),
                Just(b"Content-Type: multipart/alternative; boundary=b\r\n".to_vec()),
                Just(b"Content-Type: text/html; charset=x-foo\r\n".to_vec()),
                Just(b"Content-Type: text/calendar\r\n".to_vec()),
                Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
                Just(b"Content-Transfer-Encoding: quoted-printable\r\n".to_vec()),
                Just(b"Content-Disposition: attachment; filename*=UTF-8''%E2%82\r\n".to_vec()),
                Just(b"To: =?UTF-8?B?5byg?= <a@b>, Team: c@d;, e\r\n".to_vec()),
                Just(b"=?utf-8?q?=E2=82?=".to_vec()),
                Just(b"<div><table><tr><td>".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b" \t".to_vec()),
                Just(b"\r".to_vec()),
            ]
        }

        fn no_internal_error(result: &Result<ParsedMessage, ParseError>) -> bool {
            match result {
                Ok(m) => !m.problems.iter().any(|p| p.starts_with("internal error")),
                Err(ParseError::UnreadableHeaders(s)) => !s.starts_with("internal error"),
                Err(ParseError::Empty | ParseError::TooLarge { .. }) => true,
            }
        }

        /// Lines that build nested multiparts with three boundaries.
        fn structure_line() -> impl Strategy<Value = &'static str> {
            prop_oneof![
                Just("Content-Type: multipart/mixed; boundary=b\r\n"),
                Just("Content-Type: multipart/mixed; boundary=c\r\n"),
                Just("Content-Type: multipart/alternative;\r\n boundary=\"d\"\r\n"),
                Just("Content-Type: text/plain\r\n"),
                Just("X-Filler: 0123456789\r\n"),
                Just("--b\r\n"),
                Just("--c\r\n"),
                Just("--d\r\n"),
                Just("--b--\r\n"),
                Just("--c--\r\n"),
                Just("--d--\r\n"),
                Just("\r\n"),
                Just("text\r\n"),
                Just("--bx\r\n"),
                Just("content-type: MULTIPART/digest; boundary=c\r\n"),
                Just("Content-Type: multipart/mixed; boundary=\"\"\r\n"),
                Just(" folded continuation\r\n"),
                Just("\n"),
                Just("\r"),
            ]
        }

        /// The largest span of header bytes of any part, from its first key to its last value.
        fn largest_header_block(part: &ParsedMail) -> usize {
            let own = match (part.headers.first(), part.headers.last()) {
                (Some(first), Some(last)) => {
                    let start = first.get_key_raw().as_ptr() as usize;
                    let value = last.get_value_raw();
                    (value.as_ptr() as usize + value.len()).saturating_sub(start)
                }
                _ => 0,
            };
            part.subparts
                .iter()
                .map(largest_header_block)
                .fold(own, usize::max)
        }

        fn node_count(part: &ParsedMail) -> usize {
            part.subparts.iter().map(|p| 1 + node_count(p)).sum()
        }

        /// The depth of the deepest multipart that `mailparse` split into parts.
        fn container_depth(part: &ParsedMail, depth: usize) -> Option<usize> {
            if part.subparts.is_empty() {
                return None;
            }
            part.subparts
                .iter()
                .filter_map(|p| container_depth(p, depth + 1))
                .max()
                .or(Some(depth))
        }

        proptest! {
            // No regression file: it would land outside this source file's reach.
            #![proptest_config(ProptestConfig {
                cases: 1024,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn mime_bounds_hold_for_what_mailparse_builds(
                lines in proptest::collection::vec(structure_line(), 0..80),
                max_parts in 0usize..6,
                max_depth in 0usize..4,
                max_header in 0usize..120,
            ) {
                let raw = format!("Subject: s\r\n{}", lines.concat());
                let limits = Limits {
                    max_mime_parts: max_parts,
                    max_mime_depth: max_depth,
                    max_header_bytes: max_header,
                    ..Limits::default()
                };
                let bounds = MimeBounds::apply(raw.as_bytes(), &limits);
                let bytes = bounds.bytes.as_deref().unwrap_or(raw.as_bytes());
                if let Ok(parsed) = mailparse::parse_mail(bytes) {
                    prop_assert!(node_count(&parsed) <= max_parts);
                    prop_assert!(largest_header_block(&parsed) <= max_header);
                    if let Some(depth) = container_depth(&parsed, 0) {
                        prop_assert!(depth < max_depth, "container at depth {}", depth);
                    }
                }
                // Within the default limits nothing is ever rewritten.
                prop_assert!(MimeBounds::apply(raw.as_bytes(), &Limits::default()).bytes.is_none());
                let result = parse_message_with(raw.as_bytes(), &limits);
                prop_assert!(no_internal_error(&result));
                if let Ok(m) = result {
                    prop_assert!(m.attachments.len() <= max_parts);
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let result = parse_message(&raw);
                prop_assert!(no_internal_error(&result));
                let _ = gmail_labels(&raw);
            }

            #[test]
            fn arbitrary_body_after_valid_headers(tail in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let mut raw = HEADER.as_bytes().to_vec();
                raw.extend_from_slice(&tail);
                let result = parse_message(&raw);
                prop_assert!(result.is_ok());
                prop_assert!(no_internal_error(&result));
            }

            #[test]
            fn structured_noise_never_panics(parts in proptest::collection::vec(fragment(), 0..40)) {
                let mut raw = HEADER.as_bytes().to_vec();
                for p in &parts {
                    raw.extend_from_slice(p);
                }
                let result = parse_message(&raw);
                prop_assert!(no_internal_error(&result));
                let headerless: Vec<u8> = parts.concat();
                let result = parse_message(&headerless);
                prop_assert!(no_internal_error(&result));
            }
        }
    }
}
