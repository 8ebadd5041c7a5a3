//! The PostgreSQL backend: the CRM store in the database the CRM already runs, backs up and
//! replicates. Text is ordered `COLLATE "C"` (byte order), as SQLite orders it, so both
//! backends list addresses and users alike whatever the database's locale. The same tables as SQLite's (its own migrations, applied at open under an
//! advisory lock so instances starting together do not race), a connection pool, and the
//! same answers: the conformance tests run every store test against both.

mod connect;
mod error;
mod leases;
mod read;
mod tables;
mod write;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use postgres::GenericClient;
use postgres::types::Type;

pub use connect::PostgresSettings;

use super::read_rules::ReadQuery;
use super::{AccessLogEntry, ActivityView, EraseSelection, Erased, StoreOptions};
use super::{AppliedChanges, ContactEvents, LoggedDecision, PendingBackfill, Purged, PushState};
use super::{
    Contact, ContactChange, Counts, Cursor, NewContact, Record, Recorded, Store, StoreError,
    SyncState, SyncStatus, Viewer,
};
use super::{
    ConversationChoice, InstanceInfo, InstanceView, LeaseRound, LeaseView, OwnerChoice,
    SourceChange, StoredSource, files,
};
use crate::rules::{Action, ContactBook, ConversationContext, DecidedBy, MessageFacts, Visibility};

/// Each entry is one schema version; never edit a released one, append a new one.
const MIGRATIONS: &[(&str, &str)] = &[
    ("001_initial", include_str!("migrations/001_initial.sql")),
    (
        "002_instances",
        include_str!("migrations/002_instances.sql"),
    ),
    ("003_push", include_str!("migrations/003_push.sql")),
    (
        "004_conversations",
        include_str!("migrations/004_conversations.sql"),
    ),
];

/// Advisory lock keys (one namespace per database): applying migrations; writing and
/// removing attachment files.
const MIGRATION_LOCK: i64 = 0x6d61_696c_0001;
const ATTACHMENT_FILES_LOCK: i64 = 0x6d61_696c_0002;

/// The daemon's mark in `contact_events` (table `event_marks`).
const RULES_MARK: &str = "rules";

pub struct PostgresStore {
    /// Taken only by `Drop`.
    pool: Option<connect::Pool>,
    options: Mutex<StoreOptions>,
    /// The leases this process holds, when it is a daemon instance.
    held: Mutex<leases::Held>,
}

impl Drop for PostgresStore {
    /// The synchronous client runs each connection on a small runtime of its own, and
    /// closing one on an async thread panics: the store is often dropped on one (the daemon
    /// at shutdown), so the connections are closed on a thread of their own.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

impl PostgresStore {
    /// Connects and brings the schema up to date.
    pub fn open(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let pool = settings.pool()?;
        migrate(&mut *pool.get()?)?;
        Ok(PostgresStore {
            pool: Some(pool),
            options: Mutex::new(StoreOptions::default()),
            held: Mutex::default(),
        })
    }

    /// For dry runs and `explain`: connects without changing anything; the schema must
    /// already be this version's.
    pub fn open_for_looking(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let pool = settings.pool()?;
        let version = schema_version(&mut *pool.get()?)?;
        if version != MIGRATIONS.len() as i64 {
            return Err(StoreError::Conflict(format!(
                "store {} has schema version {version}, this mailsync expects {}: run a command that writes \
                 (e.g. `contacts list`) to migrate it first",
                settings.url,
                MIGRATIONS.len()
            )));
        }
        Ok(PostgresStore {
            pool: Some(pool),
            options: Mutex::new(StoreOptions::default()),
            held: Mutex::default(),
        })
    }

    pub fn with_options(self, options: StoreOptions) -> Self {
        self.set_options(options);
        self
    }

    /// A client for one operation. Never from an async thread: inside
    /// [`crate::store::without_waiting`] every operation is busy at once, and the caller
    /// goes to the blocking pool.
    fn client(&self) -> Result<r2d2::PooledConnection<connect::Manager>, StoreError> {
        if crate::store::must_not_wait() {
            return Err(StoreError::Busy(
                "PostgreSQL is reached from the blocking pool only".to_string(),
            ));
        }
        Ok(self.pool.as_ref().expect("taken only on drop").get()?)
    }

    fn options(&self) -> StoreOptions {
        self.options
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// One transaction of writes for `user_email`'s mailbox, fenced: refused unless this
    /// instance holds the mailbox's lease (see `leases`).
    fn write_for<T>(
        &self,
        user_email: &str,
        work: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.client()?;
        let mut transaction = client.transaction()?;
        self.fence(&mut transaction, user_email)?;
        let value = work(&mut transaction)?;
        transaction.commit()?;
        Ok(value)
    }

    /// Removes the attachment files among `candidates` that no activity keeping its content
    /// references, under the files lock that writers hold while they write one.
    fn remove_unreferenced_files(&self, candidates: &BTreeSet<String>) -> Result<u64, StoreError> {
        let Some(dir) = self.options().attachments_dir else {
            return Ok(0);
        };
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut client = self.client()?;
        let mut transaction = client.transaction()?;
        transaction.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&ATTACHMENT_FILES_LOCK],
        )?;
        let mut removed = 0;
        for sha256 in candidates {
            let referenced = transaction
                .query_opt(
                    "SELECT 1 FROM attachments t JOIN activities a ON a.id = t.activity_id
                     WHERE t.sha256 = $1 AND t.stored AND a.content_erased_at IS NULL LIMIT 1",
                    &[sha256],
                )?
                .is_some();
            if !referenced && files::remove_content(&dir, sha256)? {
                removed += 1;
            }
        }
        transaction.commit()?;
        Ok(removed)
    }

    fn sweep_attachment_files(&self) -> Result<u64, StoreError> {
        let Some(dir) = self.options().attachments_dir else {
            return Ok(0);
        };
        let (hashes, leftovers) = {
            let mut client = self.client()?;
            let mut transaction = client.transaction()?;
            transaction.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&ATTACHMENT_FILES_LOCK],
            )?;
            let listed = files::list_contents(&dir)?;
            transaction.commit()?;
            listed
        };
        for leftover in leftovers {
            let _ = std::fs::remove_file(leftover);
        }
        self.remove_unreferenced_files(&hashes.into_iter().collect())
    }
}

fn schema_version(client: &mut impl GenericClient) -> Result<i64, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('mailsync_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one("SELECT coalesce(max(version), 0) FROM mailsync_schema", &[])?
        .get(0))
}

/// Applies the migrations this store lacks, all in one transaction under an advisory lock:
/// instances starting together wait for the first, then find nothing to do.
fn migrate(client: &mut postgres::Client) -> Result<(), StoreError> {
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    transaction.batch_execute(
        "CREATE TABLE IF NOT EXISTS mailsync_schema (
             version     BIGINT PRIMARY KEY,
             name        TEXT NOT NULL,
             applied_at  BIGINT NOT NULL)",
    )?;
    let version = schema_version(&mut transaction)?;
    if version > MIGRATIONS.len() as i64 {
        return Err(StoreError::Conflict(format!(
            "the store has schema version {version}, newer than this mailsync's {}: upgrade mailsync",
            MIGRATIONS.len()
        )));
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        transaction.batch_execute(sql).map_err(|error| {
            StoreError::Migration(format!("{name}: {}", error::describe(&error)))
        })?;
        transaction.execute(
            "INSERT INTO mailsync_schema (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&(index as i64 + 1), name, &now()],
        )?;
    }
    transaction.commit()?;
    Ok(())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn rfc3339(seconds: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|date| date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Deletes the contact change events every mark is past (see the SQLite backend).
fn prune_contact_events(client: &mut impl GenericClient) -> Result<u64, StoreError> {
    Ok(client.execute(
        "DELETE FROM contact_events WHERE id <= LEAST(
             (SELECT covered_through FROM event_marks WHERE name = $1),
             COALESCE((SELECT min(covered_through) FROM backfill_marks), 9223372036854775807))",
        &[&RULES_MARK],
    )?)
}

fn contact_ids_owning(
    client: &mut impl GenericClient,
    emails: &[String],
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::new();
    for row in client.query(
        "SELECT DISTINCT contact_id FROM contact_emails WHERE email = ANY($1) ORDER BY contact_id",
        &[&emails],
    )? {
        ids.push(row.get(0));
    }
    Ok(ids)
}

fn write_contact_details(
    client: &mut impl GenericClient,
    id: i64,
    contact: &NewContact,
) -> Result<(), StoreError> {
    for email in &contact.emails {
        client.execute(
            "INSERT INTO contact_emails (email, contact_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[email, &id],
        )?;
    }
    if let Some(no_sync) = contact.no_sync {
        client.execute(
            "UPDATE contacts SET no_sync = $1 WHERE id = $2 AND no_sync != $1",
            &[&no_sync, &id],
        )?;
    }
    if let Some(visible_to) = &contact.visible_to {
        client.execute(
            "DELETE FROM contact_visible_to WHERE contact_id = $1",
            &[&id],
        )?;
        for user in visible_to {
            client.execute(
                "INSERT INTO contact_visible_to (contact_id, user_email) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&id, user],
            )?;
        }
    }
    Ok(())
}

fn load_contact(client: &mut impl GenericClient, id: i64) -> Result<Contact, StoreError> {
    let row = client.query_one("SELECT name, no_sync FROM contacts WHERE id = $1", &[&id])?;
    let mut strings = |sql: &str| -> Result<Vec<String>, StoreError> {
        Ok(client
            .query(sql, &[&id])?
            .iter()
            .map(|row| row.get(0))
            .collect())
    };
    Ok(Contact {
        id,
        name: row.get(0),
        emails: strings(
            "SELECT email FROM contact_emails WHERE contact_id = $1 ORDER BY email COLLATE \"C\"",
        )?,
        visible_to: strings(
            "SELECT user_email FROM contact_visible_to WHERE contact_id = $1 ORDER BY user_email COLLATE \"C\"",
        )?,
        no_sync: row.get(1),
    })
}

/// Serialises contact writers with the change log's trigger lock, so a new contact's id and
/// events are drawn in commit order.
fn lock_contact_events(client: &mut impl GenericClient) -> Result<(), StoreError> {
    client.batch_execute("LOCK TABLE contact_events IN SHARE ROW EXCLUSIVE MODE")?;
    Ok(())
}

const SYNC_STATE_COLUMNS: &str =
    "s.user_email, s.state, s.history_id, s.last_sync_at, s.last_error,
     s.consecutive_failures, s.next_poll_at, s.last_verify_at, s.verify_gaps,
     NOT EXISTS (SELECT 1 FROM backfill_marks m WHERE m.user_email = s.user_email)
       OR EXISTS (SELECT 1 FROM backfill_marks m JOIN contact_events e ON e.id > m.covered_through
                  WHERE m.user_email = s.user_email),
     s.watch_expires_at, s.push_state";

fn sync_state_from_row(row: &postgres::Row) -> SyncState {
    let state: String = row.get(1);
    SyncState {
        user_email: row.get(0),
        status: SyncStatus::parse(&state).unwrap_or(SyncStatus::Error),
        history_id: row.get(2),
        last_sync_at: row.get(3),
        last_error: row.get(4),
        consecutive_failures: row.get::<_, i64>(5) as u32,
        next_poll_at: row.get(6),
        last_verify_at: row.get(7),
        verify_gaps: row.get::<_, i64>(8) as u64,
        backfill_due: row.get(9),
        watch_expires_at: row.get(10),
        push_state: row
            .get::<_, Option<String>>(11)
            .as_deref()
            .and_then(PushState::parse),
    }
}

/// The contact addresses of each activity (of `only` those, when given), sorted.
fn links_by_activity(
    client: &mut impl GenericClient,
    only: Option<&[i64]>,
) -> Result<HashMap<i64, Vec<String>>, StoreError> {
    let rows = match only {
        Some(ids) => client.query(
            "SELECT activity_id, address FROM activity_contacts
             WHERE activity_id = ANY($1) ORDER BY activity_id, address COLLATE \"C\"",
            &[&ids],
        )?,
        None => client.query(
            "SELECT activity_id, address FROM activity_contacts ORDER BY activity_id, address COLLATE \"C\"",
            &[],
        )?,
    };
    let mut links: HashMap<i64, Vec<String>> = HashMap::new();
    for row in rows {
        links.entry(row.get(0)).or_default().push(row.get(1));
    }
    Ok(links)
}

impl Store for PostgresStore {
    fn set_options(&self, options: StoreOptions) {
        *self
            .options
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = options;
    }

    fn upsert_contact(&self, contact: &NewContact) -> Result<ContactChange, StoreError> {
        let mut client = self.client()?;
        let mut transaction = client.transaction()?;
        lock_contact_events(&mut transaction)?;
        let owners = contact_ids_owning(&mut transaction, &contact.emails)?;
        let change = match owners.as_slice() {
            [] => {
                let id: i64 = transaction
                    .query_one(
                        "INSERT INTO contacts (name, created_at) VALUES ($1, $2) RETURNING id",
                        &[&contact.name, &now()],
                    )?
                    .get(0);
                write_contact_details(&mut transaction, id, contact)?;
                ContactChange::Created(id)
            }
            [id] => {
                let before = load_contact(&mut transaction, *id)?;
                if contact.name.is_some() {
                    transaction.execute(
                        "UPDATE contacts SET name = $1 WHERE id = $2",
                        &[&contact.name, id],
                    )?;
                }
                write_contact_details(&mut transaction, *id, contact)?;
                if load_contact(&mut transaction, *id)? == before {
                    ContactChange::Unchanged(*id)
                } else {
                    ContactChange::Updated(*id)
                }
            }
            several => {
                return Err(StoreError::several_contacts(several));
            }
        };
        transaction.commit()?;
        Ok(change)
    }

    fn add_contact(&self, contact: &NewContact) -> Result<i64, StoreError> {
        let mut client = self.client()?;
        let mut transaction = client.transaction()?;
        lock_contact_events(&mut transaction)?;
        if let Some(existing) = contact_ids_owning(&mut transaction, &contact.emails)?.first() {
            return Err(StoreError::address_taken(*existing));
        }
        let id: i64 = transaction
            .query_one(
                "INSERT INTO contacts (name, created_at) VALUES ($1, $2) RETURNING id",
                &[&contact.name, &now()],
            )?
            .get(0);
        write_contact_details(&mut transaction, id, contact)?;
        transaction.commit()?;
        Ok(id)
    }

    fn list_contacts(&self) -> Result<Vec<Contact>, StoreError> {
        let mut client = self.client()?;
        let ids: Vec<i64> = client
            .query("SELECT id FROM contacts ORDER BY id", &[])?
            .iter()
            .map(|row| row.get(0))
            .collect();
        ids.into_iter()
            .map(|id| load_contact(&mut *client, id))
            .collect()
    }

    fn contact_book(&self, addresses: &[String]) -> Result<ContactBook, StoreError> {
        let mut client = self.client()?;
        let mut book = ContactBook::default();
        // Typed, so one round trip: it runs for every message decided.
        for row in client.query_typed(
            "SELECT e.email, c.no_sync FROM contact_emails e JOIN contacts c ON c.id = e.contact_id
             WHERE e.email = ANY($1)",
            &[(&addresses, Type::TEXT_ARRAY)],
        )? {
            let address: String = row.get(0);
            if row.get::<_, bool>(1) {
                book.never_sync.insert(address.clone());
            }
            book.contacts.insert(address);
        }
        Ok(book)
    }

    fn set_contact_no_sync(
        &self,
        address: &str,
        no_sync: bool,
    ) -> Result<Option<Contact>, StoreError> {
        let mut client = self.client()?;
        let mut transaction = client.transaction()?;
        lock_contact_events(&mut transaction)?;
        let Some(id) = contact_ids_owning(&mut transaction, &[address.to_string()])?
            .first()
            .copied()
        else {
            return Ok(None);
        };
        transaction.execute(
            "UPDATE contacts SET no_sync = $1 WHERE id = $2 AND no_sync != $1",
            &[&no_sync, &id],
        )?;
        let contact = load_contact(&mut transaction, id)?;
        transaction.commit()?;
        Ok(Some(contact))
    }

    fn never_sync_addresses(&self) -> Result<Vec<String>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query(
                "SELECT e.email FROM contact_emails e JOIN contacts c ON c.id = e.contact_id
                 WHERE c.no_sync ORDER BY e.email COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn candidate_addresses(&self) -> Result<Vec<String>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query(
                "SELECT e.email FROM contact_emails e JOIN contacts c ON c.id = e.contact_id
                 WHERE NOT c.no_sync ORDER BY e.email COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn contact_events(&self, limit: usize) -> Result<ContactEvents, StoreError> {
        let mut client = self.client()?;
        let row = client.query_one(
            "SELECT count(*) FILTER (WHERE kind = 'address_added'),
                    count(*) FILTER (WHERE kind = 'no_sync_changed'),
                    max(id)
             FROM (SELECT id, kind FROM contact_events
                   WHERE id > COALESCE((SELECT covered_through FROM event_marks WHERE name = $1), 0)
                   ORDER BY id LIMIT $2) page",
            &[&RULES_MARK, &(limit as i64)],
        )?;
        Ok(ContactEvents {
            addresses_added: row.get::<_, i64>(0) as u64,
            no_sync_changed: row.get::<_, i64>(1) as u64,
            through: row.get(2),
        })
    }

    fn finish_contact_events(&self, through: i64) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut transaction = client.transaction()?;
        transaction.execute(
            "INSERT INTO event_marks (name, covered_through) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE
             SET covered_through = GREATEST(event_marks.covered_through, excluded.covered_through)",
            &[&RULES_MARK, &through],
        )?;
        prune_contact_events(&mut transaction)?;
        transaction.commit()?;
        Ok(())
    }

    fn place_backfill_mark(&self, user_email: &str) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut transaction = client.transaction()?;
        self.fence(&mut transaction, user_email)?;
        // Waits for contact writers in flight, so the end of the log read here has every
        // event before it committed: the full sync about to start sees those contacts.
        lock_contact_events(&mut transaction)?;
        let placed = transaction.execute(
            "INSERT INTO backfill_marks (user_email, covered_through)
             SELECT $1, CASE WHEN is_called THEN last_value ELSE 0 END FROM contact_events_id_seq
             ON CONFLICT (user_email) DO NOTHING",
            &[&user_email],
        )? == 1;
        transaction.commit()?;
        Ok(placed)
    }

    fn pending_backfill(
        &self,
        user_email: &str,
        limit: usize,
    ) -> Result<Option<PendingBackfill>, StoreError> {
        let mut client = self.client()?;
        let rows = client.query(
            "SELECT e.id, e.email
             FROM backfill_marks m LEFT JOIN contact_events e ON e.id > m.covered_through
             WHERE m.user_email = $1
             ORDER BY e.id LIMIT $2",
            &[&user_email, &(limit.max(1) as i64)],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut pending = PendingBackfill::default();
        let mut seen = HashSet::new();
        for row in rows {
            let id: Option<i64> = row.get(0);
            let email: Option<String> = row.get(1);
            pending.through = id.or(pending.through);
            if let Some(email) = email
                && seen.insert(email.clone())
            {
                pending.addresses.push(email);
            }
        }
        Ok(Some(pending))
    }

    fn finish_backfill(&self, user_email: &str, through: i64) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut transaction = client.transaction()?;
        self.fence(&mut transaction, user_email)?;
        transaction.execute(
            "UPDATE backfill_marks SET covered_through = GREATEST(covered_through, $2)
             WHERE user_email = $1",
            &[&user_email, &through],
        )?;
        prune_contact_events(&mut transaction)?;
        transaction.commit()?;
        Ok(())
    }

    fn decision_reasons(
        &self,
        user_email: &str,
        source: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query(
                "SELECT source_id, reason FROM decisions
                 WHERE user_email = $1 AND source = $2 AND source_id = ANY($3)",
                &[&user_email, &source, &source_ids],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    fn record_all(
        &self,
        records: &[Record<'_>],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Recorded>, StoreError> {
        let options = self.options();
        let mut client = self.client()?;
        let mut transaction = client.transaction()?;
        let users: BTreeSet<&str> = records
            .iter()
            .map(|record| record.source.user_email.as_str())
            .chain(cursor.map(|cursor| cursor.user_email.as_str()))
            .collect();
        for user_email in users {
            self.fence(&mut transaction, user_email)?;
        }
        let (recorded, dropped_files) = write::record_batch(&mut transaction, &options, records)?;
        if let Some(cursor) = cursor {
            transaction.execute_typed(
                "INSERT INTO sync_state (user_email, history_id) VALUES ($1, $2)
                 ON CONFLICT (user_email) DO UPDATE SET history_id = excluded.history_id",
                &[
                    (&cursor.user_email, Type::TEXT),
                    (&cursor.history_id, Type::TEXT),
                ],
            )?;
        }
        transaction.commit()?;
        drop(client);
        if !dropped_files.is_empty() {
            self.remove_unreferenced_files(&dropped_files)?;
        }
        Ok(recorded)
    }

    fn decided(
        &self,
        user_email: &str,
        source: &str,
        source_ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query_typed(
                "SELECT source_id FROM decisions
                 WHERE user_email = $1 AND source = $2 AND source_id = ANY($3)",
                &[
                    (&user_email, Type::TEXT),
                    (&source, Type::TEXT),
                    (&source_ids, Type::TEXT_ARRAY),
                ],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn sync_state(&self, user_email: &str) -> Result<Option<SyncState>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query_typed_opt(
                &format!("SELECT {SYNC_STATE_COLUMNS} FROM sync_state s WHERE user_email = $1"),
                &[(&user_email, Type::TEXT)],
            )?
            .as_ref()
            .map(sync_state_from_row))
    }

    fn sync_states(&self) -> Result<Vec<SyncState>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query(
                &format!("SELECT {SYNC_STATE_COLUMNS} FROM sync_state s ORDER BY user_email COLLATE \"C\""),
                &[],
            )?
            .iter()
            .map(sync_state_from_row)
            .collect())
    }

    fn set_sync_status(
        &self,
        user_email: &str,
        status: SyncStatus,
        last_error: Option<&str>,
    ) -> Result<(), StoreError> {
        let stamp = (status == SyncStatus::Ok).then(now);
        let sql = "INSERT INTO sync_state (user_email, state, last_sync_at, last_error) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_email) DO UPDATE SET
               state = excluded.state,
               last_sync_at = COALESCE(excluded.last_sync_at, sync_state.last_sync_at),
               last_error = excluded.last_error";
        let params: &[&(dyn postgres::types::ToSql + Sync)] =
            &[&user_email, &status.as_str(), &stamp, &last_error];
        if status == SyncStatus::Disabled {
            // Every instance runs the same config and says the same of a user whose sync is
            // off, whoever holds the mailbox: not a write for the mailbox's sync.
            self.client()?.execute(sql, params)?;
            return Ok(());
        }
        self.write_for(user_email, |transaction| {
            transaction.execute(sql, params)?;
            Ok(())
        })
    }

    fn finish_poll(
        &self,
        user_email: &str,
        status: SyncStatus,
        last_error: Option<&str>,
        consecutive_failures: u32,
        next_poll_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let stamp = (status == SyncStatus::Ok).then(now);
        self.write_for(user_email, |transaction| {
            transaction.execute(
                "INSERT INTO sync_state (user_email, state, last_sync_at, last_error, consecutive_failures, next_poll_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (user_email) DO UPDATE SET
                   state = excluded.state,
                   last_sync_at = COALESCE(excluded.last_sync_at, sync_state.last_sync_at),
                   last_error = excluded.last_error,
                   consecutive_failures = excluded.consecutive_failures,
                   next_poll_at = excluded.next_poll_at",
                &[
                    &user_email,
                    &status.as_str(),
                    &stamp,
                    &last_error,
                    &i64::from(consecutive_failures),
                    &next_poll_at,
                ],
        )?;
            Ok(())
        })
    }

    fn set_poll_schedule(
        &self,
        user_email: &str,
        consecutive_failures: u32,
        next_poll_at: Option<i64>,
    ) -> Result<(), StoreError> {
        self.write_for(user_email, |transaction| {
            transaction.execute(
                "INSERT INTO sync_state (user_email, consecutive_failures, next_poll_at) VALUES ($1, $2, $3)
                 ON CONFLICT (user_email) DO UPDATE SET
                   consecutive_failures = excluded.consecutive_failures, next_poll_at = excluded.next_poll_at",
                &[&user_email, &i64::from(consecutive_failures), &next_poll_at],
        )?;
            Ok(())
        })
    }

    fn set_push(
        &self,
        user_email: &str,
        watch_expires_at: Option<i64>,
        state: Option<PushState>,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO sync_state (user_email, state, watch_expires_at, push_state)
                 VALUES ($1, 'syncing', $2, $3)
                 ON CONFLICT (user_email) DO UPDATE SET
                   watch_expires_at = excluded.watch_expires_at, push_state = excluded.push_state";
        let state = state.map(PushState::as_str);
        let params: &[&(dyn postgres::types::ToSql + Sync)] =
            &[&user_email, &watch_expires_at, &state];
        if watch_expires_at.is_none() && state.is_none() {
            // Clearing a stopped watch of a mailbox whose sync is off, which nobody holds:
            // like recording that its sync is off, not a write for the mailbox's sync.
            self.client()?.execute(sql, params)?;
            return Ok(());
        }
        self.write_for(user_email, |transaction| {
            transaction.execute(sql, params)?;
            Ok(())
        })
    }

    fn set_verify_result(&self, user_email: &str, gaps: u64, at: i64) -> Result<(), StoreError> {
        self.write_for(user_email, |transaction| {
            transaction.execute(
                "INSERT INTO sync_state (user_email, last_verify_at, verify_gaps) VALUES ($1, $2, $3)
                 ON CONFLICT (user_email) DO UPDATE SET
                   last_verify_at = excluded.last_verify_at, verify_gaps = excluded.verify_gaps",
                &[&user_email, &at, &(gaps as i64)],
        )?;
            Ok(())
        })
    }

    fn last_notified(&self, user_email: &str, kind: &str) -> Result<Option<i64>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query_opt(
                "SELECT sent_at FROM notifications WHERE user_email = $1 AND kind = $2",
                &[&user_email, &kind],
            )?
            .map(|row| row.get(0)))
    }

    fn set_notified(&self, user_email: &str, kind: &str, sent_at: i64) -> Result<(), StoreError> {
        self.write_for(user_email, |transaction| {
            transaction.execute(
                "INSERT INTO notifications (user_email, kind, sent_at) VALUES ($1, $2, $3)
                 ON CONFLICT (user_email, kind) DO UPDATE SET sent_at = excluded.sent_at",
                &[&user_email, &kind, &sent_at],
            )?;
            Ok(())
        })
    }

    fn clear_cursor(&self, user_email: &str) -> Result<(), StoreError> {
        self.write_for(user_email, |transaction| {
            transaction.execute(
                "UPDATE sync_state SET history_id = NULL WHERE user_email = $1",
                &[&user_email],
            )?;
            Ok(())
        })
    }

    fn sources_per_user(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query(
                "SELECT user_email, count(*) FROM activity_sources GROUP BY user_email",
                &[],
            )?
            .iter()
            .map(|row| (row.get(0), row.get::<_, i64>(1) as u64))
            .collect())
    }

    fn purge_user(&self, user_email: &str) -> Result<Purged, StoreError> {
        let candidates: BTreeSet<String>;
        let (activities_removed, sources_removed, decisions_removed);
        {
            let mut client = self.client()?;
            let mut transaction = client.transaction()?;
            const ALONE: &str = "SELECT activity_id FROM activity_sources WHERE user_email = $1
                                 EXCEPT SELECT activity_id FROM activity_sources WHERE user_email != $1";
            candidates = transaction
                .query(
                    &format!(
                        "SELECT DISTINCT t.sha256 FROM attachments t WHERE t.stored AND t.activity_id IN ({ALONE})"
                    ),
                    &[&user_email],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect();
            activities_removed = transaction.execute(
                &format!("DELETE FROM activities WHERE id IN ({ALONE})"),
                &[&user_email],
            )?;
            sources_removed = transaction.execute(
                "DELETE FROM activity_sources WHERE user_email = $1",
                &[&user_email],
            )?;
            decisions_removed = transaction.execute(
                "DELETE FROM decisions WHERE user_email = $1",
                &[&user_email],
            )?;
            for table in [
                "sync_state",
                "notifications",
                "oauth_tokens",
                "backfill_marks",
            ] {
                transaction.execute(
                    &format!("DELETE FROM {table} WHERE user_email = $1"),
                    &[&user_email],
                )?;
            }
            prune_contact_events(&mut transaction)?;
            transaction.commit()?;
        }
        let attachment_files_removed = self.remove_unreferenced_files(&candidates)?;
        Ok(Purged {
            activities_removed,
            sources_removed,
            decisions_removed,
            attachment_files_removed,
        })
    }

    fn synced_per_hour(&self, since: i64) -> Result<Vec<(i64, u64)>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query(
                "SELECT synced_at - synced_at % 3600 AS hour, count(*) FROM activity_sources
                 WHERE synced_at >= $1 GROUP BY hour ORDER BY hour",
                &[&since],
            )?
            .iter()
            .map(|row| (row.get::<_, i64>(0), row.get::<_, i64>(1) as u64))
            .collect())
    }

    fn stored_sources(&self) -> Result<Vec<StoredSource>, StoreError> {
        self.sources_where("TRUE", &[])
    }

    fn sources_of(
        &self,
        activity_id: i64,
        conversation: bool,
    ) -> Result<Vec<StoredSource>, StoreError> {
        if conversation {
            self.sources_where(
                "a.conversation = (SELECT conversation FROM activities WHERE id = $1)",
                &[&activity_id],
            )
        } else {
            self.sources_where("s.activity_id = $1", &[&activity_id])
        }
    }

    fn stored_source(
        &self,
        user_email: &str,
        source: &str,
        source_id: &str,
    ) -> Result<Option<StoredSource>, StoreError> {
        Ok(self
            .sources_where(
                "s.user_email = $1 AND s.activity_id = (SELECT activity_id FROM decisions
                   WHERE user_email = $1 AND source = $2 AND source_id = $3)",
                &[&user_email, &source, &source_id],
            )?
            .pop())
    }

    fn conversation_contexts(
        &self,
        user_email: &str,
        conversations: &[String],
        source: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, ConversationContext>, StoreError> {
        let mut client = self.client()?;
        let mut contexts: HashMap<String, ConversationContext> = HashMap::new();
        for row in client.query(
            "SELECT conversation, choice FROM conversation_overrides
             WHERE user_email = $1 AND conversation = ANY($2)",
            &[&user_email, &conversations],
        )? {
            let choice: String = row.get(1);
            contexts.entry(row.get(0)).or_default().owner_choice = Action::parse(&choice);
        }
        // From the decisions, so that a copy a label kept out still passes its label on.
        let by_hash: HashMap<String, &String> = conversations
            .iter()
            .map(|conversation| {
                (
                    super::identity::conversation_hash(conversation),
                    conversation,
                )
            })
            .collect();
        let hashes: Vec<&String> = by_hash.keys().collect();
        for row in client.query(
            "SELECT conversation_hash, labels FROM decisions
             WHERE user_email = $1 AND conversation_hash = ANY($2) AND labels <> '[]'
               AND NOT (source = $3 AND source_id = ANY($4))",
            &[&user_email, &hashes, &source, &source_ids],
        )? {
            let hash: String = row.get(0);
            let labels: String = row.get(1);
            if let Some(conversation) = by_hash.get(&hash) {
                contexts
                    .entry((*conversation).clone())
                    .or_default()
                    .add_labels(serde_json::from_str(&labels).unwrap_or_default());
            }
        }
        Ok(contexts)
    }

    fn owner_copy_choices(
        &self,
        user_email: &str,
        source: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, Action>, StoreError> {
        let mut client = self.client()?;
        let mut choices = HashMap::new();
        for row in client.query(
            "SELECT d.source_id, CASE WHEN d.reason = 'skipped_by_owner' THEN 'skip' ELSE s.visibility END
             FROM decisions d LEFT JOIN activity_sources s
               ON s.activity_id = d.activity_id AND s.user_email = d.user_email
             WHERE d.user_email = $1 AND d.source = $2 AND d.source_id = ANY($3)
               AND (d.reason = 'skipped_by_owner' OR s.decided_by = 'owner')",
            &[&user_email, &source, &source_ids],
        )? {
            let choice: String = row.get(1);
            if let Some(choice) = Action::parse(&choice) {
                choices.insert(row.get(0), choice);
            }
        }
        Ok(choices)
    }

    fn apply_source_changes(&self, changes: &[SourceChange]) -> Result<AppliedChanges, StoreError> {
        let mut applied = AppliedChanges::default();
        let mut candidates = BTreeSet::new();
        {
            let mut client = self.client()?;
            let mut transaction = client.transaction()?;
            apply_changes(&mut transaction, changes, &mut applied, &mut candidates)?;
            transaction.commit()?;
        }
        self.remove_unreferenced_files(&candidates)?;
        Ok(applied)
    }

    fn apply_owner_choice(&self, choice: &OwnerChoice) -> Result<AppliedChanges, StoreError> {
        let mut applied = AppliedChanges::default();
        let mut candidates = BTreeSet::new();
        {
            let mut client = self.client()?;
            let mut transaction = client.transaction()?;
            apply_changes(
                &mut transaction,
                &choice.changes,
                &mut applied,
                &mut candidates,
            )?;
            if let Some(ConversationChoice {
                conversation,
                mailboxes: choices,
            }) = &choice.conversation
            {
                for (user_email, action) in choices {
                    match action {
                        Some(action) => transaction.execute(
                            "INSERT INTO conversation_overrides (user_email, conversation, choice, set_at)
                             VALUES ($1, $2, $3, $4)
                             ON CONFLICT (user_email, conversation) DO UPDATE
                               SET choice = excluded.choice, set_at = excluded.set_at",
                            &[user_email, conversation, &action.as_str(), &now()],
                        )?,
                        None => transaction.execute(
                            "DELETE FROM conversation_overrides WHERE user_email = $1 AND conversation = $2",
                            &[user_email, conversation],
                        )?,
                    };
                }
            }
            let hash = super::identity::conversation_hash(&choice.conversation_key);
            transaction.execute(
                "DELETE FROM decisions WHERE user_email = ANY($1) AND conversation_hash = $2
                   AND reason = 'skipped_by_owner'",
                &[&choice.unskip, &hash],
            )?;
            transaction.execute(
                "INSERT INTO access_log (viewer, activity_id, message_id, path, viewer_is_owner, accessed_at, change)
                 VALUES ($1, $2, $3, 'set', $4, $5, $6)",
                &[
                    &choice.viewer,
                    &choice.activity_id,
                    &choice.message_id,
                    &choice.viewer_is_owner,
                    &now(),
                    &choice.change,
                ],
            )?;
            transaction.commit()?;
        }
        self.remove_unreferenced_files(&candidates)?;
        Ok(applied)
    }

    fn apply_mailbox_changes(
        &self,
        user_email: &str,
        changes: &[SourceChange],
    ) -> Result<AppliedChanges, StoreError> {
        let mut applied = AppliedChanges::default();
        let mut candidates = BTreeSet::new();
        self.write_for(user_email, |transaction| {
            apply_changes(transaction, changes, &mut applied, &mut candidates)
        })?;
        self.remove_unreferenced_files(&candidates)?;
        Ok(applied)
    }

    fn labelled_sources(
        &self,
        user_email: &str,
        source: &str,
    ) -> Result<Vec<StoredSource>, StoreError> {
        self.sources_where(
            "s.user_email = $1 AND s.source = $2 AND s.labels <> '[]'",
            &[&user_email, &source],
        )
    }

    fn blocked_by(
        &self,
        user_email: &str,
        source: &str,
        rules: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query(
                "SELECT source_id, rules FROM decisions
                 WHERE user_email = $1 AND source = $2 AND reason = 'blocked_by_rule'
                 ORDER BY source_id COLLATE \"C\"",
                &[&user_email, &source],
            )?
            .into_iter()
            .filter(|row| super::names_any(row.get(1), rules))
            .map(|row| row.get(0))
            .collect())
    }

    fn forget_blocked_decision(
        &self,
        user_email: &str,
        source: &str,
        source_id: &str,
        rules: &[String],
    ) -> Result<bool, StoreError> {
        // Fenced: an instance that lost the mailbox must not make the holder fetch again.
        self.write_for(user_email, |transaction| {
            let stored: Option<String> = transaction
                .query_opt(
                    "SELECT rules FROM decisions
                     WHERE user_email = $1 AND source = $2 AND source_id = $3
                       AND reason = 'blocked_by_rule'",
                    &[&user_email, &source, &source_id],
                )?
                .map(|row| row.get(0));
            if !stored.is_some_and(|stored| super::names_any(&stored, rules)) {
                return Ok(false);
            }
            Ok(transaction.execute(
                "DELETE FROM decisions WHERE user_email = $1 AND source = $2 AND source_id = $3
                   AND reason = 'blocked_by_rule'",
                &[&user_email, &source, &source_id],
            )? > 0)
        })
    }

    fn decision_log(
        &self,
        user_email: &str,
        limit: Option<usize>,
    ) -> Result<Vec<LoggedDecision>, StoreError> {
        let mut client = self.client()?;
        let rows = client.query(
            &format!(
                "SELECT d.user_email, d.source, d.source_id, d.decision, d.reason, d.rules, d.activity_id, a.message_id, d.decided_at, d.detail, {decided_by}
                 FROM decisions d LEFT JOIN activities a ON a.id = d.activity_id
                 WHERE d.user_email = $1
                 ORDER BY d.decided_at, d.source COLLATE \"C\", d.source_id COLLATE \"C\"
                 LIMIT $2",
                decided_by = super::LOGGED_DECIDED_BY
            ),
            &[&user_email, &limit.map(|limit| limit.min(i64::MAX as usize) as i64)],
        )?;
        let ids: Vec<i64> = rows.iter().filter_map(|row| row.get(6)).collect();
        let mut addresses = links_by_activity(&mut *client, Some(&ids))?;
        let mut log = Vec::with_capacity(rows.len());
        for row in rows {
            let rules: String = row.get(5);
            let activity_id: Option<i64> = row.get(6);
            let contacts = activity_id
                .and_then(|id| addresses.remove(&id))
                .unwrap_or_default();
            log.push(LoggedDecision {
                user: row.get(0),
                source: row.get(1),
                source_id: row.get(2),
                decision: row.get(3),
                reason: row.get(4),
                rules: serde_json::from_str(&rules).unwrap_or_default(),
                activity_id,
                message_id: row.get(7),
                contacts,
                detail: row.get(9),
                decided_by: row.get(10),
                decided_at: rfc3339(row.get(8)).unwrap_or_default(),
            });
        }
        Ok(log)
    }

    fn refresh_token(&self, user_email: &str) -> Result<Option<String>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query_opt(
                "SELECT refresh_token FROM oauth_tokens WHERE user_email = $1",
                &[&user_email],
            )?
            .map(|row| row.get(0)))
    }

    fn set_refresh_token(
        &self,
        user_email: &str,
        client_id: &str,
        refresh_token: &str,
    ) -> Result<(), StoreError> {
        let mut client = self.client()?;
        client.execute(
            "INSERT INTO oauth_tokens (user_email, client_id, refresh_token, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_email) DO UPDATE SET client_id = excluded.client_id,
               refresh_token = excluded.refresh_token, updated_at = excluded.updated_at",
            &[&user_email, &client_id, &refresh_token, &now()],
        )?;
        Ok(())
    }

    fn feed(
        &self,
        viewer: &Viewer,
        contact: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<ActivityView>, StoreError> {
        let query = ReadQuery::feed(contact, limit);
        read::read_path(&mut *self.client()?, viewer, &query)
    }

    fn search(
        &self,
        viewer: &Viewer,
        query: &str,
        limit: Option<usize>,
    ) -> Result<Vec<ActivityView>, StoreError> {
        if super::read_rules::search_words(query).is_none() {
            return Ok(Vec::new());
        }
        let query = ReadQuery::search(query, limit);
        read::read_path(&mut *self.client()?, viewer, &query)
    }

    fn export(
        &self,
        viewer: &Viewer,
        contact: Option<&str>,
    ) -> Result<Vec<ActivityView>, StoreError> {
        let query = ReadQuery::export(contact);
        read::read_path(&mut *self.client()?, viewer, &query)
    }

    fn attachment_content(
        &self,
        viewer: &Viewer,
        sha256: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(dir) = self.options().attachments_dir else {
            return Ok(None);
        };
        if !files::is_sha256_hex(sha256) {
            return Ok(None);
        }
        let query = ReadQuery::attachment(sha256);
        if read::read_path(&mut *self.client()?, viewer, &query)?.is_empty() {
            return Ok(None);
        }
        files::read_content(&dir, sha256).map(Some)
    }

    fn erase_content(
        &self,
        selection: &EraseSelection,
        dry_run: bool,
    ) -> Result<Erased, StoreError> {
        const IN_LIST: &str = "= ANY({p}::TEXT[])";
        let due = selection.due_sql("$1", IN_LIST);
        let (cutoff, mailboxes): (i64, Vec<String>) = match selection {
            EraseSelection::Before(cutoff) => (*cutoff, Vec::new()),
            EraseSelection::OnlyFrom(mailboxes) => (0, mailboxes.clone()),
        };
        let parameter: &(dyn postgres::types::ToSql + Sync) = match selection {
            EraseSelection::Before(_) => &cutoff,
            EraseSelection::OnlyFrom(_) => &mailboxes,
        };
        let ids: Vec<i64>;
        let candidates: BTreeSet<String>;
        {
            let mut client = self.client()?;
            let mut transaction = client.transaction()?;
            ids = transaction
                .query(
                    &format!("SELECT id FROM activities WHERE {due} ORDER BY id FOR UPDATE"),
                    &[parameter],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect();
            candidates = transaction
                .query(
                    &format!(
                        "SELECT DISTINCT t.sha256 FROM attachments t
                         WHERE t.stored AND t.activity_id IN (SELECT id FROM activities WHERE {due})"
                    ),
                    &[parameter],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect();
            if dry_run {
                let mut files = 0;
                for sha256 in &candidates {
                    let kept_elsewhere = transaction
                        .query_opt(
                            &format!(
                                "SELECT 1 FROM attachments t JOIN activities a ON a.id = t.activity_id
                                 WHERE t.sha256 = $1 AND t.stored AND a.content_erased_at IS NULL
                                   AND a.id NOT IN (SELECT id FROM activities WHERE {}) LIMIT 1",
                                selection.due_sql("$2", IN_LIST)
                            ),
                            &[sha256, parameter],
                        )?
                        .is_some();
                    if !kept_elsewhere {
                        files += 1;
                    }
                }
                return Ok(Erased {
                    activities_erased: ids.len() as u64,
                    attachment_files_removed: files,
                });
            }
            let at = now();
            // Deleting the terms means erased words no longer match for anyone.
            transaction.execute(
                "DELETE FROM activity_search WHERE activity_id = ANY($1)",
                &[&ids],
            )?;
            transaction.execute(
                "UPDATE activities SET subject = NULL, body = NULL, content_erased_at = $1 WHERE id = ANY($2)",
                &[&at, &ids],
            )?;
            transaction.execute(
                "UPDATE attachments SET file_name = NULL, stored = FALSE WHERE activity_id = ANY($1)",
                &[&ids],
            )?;
            transaction.commit()?;
        }
        let mut files = self.remove_unreferenced_files(&candidates)?;
        files += self.sweep_attachment_files()?;
        Ok(Erased {
            activities_erased: ids.len() as u64,
            attachment_files_removed: files,
        })
    }

    fn access_log(
        &self,
        since: Option<i64>,
        viewer: Option<&str>,
    ) -> Result<Vec<AccessLogEntry>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query(
                "SELECT viewer, activity_id, message_id, path, viewer_is_owner, accessed_at, change FROM access_log
                 WHERE ($1::BIGINT IS NULL OR accessed_at >= $1) AND ($2::TEXT IS NULL OR viewer = $2)
                 ORDER BY accessed_at, id",
                &[&since, &viewer],
            )?
            .iter()
            .map(|row| AccessLogEntry {
                viewer: row.get(0),
                activity_id: row.get(1),
                message_id: row.get(2),
                path: row.get(3),
                viewer_is_owner: row.get(4),
                at: rfc3339(row.get(5)).unwrap_or_default(),
                change: row.get(6),
            })
            .collect())
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let mut client = self.client()?;
        let row = client.query_one(
            "SELECT (SELECT count(*) FROM contacts), (SELECT count(*) FROM activities),
                    (SELECT count(*) FROM activity_sources), (SELECT count(*) FROM activity_contacts),
                    (SELECT count(*) FROM attachments), (SELECT count(*) FROM decisions)",
            &[],
        )?;
        let count = |index: usize| row.get::<_, i64>(index) as u64;
        Ok(Counts {
            contacts: count(0),
            activities: count(1),
            sources: count(2),
            contact_links: count(3),
            attachments: count(4),
            decisions: count(5),
        })
    }

    fn join(&self, instance: &InstanceInfo) -> Result<(), StoreError> {
        self.join_instance(instance)
    }

    fn lease_round(
        &self,
        wanted: &[String],
        lease: std::time::Duration,
    ) -> Result<LeaseRound, StoreError> {
        self.run_lease_round(wanted, lease)
    }

    fn leave(&self) -> Result<(), StoreError> {
        self.leave_store()
    }

    fn forward_wake(&self, user_email: &str) -> Result<bool, StoreError> {
        self.forward_wake_to_owner(user_email)
    }

    fn take_wakes(&self) -> Result<Vec<String>, StoreError> {
        self.take_wakes_for_instance()
    }

    fn instances(&self) -> Result<Vec<InstanceView>, StoreError> {
        self.live_instances()
    }

    fn leases(&self) -> Result<Vec<LeaseView>, StoreError> {
        self.mailbox_leases()
    }
}

impl PostgresStore {
    /// Stored sources matching `filter` (over `s`, the source, and `a`, its activity), with
    /// their activities' contact addresses.
    fn sources_where(
        &self,
        filter: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<StoredSource>, StoreError> {
        let mut client = self.client()?;
        let rows = client.query(
            &format!(
                "SELECT s.activity_id, a.message_id, s.user_email, s.source, s.source_id, s.visibility, s.parties,
                        a.automated, a.calendar_only, s.decided_by, s.labels, a.conversation
                 FROM activity_sources s JOIN activities a ON a.id = s.activity_id
                 WHERE {filter}
                 ORDER BY s.activity_id, s.user_email COLLATE \"C\""
            ),
            params,
        )?;
        // Every activity's contact addresses in one read: a query per source would be a
        // round trip per stored activity at every start and reload.
        let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        let addresses = if filter == "TRUE" {
            links_by_activity(&mut *client, None)?
        } else {
            links_by_activity(&mut *client, Some(&ids))?
        };
        let mut sources = Vec::with_capacity(rows.len());
        for row in rows {
            let activity_id: i64 = row.get(0);
            let visibility: String = row.get(5);
            let parties: String = row.get(6);
            let decided_by: String = row.get(9);
            let labels: String = row.get(10);
            let conversation: Option<String> = row.get(11);
            sources.push(StoredSource {
                activity_id,
                message_id: row.get(1),
                user_email: row.get(2),
                source: row.get(3),
                source_id: row.get(4),
                visibility: Visibility::parse(&visibility).unwrap_or(Visibility::Private),
                decided_by: DecidedBy::parse(&decided_by).unwrap_or(DecidedBy::Default),
                labels: serde_json::from_str(&labels).unwrap_or_default(),
                conversation: conversation.unwrap_or_default(),
                parties: serde_json::from_str(&parties).unwrap_or_default(),
                contacts: addresses.get(&activity_id).cloned().unwrap_or_default(),
                facts: MessageFacts {
                    automated: row.get(7),
                    calendar_only: row.get(8),
                },
            });
        }
        Ok(sources)
    }
}

/// Applies changes to stored sources inside `transaction`, counting them, and collecting
/// the attachment files that may no longer be referenced.
fn apply_changes(
    transaction: &mut postgres::Transaction<'_>,
    changes: &[SourceChange],
    applied: &mut AppliedChanges,
    candidates: &mut BTreeSet<String>,
) -> Result<(), StoreError> {
    for change in changes {
        match change {
            SourceChange::Remove {
                source,
                reason,
                rules,
                labels,
            } => {
                let rules_json = serde_json::to_string(rules).expect("strings serialize");
                let labels_json = serde_json::to_string(labels).expect("strings serialize");
                for row in transaction.query(
                    "SELECT sha256 FROM attachments WHERE activity_id = $1 AND stored",
                    &[&source.activity_id],
                )? {
                    candidates.insert(row.get::<_, String>(0));
                }
                applied.sources_removed += transaction.execute(
                    "DELETE FROM activity_sources WHERE activity_id = $1 AND user_email = $2",
                    &[&source.activity_id, &source.user_email],
                )?;
                transaction.execute(
                    "UPDATE decisions SET decision = 'skipped', reason = $5, rules = $1,
                       activity_id = NULL, decided_at = $2, labels = $6, conversation_hash = $7
                     WHERE user_email = $3 AND activity_id = $4",
                    &[
                        &rules_json,
                        &now(),
                        &source.user_email,
                        &source.activity_id,
                        &reason.as_str(),
                        &labels_json,
                        &super::identity::conversation_hash(&source.conversation),
                    ],
                )?;
                applied.activities_removed += transaction.execute(
                    "DELETE FROM activities WHERE id = $1
                       AND NOT EXISTS (SELECT 1 FROM activity_sources WHERE activity_id = $1)",
                    &[&source.activity_id],
                )?;
            }
            SourceChange::SetVisibility {
                source,
                visibility,
                decided_by,
                labels,
                rules,
            } => {
                let rules_json = serde_json::to_string(rules).expect("strings serialize");
                let labels_json = serde_json::to_string(labels).expect("strings serialize");
                applied.visibility_changed += transaction.execute(
                    "UPDATE activity_sources SET visibility = $1, rules = $2, decided_by = $5, labels = $6
                     WHERE activity_id = $3 AND user_email = $4
                       AND (visibility != $1 OR decided_by != $5 OR labels != $6)",
                    &[
                        &visibility.as_str(),
                        &rules_json,
                        &source.activity_id,
                        &source.user_email,
                        &decided_by.as_str(),
                        &labels_json,
                    ],
                )?;
                transaction.execute(
                    "UPDATE decisions SET labels = $1 WHERE user_email = $2 AND activity_id = $3",
                    &[&labels_json, &source.user_email, &source.activity_id],
                )?;
            }
        }
    }
    Ok(())
}
