//! Recording decisions: one transaction per batch, the same rows as SQLite's, and search
//! terms indexed in the same transaction.

use postgres::{Statement, Transaction};

use super::now;
use crate::rules::Decision;
use crate::store::read_rules::index_words;
use crate::store::{MessageToStore, Recorded, SourceRef, StoreError, StoreOptions, files};

/// The statements a batch runs for every message, prepared once per batch (the driver has
/// no statement cache, and preparing each time is a round trip per statement).
pub(super) struct Statements {
    find: Statement,
    insert_activity: Statement,
    upsert_source: Statement,
    link: Statement,
    upsert_decision: Statement,
    insert_attachment: Statement,
    index: Statement,
}

impl Statements {
    pub(super) fn prepare(transaction: &mut Transaction<'_>) -> Result<Statements, StoreError> {
        Ok(Statements {
            find: transaction.prepare("SELECT id, fingerprint FROM activities WHERE message_key = $1")?,
            insert_activity: transaction.prepare("INSERT INTO activities (message_key, message_id, date, direction, subject, body, in_reply_to, created_at, fingerprint, content_erased_at, automated, calendar_only)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                         ON CONFLICT (message_key) DO NOTHING
                         RETURNING id")?,
            upsert_source: transaction.prepare("INSERT INTO activity_sources (activity_id, user_email, source, source_id, visibility, direction, rules, synced_at, parties)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (activity_id, user_email) DO UPDATE
                   SET visibility = excluded.visibility, rules = excluded.rules, parties = excluded.parties
                   WHERE activity_sources.visibility != excluded.visibility
                      OR activity_sources.rules != excluded.rules
                      OR activity_sources.parties != excluded.parties")?,
            link: transaction.prepare("INSERT INTO activity_contacts (activity_id, contact_id, address, date)
                 SELECT $1, contact_id, email, (SELECT date FROM activities WHERE id = $1)
                 FROM contact_emails WHERE email = $2
                 ON CONFLICT DO NOTHING")?,
            upsert_decision: transaction.prepare("INSERT INTO decisions (user_email, source, source_id, decision, reason, rules, activity_id, decided_at, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (user_email, source, source_id) DO UPDATE
           SET decision = excluded.decision, reason = excluded.reason, rules = excluded.rules,
               activity_id = excluded.activity_id, decided_at = excluded.decided_at,
               detail = excluded.detail
           WHERE decisions.decision != excluded.decision OR decisions.reason != excluded.reason
              OR decisions.rules != excluded.rules
              OR decisions.activity_id IS DISTINCT FROM excluded.activity_id
              OR decisions.detail IS DISTINCT FROM excluded.detail")?,
            insert_attachment: transaction.prepare("INSERT INTO attachments (activity_id, position, file_name, content_type, size_bytes, sha256, stored, too_large)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")?,
            index: transaction.prepare("INSERT INTO activity_search (activity_id, document)
         VALUES ($1, to_tsvector('simple', $2) || to_tsvector('simple', $3) || to_tsvector('simple', $4))
         ON CONFLICT (activity_id) DO NOTHING")?,
        })
    }
}

/// Writes one decision (and, when synced, its activity) inside the caller's transaction.
pub(super) fn record_one(
    transaction: &mut Transaction<'_>,
    statements: &Statements,
    options: &StoreOptions,
    source: &SourceRef,
    decision: &Decision,
    message: Option<MessageToStore<'_>>,
) -> Result<Recorded, StoreError> {
    let rules_json =
        serde_json::to_string(&decision.rule_names()).expect("a list of strings always serializes");
    let (recorded, activity_id) = match decision.approval() {
        None => (Recorded::DecisionOnly, None),
        Some(approval) => {
            let message = message.ok_or(StoreError::MissingMessage)?;
            let parsed = message.parsed;
            let identity = crate::store::identity::MessageIdentity::of(&message)?;
            let find = |transaction: &mut Transaction<'_>,
                        key: &str|
             -> Result<Option<(i64, Option<String>)>, StoreError> {
                let statement = &statements.find;
                Ok(transaction
                    .query_opt(statement, &[&key])?
                    .map(|row| (row.get(0), row.get(1))))
            };
            let mut message_key = identity.message_key.clone();
            let mut found = find(transaction, &message_key)?;
            if let Some((_, Some(stored))) = &found
                && !identity.same_content(stored)
            {
                message_key = identity.distinct_key();
                found = find(transaction, &message_key)?;
            }
            let (activity_id, is_new) = match found.map(|(id, _)| id) {
                Some(id) => (id, false),
                None => {
                    let recorded_at = now();
                    let erased = options.erase_before(recorded_at).is_some_and(|cutoff| {
                        parsed.date.map_or(recorded_at, |date| date.timestamp()) < cutoff
                    });
                    let content = |text: &Option<String>| {
                        if erased { None } else { text.clone() }
                    };
                    // ON CONFLICT: another instance may store the same message from another
                    // mailbox at the same moment; then this copy joins that activity.
                    let insert = &statements.insert_activity;
                    let inserted = transaction.query_opt(
                        insert,
                        &[
                            &message_key,
                            &parsed.message_id,
                            &parsed.date.map(|date| date.timestamp()),
                            &message.company_direction.as_str(),
                            &content(&parsed.subject),
                            &content(&parsed.body_text),
                            &parsed.in_reply_to.first(),
                            &recorded_at,
                            &identity.fingerprint,
                            &erased.then_some(recorded_at),
                            &parsed.automation.is_automated(),
                            &parsed.automation.calendar_only,
                        ],
                    )?;
                    match inserted {
                        None => {
                            let (id, _) = find(transaction, &message_key)?.ok_or_else(|| {
                                StoreError::Database(
                                    "an activity vanished while it was being stored".to_string(),
                                )
                            })?;
                            (id, false)
                        }
                        Some(row) => {
                            let id: i64 = row.get(0);
                            insert_attachments(
                                transaction,
                                statements,
                                options,
                                id,
                                &message,
                                erased,
                            )?;
                            if !erased {
                                index_for_search(transaction, statements, id, &message)?;
                            }
                            (id, true)
                        }
                    }
                }
            };
            let direction = decision
                .direction
                .expect("a synced decision always read the message");
            let upsert_source = &statements.upsert_source;
            transaction.execute(
                upsert_source,
                &[
                    &activity_id,
                    &source.user_email,
                    &source.source,
                    &source.source_id,
                    &approval.visibility().as_str(),
                    &direction.as_str(),
                    &rules_json,
                    &now(),
                    &serde_json::to_string(&crate::rules::party_fingerprints(&decision.parties))
                        .expect("pairs of strings always serialize"),
                ],
            )?;
            let link = &statements.link;
            for contact in approval.contacts() {
                transaction.execute(link, &[&activity_id, &contact])?;
            }
            let recorded = if is_new {
                Recorded::NewActivity(activity_id)
            } else {
                Recorded::ExistingActivity(activity_id)
            };
            (recorded, Some(activity_id))
        }
    };
    // The log row changes only when the decision does.
    let upsert_decision = &statements.upsert_decision;
    transaction.execute(
        upsert_decision,
        &[
            &source.user_email,
            &source.source,
            &source.source_id,
            &decision.outcome().as_str(),
            &decision.reason.as_str(),
            &rules_json,
            &activity_id,
            &now(),
            &decision.detail,
        ],
    )?;
    Ok(recorded)
}

fn insert_attachments(
    transaction: &mut Transaction<'_>,
    statements: &Statements,
    options: &StoreOptions,
    activity_id: i64,
    message: &MessageToStore<'_>,
    erased: bool,
) -> Result<(), StoreError> {
    let insert = &statements.insert_attachment;
    for (position, attachment) in message.parsed.attachments.iter().enumerate() {
        let too_large = options.attachments_dir.is_some()
            && attachment.size_bytes > options.max_attachment_bytes;
        // Written (and synced) before the transaction commits, so a committed row never
        // points to a missing file; under the files lock, so a sweep cannot remove it first.
        let stored = match (&options.attachments_dir, &attachment.content) {
            (Some(dir), Some(bytes)) if !erased && !too_large => {
                transaction.execute(
                    "SELECT pg_advisory_xact_lock_shared($1)",
                    &[&super::ATTACHMENT_FILES_LOCK],
                )?;
                files::write_content(dir, &attachment.sha256, bytes)?;
                true
            }
            _ => false,
        };
        let file_name = if erased {
            None
        } else {
            attachment.file_name.clone()
        };
        transaction.execute(
            insert,
            &[
                &activity_id,
                &(position as i64),
                &file_name,
                &attachment.content_type,
                &(attachment.size_bytes as i64),
                &attachment.sha256,
                &stored,
                &too_large,
            ],
        )?;
    }
    Ok(())
}

/// Subject, body and attachment names as search terms: split and folded as SQLite's index
/// does (`read_rules::index_words`), then `simple` (no stemming, no stop words, so a word
/// matches as written, in any language). Only the terms are kept, never the text.
fn index_for_search(
    transaction: &mut Transaction<'_>,
    statements: &Statements,
    activity_id: i64,
    message: &MessageToStore<'_>,
) -> Result<(), StoreError> {
    let parsed = message.parsed;
    let attachment_names: Vec<&str> = parsed
        .attachments
        .iter()
        .filter_map(|attachment| attachment.file_name.as_deref())
        .collect();
    let statement = &statements.index;
    transaction.execute(
        statement,
        &[
            &activity_id,
            &index_words(parsed.subject.as_deref().unwrap_or("")),
            &index_words(parsed.body_text.as_deref().unwrap_or("")),
            &index_words(&attachment_names.join(" ")),
        ],
    )?;
    Ok(())
}
