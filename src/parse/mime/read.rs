//! Runs the MIME stages in order and gathers what they found.

use mailparse::MailParseError;
use sha2::{Digest, Sha256};

use super::bounds::MimeBounds;
use super::calendar::is_calendar_only;
use super::decode::{part_bytes, part_text};
use super::defang::defang_costly_mime_lines;
use super::html::html_to_text;
use super::repair::repair_part_headers;
use super::walk::{Leaf, Walker};
use crate::parse::Attachment;
use crate::parse::limits::{Limits, size_label};
use crate::parse::problems::Problems;
use crate::parse::text::truncate_on_char_boundary;

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

    let is_inline_text = |leaf: &Leaf, mime: &str| {
        leaf.mime_or_text() == mime && !leaf.disposition_attachment && leaf.file_name.is_none()
    };
    let plain = leaves.iter().position(|l| is_inline_text(l, "text/plain"));
    let html = leaves.iter().position(|l| is_inline_text(l, "text/html"));

    let mut chosen = None;
    let mut body_text = None;
    if let Some(i) = plain
        && let Some(leaf) = leaves.get(i)
    {
        let text = part_text(leaf, problems);
        if !text.trim().is_empty() {
            chosen = Some(i);
            body_text = Some(text);
        }
    }
    if chosen.is_none()
        && let Some(i) = html
        && let Some(leaf) = leaves.get(i)
    {
        let html_source = part_text(leaf, problems);
        let text = html_to_text(html_source, limits, &leaf.path, problems);
        if !text.trim().is_empty() {
            body_text = Some(text);
        }
        chosen = Some(i);
    }
    if chosen.is_none() {
        chosen = plain;
    }
    if let Some(text) = body_text.as_mut() {
        if text.contains('\0') {
            text.retain(|c| c != '\0');
            problems.note("NUL characters removed from body text");
        }
        if truncate_on_char_boundary(text, limits.max_body_text_bytes) {
            problems.note(format!(
                "body text truncated to {}",
                size_label(limits.max_body_text_bytes)
            ));
        }
    }
    let body_text = body_text.filter(|text| !text.trim().is_empty());

    let mut attachments = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        if Some(i) == chosen {
            continue;
        }
        let mime = leaf.mime_or_text();
        let is_attachment = leaf.disposition_attachment
            || leaf.file_name.is_some()
            || !(mime.starts_with("text/") || mime.starts_with("multipart/"));
        if !is_attachment {
            continue;
        }
        let content_type = match &leaf.mime {
            Some(m) => m.clone(),
            None => {
                problems.note(format!(
                    "invalid content type in part {}; reported as application/octet-stream",
                    leaf.path
                ));
                "application/octet-stream".to_string()
            }
        };
        let bytes = part_bytes(leaf, problems);
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let size_bytes = bytes.len() as u64;
        let keep = limits.keep_attachment_bytes > 0 && bytes.len() <= limits.keep_attachment_bytes;
        attachments.push(Attachment {
            file_name: leaf.file_name.clone(),
            content_type,
            size_bytes,
            sha256,
            content: keep.then_some(bytes),
        });
    }

    MimeFacts {
        body_text,
        attachments,
        calendar_only,
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::Limits;
    use crate::parse::test_support::{has_problem, parse};

    #[test]
    fn multipart_alternative_prefers_plain() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/alternative; boundary=b\n\n",
            "--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n",
            "Proof by Euro: =E2=82=AC\n",
            "--b\nContent-Type: text/html\n\n<p>HTML</p>\n--b--\n"
        ));
        assert_eq!(m.body_text.as_deref(), Some("Proof by Euro: €"));
        assert!(m.attachments.is_empty());
        assert!(!m.automation.calendar_only);
    }

    #[test]
    fn blank_plain_part_falls_back_to_html() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/alternative; boundary=b\n\n",
            "--b\nContent-Type: text/plain\n\n  \n",
            "--b\nContent-Type: text/html\n\n<p>Real text</p>\n--b--\n"
        ));
        assert!(m.body_text.unwrap_or_default().contains("Real text"));
    }

    #[test]
    fn attachments_with_known_hashes() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=\"xx\"\n\n",
            "--xx\nContent-Type: text/plain\n\nbody\n",
            "--xx\nContent-Type: application/pdf; name=\"ignored.pdf\"\n",
            "Content-Disposition: attachment; filename=\"r\u{e9}sum\u{e9}/../x.pdf\"\n",
            "Content-Transfer-Encoding: base64\n\naGVsbG8g\nd29ybGQ=\n",
            "--xx\nContent-Type: image/png\nContent-Disposition: inline\n",
            "Content-Transfer-Encoding: base64\n\naGVsbG8gd29ybGQ=\n",
            "--xx\nContent-Type: text/plain; name=notes.txt\n\nhello world\n",
            "--xx--\n"
        ));
        let hello = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        assert_eq!(m.body_text.as_deref(), Some("body"));
        assert_eq!(m.attachments.len(), 3, "{:?}", m.attachments);
        let pdf = &m.attachments[0];
        assert_eq!(pdf.content_type, "application/pdf");
        assert_eq!(pdf.file_name.as_deref(), Some("résumé/../x.pdf"));
        assert_eq!(pdf.size_bytes, 11);
        assert_eq!(pdf.sha256, hello);
        // A bare inline image counts, without a name.
        assert_eq!(m.attachments[1].file_name, None);
        assert_eq!(m.attachments[1].content_type, "image/png");
        assert_eq!(m.attachments[1].sha256, hello);
        // A named text part is an attachment, not the body.
        assert_eq!(m.attachments[2].file_name.as_deref(), Some("notes.txt"));
        assert_eq!(m.attachments[2].sha256, hello);
    }

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

    #[test]
    fn body_is_capped() {
        let m = parse(&format!("Subject: s\n\n{}", "ü".repeat(600_000)));
        let body = m.body_text.clone().unwrap_or_default();
        assert!(body.len() <= Limits::default().max_body_text_bytes);
        assert!(body.chars().all(|c| c == 'ü'));
        assert!(has_problem(&m, "body text truncated"));
    }
}
