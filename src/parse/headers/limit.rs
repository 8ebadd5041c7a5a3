//! `Limits::max_header_bytes`: which header fields, and which of their lines, fit. The
//! message's header block is limited here; MIME part header blocks in `mime::bounds`.

use std::borrow::Cow;

use crate::parse::limits::size_label;
use crate::parse::lines::next_newline;
use crate::parse::problems::Problems;

/// The length of the header block at the start of `s` as `mailparse::parse_headers` sees
/// it: up to, not including, the first empty line (`\n` or `\r\n`), or all of `s`.
fn header_block_len(s: &[u8]) -> usize {
    let mut pos = 0;
    while pos < s.len() {
        let rest = s.get(pos..).unwrap_or(&[]);
        if rest.starts_with(b"\n") || rest.starts_with(b"\r\n") {
            return pos;
        }
        match next_newline(s, pos) {
            Some(lf) => pos = lf + 1,
            None => return s.len(),
        }
    }
    s.len()
}

/// Calls `each` with the start and end of every header field in `block` (a line that does
/// not begin with whitespace, with the continuation lines that follow it, line ends
/// included). A block that begins with a continuation line yields it as a field of its own.
fn for_each_header_field(block: &[u8], mut each: impl FnMut(usize, usize)) {
    let mut field_start = 0;
    let mut pos = 0;
    while pos < block.len() {
        let end = next_newline(block, pos).map_or(block.len(), |lf| lf + 1);
        let continues = pos > 0 && matches!(block.get(pos), Some(b' ' | b'\t'));
        if pos > 0 && !continues {
            each(field_start, pos);
            field_start = pos;
        }
        pos = end;
    }
    if field_start < block.len() {
        each(field_start, block.len());
    }
}

/// Which parts of the header fields of `block` fit in `max` bytes. Fields are kept in
/// order while they fit. A field that does not fit keeps as many of its lines as fit, the
/// first line at least (a long folded address list keeps its first addresses), or else is
/// dropped whole; a later, smaller field may still fit. Calls `each` with every field's
/// start, the end of its kept part (equal to the start when it is dropped) and its end;
/// returns whether anything was dropped.
pub(crate) fn fit_header_fields(
    block: &[u8],
    max: usize,
    mut each: impl FnMut(usize, usize, usize),
) -> bool {
    if block.len() <= max {
        for_each_header_field(block, |start, end| each(start, end, end));
        return false;
    }
    let mut kept = 0usize;
    for_each_header_field(block, |start, end| {
        let room = max - kept;
        let kept_end = if end - start <= room {
            end
        } else {
            // The last line end within the room; the field's first line must fit.
            let field = block.get(start..end).unwrap_or(&[]);
            let first_line_end = next_newline(field, 0).map_or(field.len(), |lf| lf + 1);
            let window = field.get(..room).unwrap_or(field);
            match window.iter().rposition(|&b| b == b'\n') {
                Some(lf) if lf + 1 >= first_line_end => start + lf + 1,
                _ => start,
            }
        };
        kept += kept_end - start;
        each(start, kept_end, end);
    });
    true
}

/// Applies `Limits::max_header_bytes` to the message's header block (see there). Returns the
/// bytes to read, with dropped fields left out and everything after the block unchanged, and
/// whether any field was dropped.
pub(crate) fn limit_header_block<'a>(
    start: &'a [u8],
    max: usize,
    problems: &mut Problems,
) -> (Cow<'a, [u8]>, bool) {
    let block_len = header_block_len(start);
    if block_len <= max {
        return (Cow::Borrowed(start), false);
    }
    let block = start.get(..block_len).unwrap_or(start);
    let mut out = Vec::with_capacity(max.saturating_add(start.len() - block_len));
    fit_header_fields(block, max, |field_start, kept_end, _| {
        out.extend_from_slice(block.get(field_start..kept_end).unwrap_or(&[]));
    });
    out.extend_from_slice(start.get(block_len..).unwrap_or(&[]));
    problems.note(format!(
        "header block larger than {}; header fields or lines that did not fit were dropped",
        size_label(max)
    ));
    (Cow::Owned(out), true)
}

#[cfg(test)]
mod tests {
    use crate::parse::test_support::{addrs, has_problem};
    use crate::parse::{Limits, ParseError, parse_message_with};

    #[test]
    fn header_fields_that_do_not_fit_are_dropped() {
        let raw = format!(
            "X-Junk: {}\nFrom: a@x.com\nSubject: s\n folded\n\nbody",
            "j".repeat(100)
        );
        let limits = Limits {
            max_header_bytes: 60,
            ..Limits::default()
        };
        let m = parse_message_with(raw.as_bytes(), &limits).expect("parses");
        assert_eq!(addrs(&m.from), ["a@x.com"]);
        assert_eq!(m.subject.as_deref(), Some("s folded"));
        assert_eq!(m.body_text.as_deref(), Some("body"));
        assert!(has_problem(&m, "header block larger than 60 bytes"));
        // A folded field that does not fit keeps its lines that do.
        let folded = "Subject: s\nTo: a@x.com,\n b@x.com,\n c@x.com\n\nbody";
        let limits = Limits {
            max_header_bytes: 35,
            ..Limits::default()
        };
        let m = parse_message_with(folded.as_bytes(), &limits).expect("parses");
        assert_eq!(addrs(&m.to), ["a@x.com", "b@x.com"]);
        assert_eq!(m.subject.as_deref(), Some("s"));
        let limits = Limits {
            max_header_bytes: 10,
            ..Limits::default()
        };
        match parse_message_with(raw.as_bytes(), &limits) {
            Err(ParseError::UnreadableHeaders(message)) => {
                assert!(message.contains("max_header_bytes"), "{message}")
            }
            other => panic!("expected unreadable headers, got {other:?}"),
        }
    }
}
