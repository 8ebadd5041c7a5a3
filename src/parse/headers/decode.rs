//! Header values as text: RFC 2047 decoding within a work budget (`mailparse`'s decoding is
//! quadratic on hostile input), unfolding, and notes on what could not be decoded.

use mailparse::MailHeader;

use crate::parse::problems::Problems;

/// `mailparse` decodes encoded words with a search whose cost grows with (number of `=?`) x
/// (number of `?=`) x (line length) on each header line. Above this estimate (about ten
/// milliseconds of work) a header is read without RFC 2047 decoding instead.
const HEADER_DECODE_BUDGET: u64 = 300_000_000;

/// The same estimate summed over every header line of a message that is decoded (the
/// message's own and its MIME parts'), so that thousands of lines each just under
/// `HEADER_DECODE_BUDGET` cannot add up to seconds. Ordinary mail spends well under a
/// thousandth of it.
const MESSAGE_DECODE_BUDGET: u64 = 10 * HEADER_DECODE_BUDGET;

/// Whether a two-byte pattern occurs.
fn has_pair(line: &[u8], pair: [u8; 2]) -> bool {
    let [first, second] = pair;
    let mut from = 0;
    while let Some(i) = line
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == first))
    {
        if line.get(from + i + 1) == Some(&second) {
            return true;
        }
        from += i + 1;
    }
    false
}

/// Counts the positions at which a two-byte pattern starts.
fn count_pair(line: &[u8], pair: [u8; 2]) -> u64 {
    let [first, second] = pair;
    let mut count = 0;
    let mut from = 0;
    while let Some(i) = line
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == first))
    {
        let at = from + i;
        if line.get(at + 1) == Some(&second) {
            count += 1;
        }
        from = at + 1;
    }
    count
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

/// What is left of `MESSAGE_DECODE_BUDGET` for one message's header values.
pub(crate) struct DecodeBudget {
    left: u64,
}

impl Default for DecodeBudget {
    fn default() -> Self {
        DecodeBudget {
            left: MESSAGE_DECODE_BUDGET,
        }
    }
}

impl DecodeBudget {
    /// Whether `raw` may be RFC 2047 decoded; if so, its cost is spent.
    pub(crate) fn allows(&mut self, raw: &[u8]) -> bool {
        if self.left == 0 {
            // Spent: only a value without any `=?` (cost zero) may still be decoded, and
            // finding out does not need the full count.
            return !has_pair(raw, *b"=?");
        }
        let cost = decode_cost(raw);
        if cost > HEADER_DECODE_BUDGET || cost > self.left {
            // Once a value is refused for the message's budget, the rest is spent too, so
            // that every later value takes the quick check above.
            if cost <= HEADER_DECODE_BUDGET {
                self.left = 0;
            }
            return false;
        }
        self.left -= cost;
        true
    }
}

/// The header value as `mailparse` decodes it, or, when that would take unbounded time, the
/// raw value unfolded but not RFC 2047 decoded. The flag tells which one it is.
pub(crate) fn header_value(h: &MailHeader, decode: &mut DecodeBudget) -> (String, bool) {
    if decode.allows(h.get_value_raw()) {
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

/// Notes a header value that is neither UTF-8 nor plausibly Latin-1. `mailparse` reads
/// 8-bit values that are not UTF-8 as Latin-1, which is right for legacy mail and stays
/// silent; but bytes 0x80-0x9F are C1 control characters in Latin-1, never text, so a value
/// holding them was written in something else (or is noise), and the text is only a guess.
pub(crate) fn note_text_problems(raw: &[u8], field: &str, problems: &mut Problems) {
    if raw.iter().any(|b| (0x80..=0x9f).contains(b)) && std::str::from_utf8(raw).is_err() {
        problems.note(format!(
            "invalid UTF-8 in {field}; read as Latin-1, control characters replaced"
        ));
    }
}

/// Whether `s` still holds something shaped like an RFC 2047 encoded word
/// (`=?charset?b|q?text?=`), which after decoding means `mailparse` did not know the charset
/// or could not decode the text. Linear: each candidate is scanned only up to the next `?`,
/// `=` or whitespace that ends it.
pub(crate) fn has_encoded_word(s: &str) -> bool {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = b
        .get(from..)
        .and_then(|rest| rest.windows(2).position(|w| w == b"=?"))
    {
        let start = from + i + 2;
        from = start;
        let charset_len = b
            .get(start..)
            .unwrap_or(&[])
            .iter()
            .take_while(|&&c| c.is_ascii_graphic() && c != b'?' && c != b'=')
            .count();
        let at = start + charset_len;
        if charset_len == 0
            || b.get(at) != Some(&b'?')
            || !matches!(b.get(at + 1), Some(b'b' | b'B' | b'q' | b'Q'))
            || b.get(at + 2) != Some(&b'?')
        {
            continue;
        }
        let text_start = at + 3;
        let text_len = b
            .get(text_start..)
            .unwrap_or(&[])
            .iter()
            .take_while(|&&c| c.is_ascii_graphic() && c != b'?')
            .count();
        let end = text_start + text_len;
        if b.get(end) == Some(&b'?') && b.get(end + 1) == Some(&b'=') {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use crate::parse::test_support::{has_problem, parse};

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
}
