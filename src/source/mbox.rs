//! mbox files, as Google Takeout, Google Vault and mail clients write them: each message
//! starts with a `From ` separator line, and body lines that began with `From ` were written
//! as `>From ` (mboxrd: one more `>` per level), which reading undoes.
//!
//! A separator is told from a body line by its shape (see [`is_separator`]), not by a blank
//! line before it: writers such as `git format-patch` put none there, and Python's `mailbox`
//! does not ask for one either. The blank line before a separator, when there is one,
//! belongs to the format and is not part of the message.
//!
//! Takeout exports run to many gigabytes, so messages are read one at a time, and no line or
//! message is held beyond `[limits] max_message_bytes`: a larger message is read past and
//! handed over as [`SourceProblem::TooLarge`], and reading goes on at the next separator.

use std::io::BufRead;
use std::path::Path;

use super::{FileKind, SourceError, SourceMessage, SourceProblem, TooLarge};
use crate::parse::{self, Limits};

/// The longest line that can be a separator. Real ones are an address and a date, well under
/// 200 bytes; the cap also bounds what is kept of each line of a message being read past.
const MAX_SEPARATOR_LINE: usize = 1000;

const WEEKDAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Why an mbox path is not read at all.
#[derive(Debug, thiserror::Error)]
pub enum MboxOpenError {
    #[error("cannot open mbox {path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// FIFOs, sockets and devices are never opened: a FIFO blocks until a writer comes and
    /// `/dev/zero` never ends.
    #[error("mbox {path} is a {kind}, not a regular file; give the path of an mbox file")]
    NotAFile { path: String, kind: FileKind },
}

/// Opens an mbox file for reading with `limits`, refusing anything but a regular file
/// (a symbolic link to one is followed: the user named it).
pub fn open_mbox(
    path: &Path,
    limits: &Limits,
) -> Result<MboxReader<std::io::BufReader<std::fs::File>>, MboxOpenError> {
    let io_error = |error| MboxOpenError::Io {
        path: path.display().to_string(),
        error,
    };
    let not_a_file = |kind| MboxOpenError::NotAFile {
        path: path.display().to_string(),
        kind,
    };
    // Looked at before opening: opening a device can have effects of its own.
    let kind = FileKind::of(std::fs::metadata(path).map_err(io_error)?.file_type());
    if kind != FileKind::Regular {
        return Err(not_a_file(kind));
    }
    let file = super::open_regular(path, true)
        .map_err(io_error)?
        .map_err(not_a_file)?;
    Ok(MboxReader::with_limits(
        std::io::BufReader::with_capacity(64 * 1024, file),
        limits,
    ))
}

/// Text before the first separator: not part of any message, so it is counted (never
/// shown) for the caller to report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preamble {
    pub bytes: u64,
    pub lines: u64,
}

pub struct MboxReader<R> {
    input: R,
    limits: Limits,
    /// Messages started so far, which is the last one's 1-based position.
    position: usize,
    /// The separator line of the next message, already read.
    pending_separator: bool,
    finished: bool,
    preamble: Preamble,
    /// Whether the preamble holds anything but blank lines.
    preamble_has_text: bool,
    line: Vec<u8>,
}

/// One message as read: its bytes, or, over the limit, its size and the bytes kept before
/// the limit was reached (its headers, for the labels).
enum Read {
    Message(Vec<u8>),
    TooLarge { bytes: u64, start: Vec<u8> },
}

impl<R: BufRead> MboxReader<R> {
    /// A reader with the default [`Limits`].
    pub fn new(input: R) -> Self {
        Self::with_limits(input, &Limits::default())
    }

    /// A reader that holds no message beyond `limits.max_message_bytes` and reads labels
    /// within `limits.max_header_bytes`.
    pub fn with_limits(input: R, limits: &Limits) -> Self {
        MboxReader {
            input,
            limits: *limits,
            position: 0,
            pending_separator: false,
            finished: false,
            preamble: Preamble::default(),
            preamble_has_text: false,
            line: Vec::new(),
        }
    }

    /// Text before the first separator, once reading has passed it; `None` when there was
    /// none or it was only blank lines.
    pub fn preamble(&self) -> Option<Preamble> {
        self.preamble_has_text.then_some(self.preamble)
    }

    /// Whether the input, read to its end, held text but no separator at all: it is not an
    /// mbox (an empty input is an empty mbox).
    pub fn is_not_an_mbox(&self) -> bool {
        self.finished && self.position == 0 && self.preamble_has_text
    }

    /// Reads one line into `self.line`, keeping at most `keep` bytes of it; returns its
    /// whole length, `None` at the end of the input. What is not kept is read past, so a
    /// file without line breaks costs time, not memory.
    fn read_line(&mut self, keep: usize) -> std::io::Result<Option<u64>> {
        self.line.clear();
        let mut length = 0u64;
        loop {
            let available = match self.input.fill_buf() {
                Ok(available) => available,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if available.is_empty() {
                break;
            }
            let (used, complete) = match memchr::memchr(b'\n', available) {
                Some(end) => (end + 1, true),
                None => (available.len(), false),
            };
            let room = keep.saturating_sub(self.line.len());
            self.line.extend_from_slice(&available[..used.min(room)]);
            self.input.consume(used);
            length += used as u64;
            if complete {
                break;
            }
        }
        Ok((length > 0).then_some(length))
    }

    /// Whether the line just read (of `length` bytes) is a separator.
    fn line_is_separator(&self, length: u64) -> bool {
        length <= MAX_SEPARATOR_LINE as u64 && is_separator(&self.line)
    }

    /// Reads up to the next separator; `None` at the end of the input.
    fn next_message(&mut self) -> std::io::Result<Option<Read>> {
        if !self.pending_separator {
            if self.position > 0 {
                return Ok(None);
            }
            loop {
                let Some(length) = self.read_line(MAX_SEPARATOR_LINE)? else {
                    return Ok(None);
                };
                if self.line_is_separator(length) {
                    break;
                }
                self.preamble.bytes += length;
                self.preamble.lines += 1;
                self.preamble_has_text |= !is_blank(&self.line);
            }
        }
        self.pending_separator = false;
        let limit = self.limits.max_message_bytes;
        let mut message = Vec::new();
        // Bytes of the message read so far, including those not kept.
        let mut bytes = 0u64;
        let mut too_large = false;
        // A blank line is held back until the next line shows it is not the one before a
        // separator (which is not part of the message).
        let mut held_blank: Option<&'static [u8]> = None;
        loop {
            let room = limit.saturating_sub(message.len());
            let keep = if too_large {
                MAX_SEPARATOR_LINE
            } else {
                room.saturating_add(1).max(MAX_SEPARATOR_LINE)
            };
            let Some(length) = self.read_line(keep)? else {
                break;
            };
            if self.line_is_separator(length) {
                self.pending_separator = true;
                held_blank = None;
                break;
            }
            let mut add = |content: &[u8], length: u64| {
                bytes += length;
                if !too_large && length <= (limit - message.len()) as u64 {
                    message.extend_from_slice(content);
                } else {
                    too_large = true;
                }
            };
            if let Some(blank) = held_blank.take() {
                add(blank, blank.len() as u64);
            }
            if length <= 2 && is_blank(&self.line) {
                held_blank = Some(if self.line.len() == 2 { b"\r\n" } else { b"\n" });
                continue;
            }
            let quoted = is_quoted_from(&self.line);
            let content = if quoted { &self.line[1..] } else { &self.line };
            add(content, length - u64::from(quoted));
        }
        // At the end of the input the last blank line stays part of the message, as it
        // always has: a message without a Message-ID is keyed by the hash of its bytes.
        if let Some(blank) = held_blank {
            bytes += blank.len() as u64;
            if !too_large && blank.len() <= limit - message.len() {
                message.extend_from_slice(blank);
            } else {
                too_large = true;
            }
        }
        Ok(Some(if too_large {
            Read::TooLarge {
                bytes,
                start: message,
            }
        } else {
            Read::Message(message)
        }))
    }
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// `>From `, `>>From `, …: mboxrd's reversible quoting, undone by taking one `>` away.
fn is_quoted_from(line: &[u8]) -> bool {
    let quotes = line.iter().take_while(|&&byte| byte == b'>').count();
    quotes > 0 && line[quotes..].starts_with(b"From ")
}

/// Whether `line` has the shape of an mbox separator: `From `, the envelope sender (one word),
/// then a date that starts with an English weekday and has a month name, a time (`H:MM`, with
/// or without seconds) and a four-digit year, in any order after the weekday and with
/// anything else between (a zone such as `+0000` or `PST`). That is asctime's
/// `Mon Jan  1 00:00:00 2024` as every mbox writer uses it, Takeout's
/// `Mon Jan 01 00:00:00 +0000 2024`, and RFC 2822's `Mon, 1 Jan 2024 00:00:00 +0000`. A body
/// line that begins with "From" in prose almost never has all four, which is what tells the
/// two apart; tests/integration/corpus.rs checks that Python's `mailbox`, which splits on every `From `
/// line, finds the same messages in every mbox of the shared corpus.
fn is_separator(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    let mut words = rest
        .split(|byte| byte.is_ascii_whitespace())
        .filter(|word| !word.is_empty())
        .map(|word| word.strip_suffix(b",").unwrap_or(word));
    let (Some(_sender), Some(weekday)) = (words.next(), words.next()) else {
        return false;
    };
    if !WEEKDAYS.iter().any(|day| day.eq_ignore_ascii_case(weekday)) {
        return false;
    }
    let (mut month, mut time, mut year) = (false, false, false);
    for word in words {
        month |= MONTHS.iter().any(|name| name.eq_ignore_ascii_case(word));
        time |= is_time(word);
        year |= word.len() == 4 && word.iter().all(u8::is_ascii_digit);
    }
    month && time && year
}

/// `H:MM`, `HH:MM` or `HH:MM:SS`.
fn is_time(word: &[u8]) -> bool {
    let mut parts = word.split(|&byte| byte == b':');
    let digits = |part: &[u8], lengths: std::ops::RangeInclusive<usize>| {
        lengths.contains(&part.len()) && part.iter().all(u8::is_ascii_digit)
    };
    let (Some(hours), Some(minutes)) = (parts.next(), parts.next()) else {
        return false;
    };
    let seconds_fit = parts.next().is_none_or(|seconds| digits(seconds, 2..=2));
    digits(hours, 1..=2) && digits(minutes, 2..=2) && seconds_fit && parts.next().is_none()
}

impl<R: BufRead> Iterator for MboxReader<R> {
    type Item = Result<SourceMessage, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.next_message() {
            Ok(Some(read)) => {
                self.position += 1;
                let source_id = self.position.to_string();
                Some(match read {
                    Read::Message(raw) => Ok(SourceMessage {
                        source_id,
                        labels: parse::gmail_labels_with(&raw, &self.limits),
                        raw,
                    }),
                    Read::TooLarge { bytes, start } => Err(SourceError {
                        source_id,
                        problem: SourceProblem::TooLarge(TooLarge {
                            bytes,
                            limit: self.limits.max_message_bytes,
                            labels: parse::gmail_labels_with(&start, &self.limits),
                        }),
                    }),
                })
            }
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(error) => {
                // An I/O error mid-file leaves us unable to find the next boundary reliably.
                self.finished = true;
                Some(Err(SourceError {
                    source_id: (self.position + 1).to_string(),
                    problem: SourceProblem::Io(error),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the reader hands over for `input`: each message's source id and text, or its
    /// size when it is over `max_message_bytes`.
    fn read(input: &str, max_message_bytes: usize) -> Vec<(String, Result<String, u64>)> {
        let limits = Limits {
            max_message_bytes,
            ..Limits::default()
        };
        MboxReader::with_limits(input.as_bytes(), &limits)
            .map(|message| match message {
                Ok(message) => (
                    message.source_id,
                    Ok(String::from_utf8(message.raw).unwrap()),
                ),
                Err(SourceError {
                    source_id,
                    problem: SourceProblem::TooLarge(too_large),
                }) => (source_id, Err(too_large.bytes)),
                Err(error) => panic!("reading from memory failed: {error}"),
            })
            .collect()
    }

    fn messages(input: &str) -> Vec<String> {
        read(input, Limits::default().max_message_bytes)
            .into_iter()
            .map(|(_, message)| message.expect("within the limit"))
            .collect()
    }

    const SEPARATOR: &str = "From sender@example.com Mon Jan  1 00:00:00 2024\n";

    #[test]
    fn separators_are_told_from_body_lines_by_their_shape() {
        let cases: &[(&str, bool)] = &[
            ("From sender@example.com Mon Jan  1 00:00:00 2024", true),
            ("From MAILER-DAEMON Fri Jul  8 12:08:34 2011", true),
            // Google Takeout and Vault.
            ("From 1234567890@xxx Mon Jan 01 00:00:00 +0000 2024", true),
            (
                "From 1630926631156851975-69497506.mbox@xxx Tue Apr 16 12:00:40 2019",
                true,
            ),
            // git format-patch.
            (
                "From b9704a518e21158433baa2cc2d591fea687967f6 Mon Sep 17 00:00:00 2001",
                true,
            ),
            // Older writers: two spaces, a dash for the sender, a zone name, CRLF.
            (
                "From owner-funnel-pc@hpc.uh.edu  Thu Apr 30 14:27:51 1998",
                true,
            ),
            ("From - Fri Jun  9 23:17:56 2000", true),
            (
                "From mrc@CAC.Washington.EDU Mon Feb  8 02:53:47 PST 1993",
                true,
            ),
            ("From a@b Mon Jan  1 00:00 2024\r", true),
            ("From a@b Mon, 1 Jan 2024 00:00:00 +0000", true),
            // Body lines and headers.
            (
                "From the start of the project, we agreed on Monday at 10:00 in 2024",
                false,
            ),
            ("From me: Mon Jan 1 2024", false),
            ("From: sender@example.com", false),
            ("From sender@example.com", false),
            ("From a@b Mon Jan  1 2024", false),
            ("From a@b Mon Jan  1 00:00:00", false),
            ("From a@b Jan  1 00:00:00 2024", false),
            ("From a@b Mon Jan  1 0:0:0 2024", false),
            (">From a@b Mon Jan  1 00:00:00 2024", false),
            ("from a@b Mon Jan  1 00:00:00 2024", false),
            ("From ", false),
            ("", false),
        ];
        for (line, expected) in cases {
            assert_eq!(is_separator(line.as_bytes()), *expected, "{line:?}");
        }
    }

    #[test]
    fn splits_on_separators_after_blank_lines_and_unquotes() {
        let mbox = "From 1@xxx Mon Jan  1 00:00:00 2024\n\
                    Subject: one\n\nbody\n>From the start\n>>From quoted\nFrom not a separator\n\n\
                    From 2@xxx Mon Jan  1 00:00:00 2024\n\
                    X-Gmail-Labels: Inbox,Spam\nSubject: two\n\nsecond\n";
        let parsed = read(mbox, 1024);
        assert_eq!(
            parsed,
            vec![
                (
                    "1".to_string(),
                    Ok("Subject: one\n\nbody\nFrom the start\n>From quoted\nFrom not a separator\n"
                        .to_string())
                ),
                (
                    "2".to_string(),
                    Ok("X-Gmail-Labels: Inbox,Spam\nSubject: two\n\nsecond\n".to_string())
                ),
            ]
        );
        let labels = MboxReader::new(mbox.as_bytes())
            .nth(1)
            .unwrap()
            .unwrap()
            .labels;
        assert_eq!(labels, vec!["Inbox".to_string(), "Spam".to_string()]);
    }

    /// git format-patch and some exporters write the next separator right after the last
    /// body line; the reader used to merge such messages into the one before.
    #[test]
    fn a_separator_without_a_blank_line_before_it_starts_a_message() {
        let mbox = format!(
            "{SEPARATOR}Subject: one\n\n-- \n1.5.6.5\n{SEPARATOR}Subject: two\r\n\r\nx\r\n\r\n{SEPARATOR}Subject: three\n"
        );
        assert_eq!(
            messages(&mbox),
            vec![
                "Subject: one\n\n-- \n1.5.6.5\n",
                "Subject: two\r\n\r\nx\r\n",
                "Subject: three\n"
            ]
        );
    }

    #[test]
    fn only_the_one_blank_line_before_a_separator_is_left_out() {
        let mbox = format!("{SEPARATOR}Subject: one\n\nbody\n\n\n{SEPARATOR}Subject: two\n\n");
        // At the end of the input the blank line stays, as it always has: messages without a
        // Message-ID are keyed by a hash of their bytes.
        assert_eq!(
            messages(&mbox),
            vec!["Subject: one\n\nbody\n\n", "Subject: two\n\n"]
        );
    }

    #[test]
    fn text_before_the_first_separator_is_counted_not_dropped_silently() {
        let mbox = format!("garbage\nmore\n\n{SEPARATOR}Subject: a\n");
        let mut reader = MboxReader::new(mbox.as_bytes());
        assert_eq!(reader.by_ref().count(), 1);
        assert_eq!(
            reader.preamble(),
            Some(Preamble {
                bytes: 14,
                lines: 3
            })
        );
        assert!(!reader.is_not_an_mbox());

        let input = format!("\n\r\n{SEPARATOR}Subject: a\n");
        let mut blank_lines_only = MboxReader::new(input.as_bytes());
        assert_eq!(blank_lines_only.by_ref().count(), 1);
        assert_eq!(blank_lines_only.preamble(), None);
    }

    #[test]
    fn input_without_any_separator_is_not_an_mbox_but_an_empty_one_is() {
        let cases: &[(&str, bool)] = &[
            (
                "Subject: a plain message\n\nFrom the start, no separator.\n",
                true,
            ),
            ("From x\nSubject: not a separator\n", true),
            ("no line break at all", true),
            ("", false),
            ("\n\n", false),
            (SEPARATOR, false),
        ];
        for (input, not_an_mbox) in cases {
            let mut reader = MboxReader::new(input.as_bytes());
            let count = reader.by_ref().count();
            assert_eq!(reader.is_not_an_mbox(), *not_an_mbox, "{input:?}");
            assert_eq!(
                count == 0,
                input.trim().is_empty() || *not_an_mbox,
                "{input:?}"
            );
        }
    }

    #[test]
    fn a_message_over_the_limit_is_read_past_and_reading_goes_on() {
        let big_body = "x".repeat(300);
        let mbox = format!(
            "{SEPARATOR}Subject: small\n\n{SEPARATOR}X-Gmail-Labels: Spam\nSubject: big\n\n{big_body}\nmore\n\n{SEPARATOR}Subject: after\n"
        );
        let read = read(&mbox, 100);
        let big_bytes = "X-Gmail-Labels: Spam\nSubject: big\n\n".len() + big_body.len() + 1 + 5;
        assert_eq!(
            read,
            vec![
                ("1".to_string(), Ok("Subject: small\n".to_string())),
                ("2".to_string(), Err(big_bytes as u64)),
                ("3".to_string(), Ok("Subject: after\n".to_string())),
            ]
        );
        // The labels come from the start of the message, so an excluded label still decides it.
        let limits = Limits {
            max_message_bytes: 100,
            ..Limits::default()
        };
        let too_large = MboxReader::with_limits(mbox.as_bytes(), &limits)
            .nth(1)
            .unwrap();
        match too_large {
            Err(SourceError {
                problem: SourceProblem::TooLarge(too_large),
                ..
            }) => assert_eq!(too_large.labels, vec!["Spam".to_string()]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_limit_counts_the_message_not_the_blank_line_before_the_next_separator() {
        let exactly = "Subject: a\n\n12345678\n";
        let mbox = format!("{SEPARATOR}{exactly}\n{SEPARATOR}{exactly}");
        assert_eq!(
            read(&mbox, exactly.len()),
            vec![
                ("1".to_string(), Ok(exactly.to_string())),
                ("2".to_string(), Ok(exactly.to_string())),
            ]
        );
        assert_eq!(
            read(&mbox, exactly.len() - 1)[0].1,
            Err(exactly.len() as u64)
        );
    }

    /// `mbox:/dev/zero` once aborted on a 4 GiB allocation: a line grew until memory ran out.
    #[test]
    fn a_line_without_line_breaks_is_read_past_not_held() {
        let limit = 1000;
        let limits = Limits {
            max_message_bytes: limit,
            ..Limits::default()
        };
        let endless_line = vec![0u8; 4 * 1024 * 1024];
        for input in [
            // Before any separator, and inside a message.
            endless_line.clone(),
            [SEPARATOR.as_bytes(), &endless_line].concat(),
        ] {
            let mut reader = MboxReader::with_limits(input.as_slice(), &limits);
            let handed_over = reader.by_ref().count();
            assert!(handed_over <= 1);
            assert!(
                reader.line.capacity() <= 4 * limit.max(MAX_SEPARATOR_LINE),
                "a line of {} bytes was held",
                reader.line.capacity()
            );
        }
    }
}
