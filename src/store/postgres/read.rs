//! The read path in PostgreSQL: which activities rule 1 lets a viewer see, as SQL; what of
//! each is shown, and what is recorded, by `store::read_rules`.

use std::collections::{BTreeSet, HashMap};

use super::now;
use crate::rules::{DecidedBy, Visibility, activity_level};
use crate::store::read_rules::{self, ActivityFacts, ReadQuery};
use crate::store::{ActivityView, AttachmentView, StoreError, Viewer};

/// A contact is visible to the viewer when it has no `visible_to` list, lists the viewer, or
/// the viewer is an admin. `$1` = viewer email, `$2` = viewer is admin.
const CONTACT_VISIBLE_TO_VIEWER: &str = "($2::BOOLEAN OR NOT EXISTS (SELECT 1 FROM contact_visible_to v WHERE v.contact_id = ac.contact_id)
     OR EXISTS (SELECT 1 FROM contact_visible_to v WHERE v.contact_id = ac.contact_id AND v.user_email = $1::TEXT))";

/// Rule 2 as SQL, for search and attachments: only content the viewer is shown may match
/// (see `read_rules::content_shown`). `$6` = admins_see_private_emails. A participants-only
/// activity passed rule 1 only for its participants.
///
/// Each alternative is a branch of one `EXISTS` over a `UNION ALL`, not an `OR` of
/// `EXISTS`: PostgreSQL evaluates an `EXISTS` under an `OR` as a hashed subplan over the whole
/// table (every activity's sources or links: 120 ms at 200,000 activities) instead of one
/// index probe per activity of the page it walks by date; a `UNION ALL` cannot be hashed so.
fn content_shown_to_viewer() -> String {
    format!(
        "EXISTS (
           SELECT 1 WHERE {level} <> 'private'
           UNION ALL SELECT 1 FROM activity_sources s WHERE s.activity_id = a.id AND s.user_email = $1::TEXT
           UNION ALL SELECT 1 WHERE $2::BOOLEAN AND $6::BOOLEAN)",
        level = read_rules::ACTIVITY_LEVEL
    )
}

/// The one place that decides what a viewer sees in PostgreSQL, and keeps the access log
/// (written before any content is returned; if it cannot be written, nothing is shown).
pub(super) fn read_path(
    client: &mut postgres::Client,
    viewer: &Viewer,
    query: &ReadQuery<'_>,
) -> Result<Vec<ActivityView>, StoreError> {
    // Rule 1, as in SQLite: V's own mailbox, or a contact V may see; with a contact filter,
    // that contact on this activity (its first address only), read from its own links.
    let (from, rule_one, contact_filter) = match query.contact {
        Some(_) => (
            "activity_contacts ac JOIN activities a ON a.id = ac.activity_id",
            "TRUE".to_string(),
            format!(
                "AND ac.contact_id = $3::BIGINT
                 AND ac.address = (SELECT min(x.address) FROM activity_contacts x
                                   WHERE x.activity_id = ac.activity_id AND x.contact_id = ac.contact_id)
                 AND {CONTACT_VISIBLE_TO_VIEWER}"
            ),
        ),
        None => (
            "activities a",
            format!(
                "EXISTS (SELECT 1 FROM activity_sources s WHERE s.activity_id = a.id AND s.user_email = $1::TEXT
                         UNION ALL
                         SELECT 1 FROM activity_contacts ac WHERE ac.activity_id = a.id AND {CONTACT_VISIBLE_TO_VIEWER})"
            ),
            "AND $3::BIGINT IS NULL".to_string(),
        ),
    };
    // Rule 1, participants: an activity for its participants is seen by them alone.
    let rule_one = format!(
        "{rule_one} AND ({level} <> 'participants' OR {participant})",
        level = read_rules::ACTIVITY_LEVEL,
        participant = read_rules::participant_sql(viewer, "$1::TEXT", "strpos"),
    );
    let content_shown = content_shown_to_viewer();
    // Every word required, none of it syntax: the words joined for plainto_tsquery, which
    // ANDs them. Words in content this viewer is not shown never match.
    let words = match query.search {
        None => None,
        Some(search) => match read_rules::search_words(search)
            .map(|words| read_rules::index_words(&words.join(" ")))
            .filter(|words| !words.is_empty())
        {
            Some(words) => Some(words),
            // Nothing that can be a word (only punctuation): nothing matches.
            None => return Ok(Vec::new()),
        },
    };
    let search_filter = match words {
        Some(_) => format!(
            "AND a.id IN (SELECT activity_id FROM activity_search
                          WHERE document @@ plainto_tsquery('simple', $4::TEXT))
             AND {content_shown}"
        ),
        None => "AND $4::TEXT IS NULL AND $6::BOOLEAN IS NOT NULL".to_string(),
    };
    let (attachment_filter, order) = match query.attachment {
        Some(_) => (
            format!(
                "AND a.content_erased_at IS NULL
                 AND EXISTS (SELECT 1 FROM attachments t WHERE t.activity_id = a.id AND t.sha256 = $5::TEXT AND t.stored)
                 AND {content_shown}"
            ),
            format!(
                "(EXISTS (SELECT 1 FROM activity_sources s WHERE s.activity_id = a.id AND s.user_email = $1::TEXT)
                  OR {level} = 'visible') DESC,
                 a.date DESC NULLS LAST, a.id DESC",
                level = read_rules::ACTIVITY_LEVEL
            ),
        ),
        // Undated activities last, as in SQLite; these orders are the indexes'.
        None if query.contact.is_some() => (
            "AND $5::TEXT IS NULL".to_string(),
            "ac.date DESC NULLS LAST, ac.activity_id DESC".to_string(),
        ),
        None => (
            "AND $5::TEXT IS NULL".to_string(),
            "a.date DESC NULLS LAST, a.id DESC".to_string(),
        ),
    };
    let limit = match query.limit {
        Some(limit) => format!("LIMIT {}", limit.min(i64::MAX as usize)),
        None => String::new(),
    };
    let sql = format!(
        "SELECT a.id, a.message_id, a.date, a.direction, a.subject, a.body,
                a.content_erased_at, a.conversation
         FROM {from}
         WHERE {rule_one}
           {contact_filter}
           {search_filter}
           {attachment_filter}
         ORDER BY {order}
         {limit}"
    );
    // The contact's id is looked up first and bound as a value, so that the planner sees
    // which contact it is: behind a subquery it guessed a hundred links, and sorted a busy
    // contact's 18,000 instead of walking its index by date.
    let contact: Option<i64> = match query.contact {
        None => None,
        Some(address) => match client.query_opt(
            "SELECT contact_id FROM contact_emails WHERE email = $1",
            &[&crate::address::normalize(address)],
        )? {
            Some(row) => Some(row.get(0)),
            // No such contact: nothing to show.
            None => return Ok(Vec::new()),
        },
    };
    let rows = client.query(
        &sql,
        &[
            &viewer.email,
            &viewer.is_admin,
            &contact,
            &words,
            &query.attachment,
            &viewer.admins_see_private_emails,
        ],
    )?;
    // What the page shows of each activity, read for the whole page at once: a round trip
    // per activity would be most of a page's time.
    let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    let mut contacts_of: HashMap<i64, BTreeSet<String>> = HashMap::new();
    for row in client.query(
        &format!(
            "SELECT ac.activity_id, ac.address FROM activity_contacts ac
             WHERE ac.activity_id = ANY($3) AND {CONTACT_VISIBLE_TO_VIEWER}"
        ),
        &[&viewer.email, &viewer.is_admin, &ids],
    )? {
        contacts_of
            .entry(row.get(0))
            .or_default()
            .insert(row.get(1));
    }
    // The page's sources say who owns each activity and its level (read here rather than
    // in the page's query, which PostgreSQL would hash over every source of the store).
    let mut sources_of: HashMap<i64, Vec<String>> = HashMap::new();
    let mut owned = std::collections::HashSet::new();
    let mut choices: HashMap<i64, Vec<(Visibility, DecidedBy)>> = HashMap::new();
    for row in client.query(
        "SELECT activity_id, user_email, visibility, decided_by FROM activity_sources
         WHERE activity_id = ANY($1) ORDER BY activity_id, user_email COLLATE \"C\"",
        &[&ids],
    )? {
        let (id, user, visibility, decided_by): (i64, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if user == viewer.email {
            owned.insert(id);
        }
        choices.entry(id).or_default().push((
            Visibility::parse(&visibility).unwrap_or(Visibility::Private),
            DecidedBy::parse(&decided_by).unwrap_or(DecidedBy::Default),
        ));
        sources_of.entry(id).or_default().push(user);
    }
    let mut attachments_of: HashMap<i64, Vec<AttachmentView>> = HashMap::new();
    for row in client.query(
        "SELECT activity_id, file_name, content_type, size_bytes, sha256, stored, too_large
         FROM attachments WHERE activity_id = ANY($1) ORDER BY activity_id, position",
        &[&ids],
    )? {
        attachments_of
            .entry(row.get(0))
            .or_default()
            .push(AttachmentView {
                file_name: row.get(1),
                content_type: row.get(2),
                size_bytes: row.get::<_, i64>(3) as u64,
                sha256: row.get(4),
                stored: row.get(5),
                too_large: row.get(6),
            });
    }
    let mut views = Vec::with_capacity(rows.len());
    let mut accesses = Vec::new();
    for row in rows {
        let id: i64 = row.get(0);
        let message_id: Option<String> = row.get(1);
        let date: Option<i64> = row.get(2);
        let erased_at: Option<i64> = row.get(6);
        let level =
            activity_level(choices.remove(&id).unwrap_or_default()).unwrap_or(Visibility::Private);
        let facts = ActivityFacts {
            viewer_owns_a_source: owned.contains(&id),
            level,
            content_erased: erased_at.is_some(),
        };
        let content_shown = read_rules::content_shown(viewer, facts);
        if read_rules::must_record_access(viewer, facts, query.path) {
            accesses.push((id, message_id.clone(), facts.viewer_owns_a_source));
        }
        views.push(ActivityView {
            activity_id: id,
            message_id,
            date: date.and_then(super::rfc3339),
            direction: row.get(3),
            contacts: contacts_of
                .remove(&id)
                .unwrap_or_default()
                .into_iter()
                .collect(),
            conversation: row.get::<_, Option<String>>(7).unwrap_or_default(),
            level,
            private: level != Visibility::Visible,
            subject: if content_shown { row.get(4) } else { None },
            body: if content_shown { row.get(5) } else { None },
            attachments: content_shown.then(|| attachments_of.remove(&id).unwrap_or_default()),
            sources: sources_of.remove(&id).unwrap_or_default(),
            content_erased_at: erased_at.and_then(super::rfc3339),
        });
    }
    if !accesses.is_empty() {
        let mut transaction = client.transaction()?;
        let at = now();
        for (id, message_id, is_owner) in &accesses {
            transaction.execute(
                "INSERT INTO access_log (viewer, activity_id, message_id, path, viewer_is_owner, accessed_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&viewer.email, id, message_id, &query.path.as_str(), is_owner, &at],
            )?;
        }
        transaction.commit()?;
    }
    Ok(views)
}
