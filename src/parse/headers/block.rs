//! The header block as `mailparse` reads it, repaired once when it cannot be read as it is.

use std::borrow::Cow;

use crate::parse::ParseError;
use crate::parse::lines::{split_first_line, trim_start_wsp};
use crate::parse::problems::Problems;

/// The bytes from the first header on, repaired if `mailparse` could not read them as they are.
pub(crate) struct HeaderBlock<'a> {
    pub(crate) bytes: Cow<'a, [u8]>,
}

impl<'a> HeaderBlock<'a> {
    pub(crate) fn read(
        start: &'a [u8],
        problems: &mut Problems,
    ) -> Result<HeaderBlock<'a>, ParseError> {
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
pub(crate) fn repair_header_lines(s: &[u8]) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use crate::parse::test_support::{addrs, has_problem, parse};

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
}
