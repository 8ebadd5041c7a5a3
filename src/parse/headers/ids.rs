//! Message-ID, In-Reply-To and References: ids kept byte for byte as written, since they are
//! compared that way.

use std::collections::HashSet;

use mailparse::MailHeader;

use crate::parse::problems::Problems;

/// The raw value with line breaks and control characters other than tab removed, and
/// trimmed. Message ids are compared byte for byte, so they are neither decoded nor
/// case-folded.
fn raw_id_value(h: &MailHeader) -> String {
    let raw = String::from_utf8_lossy(h.get_value_raw());
    // Line breaks come from folding; other control characters (NUL, escapes) cannot be part
    // of an id and would only reach logs and the store.
    raw.chars()
        .filter(|&c| c == '\t' || !c.is_control())
        .collect::<String>()
        .trim()
        .to_string()
}

/// Every `<...>` token in `s`, brackets included. A `<` inside a token restarts it, so that
/// `<a<b@c>` yields `<b@c>`.
pub(crate) fn angle_tokens(s: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in s.char_indices() {
        match c {
            '<' => start = Some(i),
            '>' => {
                if let Some(st) = start.take()
                    && let Some(token) = s.get(st..i + 1)
                {
                    tokens.push(token);
                }
            }
            _ => {}
        }
    }
    tokens
}

pub(crate) fn message_id_from(h: &MailHeader) -> Option<String> {
    let value = raw_id_value(h);
    if value.is_empty() {
        return None;
    }
    match angle_tokens(&value).first() {
        Some(token) => Some((*token).to_string()),
        None => Some(value),
    }
}

pub(crate) fn msg_ids_from(
    headers: &[&MailHeader],
    field: &str,
    problems: &mut Problems,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    for h in headers {
        let value = raw_id_value(h);
        let tokens = angle_tokens(&value);
        let found: Vec<&str> = if tokens.is_empty() {
            // Old mailers wrote ids without brackets; an id always contains an `@`.
            let bare: Vec<&str> = value
                .split_whitespace()
                .filter(|t| t.contains('@'))
                .collect();
            if !bare.is_empty() {
                problems.note(format!("msg-id without angle brackets in {field}"));
            } else if !value.is_empty() {
                problems.note(format!("no msg-id found in {field}"));
            }
            bare
        } else {
            tokens
        };
        for id in found {
            if seen.insert(id.to_string()) {
                ids.push(id.to_string());
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use crate::parse::test_support::parse;

    #[test]
    fn message_ids() {
        let m = parse("Message-ID:   <Some.ID@Host>  \n\nx");
        assert_eq!(m.message_id.as_deref(), Some("<Some.ID@Host>"));
        let m = parse("Message-Id: <first@h> <second@h>\n\nx");
        assert_eq!(m.message_id.as_deref(), Some("<first@h>"));
        let m = parse("Message-ID: bare-id@host\n\nx");
        assert_eq!(m.message_id.as_deref(), Some("bare-id@host"));
        let m = parse("Message-ID:\nSubject: s\n\nx");
        assert_eq!(m.message_id, None);
    }

    #[test]
    fn reply_references() {
        let m = parse(
            "Subject: s\nIn-Reply-To: Your message of Monday <a@h>\nReferences: <r1@h>\n <r2@h><r3@h> <r1@h>\n\nx",
        );
        assert_eq!(m.in_reply_to, ["<a@h>"]);
        assert_eq!(m.references, ["<r1@h>", "<r2@h>", "<r3@h>"]);
    }
}
