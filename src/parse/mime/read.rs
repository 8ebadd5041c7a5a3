//! Runs the MIME stages in order and gathers what they found.

use mailparse::MailParseError;

use super::attachments::describe_attachments;
use super::body::choose_body;
use super::bounds::MimeBounds;
use super::calendar::is_calendar_only;
use super::defang::defang_costly_mime_lines;
use super::repair::repair_part_headers;
use super::walk::Walker;
use crate::parse::Attachment;
use crate::parse::limits::{Limits, size_label};
use crate::parse::problems::Problems;

/// What the MIME structure tells about a message; empty when it cannot be read.
#[derive(Default)]
pub(crate) struct MimeFacts {
    pub(crate) body_text: Option<String>,
    pub(crate) attachments: Vec<Attachment>,
    pub(crate) calendar_only: bool,
}

fn mime_error_kind(e: &MailParseError) -> &'static str {
    // Only the error kind is reported; mailparse's generic messages are fixed strings.
    match e {
        MailParseError::Generic(message) => message,
        MailParseError::QuotedPrintableDecodeError(_) => "quoted-printable error",
        MailParseError::Base64DecodeError(_) => "base64 error",
        MailParseError::EncodingError(_) => "encoding error",
    }
}

pub(crate) fn read_mime(buf: &[u8], limits: &Limits, problems: &mut Problems) -> MimeFacts {
    let defanged = defang_costly_mime_lines(buf);
    if defanged.is_some() {
        problems.note("pathological MIME header line neutralised before parsing");
    }
    let source: &[u8] = defanged.as_deref().unwrap_or(buf);

    let bounded = MimeBounds::apply(source, limits);
    let bounded_source: &[u8] = bounded.bytes.as_deref().unwrap_or(source);
    let repaired_storage: Vec<u8>;
    let repaired_bounds: MimeBounds;
    let (parsed, bounds) = match mailparse::parse_mail(bounded_source) {
        Ok(parsed) => (parsed, &bounded),
        Err(first_error) => match repair_part_headers(source) {
            Some(repaired) => {
                // The repair can change the structure, so the bounds are worked out again.
                repaired_storage = repaired;
                repaired_bounds = MimeBounds::apply(&repaired_storage, limits);
                let repaired_source: &[u8] = repaired_bounds
                    .bytes
                    .as_deref()
                    .unwrap_or(&repaired_storage);
                match mailparse::parse_mail(repaired_source) {
                    Ok(parsed) => {
                        problems.note("MIME part headers repaired (whitespace at a part start)");
                        (parsed, &repaired_bounds)
                    }
                    Err(e) => {
                        problems.note(format!(
                            "MIME structure unreadable ({}); body and attachments skipped",
                            mime_error_kind(&e)
                        ));
                        return MimeFacts::default();
                    }
                }
            }
            None => {
                problems.note(format!(
                    "MIME structure unreadable ({}); body and attachments skipped",
                    mime_error_kind(&first_error)
                ));
                return MimeFacts::default();
            }
        },
    };
    if bounds.headers_trimmed {
        problems.note(format!(
            "MIME part header block larger than {}; header fields or lines that did not fit were dropped",
            size_label(limits.max_header_bytes)
        ));
    }
    if bounds.parts_cut {
        problems.note(format!(
            "more than {} MIME parts; the rest were ignored",
            limits.max_mime_parts
        ));
    }

    let mut walker = Walker {
        leaves: Vec::new(),
        alternative_has_calendar: Vec::new(),
        incomplete: bounds.parts_cut,
        base: parsed.raw_bytes.as_ptr() as usize,
        too_deep: &bounds.too_deep,
        max_depth: limits.mime_depth(),
        max_leaves: limits.max_mime_parts,
        problems,
    };
    let mut path = Vec::new();
    walker.walk(&parsed, &mut path, 0, None);
    let Walker {
        leaves,
        alternative_has_calendar,
        incomplete,
        problems,
        ..
    } = walker;

    let calendar_only = !incomplete && is_calendar_only(&leaves, &alternative_has_calendar);
    let body = choose_body(&leaves, limits, problems);
    let attachments = describe_attachments(&leaves, body.leaf, limits, problems);

    MimeFacts {
        body_text: body.text,
        attachments,
        calendar_only,
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::test_support::{has_problem, parse};

    #[test]
    fn unreadable_mime_keeps_headers() {
        // A part header block that ends in a lone CR: `mailparse` rejects the whole tree and
        // the repair finds nothing to change.
        let m = parse(concat!(
            "Subject: broken\nContent-Type: multipart/mixed; boundary=b\n\n",
            "--b\nContent-Type: text/plain\n\r"
        ));
        assert_eq!(m.subject.as_deref(), Some("broken"));
        assert_eq!(m.body_text, None);
        assert!(
            has_problem(&m, "MIME structure unreadable"),
            "{:?}",
            m.problems
        );
    }
}
