//! Subject, Date and the automation headers (Precedence, Auto-Submitted): one value each,
//! decoded, cleaned and bounded.

use mailparse::MailHeader;

use super::decode::{DecodeBudget, has_encoded_word, header_value, note_text_problems};
use crate::parse::problems::Problems;
use crate::parse::text::{replace_controls, truncate_on_char_boundary};

const MAX_SUBJECT_BYTES: usize = 4 * 1024;
const MAX_DATE_CHARS: usize = 256;

pub(crate) fn subject_from(
    h: &MailHeader,
    decode: &mut DecodeBudget,
    problems: &mut Problems,
) -> String {
    let (value, decoded) = header_value(h, decode);
    if !decoded {
        problems.note("subject too complex to decode; used as written");
    }
    note_text_problems(h.get_value_raw(), "subject", problems);
    let mut subject = replace_controls(&value, true).trim().to_string();
    if truncate_on_char_boundary(&mut subject, MAX_SUBJECT_BYTES) {
        problems.note("subject truncated to 4 KiB");
        subject = subject.trim_end().to_string();
    }
    if has_encoded_word(&subject) {
        problems.note("encoded word in subject left as written (unknown charset or encoding)");
    }
    subject
}

pub(crate) fn date_from(
    h: &MailHeader,
    decode: &mut DecodeBudget,
    problems: &mut Problems,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let (value, _) = header_value(h, decode);
    let value = value.trim();
    if value.is_empty() {
        problems.note("empty Date header");
        return None;
    }
    if value.chars().count() > MAX_DATE_CHARS {
        problems.note("unparseable Date header");
        return None;
    }
    if !has_day_month_year(value) {
        problems.note("unparseable Date header");
        return None;
    }
    match mailparse::dateparse(value) {
        Ok(seconds) => match chrono::DateTime::from_timestamp(seconds, 0) {
            Some(date) => Some(date),
            None => {
                problems.note("Date header out of range");
                None
            }
        },
        Err(_) => {
            problems.note("unparseable Date header");
            None
        }
    }
}

/// Whether the value holds a day of month, a month name and a year in that order, the way
/// `mailparse::dateparse` reads them. `dateparse` returns the epoch instead of an error for a
/// value in which it finds none of these, so this check keeps such values from becoming
/// 1970-01-01.
fn has_day_month_year(value: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let mut tokens = value.split([' ', ':']).filter(|t| !t.is_empty());
    if !tokens.any(|t| t.parse::<u8>().is_ok()) {
        return false;
    }
    let month_ok = tokens.next().is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        MONTHS.iter().any(|m| t.starts_with(m))
    });
    month_ok && tokens.next().is_some_and(|t| t.parse::<u32>().is_ok())
}

fn first_word_lower(value: &str) -> String {
    value
        .trim()
        .split(|c: char| c == ';' || c == '(' || c.is_whitespace())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

pub(crate) fn precedence_is_bulk(h: &MailHeader) -> bool {
    let word = first_word_lower(&String::from_utf8_lossy(h.get_value_raw()));
    matches!(word.as_str(), "bulk" | "list" | "junk")
}

pub(crate) fn auto_submitted_is_set(h: &MailHeader) -> bool {
    first_word_lower(&String::from_utf8_lossy(h.get_value_raw())) != "no"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::{has_problem, parse};

    #[test]
    fn subject_is_decoded_unfolded_and_cleaned() {
        let m = parse(
            "Subject: =?iso-8859-1?Q?=A1Hola,?=\n =?utf-8?B?c2XDsW9yIQ==?= and\n\tmore\x07here \n\nx",
        );
        assert_eq!(m.subject.as_deref(), Some("¡Hola,señor! and more here"));
    }

    #[test]
    fn subject_is_capped() {
        let m = parse(&format!("Subject: {}\n\nx", "é".repeat(3000)));
        let subject = m.subject.clone().unwrap_or_default();
        assert!(subject.len() <= MAX_SUBJECT_BYTES);
        assert!(subject.chars().all(|c| c == 'é'));
        assert!(has_problem(&m, "subject truncated"));
    }

    #[test]
    fn dates() {
        let m = parse("Date: Tue, 1 Jul 2003 10:52:37 +0200\n\nx");
        assert_eq!(
            m.date.map(|d| d.to_rfc3339()),
            Some("2003-07-01T08:52:37+00:00".to_string())
        );
        let m = parse("Date: yesterday-ish\nSubject: s\n\nx");
        assert_eq!(m.date, None);
        assert!(has_problem(&m, "unparseable Date header"));
    }

    #[test]
    fn automation_signals() {
        let m = parse(
            "Subject: s\nList-Id: <x.lists>\nList-Unsubscribe: <mailto:u@x>\nPrecedence: Bulk\nAuto-Submitted: auto-generated\n\nx",
        );
        assert!(m.automation.list_id);
        assert!(m.automation.list_unsubscribe);
        assert!(m.automation.precedence_bulk);
        assert!(m.automation.auto_submitted);
        let m = parse("Subject: s\nPrecedence: first-class\nAuto-Submitted: No (manual)\n\nx");
        assert!(!m.automation.precedence_bulk);
        assert!(!m.automation.auto_submitted);
    }
}
