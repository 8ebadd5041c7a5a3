//! From, To, Cc and Bcc: mailboxes read by `mailparse`, or by a tolerant scan where it gives
//! up, normalised, deduplicated per field and held to the recipient limits.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mailparse::{MailAddr, MailHeader};

use crate::parse::Mailbox;
use crate::parse::headers::{DecodeBudget, angle_tokens, has_encoded_word, note_text_problems};
use crate::parse::limits::Limits;
use crate::parse::problems::Problems;
use crate::parse::text::replace_controls;

/// Counts addresses over the whole message against `Limits::max_recipients` and
/// `Limits::addresses_scanned`.
pub(super) struct AddressBudget {
    kept: usize,
    scanned: usize,
    exhausted: bool,
    max_kept: usize,
    max_scanned: usize,
}

impl AddressBudget {
    pub(super) fn new(limits: &Limits) -> Self {
        AddressBudget {
            kept: 0,
            scanned: 0,
            exhausted: false,
            max_kept: limits.max_recipients,
            max_scanned: limits.addresses_scanned(),
        }
    }
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
        if self.budget.scanned > self.budget.max_scanned {
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
        if name.as_deref().is_some_and(has_encoded_word) {
            problems.note(format!(
                "encoded word in a display name in {} left as written (unknown charset or encoding)",
                self.field
            ));
        }
        for address in candidates {
            if self.seen.contains(&address) {
                continue;
            }
            if self.budget.kept >= self.budget.max_kept {
                self.budget.exhausted = true;
                problems.note(format!(
                    "more than {} addresses; the rest were dropped",
                    self.budget.max_kept
                ));
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

pub(super) fn addresses_for(
    headers: &[&MailHeader],
    field: &'static str,
    budget: &mut AddressBudget,
    decode: &mut DecodeBudget,
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
        note_text_problems(raw, field, problems);
        let parsed = if decode.allows(raw) {
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
                tolerant_addresses(raw, &mut out, decode, problems);
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
fn tolerant_addresses(
    raw: &[u8],
    out: &mut FieldAddresses,
    decode: &mut DecodeBudget,
    problems: &mut Problems,
) {
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
        let parsed = if decode.allows(segment) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::{addrs, has_problem, parse};

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
        assert_eq!(m.to.len(), Limits::default().max_recipients);
        assert!(has_problem(&m, "more than 10000 addresses"));
    }
}
