//! Recording decisions: one transaction per batch, the same rows as SQLite's, and search
//! terms indexed in the same transaction.
//!
//! A round trip costs more than a row, so each table is written once per batch: the rows go
//! as arrays, one per column, spread back into rows by `unnest`. Which activity a message
//! joins is worked out in memory first, in record order, with the same rule and the same
//! outcome as writing the records one by one.

use std::collections::{BTreeSet, HashMap};

use postgres::Transaction;
use postgres::types::Type;

use super::now;
use crate::config::Capture;
use crate::store::identity::MessageIdentity;
use crate::store::read_rules::index_words;
use crate::store::{MessageToStore, Record, Recorded, StoreError, StoreOptions, files};

/// Writes a batch's decisions (and, when synced, their activities) inside the caller's
/// transaction, returning what each record did, in order.
/// Writes the batch; returns what each record did, and the attachment files of activities
/// it removed (to remove once nothing references them, after the commit).
pub(super) fn record_batch(
    transaction: &mut Transaction<'_>,
    options: &StoreOptions,
    records: &[Record<'_>],
) -> Result<(Vec<Recorded>, BTreeSet<String>), StoreError> {
    let plan = Plan::of(transaction, records)?;
    let recorded_at = now();
    let created = insert_activities(transaction, options, &plan.new, recorded_at)?;
    let activity_ids: Vec<Option<(i64, bool)>> = plan
        .targets
        .iter()
        .map(|target| {
            target.map(|(target, creates)| match target {
                Target::Stored(id) => (id, false),
                Target::New(index) => (created[index].id, creates && created[index].inserted),
            })
        })
        .collect();
    let dropped_files = drop_skipped_copies(transaction, records)?;
    upsert_sources(transaction, records, &activity_ids)?;
    link_contacts(transaction, records, &activity_ids)?;
    upsert_decisions(transaction, records, &activity_ids)?;
    let recorded = activity_ids
        .iter()
        .map(|target| match target {
            None => Recorded::DecisionOnly,
            Some((id, true)) => Recorded::NewActivity(*id),
            Some((id, false)) => Recorded::ExistingActivity(*id),
        })
        .collect();
    Ok((recorded, dropped_files))
}

/// A message decided again as skipped (its mailbox's label or a rule now keeps it out) loses
/// this mailbox's stored copy, and the activity goes with its last copy: nothing a mailbox
/// has now kept out stays stored from it.
fn drop_skipped_copies(
    transaction: &mut Transaction<'_>,
    records: &[Record<'_>],
) -> Result<BTreeSet<String>, StoreError> {
    let skipped: Vec<&Record<'_>> = records
        .iter()
        .filter(|record| record.decision.approval().is_none())
        .collect();
    if skipped.is_empty() {
        return Ok(BTreeSet::new());
    }
    let users: Vec<&str> = skipped
        .iter()
        .map(|r| r.source.user_email.as_str())
        .collect();
    let sources: Vec<&str> = skipped.iter().map(|r| r.source.source.as_str()).collect();
    let source_ids: Vec<&str> = skipped
        .iter()
        .map(|r| r.source.source_id.as_str())
        .collect();
    let dropped: Vec<i64> = transaction
        .query_typed(
            "DELETE FROM activity_sources s
             USING decisions d, unnest($1::text[], $2::text[], $3::text[]) AS k(user_email, source, source_id)
             WHERE d.user_email = k.user_email AND d.source = k.source AND d.source_id = k.source_id
               AND d.decision = 'synced' AND s.activity_id = d.activity_id AND s.user_email = d.user_email
             RETURNING s.activity_id",
            &[
                (&users, Type::TEXT_ARRAY),
                (&sources, Type::TEXT_ARRAY),
                (&source_ids, Type::TEXT_ARRAY),
            ],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut files = BTreeSet::new();
    if !dropped.is_empty() {
        // Candidates only: a file goes once nothing references it.
        for row in transaction.query_typed(
            "SELECT sha256 FROM attachments WHERE activity_id = ANY($1) AND stored",
            &[(&dropped, Type::INT8_ARRAY)],
        )? {
            files.insert(row.get::<_, String>(0));
        }
        transaction.execute_typed(
            "DELETE FROM activities a WHERE a.id = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM activity_sources s WHERE s.activity_id = a.id)",
            &[(&dropped, Type::INT8_ARRAY)],
        )?;
    }
    Ok(files)
}

/// Where a synced record's activity is: already stored, or the batch's n-th new one.
#[derive(Debug, Clone, Copy)]
enum Target {
    Stored(i64),
    New(usize),
}

/// A message the batch stores as a new activity.
struct NewActivity<'a> {
    message_key: String,
    fingerprint: String,
    conversation: String,
    message: MessageToStore<'a>,
}

/// Which activity each record joins, decided before anything is written.
struct Plan<'a> {
    /// Per record: its activity, and whether this record is the one that creates it; `None`
    /// when only the decision is written.
    targets: Vec<Option<(Target, bool)>>,
    new: Vec<NewActivity<'a>>,
}

impl<'a> Plan<'a> {
    fn of(
        transaction: &mut Transaction<'_>,
        records: &[Record<'a>],
    ) -> Result<Plan<'a>, StoreError> {
        let messages: Vec<Option<(MessageToStore<'a>, MessageIdentity)>> = records
            .iter()
            .map(|record| match record.decision.approval() {
                None => Ok(None),
                Some(_) => {
                    let message = record.message.ok_or(StoreError::MissingMessage)?;
                    Ok(Some((message, MessageIdentity::of(&message)?)))
                }
            })
            .collect::<Result<_, StoreError>>()?;
        // Both keys each message could be stored under, read in one query.
        let keys: Vec<String> = messages
            .iter()
            .flatten()
            .flat_map(|(_, identity)| [identity.message_key.clone(), identity.distinct_key()])
            .collect();
        let mut known: HashMap<String, (Target, Option<String>)> = HashMap::new();
        if !keys.is_empty() {
            for row in transaction.query_typed(
                "SELECT message_key, id, fingerprint FROM activities WHERE message_key = ANY($1)",
                &[(&keys, Type::TEXT_ARRAY)],
            )? {
                known.insert(row.get(0), (Target::Stored(row.get(1)), row.get(2)));
            }
        }
        let mut plan = Plan {
            targets: Vec::with_capacity(records.len()),
            new: Vec::new(),
        };
        for entry in messages {
            let Some((message, identity)) = entry else {
                plan.targets.push(None);
                continue;
            };
            let mut message_key = identity.message_key.clone();
            if let Some((_, Some(stored))) = known.get(&message_key)
                && !identity.same_content(stored)
            {
                message_key = identity.distinct_key();
            }
            let target = match known.get(&message_key) {
                Some((target, _)) => (*target, false),
                None => {
                    let target = Target::New(plan.new.len());
                    known.insert(
                        message_key.clone(),
                        (target, Some(identity.fingerprint.clone())),
                    );
                    plan.new.push(NewActivity {
                        message_key,
                        fingerprint: identity.fingerprint,
                        conversation: identity.conversation,
                        message,
                    });
                    (target, true)
                }
            };
            plan.targets.push(Some(target));
        }
        Ok(plan)
    }
}

/// One column of the new activities' rows.
fn column<'n, 'm, T>(
    new: &'n [NewActivity<'m>],
    value: impl Fn(&'n NewActivity<'m>) -> T,
) -> Vec<T> {
    new.iter().map(value).collect()
}

/// A new activity's id, and whether this batch inserted it (false when another instance
/// stored the same message from another mailbox at the same moment: then this copy joins
/// that activity and adds nothing to it).
struct Created {
    id: i64,
    inserted: bool,
}

fn insert_activities(
    transaction: &mut Transaction<'_>,
    options: &StoreOptions,
    new: &[NewActivity<'_>],
    recorded_at: i64,
) -> Result<Vec<Created>, StoreError> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let erased: Vec<bool> = new
        .iter()
        .map(|activity| {
            options.erase_before(recorded_at).is_some_and(|cutoff| {
                activity
                    .message
                    .parsed
                    .date
                    .map_or(recorded_at, |date| date.timestamp())
                    < cutoff
            })
        })
        .collect();
    // Metadata-only capture keeps no content, and no attachment at all.
    let withheld: Vec<bool> = new
        .iter()
        .zip(&erased)
        .map(|(activity, erased)| *erased || activity.message.capture == Capture::Metadata)
        .collect();
    let content = |text: fn(&crate::parse::ParsedMessage) -> &Option<String>| -> Vec<Option<&str>> {
        new.iter()
            .zip(&withheld)
            .map(|(activity, withheld)| {
                if *withheld {
                    None
                } else {
                    text(activity.message.parsed).as_deref()
                }
            })
            .collect()
    };
    let message_keys = column(new, |activity| activity.message_key.as_str());
    let message_ids = column(new, |activity| {
        activity.message.parsed.message_id.as_deref()
    });
    let dates = column(new, |activity| {
        activity.message.parsed.date.map(|date| date.timestamp())
    });
    let directions = column(new, |activity| activity.message.company_direction.as_str());
    let subjects = content(|parsed| &parsed.subject);
    let bodies = content(|parsed| &parsed.body_text);
    let in_reply_to = column(new, |activity| {
        activity
            .message
            .parsed
            .in_reply_to
            .first()
            .map(String::as_str)
    });
    let created_at = vec![recorded_at; new.len()];
    let fingerprints = column(new, |activity| activity.fingerprint.as_str());
    let erased_at: Vec<Option<i64>> = erased
        .iter()
        .map(|erased| erased.then_some(recorded_at))
        .collect();
    let automated = column(new, |activity| {
        activity.message.parsed.automation.is_automated()
    });
    let calendar_only = column(new, |activity| {
        activity.message.parsed.automation.calendar_only
    });
    let conversations = column(new, |activity| activity.conversation.as_str());
    // ON CONFLICT: another instance may store the same message from another mailbox at the
    // same moment; then this copy joins that activity.
    let inserted: HashMap<String, i64> = transaction
        .query_typed(
            "INSERT INTO activities (message_key, message_id, date, direction, subject, body,
                                     in_reply_to, created_at, fingerprint, content_erased_at,
                                     automated, calendar_only, conversation)
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::int8[], $9::text[], $10::int8[],
                                  $11::bool[], $12::bool[], $13::text[])
             ON CONFLICT (message_key) DO NOTHING
             RETURNING message_key, id",
            &[
                (&message_keys, Type::TEXT_ARRAY),
                (&message_ids, Type::TEXT_ARRAY),
                (&dates, Type::INT8_ARRAY),
                (&directions, Type::TEXT_ARRAY),
                (&subjects, Type::TEXT_ARRAY),
                (&bodies, Type::TEXT_ARRAY),
                (&in_reply_to, Type::TEXT_ARRAY),
                (&created_at, Type::INT8_ARRAY),
                (&fingerprints, Type::TEXT_ARRAY),
                (&erased_at, Type::INT8_ARRAY),
                (&automated, Type::BOOL_ARRAY),
                (&calendar_only, Type::BOOL_ARRAY),
                (&conversations, Type::TEXT_ARRAY),
            ],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let raced: Vec<&str> = new
        .iter()
        .map(|activity| activity.message_key.as_str())
        .filter(|key| !inserted.contains_key(*key))
        .collect();
    let stored_by_others: HashMap<String, i64> = if raced.is_empty() {
        HashMap::new()
    } else {
        transaction
            .query_typed(
                "SELECT message_key, id FROM activities WHERE message_key = ANY($1)",
                &[(&raced, Type::TEXT_ARRAY)],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    };
    let created = new
        .iter()
        .map(|activity| {
            let key = &activity.message_key;
            match (inserted.get(key), stored_by_others.get(key)) {
                (Some(id), _) => Ok(Created {
                    id: *id,
                    inserted: true,
                }),
                (None, Some(id)) => Ok(Created {
                    id: *id,
                    inserted: false,
                }),
                (None, None) => Err(StoreError::Database(
                    "an activity vanished while it was being stored".to_string(),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let fresh: Vec<(i64, &MessageToStore<'_>, bool)> = new
        .iter()
        .zip(&created)
        .zip(&withheld)
        .filter(|((_, created), _)| created.inserted)
        .map(|((activity, created), erased)| (created.id, &activity.message, *erased))
        .collect();
    insert_attachments(transaction, options, &fresh)?;
    index_for_search(transaction, &fresh)?;
    Ok(created)
}

fn insert_attachments(
    transaction: &mut Transaction<'_>,
    options: &StoreOptions,
    fresh: &[(i64, &MessageToStore<'_>, bool)],
) -> Result<(), StoreError> {
    let mut activity_ids = Vec::new();
    let mut positions = Vec::new();
    let mut file_names: Vec<Option<&str>> = Vec::new();
    let mut content_types = Vec::new();
    let mut sizes = Vec::new();
    let mut hashes = Vec::new();
    let mut stored_flags = Vec::new();
    let mut too_large_flags = Vec::new();
    let mut locked = false;
    for (activity_id, message, erased) in fresh {
        if message.capture == Capture::Metadata {
            continue;
        }
        for (position, attachment) in message.parsed.attachments.iter().enumerate() {
            let too_large = options.attachments_dir.is_some()
                && attachment.size_bytes > options.max_attachment_bytes;
            // Written (and synced) before the transaction commits, so a committed row never
            // points to a missing file; under the files lock, so a sweep cannot remove it
            // first.
            let stored = match (&options.attachments_dir, &attachment.content) {
                (Some(dir), Some(bytes)) if !erased && !too_large => {
                    if !locked {
                        transaction.execute(
                            "SELECT pg_advisory_xact_lock_shared($1)",
                            &[&super::ATTACHMENT_FILES_LOCK],
                        )?;
                        locked = true;
                    }
                    files::write_content(dir, &attachment.sha256, bytes)?;
                    true
                }
                _ => false,
            };
            activity_ids.push(*activity_id);
            positions.push(position as i64);
            file_names.push(if *erased {
                None
            } else {
                attachment.file_name.as_deref()
            });
            content_types.push(attachment.content_type.as_str());
            sizes.push(attachment.size_bytes as i64);
            hashes.push(attachment.sha256.as_str());
            stored_flags.push(stored);
            too_large_flags.push(too_large);
        }
    }
    if activity_ids.is_empty() {
        return Ok(());
    }
    transaction.execute_typed(
        "INSERT INTO attachments (activity_id, position, file_name, content_type, size_bytes,
                                  sha256, stored, too_large)
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::int8[],
                              $6::text[], $7::bool[], $8::bool[])",
        &[
            (&activity_ids, Type::INT8_ARRAY),
            (&positions, Type::INT8_ARRAY),
            (&file_names, Type::TEXT_ARRAY),
            (&content_types, Type::TEXT_ARRAY),
            (&sizes, Type::INT8_ARRAY),
            (&hashes, Type::TEXT_ARRAY),
            (&stored_flags, Type::BOOL_ARRAY),
            (&too_large_flags, Type::BOOL_ARRAY),
        ],
    )?;
    Ok(())
}

/// Subject, body and attachment names as search terms: split and folded as SQLite's index
/// does (`read_rules::index_words`), then `simple` (no stemming, no stop words, so a word
/// matches as written, in any language). Only the terms are kept, never the text. Erased
/// content is not indexed.
fn index_for_search(
    transaction: &mut Transaction<'_>,
    fresh: &[(i64, &MessageToStore<'_>, bool)],
) -> Result<(), StoreError> {
    let mut activity_ids = Vec::new();
    let mut subjects = Vec::new();
    let mut bodies = Vec::new();
    let mut names = Vec::new();
    for (activity_id, message, erased) in fresh {
        if *erased {
            continue;
        }
        let parsed = message.parsed;
        let attachment_names: Vec<&str> = parsed
            .attachments
            .iter()
            .filter_map(|attachment| attachment.file_name.as_deref())
            .collect();
        activity_ids.push(*activity_id);
        subjects.push(index_words(parsed.subject.as_deref().unwrap_or("")));
        bodies.push(index_words(parsed.body_text.as_deref().unwrap_or("")));
        names.push(index_words(&attachment_names.join(" ")));
    }
    if activity_ids.is_empty() {
        return Ok(());
    }
    transaction.execute_typed(
        "INSERT INTO activity_search (activity_id, document)
         SELECT id, to_tsvector('simple', subject) || to_tsvector('simple', body)
                    || to_tsvector('simple', names)
         FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[]) AS terms(id, subject, body, names)
         ON CONFLICT (activity_id) DO NOTHING",
        &[
            (&activity_ids, Type::INT8_ARRAY),
            (&subjects, Type::TEXT_ARRAY),
            (&bodies, Type::TEXT_ARRAY),
            (&names, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}

fn rules_json(record: &Record<'_>) -> String {
    serde_json::to_string(&record.decision.rule_names())
        .expect("a list of strings always serializes")
}

/// One source row per (activity, mailbox). When a batch holds two copies of one message
/// from one mailbox, the first copy's row is the one inserted and the last copy's marking
/// wins, as when they are written one after the other.
fn upsert_sources(
    transaction: &mut Transaction<'_>,
    records: &[Record<'_>],
    activity_ids: &[Option<(i64, bool)>],
) -> Result<(), StoreError> {
    struct SourceRow<'r> {
        activity_id: i64,
        record: &'r Record<'r>,
        marked_by: &'r Record<'r>,
    }
    let mut rows: Vec<SourceRow<'_>> = Vec::new();
    let mut row_of: HashMap<(i64, &str), usize> = HashMap::new();
    for (record, target) in records.iter().zip(activity_ids) {
        let Some((activity_id, _)) = target else {
            continue;
        };
        match row_of.get(&(*activity_id, record.source.user_email.as_str())) {
            Some(index) => rows[*index].marked_by = record,
            None => {
                row_of.insert((*activity_id, &record.source.user_email), rows.len());
                rows.push(SourceRow {
                    activity_id: *activity_id,
                    record,
                    marked_by: record,
                });
            }
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let synced_at = now();
    let activity_ids: Vec<i64> = rows.iter().map(|row| row.activity_id).collect();
    let text =
        |value: fn(&SourceRow<'_>) -> String| -> Vec<String> { rows.iter().map(value).collect() };
    let users = text(|row| row.record.source.user_email.clone());
    let sources = text(|row| row.record.source.source.clone());
    let source_ids = text(|row| row.record.source.source_id.clone());
    let visibilities = text(|row| {
        row.marked_by
            .decision
            .visibility()
            .expect("a source row is only made for a synced decision")
            .as_str()
            .to_string()
    });
    let directions = text(|row| {
        row.record
            .decision
            .direction
            .expect("a synced decision always read the message")
            .as_str()
            .to_string()
    });
    let rules = text(|row| rules_json(row.marked_by));
    let synced = vec![synced_at; rows.len()];
    let parties = text(|row| {
        serde_json::to_string(&crate::rules::party_fingerprints(
            &row.marked_by.decision.parties,
        ))
        .expect("pairs of strings always serialize")
    });
    let decided_by = text(|row| {
        row.marked_by
            .decision
            .decided_by()
            .expect("a synced decision always says who chose")
            .as_str()
            .to_string()
    });
    let labels = text(|row| {
        serde_json::to_string(&row.marked_by.decision.labels).expect("strings serialize")
    });
    // An owner's choice stays until the owner changes it.
    transaction.execute_typed(
        "INSERT INTO activity_sources (activity_id, user_email, source, source_id, visibility,
                                       direction, rules, synced_at, parties, decided_by, labels)
         SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::int8[], $9::text[], $10::text[],
                              $11::text[])
         ON CONFLICT (activity_id, user_email) DO UPDATE
           SET visibility = excluded.visibility, rules = excluded.rules, parties = excluded.parties,
               decided_by = excluded.decided_by, labels = excluded.labels
           WHERE activity_sources.decided_by != 'owner'
             AND (activity_sources.visibility != excluded.visibility
                  OR activity_sources.rules != excluded.rules
                  OR activity_sources.parties != excluded.parties
                  OR activity_sources.decided_by != excluded.decided_by
                  OR activity_sources.labels != excluded.labels)",
        &[
            (&activity_ids, Type::INT8_ARRAY),
            (&users, Type::TEXT_ARRAY),
            (&sources, Type::TEXT_ARRAY),
            (&source_ids, Type::TEXT_ARRAY),
            (&visibilities, Type::TEXT_ARRAY),
            (&directions, Type::TEXT_ARRAY),
            (&rules, Type::TEXT_ARRAY),
            (&synced, Type::INT8_ARRAY),
            (&parties, Type::TEXT_ARRAY),
            (&decided_by, Type::TEXT_ARRAY),
            (&labels, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}

/// Links each synced activity to the contacts its decision named.
fn link_contacts(
    transaction: &mut Transaction<'_>,
    records: &[Record<'_>],
    activity_ids: &[Option<(i64, bool)>],
) -> Result<(), StoreError> {
    let mut linked_ids: Vec<i64> = Vec::new();
    let mut addresses: Vec<&str> = Vec::new();
    for (record, target) in records.iter().zip(activity_ids) {
        if let (Some((activity_id, _)), Some(approval)) = (target, record.decision.approval()) {
            for contact in approval.contacts() {
                linked_ids.push(*activity_id);
                addresses.push(contact);
            }
        }
    }
    if linked_ids.is_empty() {
        return Ok(());
    }
    transaction.execute_typed(
        "INSERT INTO activity_contacts (activity_id, contact_id, address, date)
         SELECT link.activity_id, e.contact_id, e.email, a.date
         FROM unnest($1::int8[], $2::text[]) AS link(activity_id, address)
         JOIN contact_emails e ON e.email = link.address
         JOIN activities a ON a.id = link.activity_id
         ON CONFLICT DO NOTHING",
        &[
            (&linked_ids, Type::INT8_ARRAY),
            (&addresses, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}

/// The log row per (mailbox, source id) changes only when the decision does; when a batch
/// decides one source id twice, the last decision is the one kept.
fn upsert_decisions(
    transaction: &mut Transaction<'_>,
    records: &[Record<'_>],
    activity_ids: &[Option<(i64, bool)>],
) -> Result<(), StoreError> {
    let mut latest: Vec<(&Record<'_>, Option<i64>)> = Vec::new();
    let mut row_of: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for (record, target) in records.iter().zip(activity_ids) {
        let key = (
            record.source.user_email.as_str(),
            record.source.source.as_str(),
            record.source.source_id.as_str(),
        );
        let row = (record, target.map(|(id, _)| id));
        match row_of.get(&key) {
            Some(index) => latest[*index] = row,
            None => {
                row_of.insert(key, latest.len());
                latest.push(row);
            }
        }
    }
    if latest.is_empty() {
        return Ok(());
    }
    let decided_at = now();
    let users: Vec<&str> = latest
        .iter()
        .map(|(r, _)| r.source.user_email.as_str())
        .collect();
    let sources: Vec<&str> = latest
        .iter()
        .map(|(r, _)| r.source.source.as_str())
        .collect();
    let source_ids: Vec<&str> = latest
        .iter()
        .map(|(r, _)| r.source.source_id.as_str())
        .collect();
    let outcomes: Vec<&str> = latest
        .iter()
        .map(|(r, _)| r.decision.outcome().as_str())
        .collect();
    let reasons: Vec<&str> = latest
        .iter()
        .map(|(r, _)| r.decision.reason.as_str())
        .collect();
    let rules: Vec<String> = latest.iter().map(|(r, _)| rules_json(r)).collect();
    let ids: Vec<Option<i64>> = latest.iter().map(|(_, id)| *id).collect();
    let decided = vec![decided_at; latest.len()];
    let details: Vec<Option<&str>> = latest
        .iter()
        .map(|(r, _)| r.decision.detail.as_deref())
        .collect();
    let conversations: Vec<Option<String>> = latest
        .iter()
        .map(|(r, _)| crate::store::decided_conversation_hash(r.decision, r.message))
        .collect::<Result<_, _>>()?;
    let labels: Vec<String> = latest
        .iter()
        .map(|(r, _)| serde_json::to_string(&r.decision.labels).expect("strings serialize"))
        .collect();
    transaction.execute_typed(
        "INSERT INTO decisions (user_email, source, source_id, decision, reason, rules,
                                activity_id, decided_at, detail, conversation_hash, labels)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::int8[], $8::int8[], $9::text[], $10::text[],
                              $11::text[])
         ON CONFLICT (user_email, source, source_id) DO UPDATE
           SET decision = excluded.decision, reason = excluded.reason, rules = excluded.rules,
               activity_id = excluded.activity_id, decided_at = excluded.decided_at,
               detail = excluded.detail, conversation_hash = excluded.conversation_hash,
               labels = excluded.labels
           WHERE decisions.decision != excluded.decision OR decisions.reason != excluded.reason
              OR decisions.rules != excluded.rules
              OR decisions.activity_id IS DISTINCT FROM excluded.activity_id
              OR decisions.detail IS DISTINCT FROM excluded.detail
              OR decisions.conversation_hash IS DISTINCT FROM excluded.conversation_hash
              OR decisions.labels != excluded.labels",
        &[
            (&users, Type::TEXT_ARRAY),
            (&sources, Type::TEXT_ARRAY),
            (&source_ids, Type::TEXT_ARRAY),
            (&outcomes, Type::TEXT_ARRAY),
            (&reasons, Type::TEXT_ARRAY),
            (&rules, Type::TEXT_ARRAY),
            (&ids, Type::INT8_ARRAY),
            (&decided, Type::INT8_ARRAY),
            (&details, Type::TEXT_ARRAY),
            (&conversations, Type::TEXT_ARRAY),
            (&labels, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}
