//! MIME part headers that `mailparse` rejects (whitespace at a part's start), repaired once.

use crate::parse::headers::repair_header_lines;
use crate::parse::lines::{split_first_line, trim_start_wsp};

/// Applies `repair_header_lines` to every part header block, that is to the lines after each
/// line that starts with `--` (a boundary candidate). Returns None when nothing changed.
pub(super) fn repair_part_headers(buf: &[u8]) -> Option<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use crate::parse::test_support::{has_problem, parse};

    #[test]
    fn part_starting_with_space_is_repaired() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n",
            "--b\n Content-Type: text/plain\n\nhello\n--b--\n"
        ));
        assert_eq!(m.body_text.as_deref(), Some("hello"));
        assert!(has_problem(&m, "MIME part headers repaired"));
    }
}
