//! The read path's rules that are not about which rows to read: given what a backend's query
//! found about one activity, whether the viewer is shown its content, and whether showing it
//! must be recorded in the access log. Written once here; each backend's SQL only selects the
//! activities rule 1 lets the viewer see (docs/spec/decisions.md, "Read path"), and the
//! conformance tests run every viewer against both backends.

use super::{ReadPath, Viewer};
use crate::rules::Visibility;

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
    /// The activity's level, from its copies' choices (step 4 of the spec).
    pub level: Visibility,
    /// Retention erased its content.
    pub content_erased: bool,
}

/// Rule 2: content is shown when the activity is visible, the viewer owns a source, the
/// viewer is an admin and the account lets admins read private mail, or the activity is
/// for its participants (whom rule 1 alone lets see it at all: its participants see it in
/// full, and admins are not let in).
pub(crate) fn content_shown(viewer: &Viewer, facts: ActivityFacts) -> bool {
    match facts.level {
        Visibility::Visible | Visibility::Participants => true,
        Visibility::Private => {
            facts.viewer_owns_a_source || (viewer.is_admin && viewer.admins_see_private_emails)
        }
    }
}

/// The access log: private content shown to someone who owns none of its sources, and any
/// export that includes content that is not visible to all (private or participants'), even
/// by an owner (exports leave the system). Erased content is shown to nobody, so reading it
/// is nothing to record.
pub(crate) fn must_record_access(viewer: &Viewer, facts: ActivityFacts, path: ReadPath) -> bool {
    let restricted_content_shown =
        content_shown(viewer, facts) && facts.level != Visibility::Visible && !facts.content_erased;
    let someone_elses_private = facts.level == Visibility::Private && !facts.viewer_owns_a_source;
    restricted_content_shown && (someone_elses_private || path == ReadPath::Export)
}

/// Step 4 of the spec as SQL, over activity `a`: the most restrictive explicit choice (an
/// owner's or a label's) among its sources, else the least restrictive choice. The same text
/// runs on SQLite and PostgreSQL.
pub(crate) const ACTIVITY_LEVEL: &str = "(SELECT CASE COALESCE(
        MAX(CASE WHEN lv.decided_by IN ('owner', 'label') THEN
            CASE lv.visibility WHEN 'visible' THEN 0 WHEN 'private' THEN 1 ELSE 2 END END),
        MIN(CASE lv.visibility WHEN 'visible' THEN 0 WHEN 'private' THEN 1 ELSE 2 END))
      WHEN 0 THEN 'visible' WHEN 2 THEN 'participants' ELSE 'private' END
    FROM activity_sources lv WHERE lv.activity_id = a.id)";

/// Whether the viewer took part in activity `a`'s conversation, as SQL: they own a source of
/// `a`, or one of their addresses is among the parties of a message of its conversation that
/// one of `a`'s owners' mailboxes holds (kept as the SHA-256 of the address: the store keeps
/// no other party's address). Only the owners' mailboxes count, so a message with a forged
/// `References` in someone else's mailbox makes no one a participant. `viewer_placeholder` is
/// the viewer-email parameter; `find` the backend's substring position function (`instr` in
/// SQLite, `strpos` in PostgreSQL). The hashes are written into the text: they are hex digits
/// computed here, never input. [`takes_part`] is the same rule in Rust.
pub(crate) fn participant_sql(viewer: &Viewer, viewer_placeholder: &str, find: &str) -> String {
    let owns = format!(
        "EXISTS (SELECT 1 FROM activity_sources own
                 WHERE own.activity_id = a.id AND own.user_email = {viewer_placeholder})"
    );
    let by_address: Vec<String> = viewer
        .addresses
        .iter()
        .map(|address| {
            let hash = crate::rules::address_hash(address);
            debug_assert!(hash.bytes().all(|byte| byte.is_ascii_hexdigit()));
            format!("{find}(ps.parties, '\"{hash}\"') > 0")
        })
        .collect();
    if by_address.is_empty() {
        return format!("({owns})");
    }
    format!(
        "({owns} OR EXISTS (SELECT 1 FROM activity_sources own
                 JOIN activities pc ON pc.conversation = a.conversation
                 JOIN activity_sources ps ON ps.activity_id = pc.id AND ps.user_email = own.user_email
                 WHERE own.activity_id = a.id AND ({})))",
        by_address.join(" OR ")
    )
}

/// [`participant_sql`] over stored sources: whether `viewer` took part in activity
/// `activity_id`, given every stored source of its conversation.
pub(crate) fn takes_part(
    viewer: &Viewer,
    activity_id: i64,
    conversation_sources: &[super::StoredSource],
) -> bool {
    let owners: std::collections::HashSet<&str> = conversation_sources
        .iter()
        .filter(|source| source.activity_id == activity_id)
        .map(|source| source.user_email.as_str())
        .collect();
    if owners.contains(viewer.email.as_str()) {
        return true;
    }
    let hashes: std::collections::HashSet<String> = viewer
        .addresses
        .iter()
        .map(|address| crate::rules::address_hash(address))
        .collect();
    conversation_sources
        .iter()
        .filter(|source| owners.contains(source.user_email.as_str()))
        .any(|source| source.parties.iter().any(|(_, hash)| hashes.contains(hash)))
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
            addresses: vec!["v@abcorp.com".to_string()],
            is_admin,
            admins_see_private_emails,
        }
    }

    /// Every combination: (owns, level, erased, admin, admins see private, path) →
    /// (content shown, recorded).
    #[test]
    fn content_and_access_records_follow_the_spec() {
        for level in [
            Visibility::Visible,
            Visibility::Private,
            Visibility::Participants,
        ] {
            for bits in 0..32u32 {
                let bit = |n: u32| bits & (1 << n) != 0;
                let facts = ActivityFacts {
                    viewer_owns_a_source: bit(0),
                    level,
                    content_erased: bit(1),
                };
                let viewer = viewer(bit(2), bit(3));
                let path = if bit(4) {
                    ReadPath::Export
                } else {
                    ReadPath::Feed
                };
                let shown = content_shown(&viewer, facts);
                let expected = match level {
                    Visibility::Visible | Visibility::Participants => true,
                    Visibility::Private => bit(0) || (bit(2) && bit(3)),
                };
                assert_eq!(shown, expected, "{facts:?} {viewer:?}");
                let recorded = must_record_access(&viewer, facts, path);
                let restricted = shown && level != Visibility::Visible && !bit(1);
                // Recorded only when restricted, unerased content was actually shown...
                if recorded {
                    assert!(restricted, "{facts:?} {viewer:?} {path:?}");
                }
                // ...and always for an admin reading someone else's private mail, or an
                // export of anything not visible to all.
                let others_private = level == Visibility::Private && !bit(0);
                if restricted && (others_private || path == ReadPath::Export) {
                    assert!(recorded, "{facts:?} {viewer:?} {path:?}");
                }
            }
        }
    }

    #[test]
    fn participants_sql_names_every_address_by_hash_only() {
        let sql = participant_sql(&viewer(false, false), "?1", "instr");
        assert!(sql.contains(&crate::rules::address_hash("v@abcorp.com")));
        assert!(!sql.contains("abcorp"), "{sql}");
        assert!(sql.contains("own.user_email = ?1"));
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
