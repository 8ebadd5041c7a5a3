//! What may stand before the first header: a byte order mark, blank lines, an mbox `From `
//! line, leading whitespace, and bare-CR line ends that `mailparse` cannot split.

use std::borrow::Cow;

use crate::parse::lines::{split_first_line, trim_start_wsp};
use crate::parse::problems::Problems;

fn is_blank_line(line: &[u8]) -> bool {
    line.iter().all(|&b| b == b' ' || b == b'\t' || b == b'\r')
}

/// Skips what may stand before the first header: a byte order mark, blank lines, one mbox
/// `From ` separator, and leading whitespace on the first header line (which `mailparse`
/// would otherwise reject as a continuation of a header that does not exist).
pub(crate) fn strip_preamble<'a>(raw: &'a [u8], problems: &mut Problems) -> &'a [u8] {
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
pub(crate) fn normalize_bare_cr<'a>(raw: &'a [u8], problems: &mut Problems) -> Cow<'a, [u8]> {
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

#[cfg(test)]
mod tests {
    use crate::parse::test_support::{addrs, has_problem, parse};

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
}
