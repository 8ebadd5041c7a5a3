//! The walk over `mailparse`'s tree: its leaves in order, each with what the body,
//! attachment and calendar rules need, within the depth and part limits.

use std::collections::HashSet;

use mailparse::{DispositionType, ParsedMail};

use crate::parse::problems::Problems;
use crate::parse::text::truncate_on_char_boundary;

const MAX_FILE_NAME_BYTES: usize = 1024;

/// One non-multipart part, with what the body and attachment rules need to know.
pub(super) struct Leaf<'p, 'a> {
    pub(super) part: &'p ParsedMail<'a>,
    /// IMAP-style part number (`1`, `2.1`, ...), used to name the part in problems.
    pub(super) path: String,
    /// The lower-case `type/subtype`, or None when the Content-Type value is not one.
    pub(super) mime: Option<String>,
    pub(super) disposition_attachment: bool,
    pub(super) file_name: Option<String>,
    /// The outermost multipart/alternative this leaf is inside, as an index into
    /// `Walker::alternative_has_calendar`.
    pub(super) alternative: Option<usize>,
}

impl Leaf<'_, '_> {
    /// RFC 2045 says a part whose Content-Type is unreadable is text/plain.
    pub(super) fn mime_or_text(&self) -> &str {
        self.mime.as_deref().unwrap_or("text/plain")
    }

    pub(super) fn is_calendar(&self) -> bool {
        matches!(self.mime_or_text(), "text/calendar" | "application/ics")
    }
}

pub(super) struct Walker<'p, 'a, 'q> {
    pub(super) leaves: Vec<Leaf<'p, 'a>>,
    pub(super) alternative_has_calendar: Vec<bool>,
    /// Set when parts were skipped, so that structural conclusions are not drawn.
    pub(super) incomplete: bool,
    /// The address of the parsed buffer, to find parts by offset.
    pub(super) base: usize,
    /// Parts whose multipart Content-Type `MimeBounds` disabled (see there).
    pub(super) too_deep: &'q HashSet<usize>,
    pub(super) max_depth: usize,
    pub(super) max_leaves: usize,
    pub(super) problems: &'q mut Problems,
}

impl<'p, 'a> Walker<'p, 'a, '_> {
    fn note_too_deep(&mut self) {
        self.incomplete = true;
        self.problems.note(format!(
            "MIME nesting deeper than {} levels; deeper parts ignored",
            self.max_depth
        ));
    }

    pub(super) fn walk(
        &mut self,
        part: &'p ParsedMail<'a>,
        path: &mut Vec<usize>,
        depth: usize,
        alternative: Option<usize>,
    ) {
        let offset = (part.raw_bytes.as_ptr() as usize).wrapping_sub(self.base);
        if depth > self.max_depth || self.too_deep.contains(&offset) {
            self.note_too_deep();
            return;
        }
        if self.leaves.len() >= self.max_leaves {
            self.incomplete = true;
            self.problems.note(format!(
                "more than {} MIME parts; the rest were ignored",
                self.max_leaves
            ));
            return;
        }
        let mimetype = part.ctype.mimetype.trim();
        if mimetype.starts_with("multipart/") {
            if part.subparts.is_empty() {
                self.incomplete = true;
                self.problems.note(format!(
                    "multipart part {} has no readable parts",
                    path_name(path)
                ));
                return;
            }
            let alternative = match alternative {
                None if mimetype == "multipart/alternative" => {
                    self.alternative_has_calendar.push(false);
                    Some(self.alternative_has_calendar.len() - 1)
                }
                other => other,
            };
            for (i, sub) in part.subparts.iter().enumerate() {
                path.push(i + 1);
                self.walk(sub, path, depth + 1, alternative);
                path.pop();
            }
            return;
        }

        let disposition = part.get_content_disposition();
        let file_name = disposition
            .params
            .get("filename")
            .or_else(|| part.ctype.params.get("name"))
            .and_then(|n| clean_file_name(n, &path_name(path), self.problems));
        let leaf = Leaf {
            part,
            path: path_name(path),
            mime: valid_mime(mimetype),
            disposition_attachment: disposition.disposition == DispositionType::Attachment,
            file_name,
            alternative,
        };
        if leaf.is_calendar()
            && let Some(flag) = alternative.and_then(|a| self.alternative_has_calendar.get_mut(a))
        {
            *flag = true;
        }
        self.leaves.push(leaf);
    }
}

fn path_name(path: &[usize]) -> String {
    if path.is_empty() {
        return "1".to_string();
    }
    path.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// Accepts `type/subtype` made of RFC 2045 token characters, lower-cased.
fn valid_mime(mimetype: &str) -> Option<String> {
    let (kind, sub) = mimetype.split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    if token(kind) && token(sub) {
        Some(mimetype.to_ascii_lowercase())
    } else {
        None
    }
}

/// Removes control characters and surrounding whitespace from a file name. Path separators
/// stay: the name is data to show, never a path to open.
fn clean_file_name(name: &str, path: &str, problems: &mut Problems) -> Option<String> {
    let mut cleaned: String = name.chars().filter(|c| !c.is_control()).collect();
    cleaned = cleaned.trim().to_string();
    if truncate_on_char_boundary(&mut cleaned, MAX_FILE_NAME_BYTES) {
        problems.note(format!("file name in part {path} truncated to 1 KiB"));
    }
    if cleaned.is_empty() {
        None
    } else {
        Some(cleaned)
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::test_support::{has_problem, parse};

    #[test]
    fn rfc2231_file_name() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\ntext\n--b\n",
            "Content-Type: application/octet-stream\n",
            "Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rates.txt\n\nabc\n--b--\n"
        ));
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].file_name.as_deref(), Some("€ rates.txt"));
    }

    #[test]
    fn mime_depth_cap() {
        let mut raw = String::from("Subject: deep\n");
        for i in 0..80 {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}x\n\n--b{i}x\n"
            ));
        }
        raw.push_str("\ninner\n");
        let m = parse(&raw);
        assert!(has_problem(&m, "deeper than 64"), "{:?}", m.problems);
        assert_eq!(m.body_text, None);
    }
}
