//! The body text: the first inline text/plain leaf, or, when it is blank or missing, the
//! first inline text/html leaf turned into text; within `max_body_text_bytes`.

use super::decode::part_text;
use super::html::html_to_text;
use super::walk::Leaf;
use crate::parse::limits::{Limits, size_label};
use crate::parse::problems::Problems;
use crate::parse::text::truncate_on_char_boundary;

/// The leaf chosen as the body, and its text.
pub(super) struct Body {
    /// An index into the leaves. The chosen leaf is never an attachment, even when its text
    /// is blank.
    pub(super) leaf: Option<usize>,
    /// None when no leaf was chosen or its text is blank.
    pub(super) text: Option<String>,
}

/// Chooses the body among `leaves` (inline means without `attachment` disposition and
/// without file name) and reads its text.
pub(super) fn choose_body(leaves: &[Leaf], limits: &Limits, problems: &mut Problems) -> Body {
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
        let text = part_text(leaf.part, &leaf.path, problems);
        if !text.trim().is_empty() {
            chosen = Some(i);
            body_text = Some(text);
        }
    }
    if chosen.is_none()
        && let Some(i) = html
        && let Some(leaf) = leaves.get(i)
    {
        let html_source = part_text(leaf.part, &leaf.path, problems);
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
    Body {
        leaf: chosen,
        text: body_text.filter(|text| !text.trim().is_empty()),
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
    fn body_is_capped() {
        let m = parse(&format!("Subject: s\n\n{}", "ü".repeat(600_000)));
        let body = m.body_text.clone().unwrap_or_default();
        assert!(body.len() <= Limits::default().max_body_text_bytes);
        assert!(body.chars().all(|c| c == 'ü'));
        assert!(has_problem(&m, "body text truncated"));
    }
}
