//! The read path's rules that are not about which rows to read: given what a backend's query
//! found about one activity, whether the viewer is shown its content, and whether showing it
//! must be recorded in the access log. Written once here; each backend's SQL only selects the
//! activities rule 1 lets the viewer see (docs/spec/decisions.md, "Read path"), and the
//! conformance tests run every viewer against both backends.

use super::{ReadPath, Viewer};

/// What one read asks for beyond the viewer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadQuery<'a> {
    /// Which command reads: recorded in the access log.
    pub path: ReadPath,
    /// Only activities linked to the contact owning this address.
    pub contact: Option<&'a str>,
    pub limit: Option<usize>,
    /// The search as the viewer typed it (see [`search_words`]).
    pub search: Option<&'a str>,
    /// Only activities carrying stored attachment content with this SHA-256, whose content
    /// the viewer is shown.
    pub attachment: Option<&'a str>,
}

impl<'a> ReadQuery<'a> {
    pub fn new(path: ReadPath) -> Self {
        ReadQuery {
            path,
            contact: None,
            limit: None,
            search: None,
            attachment: None,
        }
    }

    /// `Store::feed`: newest first, of one contact's activities when given.
    pub fn feed(contact: Option<&'a str>, limit: Option<usize>) -> Self {
        ReadQuery {
            contact,
            limit,
            ..ReadQuery::new(ReadPath::Feed)
        }
    }

    /// `Store::search`: activities whose shown content holds every word.
    pub fn search(words: &'a str, limit: Option<usize>) -> Self {
        ReadQuery {
            limit,
            search: Some(words),
            ..ReadQuery::new(ReadPath::Search)
        }
    }

    /// `Store::export`: the feed, whole, recorded as an export.
    pub fn export(contact: Option<&'a str>) -> Self {
        ReadQuery {
            contact,
            ..ReadQuery::new(ReadPath::Export)
        }
    }

    /// `Store::attachment_content`: one activity carrying this content that the viewer is
    /// shown.
    pub fn attachment(sha256: &'a str) -> Self {
        ReadQuery {
            limit: Some(1),
            attachment: Some(sha256),
            ..ReadQuery::new(ReadPath::Attachment)
        }
    }
}

/// What the read path knows about one activity it may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActivityFacts {
    /// One of the activity's sources is the viewer's own mailbox.
    pub viewer_owns_a_source: bool,
    /// At least one source decided "visible".
    pub any_source_visible: bool,
    /// Retention erased its content.
    pub content_erased: bool,
}

/// Rule 2: content is shown when the activity is visible (any source said so), the viewer
/// owns a source, or the viewer is an admin and the account lets admins read private mail.
pub(crate) fn content_shown(viewer: &Viewer, facts: ActivityFacts) -> bool {
    facts.any_source_visible
        || facts.viewer_owns_a_source
        || (viewer.is_admin && viewer.admins_see_private_emails)
}

/// The access log: private content shown to someone who owns none of its sources, and any
/// export that includes private content, even by an owner (exports leave the system). Erased
/// content is shown to nobody, so reading it is nothing to record.
pub(crate) fn must_record_access(viewer: &Viewer, facts: ActivityFacts, path: ReadPath) -> bool {
    let private_content_shown =
        content_shown(viewer, facts) && !facts.any_source_visible && !facts.content_erased;
    private_content_shown && (!facts.viewer_owns_a_source || path == ReadPath::Export)
}

/// A viewer's search words: whitespace-separated, every one required, nothing in them is
/// query syntax. `None` when there is no word.
pub(crate) fn search_words(query: &str) -> Option<Vec<String>> {
    let words: Vec<String> = query
        .split_whitespace()
        .map(|word| word.replace('"', ""))
        .filter(|word| !word.is_empty())
        .collect();
    (!words.is_empty()).then_some(words)
}

/// Text as the words a search index holds, for a backend whose own tokenizer differs from
/// SQLite's `unicode61 remove_diacritics 2`: split at every character that is not a letter or
/// a digit (`quote.pdf` is two words, as in SQLite), accents removed (`résumé` matches
/// `resume`). Lower-casing is the index's.
pub(crate) fn index_words(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    use unicode_normalization::char::is_combining_mark;
    let mut words = String::with_capacity(text.len());
    for c in text.nfd().filter(|c| !is_combining_mark(*c)) {
        if c.is_alphanumeric() {
            words.push(c);
        } else if !words.ends_with(' ') {
            words.push(' ');
        }
    }
    words.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(is_admin: bool, admins_see_private_emails: bool) -> Viewer {
        Viewer {
            email: "v@abcorp.com".to_string(),
            is_admin,
            admins_see_private_emails,
        }
    }

    /// Every combination: (owns, visible, erased, admin, admins see private, path) →
    /// (content shown, recorded).
    #[test]
    fn content_and_access_records_follow_the_spec() {
        for bits in 0..64u32 {
            let bit = |n: u32| bits & (1 << n) != 0;
            let facts = ActivityFacts {
                viewer_owns_a_source: bit(0),
                any_source_visible: bit(1),
                content_erased: bit(2),
            };
            let viewer = viewer(bit(3), bit(4));
            let path = if bit(5) {
                ReadPath::Export
            } else {
                ReadPath::Feed
            };
            let shown = content_shown(&viewer, facts);
            assert_eq!(
                shown,
                bit(1) || bit(0) || (bit(3) && bit(4)),
                "{facts:?} {viewer:?}"
            );
            let recorded = must_record_access(&viewer, facts, path);
            // Recorded only when private, unerased content was actually shown...
            if recorded {
                assert!(shown && !bit(1) && !bit(2), "{facts:?} {viewer:?} {path:?}");
            }
            // ...and always for an admin reading someone else's private mail, or an export.
            if shown && !bit(1) && !bit(2) && (!bit(0) || path == ReadPath::Export) {
                assert!(recorded, "{facts:?} {viewer:?} {path:?}");
            }
        }
    }

    #[test]
    fn index_words_split_like_sqlite_and_drop_accents() {
        let cases = [
            ("quote.pdf", "quote pdf"),
            ("Résumé — naïve café", "Resume naive cafe"),
            ("a@b.com, x_y", "a b com x y"),
            ("  ", ""),
            ("日本語 テキスト", "日本語 テキスト"),
        ];
        for (text, words) in cases {
            assert_eq!(index_words(text), words, "{text}");
        }
    }

    #[test]
    fn search_words_are_words_not_syntax() {
        assert_eq!(search_words("  "), None);
        assert_eq!(
            search_words("renewal \"q3\" OR"),
            Some(vec!["renewal".into(), "q3".into(), "OR".into()])
        );
    }
}
