//! Line scanning over raw bytes, shared by the header and MIME passes.

/// Splits off the first line: the line without its LF (a CR stays), and what follows the LF.
pub(super) fn split_first_line(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    // memchr, not a byte loop: the MIME passes walk every line of a message this way, and
    // the byte loop was a tenth of the pipeline's time on mail with attachments.
    match memchr::memchr(b'\n', s) {
        Some(i) => (s.get(..i).unwrap_or(s), s.get(i + 1..)),
        None => (s, None),
    }
}

pub(super) fn trim_start_wsp(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    s.get(n..).unwrap_or(&[])
}

/// The position of the first LF at or after `from`.
pub(super) fn next_newline(s: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\n', s.get(from..)?).map(|i| from + i)
}
