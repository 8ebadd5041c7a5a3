//! [`MimeBounds`]: the MIME structure held to the depth, part and header limits before
//! `mailparse` builds its tree.

use std::collections::HashSet;

use crate::parse::headers::fit_header_fields;
use crate::parse::limits::Limits;
use crate::parse::lines::next_newline;

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
pub(super) struct MimeBounds {
    /// The rewritten buffer; None when nothing had to change.
    pub(super) bytes: Option<Vec<u8>>,
    /// Offsets, in the buffer that is parsed, of the parts whose multipart Content-Type was
    /// disabled because of their depth.
    pub(super) too_deep: HashSet<usize>,
    pub(super) parts_cut: bool,
    pub(super) headers_trimmed: bool,
}

impl MimeBounds {
    pub(super) fn apply(buf: &[u8], limits: &Limits) -> MimeBounds {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_message_with;
    use crate::parse::test_support::{has_problem, parse};

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

    mod properties {
        use mailparse::ParsedMail;
        use proptest::prelude::*;

        use super::super::*;
        use crate::parse::parse_message_with;
        use crate::parse::test_support::no_internal_error;

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
    }
}
