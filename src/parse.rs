//! Turns raw RFC 5322 bytes into the facts mailsync decides on. Pure: no I/O, never panics; problems are data.
//!
//! The module wraps `mailparse` and adds the tolerance that real mailboxes need. Every rule
//! below is deliberate; the tests at the bottom of this file pin each one down.
//!
//! * Errors: `parse_message` fails only when there is nothing to read (`Empty`) or when the
//!   header block cannot be read at all, including a header block that carries none of From,
//!   To, Cc, Bcc, Subject, Date and Message-ID (`UnreadableHeaders`). Everything else is best
//!   effort and is described in `problems`, which never quote message content.
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
//! * Message-ID keeps the first `<...>` token as written; In-Reply-To and References keep every
//!   `<...>` token (deduplicated), or, when a value has none, its bare tokens that hold an `@`.
//! * X-Gmail-Labels is decoded first (Takeout puts non-ASCII labels in encoded words), then
//!   split on commas outside double quotes, with backslash escapes (`\'`) undone.
//! * Work is bounded: header decoding that would be quadratic inside `mailparse` is replaced by
//!   a plain reading, the MIME walk stops at depth 64 and at 10,000 leaves, addresses stop at
//!   10,000, HTML input is capped and deeply nested HTML is stripped instead of rendered.
//! * Panics inside the dependencies are caught and become problems (or, outside the MIME stage,
//!   an `UnreadableHeaders` error). The default panic hook still prints the panic message to
//!   stderr, and `panic = "abort"` would defeat the guard.

use std::borrow::Cow;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mailparse::body::Body;
use mailparse::{DispositionType, MailAddr, MailHeader, MailParseError, ParsedMail};
use sha2::{Digest, Sha256};

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
    /// See the module documentation for the exact rule.
    pub calendar_only: bool,
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

/// Why a message could not be read at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("message is empty")]
    Empty,
    /// The string never contains message content.
    #[error("message headers are unreadable: {0}")]
    UnreadableHeaders(String),
}

/// Most addresses kept per message, over all four address fields.
const MAX_ADDRESSES: usize = 10_000;
/// Most mailboxes looked at per message, duplicates included, so that a message made of a
/// million copies of one address is not parsed to the end.
const MAX_ADDRESSES_SCANNED: usize = 100_000;
const MAX_SUBJECT_BYTES: usize = 4 * 1024;
const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_MIME_DEPTH: usize = 64;
const MAX_MIME_LEAVES: usize = 10_000;
/// html2text needs time roughly proportional to its input, so its input is capped.
const MAX_HTML_INPUT_BYTES: usize = 2 * 1024 * 1024;
/// html2text's time grows with the square of the element nesting depth (10,000 nested
/// elements take half a second, 100,000 take a minute), so deeper HTML is tag-stripped.
const MAX_HTML_NESTING: usize = 2_000;
const HTML_WIDTH: usize = 100;
const MAX_FILE_NAME_BYTES: usize = 1024;
const MAX_DATE_CHARS: usize = 256;
const MAX_PROBLEMS: usize = 100;
/// RFC 2046 limits a boundary to 70 characters; far longer ones only serve to make
/// `mailparse`'s boundary search slow.
const MAX_BOUNDARY_BYTES: usize = 200;
/// `mailparse` decodes encoded words with a search whose cost grows with (number of `=?`) x
/// (number of `?=`) x (line length) on each header line. Above this estimate (about ten
/// milliseconds of work) a header is read without RFC 2047 decoding instead.
const HEADER_DECODE_BUDGET: u64 = 300_000_000;

/// Parses one message. See the module documentation for the rules.
pub fn parse_message(raw: &[u8]) -> Result<ParsedMessage, ParseError> {
    // The dependencies are not known to panic on any input, but a daemon must not die on one
    // odd message, so a panic that escapes the finer-grained guards below becomes an error.
    match catch_unwind(AssertUnwindSafe(|| parse_message_inner(raw))) {
        Ok(result) => result,
        Err(_) => Err(ParseError::UnreadableHeaders(
            "internal error while reading the headers".to_string(),
        )),
    }
}

/// Reads only the header block for the X-Gmail-Labels header (cheap; used before deciding whether to parse at all).
pub fn gmail_labels(raw: &[u8]) -> Vec<String> {
    catch_unwind(AssertUnwindSafe(|| {
        let mut problems = Problems::default();
        let converted = normalize_bare_cr(raw, &mut problems);
        let start = strip_preamble(&converted, &mut problems);
        let block = match HeaderBlock::read(start, &mut problems) {
            Ok(block) => block,
            Err(_) => return Vec::new(),
        };
        let headers = match mailparse::parse_headers(&block.bytes) {
            Ok((headers, _)) => headers,
            Err(_) => return Vec::new(),
        };
        let wanted: Vec<&MailHeader> = headers
            .iter()
            .filter(|h| key_is(h, "x-gmail-labels"))
            .collect();
        labels_from_headers(&wanted, &mut problems)
    }))
    .unwrap_or_default()
}

fn parse_message_inner(raw: &[u8]) -> Result<ParsedMessage, ParseError> {
    if raw.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut problems = Problems::default();
    let converted = normalize_bare_cr(raw, &mut problems);
    let start = strip_preamble(&converted, &mut problems);
    if start.is_empty() {
        return Err(ParseError::Empty);
    }
    let block = HeaderBlock::read(start, &mut problems)?;
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
        return Err(ParseError::UnreadableHeaders(
            "none of From, To, Cc, Bcc, Subject, Date or Message-ID is present".to_string(),
        ));
    }

    let mut budget = AddressBudget::default();
    let from = addresses_for(&fields.from, "from", &mut budget, &mut problems);
    let to = addresses_for(&fields.to, "to", &mut budget, &mut problems);
    let cc = addresses_for(&fields.cc, "cc", &mut budget, &mut problems);
    let bcc = addresses_for(&fields.bcc, "bcc", &mut budget, &mut problems);

    let subject = fields.subject.map(|h| subject_from(h, &mut problems));
    let date = fields.date.and_then(|h| date_from(h, &mut problems));
    let message_id = fields.message_id.and_then(message_id_from);
    let in_reply_to = msg_ids_from(&fields.in_reply_to, "in-reply-to", &mut problems);
    let references = msg_ids_from(&fields.references, "references", &mut problems);
    let gmail_labels = labels_from_headers(&fields.gmail_labels, &mut problems);

    let mime = match catch_unwind(AssertUnwindSafe(|| {
        let mut mime_problems = Problems::default();
        let facts = read_mime(&block.bytes, &mut mime_problems);
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

// ---------------------------------------------------------------------------------------------
// Problems
// ---------------------------------------------------------------------------------------------

/// Collects problem notes without duplicates, and stops at a fixed number so that a message
/// with a million broken parts cannot produce a million log lines.
#[derive(Default)]
struct Problems {
    list: Vec<String>,
    seen: HashSet<String>,
    overflowed: bool,
}

impl Problems {
    fn note(&mut self, problem: impl Into<String>) {
        let problem = problem.into();
        if self.seen.contains(&problem) {
            return;
        }
        if self.list.len() >= MAX_PROBLEMS {
            if !self.overflowed {
                self.overflowed = true;
                self.list.push("further problems omitted".to_string());
            }
            return;
        }
        self.seen.insert(problem.clone());
        self.list.push(problem);
    }

    fn absorb(&mut self, other: Problems) {
        for problem in other.list {
            self.note(problem);
        }
    }

    fn into_vec(self) -> Vec<String> {
        self.list
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the header block
// ---------------------------------------------------------------------------------------------

/// Splits off the first line: the line without its LF (a CR stays), and what follows the LF.
fn split_first_line(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&b| b == b'\n') {
        Some(i) => (s.get(..i).unwrap_or(s), s.get(i + 1..)),
        None => (s, None),
    }
}

fn trim_start_wsp(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    s.get(n..).unwrap_or(&[])
}

fn is_blank_line(line: &[u8]) -> bool {
    line.iter().all(|&b| b == b' ' || b == b'\t' || b == b'\r')
}

/// Skips what may stand before the first header: a byte order mark, blank lines, one mbox
/// `From ` separator, and leading whitespace on the first header line (which `mailparse`
/// would otherwise reject as a continuation of a header that does not exist).
fn strip_preamble<'a>(raw: &'a [u8], problems: &mut Problems) -> &'a [u8] {
    let mut s = raw;
    if let Some(rest) = s.strip_prefix(b"\xEF\xBB\xBF") {
        problems.note("byte order mark before the headers skipped");
        s = rest;
    }
    s = skip_blank_lines(s, problems);
    if is_mbox_from_line(s) {
        if let (_, Some(rest)) = split_first_line(s) {
            s = skip_blank_lines(rest, problems);
        } else {
            s = &[];
        }
    }
    let trimmed = trim_start_wsp(s);
    if trimmed.len() != s.len() {
        problems.note("first header line began with whitespace; stripped");
    }
    trimmed
}

fn skip_blank_lines<'a>(mut s: &'a [u8], problems: &mut Problems) -> &'a [u8] {
    let mut skipped = false;
    loop {
        match split_first_line(s) {
            (line, Some(rest)) if is_blank_line(line) => {
                s = rest;
                skipped = true;
            }
            _ => break,
        }
    }
    if skipped {
        problems.note("blank lines before the headers skipped");
    }
    s
}

/// Text whose first line break is a CR without LF uses bare-CR line ends (classic Mac OS).
/// `mailparse` only splits lines on LF and would read such a message as a single header, so
/// every bare CR becomes an LF; CRLF pairs stay as they are.
fn normalize_bare_cr<'a>(raw: &'a [u8], problems: &mut Problems) -> Cow<'a, [u8]> {
    let first_break = raw.iter().position(|&b| b == b'\r' || b == b'\n');
    let bare_cr =
        first_break.is_some_and(|i| raw.get(i) == Some(&b'\r') && raw.get(i + 1) != Some(&b'\n'));
    if !bare_cr {
        return Cow::Borrowed(raw);
    }
    problems.note("bare CR line ends read as line breaks");
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
            out.push(b'\n');
        } else {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// An mbox separator is `From ` followed by something that is not a colon; a `From :` line
/// with a space before the colon is a header.
fn is_mbox_from_line(s: &[u8]) -> bool {
    match s.strip_prefix(b"From ") {
        Some(rest) => !trim_start_wsp(rest).starts_with(b":"),
        None => false,
    }
}

/// The bytes from the first header on, repaired if `mailparse` could not read them as they are.
struct HeaderBlock<'a> {
    bytes: Cow<'a, [u8]>,
}

impl<'a> HeaderBlock<'a> {
    fn read(start: &'a [u8], problems: &mut Problems) -> Result<HeaderBlock<'a>, ParseError> {
        if mailparse::parse_headers(start).is_ok() {
            return Ok(HeaderBlock {
                bytes: Cow::Borrowed(start),
            });
        }
        let repaired = repair_header_lines(start);
        if mailparse::parse_headers(&repaired).is_ok() {
            problems.note(
                "header block repaired (stray whitespace or carriage return at a line start)",
            );
            return Ok(HeaderBlock {
                bytes: Cow::Owned(repaired),
            });
        }
        Err(ParseError::UnreadableHeaders(
            "the header block could not be parsed".to_string(),
        ))
    }
}

/// Rewrites one header block so that `mailparse::parse_headers` accepts it, and copies what
/// follows the block unchanged. `mailparse` rejects a line that starts with a space unless it
/// continues a `key: value` header, and a line that starts with a lone CR; both occur in real
/// files.
fn repair_header_lines(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    let mut rest: &[u8] = s;
    let mut previous_had_colon = true;
    let mut first = true;
    loop {
        let (line, next) = split_first_line(rest);
        let mut fixed = line;
        // A CR at the start of a non-empty line is neither a line end nor content.
        while fixed.len() > 1 && fixed.first() == Some(&b'\r') {
            fixed = fixed.get(1..).unwrap_or(&[]);
        }
        if fixed.is_empty() || fixed == b"\r" {
            // The blank line that ends the block, and everything after it, stay as they are.
            out.extend_from_slice(rest);
            break;
        }
        let indented = matches!(fixed.first(), Some(b' ' | b'\t'));
        if indented && (first || !previous_had_colon) {
            fixed = trim_start_wsp(fixed);
            previous_had_colon = fixed.contains(&b':');
        } else if !indented {
            previous_had_colon = fixed.contains(&b':');
        }
        first = false;
        out.extend_from_slice(fixed);
        match next {
            Some(next) => {
                out.push(b'\n');
                rest = next;
            }
            None => break,
        }
    }
    out
}

/// The headers mailsync reads, gathered in one pass so that the work stays linear in the
/// number of headers.
#[derive(Default)]
struct HeaderFields<'h, 'a> {
    from: Vec<&'h MailHeader<'a>>,
    to: Vec<&'h MailHeader<'a>>,
    cc: Vec<&'h MailHeader<'a>>,
    bcc: Vec<&'h MailHeader<'a>>,
    subject: Option<&'h MailHeader<'a>>,
    date: Option<&'h MailHeader<'a>>,
    message_id: Option<&'h MailHeader<'a>>,
    in_reply_to: Vec<&'h MailHeader<'a>>,
    references: Vec<&'h MailHeader<'a>>,
    gmail_labels: Vec<&'h MailHeader<'a>>,
    list_id: Vec<&'h MailHeader<'a>>,
    list_unsubscribe: Vec<&'h MailHeader<'a>>,
    precedence: Option<&'h MailHeader<'a>>,
    auto_submitted: Option<&'h MailHeader<'a>>,
}

impl<'h, 'a> HeaderFields<'h, 'a> {
    fn collect(headers: &'h [MailHeader<'a>]) -> Self {
        let mut f = HeaderFields::default();
        for h in headers {
            let key = h.get_key_raw().trim_ascii();
            let is = |name: &str| key.eq_ignore_ascii_case(name.as_bytes());
            if is("from") {
                f.from.push(h);
            } else if is("to") {
                f.to.push(h);
            } else if is("cc") {
                f.cc.push(h);
            } else if is("bcc") {
                f.bcc.push(h);
            } else if is("subject") {
                f.subject.get_or_insert(h);
            } else if is("date") {
                f.date.get_or_insert(h);
            } else if is("message-id") {
                f.message_id.get_or_insert(h);
            } else if is("in-reply-to") {
                f.in_reply_to.push(h);
            } else if is("references") {
                f.references.push(h);
            } else if is("x-gmail-labels") {
                f.gmail_labels.push(h);
            } else if is("list-id") {
                f.list_id.push(h);
            } else if is("list-unsubscribe") {
                f.list_unsubscribe.push(h);
            } else if is("precedence") {
                f.precedence.get_or_insert(h);
            } else if is("auto-submitted") {
                f.auto_submitted.get_or_insert(h);
            }
        }
        f
    }

    fn looks_like_mail(&self) -> bool {
        !self.from.is_empty()
            || !self.to.is_empty()
            || !self.cc.is_empty()
            || !self.bcc.is_empty()
            || self.subject.is_some()
            || self.date.is_some()
            || self.message_id.is_some()
    }
}

fn key_is(h: &MailHeader, name: &str) -> bool {
    h.get_key_raw()
        .trim_ascii()
        .eq_ignore_ascii_case(name.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Header values
// ---------------------------------------------------------------------------------------------

/// Counts the positions at which a two-byte pattern starts.
fn count_pair(line: &[u8], pair: [u8; 2]) -> u64 {
    line.windows(2).filter(|w| *w == pair).count() as u64
}

/// Estimates the work `mailparse` would do to decode encoded words in `raw` (see
/// `HEADER_DECODE_BUDGET`).
fn decode_cost(raw: &[u8]) -> u64 {
    let mut total: u64 = 0;
    for line in raw.split(|&b| b == b'\n') {
        let opens = count_pair(line, *b"=?");
        if opens == 0 {
            continue;
        }
        let closes = count_pair(line, *b"?=");
        total = total.saturating_add(
            opens
                .saturating_mul(closes.saturating_add(1))
                .saturating_mul(line.len() as u64),
        );
    }
    total
}

/// The header value as `mailparse` decodes it, or, when that would take unbounded time, the
/// raw value unfolded but not RFC 2047 decoded. The flag tells which one it is.
fn header_value(h: &MailHeader) -> (String, bool) {
    if decode_cost(h.get_value_raw()) <= HEADER_DECODE_BUDGET {
        (h.get_value(), true)
    } else {
        (unfold(&String::from_utf8_lossy(h.get_value_raw())), false)
    }
}

/// Joins folded lines the way `mailparse` does: each line break and the whitespace around it
/// become one space.
fn unfold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.lines().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(if i > 0 { line.trim_start() } else { line });
    }
    out
}

/// Replaces control characters by spaces: names and subjects are shown in terminals, where a
/// CR, LF or escape sequence could rewrite what the user sees.
fn replace_controls(s: &str, keep_tab: bool) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && !(keep_tab && c == '\t') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Cuts `s` to at most `max` bytes on a char boundary; returns whether it cut.
fn truncate_on_char_boundary(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

fn subject_from(h: &MailHeader, problems: &mut Problems) -> String {
    let (value, decoded) = header_value(h);
    if !decoded {
        problems.note("subject too complex to decode; used as written");
    }
    let mut subject = replace_controls(&value, true).trim().to_string();
    if truncate_on_char_boundary(&mut subject, MAX_SUBJECT_BYTES) {
        problems.note("subject truncated to 4 KiB");
        subject = subject.trim_end().to_string();
    }
    subject
}

fn date_from(h: &MailHeader, problems: &mut Problems) -> Option<chrono::DateTime<chrono::Utc>> {
    let (value, _) = header_value(h);
    let value = value.trim();
    if value.is_empty() {
        problems.note("empty Date header");
        return None;
    }
    if value.chars().count() > MAX_DATE_CHARS {
        problems.note("unparseable Date header");
        return None;
    }
    if !has_day_month_year(value) {
        problems.note("unparseable Date header");
        return None;
    }
    match mailparse::dateparse(value) {
        Ok(seconds) => match chrono::DateTime::from_timestamp(seconds, 0) {
            Some(date) => Some(date),
            None => {
                problems.note("Date header out of range");
                None
            }
        },
        Err(_) => {
            problems.note("unparseable Date header");
            None
        }
    }
}

/// Whether the value holds a day of month, a month name and a year in that order, the way
/// `mailparse::dateparse` reads them. `dateparse` returns the epoch instead of an error for a
/// value in which it finds none of these, so this check keeps such values from becoming
/// 1970-01-01.
fn has_day_month_year(value: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let mut tokens = value.split([' ', ':']).filter(|t| !t.is_empty());
    if !tokens.any(|t| t.parse::<u8>().is_ok()) {
        return false;
    }
    let month_ok = tokens.next().is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        MONTHS.iter().any(|m| t.starts_with(m))
    });
    month_ok && tokens.next().is_some_and(|t| t.parse::<u32>().is_ok())
}

/// The raw value with line breaks removed and trimmed. Message ids are compared byte for
/// byte, so they are neither decoded nor case-folded.
fn raw_id_value(h: &MailHeader) -> String {
    let raw = String::from_utf8_lossy(h.get_value_raw());
    raw.chars()
        .filter(|&c| c != '\r' && c != '\n')
        .collect::<String>()
        .trim()
        .to_string()
}

/// Every `<...>` token in `s`, brackets included. A `<` inside a token restarts it, so that
/// `<a<b@c>` yields `<b@c>`.
fn angle_tokens(s: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in s.char_indices() {
        match c {
            '<' => start = Some(i),
            '>' => {
                if let Some(st) = start.take()
                    && let Some(token) = s.get(st..i + 1)
                {
                    tokens.push(token);
                }
            }
            _ => {}
        }
    }
    tokens
}

fn message_id_from(h: &MailHeader) -> Option<String> {
    let value = raw_id_value(h);
    if value.is_empty() {
        return None;
    }
    match angle_tokens(&value).first() {
        Some(token) => Some((*token).to_string()),
        None => Some(value),
    }
}

fn msg_ids_from(headers: &[&MailHeader], field: &str, problems: &mut Problems) -> Vec<String> {
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    for h in headers {
        let value = raw_id_value(h);
        let tokens = angle_tokens(&value);
        let found: Vec<&str> = if tokens.is_empty() {
            // Old mailers wrote ids without brackets; an id always contains an `@`.
            let bare: Vec<&str> = value
                .split_whitespace()
                .filter(|t| t.contains('@'))
                .collect();
            if !bare.is_empty() {
                problems.note(format!("msg-id without angle brackets in {field}"));
            } else if !value.is_empty() {
                problems.note(format!("no msg-id found in {field}"));
            }
            bare
        } else {
            tokens
        };
        for id in found {
            if seen.insert(id.to_string()) {
                ids.push(id.to_string());
            }
        }
    }
    ids
}

fn first_word_lower(value: &str) -> String {
    value
        .trim()
        .split(|c: char| c == ';' || c == '(' || c.is_whitespace())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn precedence_is_bulk(h: &MailHeader) -> bool {
    let word = first_word_lower(&String::from_utf8_lossy(h.get_value_raw()));
    matches!(word.as_str(), "bulk" | "list" | "junk")
}

fn auto_submitted_is_set(h: &MailHeader) -> bool {
    first_word_lower(&String::from_utf8_lossy(h.get_value_raw())) != "no"
}

// ---------------------------------------------------------------------------------------------
// Gmail labels
// ---------------------------------------------------------------------------------------------

fn labels_from_headers(headers: &[&MailHeader], problems: &mut Problems) -> Vec<String> {
    let mut labels = Vec::new();
    for h in headers {
        let (value, decoded) = header_value(h);
        if !decoded {
            problems.note("X-Gmail-Labels too complex to decode; used as written");
        }
        labels.extend(split_labels(&value));
    }
    labels
}

/// Splits a Takeout label list on commas outside double quotes. A backslash escapes the next
/// character, inside quotes or not: Takeout writes a label `'x` as `\'x`, and `"a \"b\", c"`
/// is the one label `a "b", c`.
fn split_labels(value: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            // The quote characters themselves are dropped: they only group the label.
            in_quotes = !in_quotes;
        } else if c == ',' && !in_quotes {
            pieces.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    pieces.push(current);
    pieces
        .into_iter()
        .map(|p| replace_controls(&p, false).trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------------

/// Counts addresses over the whole message against `MAX_ADDRESSES` and `MAX_ADDRESSES_SCANNED`.
#[derive(Default)]
struct AddressBudget {
    kept: usize,
    scanned: usize,
    exhausted: bool,
}

/// Collects the mailboxes of one field, deduplicated in first-seen order.
struct FieldAddresses<'b> {
    field: &'static str,
    list: Vec<Mailbox>,
    seen: HashSet<String>,
    budget: &'b mut AddressBudget,
}

impl FieldAddresses<'_> {
    fn push(&mut self, display_name: Option<&str>, raw_address: &str, problems: &mut Problems) {
        if self.budget.exhausted {
            return;
        }
        self.budget.scanned += 1;
        if self.budget.scanned > MAX_ADDRESSES_SCANNED {
            self.budget.exhausted = true;
            problems.note("too many addresses; the rest were skipped");
            return;
        }
        let mut candidates = Vec::new();
        let mut name_words = Vec::new();
        match normalize_address(raw_address) {
            Some(address) if address.contains(char::is_whitespace) && !address.contains('"') => {
                // Unquoted whitespace cannot be part of an address: this is text that ran
                // into the address, as in `Joe Bloggs joe@example.com`. The tokens with an `@`
                // are the addresses and the other words, as written, their display name.
                problems.note(format!("text next to an address in {}", self.field));
                for token in raw_address.split_whitespace() {
                    match normalize_address(token) {
                        Some(a) => candidates.push(a),
                        None => name_words.push(token),
                    }
                }
            }
            Some(address) => candidates.push(address),
            None => {
                if !raw_address.trim().is_empty() {
                    problems.note(format!("address without @ dropped in {}", self.field));
                }
            }
        }
        let joined_words = name_words.join(" ");
        let name = display_name
            .or((!joined_words.is_empty()).then_some(joined_words.as_str()))
            .map(|n| replace_controls(n, false).trim().to_string())
            .filter(|n| !n.is_empty());
        for address in candidates {
            if self.seen.contains(&address) {
                continue;
            }
            if self.budget.kept >= MAX_ADDRESSES {
                self.budget.exhausted = true;
                problems.note("more than 10000 addresses; the rest were dropped");
                return;
            }
            self.budget.kept += 1;
            self.seen.insert(address.clone());
            self.list.push(Mailbox {
                display_name: name.clone(),
                address,
            });
        }
    }

    fn push_list(&mut self, list: Vec<MailAddr>, problems: &mut Problems) {
        for entry in list {
            match entry {
                MailAddr::Single(single) => {
                    self.push(single.display_name.as_deref(), &single.addr, problems)
                }
                // A group's name is a label, never an address; only its members count.
                MailAddr::Group(group) => {
                    for single in group.addrs {
                        self.push(single.display_name.as_deref(), &single.addr, problems);
                    }
                }
            }
        }
    }
}

/// Lower-cases and trims an address and strips brackets and quotes that leaked around it.
/// Returns None unless there is text on both sides of the last `@`.
fn normalize_address(raw: &str) -> Option<String> {
    let mut a: String = raw.chars().filter(|c| !c.is_control()).collect();
    loop {
        // Separators that leak from a list (`;, c@x.com` after a group) are not part of it.
        let trimmed = a.trim_matches(|c: char| c.is_whitespace() || c == ',' || c == ';');
        let inner = trimmed
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .or_else(|| trimmed.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
            .or_else(|| {
                trimmed
                    .strip_prefix('\'')
                    .and_then(|t| t.strip_suffix('\''))
            });
        match inner {
            Some(inner) => a = inner.to_string(),
            None => {
                a = trimmed.to_string();
                break;
            }
        }
    }
    let a = a.to_lowercase();
    let (local, domain) = a.rsplit_once('@')?;
    if local.trim().is_empty() || domain.trim().is_empty() {
        return None;
    }
    Some(a)
}

fn addresses_for(
    headers: &[&MailHeader],
    field: &'static str,
    budget: &mut AddressBudget,
    problems: &mut Problems,
) -> Vec<Mailbox> {
    let mut out = FieldAddresses {
        field,
        list: Vec::new(),
        seen: HashSet::new(),
        budget,
    };
    for h in headers {
        if out.budget.exhausted {
            break;
        }
        let raw = h.get_value_raw();
        let parsed = if decode_cost(raw) <= HEADER_DECODE_BUDGET {
            match catch_unwind(AssertUnwindSafe(|| mailparse::addrparse_header(h))) {
                Ok(result) => result.ok(),
                Err(_) => {
                    problems.note(format!("internal error while parsing addresses in {field}"));
                    None
                }
            }
        } else {
            None
        };
        match parsed {
            Some(list) => out.push_list(list.into_inner(), problems),
            None => {
                problems.note(format!(
                    "unparseable address list in {field}; used tolerant scan"
                ));
                tolerant_addresses(raw, &mut out, problems);
            }
        }
    }
    out.list
}

/// Splits an address list on commas and semicolons outside quotes, angle brackets and
/// comments. Linear in the input.
fn split_top_level(value: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let mut in_angle = false;
    let mut comment_depth = 0usize;
    let mut escaped = false;
    for (i, &b) in value.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quote || comment_depth > 0 => escaped = true,
            b'"' if comment_depth == 0 && !in_angle => in_quote = !in_quote,
            b'(' if !in_quote && !in_angle => comment_depth += 1,
            b')' if !in_quote && !in_angle => comment_depth = comment_depth.saturating_sub(1),
            b'<' if !in_quote && comment_depth == 0 => in_angle = true,
            b'>' if !in_quote && comment_depth == 0 => in_angle = false,
            b',' | b';' if !in_quote && !in_angle && comment_depth == 0 => {
                pieces.push(value.get(start..i).unwrap_or(&[]));
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(value.get(start..).unwrap_or(&[]));
    pieces
}

/// Drops a group label (`Team:`) in front of a list segment. The label ends at the first
/// colon outside quotes and angle brackets, and only counts if it holds no `@`.
fn strip_group_label(segment: &[u8]) -> &[u8] {
    let mut in_quote = false;
    let mut in_angle = false;
    for (i, &b) in segment.iter().enumerate() {
        match b {
            b'"' if !in_angle => in_quote = !in_quote,
            b'<' if !in_quote => in_angle = true,
            b'>' if !in_quote => in_angle = false,
            b':' if !in_quote && !in_angle => {
                let label = segment.get(..i).unwrap_or(&[]);
                if label.contains(&b'@') {
                    return segment;
                }
                return segment.get(i + 1..).unwrap_or(&[]);
            }
            _ => {}
        }
    }
    segment
}

/// Reads what it can from an address list that `mailparse` rejected: each segment is parsed
/// on its own (so one bad entry does not cost the others their display names), and a segment
/// that still fails gives up its `local@domain` tokens, those inside `<...>` first.
fn tolerant_addresses(raw: &[u8], out: &mut FieldAddresses, problems: &mut Problems) {
    for segment in split_top_level(raw) {
        if out.budget.exhausted {
            return;
        }
        let segment = strip_group_label(segment);
        if segment.trim_ascii().is_empty() {
            continue;
        }
        if !segment.contains(&b'@') {
            problems.note(format!("address without @ dropped in {}", out.field));
            continue;
        }
        let mut header_bytes = b"X: ".to_vec();
        header_bytes.extend_from_slice(segment.trim_ascii());
        let parsed = if decode_cost(segment) <= HEADER_DECODE_BUDGET {
            let attempt = catch_unwind(AssertUnwindSafe(|| {
                mailparse::parse_header(&header_bytes)
                    .ok()
                    .and_then(|(h, _)| mailparse::addrparse_header(&h).ok())
            }));
            attempt.unwrap_or_else(|_| {
                problems.note(format!(
                    "internal error while parsing addresses in {}",
                    out.field
                ));
                None
            })
        } else {
            None
        };
        match parsed {
            Some(list) if list.count_addrs() > 0 => out.push_list(list.into_inner(), problems),
            _ => {
                let text = String::from_utf8_lossy(segment);
                let angled: Vec<&str> = angle_tokens(&text)
                    .into_iter()
                    .filter(|t| t.contains('@'))
                    .collect();
                if angled.is_empty() {
                    for token in text
                        .split(|c: char| c.is_whitespace() || "<>()\"',;:[]".contains(c))
                        .filter(|t| t.contains('@'))
                    {
                        out.push(None, token, problems);
                    }
                } else {
                    for token in angled {
                        out.push(None, token, problems);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MIME structure, body and attachments
// ---------------------------------------------------------------------------------------------

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

fn read_mime(buf: &[u8], problems: &mut Problems) -> MimeFacts {
    let defanged = defang_costly_mime_lines(buf);
    if defanged.is_some() {
        problems.note("pathological MIME header line neutralised before parsing");
    }
    let source: &[u8] = defanged.as_deref().unwrap_or(buf);

    let repaired_storage: Vec<u8>;
    let parsed = match mailparse::parse_mail(source) {
        Ok(parsed) => parsed,
        Err(first_error) => match repair_part_headers(source) {
            Some(repaired) => {
                repaired_storage = repaired;
                match mailparse::parse_mail(&repaired_storage) {
                    Ok(parsed) => {
                        problems.note("MIME part headers repaired (whitespace at a part start)");
                        parsed
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

    let mut walker = Walker {
        leaves: Vec::new(),
        alternative_has_calendar: Vec::new(),
        incomplete: false,
        problems,
    };
    let mut path = Vec::new();
    walker.walk(&parsed, &mut path, 0, None);
    let Walker {
        leaves,
        alternative_has_calendar,
        incomplete,
        problems,
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
        let text = html_to_text(html_source, &leaf.path, problems);
        if !text.trim().is_empty() {
            body_text = Some(text);
        }
        chosen = Some(i);
    }
    if chosen.is_none() {
        chosen = plain;
    }
    if let Some(text) = body_text.as_mut()
        && truncate_on_char_boundary(text, MAX_BODY_BYTES)
    {
        problems.note("body text truncated to 1 MiB");
    }

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
        attachments.push(Attachment {
            file_name: leaf.file_name.clone(),
            content_type,
            size_bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
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

/// Finds MIME header lines that would make `mailparse` do unbounded work and returns a copy
/// with them neutralised, or None when there are none. `mailparse` decodes the values of
/// Content-Type, Content-Disposition and Content-Transfer-Encoding itself, so only lines that
/// start with `Content-` and indented lines (possible continuations) are looked at: their
/// encoded-word cost is checked (see `HEADER_DECODE_BUDGET`), and a Content-Type boundary
/// longer than `MAX_BOUNDARY_BYTES` is renamed so that the part is read as a leaf.
fn defang_costly_mime_lines(buf: &[u8]) -> Option<Vec<u8>> {
    let mut costly: Vec<(usize, usize)> = Vec::new();
    let mut offset = 0;
    let mut rest = buf;
    loop {
        let (line, next) = split_first_line(rest);
        let is_content = line.len() >= 8
            && line
                .get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"content-"));
        let indented = matches!(line.first(), Some(b' ' | b'\t'));
        if (is_content || indented)
            && (decode_cost(line) > HEADER_DECODE_BUDGET || has_long_boundary(line))
        {
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
            for i in 0..line.len().saturating_sub(1) {
                // `=?` becomes `=_`, which cannot start an encoded word.
                if line.get(i..i + 2) == Some(b"=?")
                    && let Some(b) = line.get_mut(i + 1)
                {
                    *b = b'_';
                }
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
    let pos = line
        .windows(KEY.len())
        .position(|w| w.eq_ignore_ascii_case(KEY))?;
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
    boundary_value_range(line).is_some_and(|(_, len)| len > MAX_BOUNDARY_BYTES)
}

fn neutralise_boundary(line: &mut [u8]) {
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
    problems: &'q mut Problems,
}

impl<'p, 'a> Walker<'p, 'a, '_> {
    fn walk(
        &mut self,
        part: &'p ParsedMail<'a>,
        path: &mut Vec<usize>,
        depth: usize,
        alternative: Option<usize>,
    ) {
        if depth > MAX_MIME_DEPTH {
            self.incomplete = true;
            self.problems
                .note("MIME nesting deeper than 64 levels; deeper parts ignored");
            return;
        }
        if self.leaves.len() >= MAX_MIME_LEAVES {
            self.incomplete = true;
            self.problems
                .note("more than 10000 MIME parts; the rest were ignored");
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

fn html_to_text(mut html: String, path: &str, problems: &mut Problems) -> String {
    if truncate_on_char_boundary(&mut html, MAX_HTML_INPUT_BYTES) {
        problems.note(format!(
            "HTML body part {path} truncated to 2 MiB before conversion"
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

    fn parse(s: &str) -> ParsedMessage {
        match parse_message(s.as_bytes()) {
            Ok(m) => m,
            Err(e) => panic!("expected a parse, got {e}"),
        }
    }

    fn addrs(list: &[Mailbox]) -> Vec<&str> {
        list.iter().map(|m| m.address.as_str()).collect()
    }

    fn has_problem(m: &ParsedMessage, needle: &str) -> bool {
        m.problems.iter().any(|p| p.contains(needle))
    }

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
    fn groups_contribute_members_only() {
        let m = parse(
            "To: Team: a@x.com, \"Bea\" <B@x.com>;, c@x.com\nCc: undisclosed-recipients:;\n\nx",
        );
        assert_eq!(addrs(&m.to), ["a@x.com", "b@x.com", "c@x.com"]);
        assert_eq!(m.to[1].display_name.as_deref(), Some("Bea"));
        assert!(m.cc.is_empty());
        assert!(!m.to.iter().any(|a| a.address.contains("team")));
        assert!(m.problems.is_empty(), "{:?}", m.problems);
    }

    #[test]
    fn encoded_display_name() {
        // "张三" in UTF-8, base64-encoded.
        let m = parse("From: =?UTF-8?B?5byg5LiJ?= <zhang@example.com>\n\nx");
        assert_eq!(m.from[0].display_name.as_deref(), Some("张三"));
        assert_eq!(m.from[0].address, "zhang@example.com");
    }

    #[test]
    fn quoted_display_name_with_comma() {
        let m = parse("To: \"Doe, John\" <J.Doe+crm@X.com>, other@x.com\n\nx");
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.to[0].display_name.as_deref(), Some("Doe, John"));
        // Dots and +tags are kept: only case and surrounding whitespace are folded.
        assert_eq!(m.to[0].address, "j.doe+crm@x.com");
    }

    #[test]
    fn display_names_have_no_control_characters() {
        let m = parse("From: =?UTF-8?Q?Evil=0D=0AName=1B[2J?= <e@x.com>\n\nx");
        let name = m.from[0].display_name.clone().unwrap_or_default();
        assert!(!name.chars().any(char::is_control));
        assert!(name.starts_with("Evil"));
    }

    #[test]
    fn address_without_at_is_dropped() {
        let m = parse("To: alice, bob@example.com\nSubject: s\n\nx");
        assert_eq!(addrs(&m.to), ["bob@example.com"]);
        assert!(has_problem(&m, "address without @ dropped in to"));
        assert!(m.problems.iter().all(|p| !p.contains("alice")));
    }

    #[test]
    fn tolerant_scan_when_addrparse_fails() {
        let m = parse("Cc: <a@x.com> junk <B@y.com>, \"Zed\" <z@z.com>\n\nx");
        assert_eq!(addrs(&m.cc), ["a@x.com", "b@y.com", "z@z.com"]);
        assert_eq!(m.cc[2].display_name.as_deref(), Some("Zed"));
        assert!(has_problem(&m, "unparseable address list in cc"));
    }

    #[test]
    fn text_next_to_an_address_is_split_off() {
        let m = parse("From: Joe Bloggs JOE@x.com\n\nx");
        assert_eq!(addrs(&m.from), ["joe@x.com"]);
        assert_eq!(m.from[0].display_name.as_deref(), Some("Joe Bloggs"));
        assert!(!has_problem(&m, "without @"));
    }

    #[test]
    fn repeated_headers_are_merged_and_deduplicated() {
        let m = parse("To: a@x.com\nTo: b@x.com, A@X.com\nBcc: b@x.com\n\nx");
        assert_eq!(addrs(&m.to), ["a@x.com", "b@x.com"]);
        // Deduplication is per field.
        assert_eq!(addrs(&m.bcc), ["b@x.com"]);
    }

    #[test]
    fn leaked_brackets_and_quotes_are_stripped() {
        assert_eq!(normalize_address(" <A@X.com> ").as_deref(), Some("a@x.com"));
        assert_eq!(normalize_address("'a@x.com'").as_deref(), Some("a@x.com"));
        assert_eq!(
            normalize_address("\"<a@x.com>\"").as_deref(),
            Some("a@x.com")
        );
        assert_eq!(normalize_address("nobody"), None);
        assert_eq!(normalize_address("@x.com"), None);
        assert_eq!(normalize_address("a@"), None);
    }

    #[test]
    fn address_cap() {
        let list: Vec<String> = (0..10_050).map(|i| format!("u{i}@x.com")).collect();
        let m = parse(&format!("To: {}\n\nx", list.join(", ")));
        assert_eq!(m.to.len(), MAX_ADDRESSES);
        assert!(has_problem(&m, "more than 10000 addresses"));
    }

    #[test]
    fn subject_is_decoded_unfolded_and_cleaned() {
        let m = parse(
            "Subject: =?iso-8859-1?Q?=A1Hola,?=\n =?utf-8?B?c2XDsW9yIQ==?= and\n\tmore\x07here \n\nx",
        );
        assert_eq!(m.subject.as_deref(), Some("¡Hola,señor! and more here"));
    }

    #[test]
    fn subject_is_capped() {
        let m = parse(&format!("Subject: {}\n\nx", "é".repeat(3000)));
        let subject = m.subject.clone().unwrap_or_default();
        assert!(subject.len() <= MAX_SUBJECT_BYTES);
        assert!(subject.chars().all(|c| c == 'é'));
        assert!(has_problem(&m, "subject truncated"));
    }

    #[test]
    fn pathological_encoded_words_are_bounded() {
        let start = std::time::Instant::now();
        let value = "=?a?=x".repeat(100_000);
        let m = parse(&format!(
            "Subject: {value}\nTo: {value}\nContent-Type: text/plain; name=\"{value}\"\n\nx"
        ));
        assert!(has_problem(&m, "subject too complex"));
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn dates() {
        let m = parse("Date: Tue, 1 Jul 2003 10:52:37 +0200\n\nx");
        assert_eq!(
            m.date.map(|d| d.to_rfc3339()),
            Some("2003-07-01T08:52:37+00:00".to_string())
        );
        let m = parse("Date: yesterday-ish\nSubject: s\n\nx");
        assert_eq!(m.date, None);
        assert!(has_problem(&m, "unparseable Date header"));
    }

    #[test]
    fn message_ids() {
        let m = parse("Message-ID:   <Some.ID@Host>  \n\nx");
        assert_eq!(m.message_id.as_deref(), Some("<Some.ID@Host>"));
        let m = parse("Message-Id: <first@h> <second@h>\n\nx");
        assert_eq!(m.message_id.as_deref(), Some("<first@h>"));
        let m = parse("Message-ID: bare-id@host\n\nx");
        assert_eq!(m.message_id.as_deref(), Some("bare-id@host"));
        let m = parse("Message-ID:\nSubject: s\n\nx");
        assert_eq!(m.message_id, None);
    }

    #[test]
    fn reply_references() {
        let m = parse(
            "Subject: s\nIn-Reply-To: Your message of Monday <a@h>\nReferences: <r1@h>\n <r2@h><r3@h> <r1@h>\n\nx",
        );
        assert_eq!(m.in_reply_to, ["<a@h>"]);
        assert_eq!(m.references, ["<r1@h>", "<r2@h>", "<r3@h>"]);
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
    fn takeout_labels() {
        let raw = "From 123@xxx Tue Mar 19 09:13:51 +0000 2019\nX-GM-THRID: 1\n\
                   X-Gmail-Labels: Inbox,Category Promotions,\"Some, label\",Spam\nSubject: s\n\nx";
        let expected = ["Inbox", "Category Promotions", "Some, label", "Spam"];
        assert_eq!(gmail_labels(raw.as_bytes()), expected);
        let m = parse(raw);
        assert_eq!(m.gmail_labels, expected);
        assert_eq!(m.subject.as_deref(), Some("s"));
        assert!(gmail_labels(b"Subject: none\n\nx").is_empty());
        // Real Takeout output: labels inside an encoded word, an escaped quote, a quoted comma.
        let encoded = "X-Gmail-Labels: =?UTF-8?Q?Archived,=E2=98=AF,\\'single-quote,\"a,_b\"?=\n\n";
        assert_eq!(
            gmail_labels(encoded.as_bytes()),
            ["Archived", "☯", "'single-quote", "a, b"]
        );
        assert!(gmail_labels(b"").is_empty());
    }

    #[test]
    fn first_line_starting_with_space() {
        let m = parse(" From: a@x.com\nSubject: hi\n\nbody");
        assert_eq!(addrs(&m.from), ["a@x.com"]);
        assert_eq!(m.subject.as_deref(), Some("hi"));
        assert!(has_problem(&m, "began with whitespace"));
    }

    #[test]
    fn whitespace_only_first_line() {
        let m = parse("      \nSubject: hi\nFrom: a@x.com\n\nbody");
        assert_eq!(m.subject.as_deref(), Some("hi"));
        assert_eq!(m.body_text.as_deref(), Some("body"));
    }

    #[test]
    fn mbox_line_and_blank_lines_are_skipped() {
        let m = parse("\r\n\nFrom someone@x Mon Jan  1 00:00:00 2001\nFrom: a@x.com\n\nbody");
        assert_eq!(addrs(&m.from), ["a@x.com"]);
        let m = parse("From : a@x.com\n\nbody");
        assert_eq!(addrs(&m.from), ["a@x.com"]);
    }

    #[test]
    fn repaired_header_block() {
        let m = parse("Subject: s\nBroken line\n continued\nFrom: a@x.com\n\nbody");
        assert_eq!(addrs(&m.from), ["a@x.com"]);
        assert!(has_problem(&m, "header block repaired"));
        let m = parse("Subject: s\rFrom: a@x.com\r\rbody");
        assert_eq!(m.subject.as_deref(), Some("s"));
        assert!(has_problem(&m, "bare CR line ends"));
        assert_eq!(m.body_text.as_deref(), Some("body"));
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
        let nested: String = (0..120)
            .map(|i| format!("Content-Type: multipart/mixed; boundary=b{i}x\n\n--b{i}x\n"))
            .collect();
        let m = parse(&format!("Subject: deep\n{nested}"));
        assert_eq!(m.subject.as_deref(), Some("deep"));
        assert_eq!(m.body_text, None);
        assert!(
            has_problem(&m, "MIME structure unreadable"),
            "{:?}",
            m.problems
        );
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

    #[test]
    fn automation_signals() {
        let m = parse(
            "Subject: s\nList-Id: <x.lists>\nList-Unsubscribe: <mailto:u@x>\nPrecedence: Bulk\nAuto-Submitted: auto-generated\n\nx",
        );
        assert!(m.automation.list_id);
        assert!(m.automation.list_unsubscribe);
        assert!(m.automation.precedence_bulk);
        assert!(m.automation.auto_submitted);
        let m = parse("Subject: s\nPrecedence: first-class\nAuto-Submitted: No (manual)\n\nx");
        assert!(!m.automation.precedence_bulk);
        assert!(!m.automation.auto_submitted);
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
        assert!(body.len() <= MAX_BODY_BYTES);
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
    fn problems_never_quote_content() {
        let m = parse(concat!(
            "From: secret-name, <secret@x.com> junk\nTo: Secret Group: nobody-secret;\n",
            "Subject: secret subject\nDate: secret\nContent-Type: text/plain; charset=secret-cs\n\n",
            "secret body"
        ));
        assert!(!m.problems.is_empty());
        for p in &m.problems {
            assert!(!p.contains("x.com"), "a problem quotes an address");
            assert!(!p.contains("secret "), "a problem quotes content");
            assert!(!p.contains("secret-name") && !p.contains("nobody"));
        }
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
                Err(ParseError::Empty) => true,
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
