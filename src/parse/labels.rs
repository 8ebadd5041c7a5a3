//! X-Gmail-Labels (Google Takeout): read from the header block alone before the message is
//! parsed, or with the other headers, and split into labels.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mailparse::MailHeader;

use crate::parse::headers::{
    DecodeBudget, HeaderBlock, header_value, key_is, limit_header_block, normalize_bare_cr,
    strip_preamble,
};
use crate::parse::limits::Limits;
use crate::parse::problems::Problems;
use crate::parse::text::replace_controls;

/// Reads only the header block for the X-Gmail-Labels header (cheap; used before deciding
/// whether to parse at all), with the default [`Limits`].
pub fn gmail_labels(raw: &[u8]) -> Vec<String> {
    gmail_labels_with(raw, &Limits::default())
}

/// [`gmail_labels`] within `limits`. Only `max_header_bytes` applies: labels are read even
/// from a message over `max_message_bytes`, so that an excluded label can still decide it.
pub fn gmail_labels_with(raw: &[u8], limits: &Limits) -> Vec<String> {
    catch_unwind(AssertUnwindSafe(|| {
        let mut problems = Problems::default();
        let converted = normalize_bare_cr(raw, &mut problems);
        let start = strip_preamble(&converted, &mut problems);
        let (limited, _) = limit_header_block(start, limits.max_header_bytes, &mut problems);
        let block = match HeaderBlock::read(&limited, &mut problems) {
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
        let mut decode = DecodeBudget::default();
        labels_from_headers(&wanted, &mut decode, &mut problems)
    }))
    .unwrap_or_default()
}

pub(super) fn labels_from_headers(
    headers: &[&MailHeader],
    decode: &mut DecodeBudget,
    problems: &mut Problems,
) -> Vec<String> {
    let mut labels = Vec::new();
    for h in headers {
        let (value, decoded) = header_value(h, decode);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::parse;

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
}
