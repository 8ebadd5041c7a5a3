//! The SQLite backend: one file, WAL mode, migrations applied on open.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations};

use super::files;

mod tables;
use super::read_rules::{self, ActivityFacts, ReadQuery};
use super::{AccessLogEntry, ActivityView, AttachmentView, EraseSelection, Erased, StoreOptions};
use super::{AppliedChanges, ContactEvents, LoggedDecision, PendingBackfill, Purged, PushState};
use super::{
    Contact, ContactChange, Counts, Cursor, NewContact, Record, Recorded, Store, StoreError,
    SyncState, SyncStatus, Viewer,
};
use super::{ConversationChoice, OwnerChoice, SourceChange, StoredSource};
use crate::config::Capture;
use crate::rules::{Action, ConversationContext, DecidedBy, Visibility};
use crate::rules::{ContactBook, MessageFacts};

/// Each entry is one schema version; never edit a released one, append a new one.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("migrations/001_initial.sql")),
    M::up(include_str!("migrations/002_oauth_tokens.sql")),
    M::up(include_str!("migrations/003_health_and_notifications.sql")),
    M::up(include_str!("migrations/004_verify.sql")),
    M::up(include_str!("migrations/005_fingerprint.sql")),
    M::up(include_str!("migrations/006_source_parties.sql")),
    M::up(include_str!("migrations/007_search.sql")),
    M::up(include_str!(
        "migrations/008_contact_controls_and_backfill.sql"
    )),
    M::up(include_str!("migrations/009_retention.sql")),
    M::up(include_str!("migrations/010_access_log.sql")),
    M::up(include_str!("migrations/011_attachment_content.sql")),
    M::up(include_str!(
        "migrations/012_contact_addresses_lower_case.sql"
    )),
    M::up(include_str!("migrations/013_backfill_marks.sql")),
    M::up(include_str!("migrations/014_contact_feed_by_date.sql")),
    M::up(include_str!("migrations/015_push.sql")),
    M::up(include_str!("migrations/016_conversations.sql")),
];

/// The daemon's mark in `contact_events` (table `event_marks`): how far never-sync changes
/// have been applied to stored activities.
const RULES_MARK: &str = "rules";

/// Prepared statements kept per connection (see `setup`).
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// A `LIMIT` for SQL text. Limits are written into the statement, never bound: SQLite plans
/// with a LIMIT's value, so a statement whose LIMIT is a bound parameter is prepared again
/// at every execution (seen as `sqlite3Reprepare` in profiles: a tenth of an idle poll, and
/// most of a read-path query). `None` is no limit.
fn limit_clause(limit: Option<usize>) -> String {
    match limit {
        Some(limit) => format!("LIMIT {}", limit.min(i64::MAX as usize)),
        None => String::new(),
    }
}

/// How long a writer waits for another process (the CRM, a CLI run) to finish its write
/// before giving up. Writes are short, so this is generous.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection, owned here: calls from several threads take turns on it (SQLite has one
/// writer at a time anyway), and [`super::without_waiting`] turns waiting for it, or for
/// another process's write lock, into [`StoreError::Busy`].
pub struct SqliteStore {
    connection: Mutex<Connection>,
    options: Mutex<StoreOptions>,
}

/// The store's connection, held for one operation. Inside [`super::without_waiting`] it was
/// taken without waiting and SQLite's busy timeout is zero until it is dropped.
pub(super) struct Held<'a> {
    connection: MutexGuard<'a, Connection>,
    restore_busy_timeout: bool,
}

impl std::ops::Deref for Held<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.connection
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.restore_busy_timeout {
            let _ = self.connection.busy_timeout(BUSY_TIMEOUT);
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        match &error {
            rusqlite::Error::SqliteFailure(failure, _)
                if matches!(
                    failure.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                StoreError::Busy(error.to_string())
            }
            _ => StoreError::Database(error.to_string()),
        }
    }
}

impl From<rusqlite_migration::Error> for StoreError {
    fn from(error: rusqlite_migration::Error) -> StoreError {
        StoreError::Migration(error.to_string())
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_parent_folder(path)?;
        let created = !path.exists();
        let store = Self::setup(Connection::open(path)?)?;
        if created {
            // The store holds mail and refresh tokens: only the daemon's account may read it,
            // whatever the umask.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(store)
    }

    pub fn with_options(self, options: StoreOptions) -> Self {
        self.set_options(options);
        self
    }

    /// A private in-memory store, for tests and dry runs.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::setup(Connection::open_in_memory()?)
    }

    /// For dry runs and `explain`: the existing store opened read-only, or an empty in-memory
    /// one when there is no store yet, so looking never creates or changes anything.
    pub fn open_read_only_or_empty(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Self::open_in_memory();
        }
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version != MIGRATIONS.len() as i64 {
            return Err(StoreError::Conflict(format!(
                "store {} has schema version {version}, this mailsync expects {}: run a command that writes \
                 (e.g. `contacts list`) to migrate it first",
                path.display(),
                MIGRATIONS.len()
            )));
        }
        Ok(SqliteStore {
            connection: Mutex::new(connection),
            options: Mutex::new(StoreOptions::default()),
        })
    }

    fn setup(mut connection: Connection) -> Result<Self, StoreError> {
        connection.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets the CRM read while the daemon writes. synchronous=NORMAL in WAL mode never
        // corrupts and never loses a committed transaction to a process crash; a power loss
        // may drop the last commits, and since each commit carries its own cursor the next
        // sync simply redoes them.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        // Every statement the daemon repeats is prepared once and kept: the read path has a
        // few shapes, the write path a dozen. rusqlite keeps 16 by default.
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        Migrations::from_slice(MIGRATIONS).to_latest(&mut connection)?;
        Ok(SqliteStore {
            connection: Mutex::new(connection),
            options: Mutex::new(StoreOptions::default()),
        })
    }
}

impl SqliteStore {
    /// The connection, for one operation: waited for, or taken at once inside
    /// [`super::without_waiting`], where a busy store fails instead of waiting.
    pub(super) fn connection(&self) -> Result<Held<'_>, StoreError> {
        if !super::must_not_wait() {
            let connection = self
                .connection
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            return Ok(Held {
                connection,
                restore_busy_timeout: false,
            });
        }
        let connection = match self.connection.try_lock() {
            Ok(connection) => connection,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(StoreError::Busy(
                    "the store's connection is in use by another task".to_string(),
                ));
            }
        };
        connection.busy_timeout(Duration::ZERO)?;
        Ok(Held {
            connection,
            restore_busy_timeout: true,
        })
    }

    fn options(&self) -> StoreOptions {
        self.options
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Removes the attachment files among `candidates` that no activity keeping its content
/// references. Runs under the write lock (an immediate transaction) because writers write
/// files only while holding it: a file written for a row not yet committed cannot be
/// removed from under it.
fn remove_unreferenced_files(
    connection: &mut Connection,
    options: &StoreOptions,
    candidates: &BTreeSet<String>,
) -> Result<u64, StoreError> {
    let Some(dir) = options.attachments_dir.clone() else {
        return Ok(0);
    };
    if candidates.is_empty() {
        return Ok(0);
    }
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut removed = 0;
    {
        let mut referenced = transaction.prepare(
            "SELECT 1 FROM attachments t JOIN activities a ON a.id = t.activity_id
             WHERE t.sha256 = ?1 AND t.stored AND a.content_erased_at IS NULL",
        )?;
        for sha256 in candidates {
            if !referenced.exists([sha256])? && files::remove_content(&dir, sha256)? {
                removed += 1;
            }
        }
    }
    transaction.commit()?;
    Ok(removed)
}

/// Removes every file in the attachments folder that no activity references, and temporary
/// files a crash left behind (under the write lock, no write is in progress).
fn sweep_attachment_files(
    connection: &mut Connection,
    options: &StoreOptions,
) -> Result<u64, StoreError> {
    let Some(dir) = options.attachments_dir.clone() else {
        return Ok(0);
    };
    let lock = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (hashes, leftovers) = files::list_contents(&dir)?;
    for leftover in leftovers {
        let _ = std::fs::remove_file(leftover);
    }
    drop(lock);
    remove_unreferenced_files(connection, options, &hashes.into_iter().collect())
}

/// The store and its lock file may live in a folder that does not exist yet.
fn create_parent_folder(path: &Path) -> Result<(), StoreError> {
    match path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        Some(parent) => {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateFolder {
                path: parent.to_path_buf(),
                source,
            })
        }
        None => Ok(()),
    }
}

/// Deletes the contact change events that every mark is past: the daemon's, and every
/// mailbox's (a paused or departed mailbox holds them back until it catches up or is purged).
/// Two index lookups and a range delete. Without the daemon's mark nothing goes: the daemon
/// has not seen those events yet.
fn prune_contact_events(connection: &Connection) -> Result<u64, StoreError> {
    Ok(connection.execute(
        "DELETE FROM contact_events WHERE id <= min(
             (SELECT covered_through FROM event_marks WHERE name = ?1),
             COALESCE((SELECT min(covered_through) FROM backfill_marks), 9223372036854775807))",
        [RULES_MARK],
    )? as u64)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn contact_ids_owning(
    connection: &Connection,
    emails: &[String],
) -> Result<Vec<i64>, rusqlite::Error> {
    let mut statement =
        connection.prepare_cached("SELECT contact_id FROM contact_emails WHERE email = ?1")?;
    let mut ids = Vec::new();
    for email in emails {
        if let Some(id) = statement
            .query_row([email], |row| row.get::<_, i64>(0))
            .optional()?
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn write_contact_details(
    connection: &Connection,
    id: i64,
    contact: &NewContact,
) -> Result<(), rusqlite::Error> {
    for email in &contact.emails {
        connection.execute(
            "INSERT OR IGNORE INTO contact_emails (email, contact_id) VALUES (?1, ?2)",
            params![email, id],
        )?;
    }
    if let Some(no_sync) = contact.no_sync {
        connection.execute(
            "UPDATE contacts SET no_sync = ?1 WHERE id = ?2 AND no_sync != ?1",
            params![no_sync, id],
        )?;
    }
    if let Some(visible_to) = &contact.visible_to {
        connection.execute("DELETE FROM contact_visible_to WHERE contact_id = ?1", [id])?;
        for user in visible_to {
            connection.execute(
                "INSERT OR IGNORE INTO contact_visible_to (contact_id, user_email) VALUES (?1, ?2)",
                params![id, user],
            )?;
        }
    }
    Ok(())
}

fn load_contact(connection: &Connection, id: i64) -> Result<Contact, rusqlite::Error> {
    let (name, no_sync) = connection.query_row(
        "SELECT name, no_sync FROM contacts WHERE id = ?1",
        [id],
        |row| Ok((row.get::<_, Option<String>>(0)?, row.get::<_, bool>(1)?)),
    )?;
    let strings = |sql: &str| -> Result<Vec<String>, rusqlite::Error> {
        let mut statement = connection.prepare_cached(sql)?;
        statement.query_map([id], |row| row.get(0))?.collect()
    };
    Ok(Contact {
        id,
        name,
        emails: strings("SELECT email FROM contact_emails WHERE contact_id = ?1 ORDER BY email")?,
        visible_to: strings(
            "SELECT user_email FROM contact_visible_to WHERE contact_id = ?1 ORDER BY user_email",
        )?,
        no_sync,
    })
}

impl Store for SqliteStore {
    fn set_options(&self, options: StoreOptions) {
        *self
            .options
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = options;
    }

    fn upsert_contact(&self, contact: &NewContact) -> Result<ContactChange, StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let owners = contact_ids_owning(&transaction, &contact.emails)?;
        let change = match owners.as_slice() {
            [] => {
                transaction.execute(
                    "INSERT INTO contacts (name, created_at) VALUES (?1, ?2)",
                    params![contact.name, now()],
                )?;
                let id = transaction.last_insert_rowid();
                write_contact_details(&transaction, id, contact)?;
                ContactChange::Created(id)
            }
            [id] => {
                let before = load_contact(&transaction, *id)?;
                if contact.name.is_some() {
                    transaction.execute(
                        "UPDATE contacts SET name = ?1 WHERE id = ?2",
                        params![contact.name, id],
                    )?;
                }
                write_contact_details(&transaction, *id, contact)?;
                if load_contact(&transaction, *id)? == before {
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
        let mut connection = self.connection()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(existing) = contact_ids_owning(&transaction, &contact.emails)?.first() {
            return Err(StoreError::address_taken(*existing));
        }
        transaction.execute(
            "INSERT INTO contacts (name, created_at) VALUES (?1, ?2)",
            params![contact.name, now()],
        )?;
        let id = transaction.last_insert_rowid();
        write_contact_details(&transaction, id, contact)?;
        transaction.commit()?;
        Ok(id)
    }

    fn list_contacts(&self) -> Result<Vec<Contact>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection.prepare("SELECT id FROM contacts ORDER BY id")?;
        let ids: Vec<i64> = statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids
            .into_iter()
            .map(|id| load_contact(&connection, id))
            .collect::<Result<_, _>>()?)
    }

    fn contact_book(&self, addresses: &[String]) -> Result<ContactBook, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection.prepare_cached(
            "SELECT c.no_sync FROM contact_emails e JOIN contacts c ON c.id = e.contact_id
             WHERE e.email = ?1",
        )?;
        let mut book = ContactBook::default();
        for address in addresses {
            if let Some(no_sync) = statement
                .query_row([address], |row| row.get::<_, bool>(0))
                .optional()?
            {
                book.contacts.insert(address.clone());
                if no_sync {
                    book.never_sync.insert(address.clone());
                }
            }
        }
        Ok(book)
    }

    fn set_contact_no_sync(
        &self,
        address: &str,
        no_sync: bool,
    ) -> Result<Option<Contact>, StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(id) = contact_ids_owning(&transaction, &[address.to_string()])?
            .first()
            .copied()
        else {
            return Ok(None);
        };
        transaction.execute(
            "UPDATE contacts SET no_sync = ?1 WHERE id = ?2 AND no_sync != ?1",
            params![no_sync, id],
        )?;
        let contact = load_contact(&transaction, id)?;
        transaction.commit()?;
        Ok(Some(contact))
    }

    fn never_sync_addresses(&self) -> Result<Vec<String>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection.prepare(
            "SELECT e.email FROM contact_emails e JOIN contacts c ON c.id = e.contact_id
             WHERE c.no_sync = 1 ORDER BY e.email",
        )?;
        Ok(statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?)
    }

    fn candidate_addresses(&self) -> Result<Vec<String>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection.prepare(
            "SELECT e.email FROM contact_emails e JOIN contacts c ON c.id = e.contact_id
             WHERE c.no_sync = 0 ORDER BY e.email",
        )?;
        Ok(statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?)
    }

    fn contact_events(&self, limit: usize) -> Result<ContactEvents, StoreError> {
        let connection = self.connection()?;
        // A missing mark (nothing has written it since the migration placed it) reads from
        // the start: applying a never-sync change twice changes nothing.
        let mut statement = connection.prepare_cached(&format!(
            "SELECT count(*) FILTER (WHERE kind = 'address_added'),
                    count(*) FILTER (WHERE kind = 'no_sync_changed'),
                    max(id)
             FROM (SELECT id, kind FROM contact_events
                   WHERE id > COALESCE((SELECT covered_through FROM event_marks WHERE name = ?1), 0)
                   ORDER BY id {})",
            limit_clause(Some(limit))
        ))?;
        let (addresses_added, no_sync_changed, through): (i64, i64, Option<i64>) = statement
            .query_row(params![RULES_MARK], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        Ok(ContactEvents {
            addresses_added: addresses_added as u64,
            no_sync_changed: no_sync_changed as u64,
            through,
        })
    }

    fn finish_contact_events(&self, through: i64) -> Result<(), StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction.execute(
            "INSERT INTO event_marks (name, covered_through) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE
             SET covered_through = max(covered_through, excluded.covered_through)",
            params![RULES_MARK, through],
        )?;
        prune_contact_events(&transaction)?;
        transaction.commit()?;
        Ok(())
    }

    fn place_backfill_mark(&self, user_email: &str) -> Result<bool, StoreError> {
        let connection = self.connection()?;
        // The sequence is the end of the log even when pruning has emptied the table; the
        // largest id is there for a sequence row someone removed.
        Ok(connection.execute(
            "INSERT OR IGNORE INTO backfill_marks (user_email, covered_through)
             VALUES (?1, max(
                 COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'contact_events'), 0),
                 COALESCE((SELECT max(id) FROM contact_events), 0)))",
            [user_email],
        )? == 1)
    }

    fn pending_backfill(
        &self,
        user_email: &str,
        limit: usize,
    ) -> Result<Option<PendingBackfill>, StoreError> {
        let connection = self.connection()?;
        // One statement for both answers: no row = no mark; one row without an event = a
        // mark with nothing after it, which is what nearly every poll finds.
        let mut statement = connection.prepare_cached(&format!(
            "SELECT e.id, e.email
             FROM backfill_marks m LEFT JOIN contact_events e ON e.id > m.covered_through
             WHERE m.user_email = ?1
             ORDER BY e.id {}",
            limit_clause(Some(limit.max(1)))
        ))?;
        let rows: Vec<(Option<i64>, Option<String>)> = statement
            .query_map(params![user_email], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut pending = PendingBackfill::default();
        let mut seen = HashSet::new();
        for (id, email) in rows {
            pending.through = id.or(pending.through);
            // A never-sync change needs nothing from a mailbox: it is read only to move past.
            if let Some(email) = email
                && seen.insert(email.clone())
            {
                pending.addresses.push(email);
            }
        }
        Ok(Some(pending))
    }

    fn finish_backfill(&self, user_email: &str, through: i64) -> Result<(), StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // An UPDATE, not an upsert: a mailbox purged meanwhile stays without a mark.
        transaction.execute(
            "UPDATE backfill_marks SET covered_through = max(covered_through, ?2)
             WHERE user_email = ?1",
            params![user_email, through],
        )?;
        prune_contact_events(&transaction)?;
        transaction.commit()?;
        Ok(())
    }

    fn decision_reasons(
        &self,
        user_email: &str,
        source: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection.prepare_cached(
            "SELECT reason FROM decisions WHERE user_email = ?1 AND source = ?2 AND source_id = ?3",
        )?;
        let mut reasons = HashMap::new();
        for id in source_ids {
            if let Some(reason) = statement
                .query_row(params![user_email, source, id], |row| {
                    row.get::<_, String>(0)
                })
                .optional()?
            {
                reasons.insert(id.clone(), reason);
            }
        }
        Ok(reasons)
    }

    fn record_all(
        &self,
        records: &[Record<'_>],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Recorded>, StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut recorded = Vec::with_capacity(records.len());
        let mut search_rows = Vec::new();
        let mut dropped_files = BTreeSet::new();
        for record in records {
            recorded.push(record_one(
                &transaction,
                &self.options(),
                record,
                &mut search_rows,
                &mut dropped_files,
            )?);
        }
        index_for_search(&transaction, &search_rows)?;
        if let Some(cursor) = cursor {
            transaction
                .prepare_cached(
                    "INSERT INTO sync_state (user_email, history_id) VALUES (?1, ?2)
                     ON CONFLICT (user_email) DO UPDATE SET history_id = excluded.history_id",
                )?
                .execute(params![cursor.user_email, cursor.history_id])?;
        }
        transaction.commit()?;
        if !dropped_files.is_empty() {
            remove_unreferenced_files(&mut connection, &self.options(), &dropped_files)?;
        }
        Ok(recorded)
    }

    fn decided(
        &self,
        user_email: &str,
        source: &str,
        source_ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection.prepare_cached(
            "SELECT 1 FROM decisions WHERE user_email = ?1 AND source = ?2 AND source_id = ?3",
        )?;
        let mut decided = HashSet::new();
        for id in source_ids {
            if statement.exists(params![user_email, source, id])? {
                decided.insert(id.clone());
            }
        }
        Ok(decided)
    }

    fn sync_state(&self, user_email: &str) -> Result<Option<SyncState>, StoreError> {
        let connection = self.connection()?;
        // Every poll of every user reads this: the statement is prepared once.
        Ok(connection
            .prepare_cached(&format!(
                "SELECT {SYNC_STATE_COLUMNS} FROM sync_state s WHERE user_email = ?1"
            ))?
            .query_row([user_email], sync_state_from_row)
            .optional()?)
    }

    fn sync_states(&self) -> Result<Vec<SyncState>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection.prepare(&format!(
            "SELECT {SYNC_STATE_COLUMNS} FROM sync_state s ORDER BY user_email"
        ))?;
        let states = statement
            .query_map([], sync_state_from_row)?
            .collect::<Result<_, _>>()?;
        Ok(states)
    }

    fn set_sync_status(
        &self,
        user_email: &str,
        status: SyncStatus,
        last_error: Option<&str>,
    ) -> Result<(), StoreError> {
        let connection = self.connection()?;
        let stamp = (status == SyncStatus::Ok).then(now);
        connection.execute(
            "INSERT INTO sync_state (user_email, state, last_sync_at, last_error) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_email) DO UPDATE SET
               state = excluded.state,
               last_sync_at = COALESCE(excluded.last_sync_at, last_sync_at),
               last_error = excluded.last_error",
            params![user_email, status.as_str(), stamp, last_error],
        )?;
        Ok(())
    }

    fn finish_poll(
        &self,
        user_email: &str,
        status: SyncStatus,
        last_error: Option<&str>,
        consecutive_failures: u32,
        next_poll_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let connection = self.connection()?;
        let stamp = (status == SyncStatus::Ok).then(now);
        connection
            .prepare_cached(
                "INSERT INTO sync_state (user_email, state, last_sync_at, last_error, consecutive_failures, next_poll_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (user_email) DO UPDATE SET
                   state = excluded.state,
                   last_sync_at = COALESCE(excluded.last_sync_at, last_sync_at),
                   last_error = excluded.last_error,
                   consecutive_failures = excluded.consecutive_failures,
                   next_poll_at = excluded.next_poll_at",
            )?
            .execute(params![
                user_email,
                status.as_str(),
                stamp,
                last_error,
                consecutive_failures,
                next_poll_at
            ])?;
        Ok(())
    }

    fn set_poll_schedule(
        &self,
        user_email: &str,
        consecutive_failures: u32,
        next_poll_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let connection = self.connection()?;
        connection.execute(
            "INSERT INTO sync_state (user_email, consecutive_failures, next_poll_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_email) DO UPDATE SET
               consecutive_failures = excluded.consecutive_failures, next_poll_at = excluded.next_poll_at",
            params![user_email, consecutive_failures, next_poll_at],
        )?;
        Ok(())
    }

    fn set_push(
        &self,
        user_email: &str,
        watch_expires_at: Option<i64>,
        state: Option<PushState>,
    ) -> Result<(), StoreError> {
        let connection = self.connection()?;
        connection
            .prepare_cached(
                "INSERT INTO sync_state (user_email, state, watch_expires_at, push_state)
                 VALUES (?1, 'syncing', ?2, ?3)
                 ON CONFLICT (user_email) DO UPDATE SET
                   watch_expires_at = excluded.watch_expires_at, push_state = excluded.push_state",
            )?
            .execute(params![
                user_email,
                watch_expires_at,
                state.map(PushState::as_str)
            ])?;
        Ok(())
    }

    fn set_verify_result(&self, user_email: &str, gaps: u64, at: i64) -> Result<(), StoreError> {
        let connection = self.connection()?;
        connection.execute(
            "INSERT INTO sync_state (user_email, last_verify_at, verify_gaps) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_email) DO UPDATE SET
               last_verify_at = excluded.last_verify_at, verify_gaps = excluded.verify_gaps",
            params![user_email, at, gaps as i64],
        )?;
        Ok(())
    }

    fn last_notified(&self, user_email: &str, kind: &str) -> Result<Option<i64>, StoreError> {
        let connection = self.connection()?;
        Ok(connection
            .query_row(
                "SELECT sent_at FROM notifications WHERE user_email = ?1 AND kind = ?2",
                params![user_email, kind],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn set_notified(&self, user_email: &str, kind: &str, sent_at: i64) -> Result<(), StoreError> {
        let connection = self.connection()?;
        connection.execute(
            "INSERT INTO notifications (user_email, kind, sent_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_email, kind) DO UPDATE SET sent_at = excluded.sent_at",
            params![user_email, kind, sent_at],
        )?;
        Ok(())
    }

    fn clear_cursor(&self, user_email: &str) -> Result<(), StoreError> {
        let connection = self.connection()?;
        connection.execute(
            "UPDATE sync_state SET history_id = NULL WHERE user_email = ?1",
            [user_email],
        )?;
        Ok(())
    }

    fn sources_per_user(&self) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection
            .prepare("SELECT user_email, count(*) FROM activity_sources GROUP BY user_email")?;
        let counts = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<_, _>>()?;
        Ok(counts)
    }

    fn purge_user(&self, user_email: &str) -> Result<Purged, StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let candidates: BTreeSet<String> = transaction
            .prepare(
                "SELECT DISTINCT t.sha256 FROM attachments t WHERE t.stored AND t.activity_id IN (
                   SELECT activity_id FROM activity_sources WHERE user_email = ?1
                   EXCEPT SELECT activity_id FROM activity_sources WHERE user_email != ?1)",
            )?
            .query_map([user_email], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let activities_removed = transaction.execute(
            "DELETE FROM activities WHERE id IN (
               SELECT activity_id FROM activity_sources WHERE user_email = ?1
               EXCEPT SELECT activity_id FROM activity_sources WHERE user_email != ?1)",
            [user_email],
        )? as u64;
        let sources_removed = transaction.execute(
            "DELETE FROM activity_sources WHERE user_email = ?1",
            [user_email],
        )? as u64;
        let decisions_removed = transaction
            .execute("DELETE FROM decisions WHERE user_email = ?1", [user_email])?
            as u64;
        // The backfill mark goes with the mailbox, and with it the contact changes it alone
        // was holding back. The access log stays, on purpose: who read what is the account's
        // record, and holds no content.
        for table in [
            "sync_state",
            "notifications",
            "oauth_tokens",
            "backfill_marks",
        ] {
            transaction.execute(
                &format!("DELETE FROM {table} WHERE user_email = ?1"),
                [user_email],
            )?;
        }
        prune_contact_events(&transaction)?;
        transaction.commit()?;
        let attachment_files_removed =
            remove_unreferenced_files(&mut connection, &self.options(), &candidates)?;
        Ok(Purged {
            activities_removed,
            sources_removed,
            decisions_removed,
            attachment_files_removed,
        })
    }

    fn synced_per_hour(&self, since: i64) -> Result<Vec<(i64, u64)>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection.prepare_cached(
            "SELECT synced_at - synced_at % 3600 AS hour, count(*) FROM activity_sources
             WHERE synced_at >= ?1 GROUP BY hour ORDER BY hour",
        )?;
        let rows = statement.query_map([since], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn stored_sources(&self) -> Result<Vec<StoredSource>, StoreError> {
        sources_where(&*self.connection()?, "1", [])
    }

    fn sources_of(
        &self,
        activity_id: i64,
        conversation: bool,
    ) -> Result<Vec<StoredSource>, StoreError> {
        let filter = if conversation {
            "a.conversation = (SELECT conversation FROM activities WHERE id = ?1)"
        } else {
            "s.activity_id = ?1"
        };
        sources_where(&*self.connection()?, filter, [activity_id])
    }

    fn stored_source(
        &self,
        user_email: &str,
        source: &str,
        source_id: &str,
    ) -> Result<Option<StoredSource>, StoreError> {
        Ok(sources_where(
            &*self.connection()?,
            "s.user_email = ?1 AND s.activity_id = (SELECT activity_id FROM decisions
               WHERE user_email = ?1 AND source = ?2 AND source_id = ?3)",
            [user_email, source, source_id],
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
        let except = serde_json::to_string(source_ids).expect("strings serialize");
        let connection = self.connection()?;
        let mut contexts: HashMap<String, ConversationContext> = HashMap::new();
        let mut overrides = connection.prepare_cached(
            "SELECT choice FROM conversation_overrides WHERE user_email = ?1 AND conversation = ?2",
        )?;
        // From the decisions, so that a copy a label kept out still passes its label on.
        let mut labels = connection.prepare_cached(
            "SELECT labels FROM decisions
             WHERE user_email = ?1 AND conversation_hash = ?2 AND labels != '[]'
               AND NOT (source = ?3 AND source_id IN (SELECT value FROM json_each(?4)))",
        )?;
        for conversation in conversations {
            let choice: Option<String> = overrides
                .query_row(params![user_email, conversation], |row| row.get(0))
                .optional()?;
            let mut context = ConversationContext {
                owner_choice: choice.as_deref().and_then(Action::parse),
                labels: Vec::new(),
            };
            let hash = super::identity::conversation_hash(conversation);
            for stored in labels.query_map(params![user_email, hash, source, except], |row| {
                row.get::<_, String>(0)
            })? {
                context.add_labels(serde_json::from_str(&stored?).unwrap_or_default());
            }
            if context != ConversationContext::default() {
                contexts.insert(conversation.clone(), context);
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
        let connection = self.connection()?;
        let mut statement = connection.prepare_cached(
            "SELECT d.source_id, CASE WHEN d.reason = 'skipped_by_owner' THEN 'skip' ELSE s.visibility END
             FROM decisions d LEFT JOIN activity_sources s
               ON s.activity_id = d.activity_id AND s.user_email = d.user_email
             WHERE d.user_email = ?1 AND d.source = ?2
               AND d.source_id IN (SELECT value FROM json_each(?3))
               AND (d.reason = 'skipped_by_owner' OR s.decided_by = 'owner')",
        )?;
        let ids = serde_json::to_string(source_ids).expect("strings serialize");
        let rows = statement.query_map(params![user_email, source, ids], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut choices = HashMap::new();
        for row in rows {
            let (source_id, choice) = row?;
            if let Some(choice) = Action::parse(&choice) {
                choices.insert(source_id, choice);
            }
        }
        Ok(choices)
    }

    fn apply_source_changes(&self, changes: &[SourceChange]) -> Result<AppliedChanges, StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut applied = AppliedChanges::default();
        let mut candidates = BTreeSet::new();
        apply_changes(&transaction, changes, &mut applied, &mut candidates)?;
        transaction.commit()?;
        remove_unreferenced_files(&mut connection, &self.options(), &candidates)?;
        Ok(applied)
    }

    fn apply_owner_choice(&self, choice: &OwnerChoice) -> Result<AppliedChanges, StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut applied = AppliedChanges::default();
        let mut candidates = BTreeSet::new();
        apply_changes(&transaction, &choice.changes, &mut applied, &mut candidates)?;
        if let Some(ConversationChoice {
            conversation,
            mailboxes: choices,
        }) = &choice.conversation
        {
            for (user_email, action) in choices {
                match action {
                    Some(action) => transaction.execute(
                        "INSERT INTO conversation_overrides (user_email, conversation, choice, set_at)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (user_email, conversation) DO UPDATE
                           SET choice = excluded.choice, set_at = excluded.set_at",
                        params![user_email, conversation, action.as_str(), now()],
                    )?,
                    None => transaction.execute(
                        "DELETE FROM conversation_overrides WHERE user_email = ?1 AND conversation = ?2",
                        params![user_email, conversation],
                    )?,
                };
            }
        }
        let hash = super::identity::conversation_hash(&choice.conversation_key);
        for mailbox in &choice.unskip {
            transaction.execute(
                "DELETE FROM decisions WHERE user_email = ?1 AND conversation_hash = ?2
                   AND reason = 'skipped_by_owner'",
                params![mailbox, hash],
            )?;
        }
        transaction.execute(
            "INSERT INTO access_log (viewer, activity_id, message_id, path, viewer_is_owner, accessed_at, change)
             VALUES (?1, ?2, ?3, 'set', ?4, ?5, ?6)",
            params![
                choice.viewer,
                choice.activity_id,
                choice.message_id,
                choice.viewer_is_owner,
                now(),
                choice.change
            ],
        )?;
        transaction.commit()?;
        remove_unreferenced_files(&mut connection, &self.options(), &candidates)?;
        Ok(applied)
    }

    fn labelled_sources(
        &self,
        user_email: &str,
        source: &str,
    ) -> Result<Vec<StoredSource>, StoreError> {
        sources_where(
            &*self.connection()?,
            "s.user_email = ?1 AND s.source = ?2 AND s.labels <> '[]'",
            [user_email, source],
        )
    }

    fn blocked_by(
        &self,
        user_email: &str,
        source: &str,
        rules: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection.prepare_cached(
            "SELECT source_id, rules FROM decisions
             WHERE user_email = ?1 AND source = ?2 AND reason = 'blocked_by_rule'
             ORDER BY source_id",
        )?;
        let rows = statement.query_map(params![user_email, source], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut ids = Vec::new();
        for row in rows {
            let (id, stored) = row?;
            if super::names_any(&stored, rules) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn forget_blocked_decision(
        &self,
        user_email: &str,
        source: &str,
        source_id: &str,
        rules: &[String],
    ) -> Result<bool, StoreError> {
        let connection = self.connection()?;
        let stored: Option<String> = connection
            .query_row(
                "SELECT rules FROM decisions WHERE user_email = ?1 AND source = ?2 AND source_id = ?3
                   AND reason = 'blocked_by_rule'",
                params![user_email, source, source_id],
                |row| row.get(0),
            )
            .optional()?;
        if !stored.is_some_and(|stored| super::names_any(&stored, rules)) {
            return Ok(false);
        }
        Ok(connection.execute(
            "DELETE FROM decisions WHERE user_email = ?1 AND source = ?2 AND source_id = ?3
               AND reason = 'blocked_by_rule'",
            params![user_email, source, source_id],
        )? > 0)
    }

    fn decision_log(
        &self,
        user_email: &str,
        limit: Option<usize>,
    ) -> Result<Vec<LoggedDecision>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection.prepare(&format!(
            "SELECT d.user_email, d.source, d.source_id, d.decision, d.reason, d.rules, d.activity_id, a.message_id, d.decided_at, d.detail, {decided_by}
             FROM decisions d LEFT JOIN activities a ON a.id = d.activity_id
             WHERE d.user_email = ?1
             ORDER BY d.decided_at, d.source, d.source_id
             {}",
            limit_clause(limit),
            decided_by = super::LOGGED_DECIDED_BY,
        ))?;
        let rows = statement.query_map(params![user_email], |row| {
            let rules: String = row.get(5)?;
            let decided_at: i64 = row.get(8)?;
            Ok(LoggedDecision {
                user: row.get(0)?,
                source: row.get(1)?,
                source_id: row.get(2)?,
                decision: row.get(3)?,
                reason: row.get(4)?,
                rules: serde_json::from_str(&rules).unwrap_or_default(),
                activity_id: row.get(6)?,
                message_id: row.get(7)?,
                contacts: Vec::new(),
                detail: row.get(9)?,
                decided_by: row.get(10)?,
                decided_at: chrono::DateTime::from_timestamp(decided_at, 0)
                    .map(|date| date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            })
        })?;
        let mut log: Vec<LoggedDecision> = rows.collect::<Result<_, _>>()?;
        let mut contacts_of = connection.prepare_cached(
            "SELECT address FROM activity_contacts WHERE activity_id = ?1 ORDER BY address",
        )?;
        for entry in &mut log {
            if let Some(id) = entry.activity_id {
                entry.contacts = contacts_of
                    .query_map([id], |row| row.get(0))?
                    .collect::<Result<_, _>>()?;
            }
        }
        Ok(log)
    }

    fn refresh_token(&self, user_email: &str) -> Result<Option<String>, StoreError> {
        let connection = self.connection()?;
        Ok(connection
            .query_row(
                "SELECT refresh_token FROM oauth_tokens WHERE user_email = ?1",
                [user_email],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn set_refresh_token(
        &self,
        user_email: &str,
        client_id: &str,
        refresh_token: &str,
    ) -> Result<(), StoreError> {
        let connection = self.connection()?;
        connection.execute(
            "INSERT INTO oauth_tokens (user_email, client_id, refresh_token, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_email) DO UPDATE SET client_id = excluded.client_id,
               refresh_token = excluded.refresh_token, updated_at = excluded.updated_at",
            params![user_email, client_id, refresh_token, now()],
        )?;
        Ok(())
    }

    fn feed(
        &self,
        viewer: &Viewer,
        contact: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<ActivityView>, StoreError> {
        let connection = self.connection()?;
        let query = ReadQuery::feed(contact, limit);
        read_path(&connection, viewer, &query)
    }

    fn search(
        &self,
        viewer: &Viewer,
        query: &str,
        limit: Option<usize>,
    ) -> Result<Vec<ActivityView>, StoreError> {
        if read_rules::search_words(query).is_none() {
            return Ok(Vec::new());
        }
        let connection = self.connection()?;
        let query = ReadQuery::search(query, limit);
        read_path(&connection, viewer, &query)
    }

    fn export(
        &self,
        viewer: &Viewer,
        contact: Option<&str>,
    ) -> Result<Vec<ActivityView>, StoreError> {
        let connection = self.connection()?;
        let query = ReadQuery::export(contact);
        read_path(&connection, viewer, &query)
    }

    fn attachment_content(
        &self,
        viewer: &Viewer,
        sha256: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let connection = self.connection()?;
        let Some(dir) = self.options().attachments_dir else {
            return Ok(None);
        };
        if !files::is_sha256_hex(sha256) {
            return Ok(None);
        }
        let query = ReadQuery::attachment(sha256);
        if read_path(&connection, viewer, &query)?.is_empty() {
            return Ok(None);
        }
        files::read_content(&dir, sha256).map(Some)
    }

    fn erase_content(
        &self,
        selection: &EraseSelection,
        dry_run: bool,
    ) -> Result<Erased, StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        const IN_LIST: &str = "IN (SELECT value FROM json_each({p}))";
        let due = selection.due_sql("?1", IN_LIST);
        let parameter: rusqlite::types::Value = match selection {
            EraseSelection::Before(cutoff) => (*cutoff).into(),
            EraseSelection::OnlyFrom(mailboxes) => serde_json::to_string(mailboxes)
                .expect("strings serialize")
                .into(),
        };
        let ids: Vec<i64> = transaction
            .prepare(&format!(
                "SELECT id FROM activities WHERE {due} ORDER BY id"
            ))?
            .query_map([&parameter], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let candidates: BTreeSet<String> = transaction
            .prepare(&format!(
                "SELECT DISTINCT t.sha256 FROM attachments t
                 WHERE t.stored AND t.activity_id IN (SELECT id FROM activities WHERE {due})"
            ))?
            .query_map([&parameter], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        if dry_run {
            // Files that only activities now due keep.
            let mut kept_elsewhere = transaction.prepare(&format!(
                "SELECT 1 FROM attachments t JOIN activities a ON a.id = t.activity_id
                 WHERE t.sha256 = ?1 AND t.stored AND a.content_erased_at IS NULL
                   AND a.id NOT IN (SELECT id FROM activities WHERE {})",
                selection.due_sql("?2", IN_LIST)
            ))?;
            let mut files = 0;
            for sha256 in &candidates {
                if !kept_elsewhere.exists(params![sha256, parameter])? {
                    files += 1;
                }
            }
            return Ok(Erased {
                activities_erased: ids.len() as u64,
                attachment_files_removed: files,
            });
        }
        let at = now();
        for id in &ids {
            // The search index is contentless: deleting the row removes its terms, so erased
            // words no longer match for anyone.
            transaction.execute("DELETE FROM activity_search WHERE rowid = ?1", [id])?;
            transaction.execute(
                "UPDATE activities SET subject = NULL, body = NULL, content_erased_at = ?1 WHERE id = ?2",
                params![at, id],
            )?;
            transaction.execute(
                "UPDATE attachments SET file_name = NULL, stored = 0 WHERE activity_id = ?1",
                [id],
            )?;
        }
        transaction.commit()?;
        let mut files = remove_unreferenced_files(&mut connection, &self.options(), &candidates)?;
        files += sweep_attachment_files(&mut connection, &self.options())?;
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
        let connection = self.connection()?;
        let mut statement = connection.prepare(
            "SELECT viewer, activity_id, message_id, path, viewer_is_owner, accessed_at, change FROM access_log
             WHERE (?1 IS NULL OR accessed_at >= ?1) AND (?2 IS NULL OR viewer = ?2)
             ORDER BY accessed_at, id",
        )?;
        let records = statement
            .query_map(params![since, viewer], |row| {
                Ok(AccessLogEntry {
                    viewer: row.get(0)?,
                    activity_id: row.get(1)?,
                    message_id: row.get(2)?,
                    path: row.get(3)?,
                    viewer_is_owner: row.get(4)?,
                    at: rfc3339(row.get(5)?).unwrap_or_default(),
                    change: row.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(records)
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let connection = self.connection()?;
        let count = |table: &str| -> Result<u64, rusqlite::Error> {
            connection
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| n as u64)
        };
        Ok(Counts {
            contacts: count("contacts")?,
            activities: count("activities")?,
            sources: count("activity_sources")?,
            contact_links: count("activity_contacts")?,
            attachments: count("attachments")?,
            decisions: count("decisions")?,
        })
    }
}

/// Writes one decision (and, when synced, its activity) inside the caller's transaction.
/// The search terms of one new activity, indexed with the others of its transaction.
struct SearchRow<'a> {
    activity_id: i64,
    subject: &'a str,
    body: &'a str,
    attachment_names: String,
}

/// Indexes a transaction's new activities for search in as few statements as possible: FTS5
/// writes its pending terms to disk at every statement that changes it (each opens a
/// savepoint), so one statement per activity made a segment per message and kept the index
/// busy merging them; one per batch makes one.
fn index_for_search(
    transaction: &rusqlite::Transaction<'_>,
    rows: &[SearchRow<'_>],
) -> Result<(), StoreError> {
    // Groups of 16, 8, 4, 2 and 1 rows: a batch of up to 31 activities takes at most five
    // statements of five shapes, which the statement cache keeps.
    let mut rest = rows;
    while !rest.is_empty() {
        let size = if rest.len() >= 16 {
            16
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, later) = rest.split_at(size);
        rest = later;
        let values = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut statement = transaction.prepare_cached(&format!(
            "INSERT INTO activity_search (rowid, subject, body, attachment_names) VALUES {values}"
        ))?;
        let mut parameters: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 4);
        for row in chunk {
            parameters.extend([
                &row.activity_id as &dyn rusqlite::ToSql,
                &row.subject,
                &row.body,
                &row.attachment_names,
            ]);
        }
        statement.execute(parameters.as_slice())?;
    }
    Ok(())
}

/// Records one decision inside the batch's transaction; the attachment files of an activity
/// it removes are added to `dropped_files`, to remove once nothing references them.
fn record_one<'a>(
    transaction: &rusqlite::Transaction<'_>,
    options: &StoreOptions,
    record: &Record<'a>,
    search_rows: &mut Vec<SearchRow<'a>>,
    dropped_files: &mut BTreeSet<String>,
) -> Result<Recorded, StoreError> {
    let Record {
        source,
        decision,
        message,
    } = *record;
    let rules_json =
        serde_json::to_string(&decision.rule_names()).expect("a list of strings always serializes");
    let (recorded, activity_id) = match decision.approval() {
        None => {
            // Decided again as skipped (its mailbox's label or a rule now keeps it out): this
            // mailbox's stored copy goes, and the activity with its last copy.
            let dropped: Option<i64> = transaction
                .prepare_cached(
                    "DELETE FROM activity_sources
                     WHERE user_email = ?1 AND activity_id = (SELECT activity_id FROM decisions
                       WHERE user_email = ?1 AND source = ?2 AND source_id = ?3 AND decision = 'synced')
                     RETURNING activity_id",
                )?
                .query_row(
                    params![source.user_email, source.source, source.source_id],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(activity_id) = dropped {
                let mut files = transaction.prepare_cached(
                    "SELECT sha256 FROM attachments WHERE activity_id = ?1 AND stored",
                )?;
                for sha256 in files.query_map([activity_id], |row| row.get(0))? {
                    dropped_files.insert(sha256?);
                }
                transaction
                    .prepare_cached(
                        "DELETE FROM activities WHERE id = ?1
                           AND NOT EXISTS (SELECT 1 FROM activity_sources WHERE activity_id = ?1)",
                    )?
                    .execute([activity_id])?;
            }
            (Recorded::DecisionOnly, None)
        }
        Some(approval) => {
            let message = message.ok_or(StoreError::MissingMessage)?;
            let parsed = message.parsed;
            let identity = super::identity::MessageIdentity::of(&message)?;
            let fingerprint = identity.fingerprint.clone();
            let mut message_key = identity.message_key.clone();
            let find = |key: &str| -> Result<Option<(i64, Option<String>)>, rusqlite::Error> {
                transaction
                    .prepare_cached(
                        "SELECT id, fingerprint FROM activities WHERE message_key = ?1",
                    )?
                    .query_row([key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            };
            let mut found = find(&message_key)?;
            if let Some((_, Some(stored))) = &found
                && !identity.same_content(stored)
            {
                message_key = identity.distinct_key();
                found = find(&message_key)?;
            }
            let existing = found.map(|(id, _)| id);
            let (activity_id, is_new) = match existing {
                Some(id) => (id, false),
                None => {
                    // A message older than the retention period is recorded as already
                    // erased: a late copy (another mailbox, a repair) never brings back
                    // content retention took away.
                    let recorded_at = now();
                    let erased = options.erase_before(recorded_at).is_some_and(|cutoff| {
                        parsed.date.map_or(recorded_at, |date| date.timestamp()) < cutoff
                    });
                    // Metadata-only capture keeps no content, and no attachment at all.
                    let metadata_only = message.capture == Capture::Metadata;
                    let content = |text: &Option<String>| {
                        if erased || metadata_only {
                            None
                        } else {
                            text.clone()
                        }
                    };
                    transaction.prepare_cached(
                        "INSERT INTO activities (message_key, message_id, date, direction, subject, body, in_reply_to, created_at, fingerprint, content_erased_at, automated, calendar_only, conversation)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    )?.execute(
                        params![
                            message_key,
                            parsed.message_id,
                            parsed.date.map(|date| date.timestamp()),
                            message.company_direction.as_str(),
                            content(&parsed.subject),
                            content(&parsed.body_text),
                            parsed.in_reply_to.first(),
                            recorded_at,
                            fingerprint,
                            erased.then_some(recorded_at),
                            parsed.automation.is_automated(),
                            parsed.automation.calendar_only,
                            identity.conversation,
                        ],
                    )?;
                    let id = transaction.last_insert_rowid();
                    let mut insert_attachment = transaction.prepare_cached(
                        "INSERT INTO attachments (activity_id, position, file_name, content_type, size_bytes, sha256, stored, too_large)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?;
                    let attachments = if metadata_only {
                        &[][..]
                    } else {
                        &parsed.attachments[..]
                    };
                    for (position, attachment) in attachments.iter().enumerate() {
                        let too_large = options.attachments_dir.is_some()
                            && attachment.size_bytes > options.max_attachment_bytes;
                        // The file is written (and synced) before this transaction commits,
                        // so a committed row never points to a missing file.
                        let stored = match (&options.attachments_dir, &attachment.content) {
                            (Some(dir), Some(bytes)) if !erased && !too_large => {
                                files::write_content(dir, &attachment.sha256, bytes)?;
                                true
                            }
                            _ => false,
                        };
                        insert_attachment.execute(params![
                            id,
                            position as i64,
                            content(&attachment.file_name),
                            attachment.content_type,
                            attachment.size_bytes as i64,
                            attachment.sha256,
                            stored,
                            too_large,
                        ])?;
                    }
                    if !erased && !metadata_only {
                        let attachment_names: Vec<&str> = parsed
                            .attachments
                            .iter()
                            .filter_map(|attachment| attachment.file_name.as_deref())
                            .collect();
                        search_rows.push(SearchRow {
                            activity_id: id,
                            subject: parsed.subject.as_deref().unwrap_or(""),
                            body: parsed.body_text.as_deref().unwrap_or(""),
                            attachment_names: attachment_names.join(" "),
                        });
                    }
                    (id, true)
                }
            };
            let direction = decision
                .direction
                .expect("a synced decision always read the message");
            // A mailbox contributes one source per activity. Seeing the message again in
            // the same mailbox (a replay, a second folder) keeps the first source id but
            // takes the latest decision's choice, so rule changes are reflected; an owner's
            // choice stays until the owner changes it.
            transaction.prepare_cached(
                "INSERT INTO activity_sources (activity_id, user_email, source, source_id, visibility, direction, rules, synced_at, parties, decided_by, labels)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (activity_id, user_email) DO UPDATE
                   SET visibility = excluded.visibility, rules = excluded.rules, parties = excluded.parties,
                       decided_by = excluded.decided_by, labels = excluded.labels
                   WHERE decided_by != 'owner'
                     AND (visibility != excluded.visibility OR rules != excluded.rules OR parties != excluded.parties
                          OR decided_by != excluded.decided_by OR labels != excluded.labels)",
            )?.execute(
                params![
                    activity_id,
                    source.user_email,
                    source.source,
                    source.source_id,
                    approval.visibility().as_str(),
                    direction.as_str(),
                    rules_json,
                    now(),
                    serde_json::to_string(&crate::rules::party_fingerprints(&decision.parties))
                        .expect("pairs of strings always serialize"),
                    approval.decided_by().as_str(),
                    serde_json::to_string(&decision.labels).expect("strings serialize"),
                ],
            )?;
            let mut link = transaction.prepare_cached(
                "INSERT OR IGNORE INTO activity_contacts (activity_id, contact_id, address, date)
                 SELECT ?1, contact_id, email, (SELECT date FROM activities WHERE id = ?1)
                 FROM contact_emails WHERE email = ?2",
            )?;
            for contact in approval.contacts() {
                link.execute(params![activity_id, contact])?;
            }
            drop(link);
            let recorded = if is_new {
                Recorded::NewActivity(activity_id)
            } else {
                Recorded::ExistingActivity(activity_id)
            };
            (recorded, Some(activity_id))
        }
    };
    // The log row changes only when the decision does, so a replay of an unchanged
    // mailbox leaves the store byte-for-byte as it was.
    let conversation_hash = super::decided_conversation_hash(decision, message)?;
    let labels_json = serde_json::to_string(&decision.labels).expect("strings serialize");
    transaction.prepare_cached(
        "INSERT INTO decisions (user_email, source, source_id, decision, reason, rules, activity_id, decided_at, detail, conversation_hash, labels)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (user_email, source, source_id) DO UPDATE
           SET decision = excluded.decision, reason = excluded.reason, rules = excluded.rules,
               activity_id = excluded.activity_id, decided_at = excluded.decided_at,
               detail = excluded.detail, conversation_hash = excluded.conversation_hash,
               labels = excluded.labels
           WHERE decision != excluded.decision OR reason != excluded.reason
              OR rules != excluded.rules OR activity_id IS NOT excluded.activity_id
              OR detail IS NOT excluded.detail
              OR conversation_hash IS NOT excluded.conversation_hash OR labels != excluded.labels",
    )?.execute(
        params![
            source.user_email,
            source.source,
            source.source_id,
            decision.outcome().as_str(),
            decision.reason.as_str(),
            rules_json,
            activity_id,
            now(),
            decision.detail,
            conversation_hash,
            labels_json,
        ],
    )?;
    Ok(recorded)
}

/// What `sync_state_from_row` reads, from `sync_state s`. Whether a backfill is due comes
/// with it, so that an idle poll learns it has nothing to backfill without asking again.
const SYNC_STATE_COLUMNS: &str =
    "s.user_email, s.state, s.history_id, s.last_sync_at, s.last_error,
     s.consecutive_failures, s.next_poll_at, s.last_verify_at, s.verify_gaps,
     NOT EXISTS (SELECT 1 FROM backfill_marks m WHERE m.user_email = s.user_email)
       OR EXISTS (SELECT 1 FROM backfill_marks m JOIN contact_events e ON e.id > m.covered_through
                  WHERE m.user_email = s.user_email),
     s.watch_expires_at, s.push_state";

fn sync_state_from_row(row: &rusqlite::Row<'_>) -> Result<SyncState, rusqlite::Error> {
    let state: String = row.get(1)?;
    Ok(SyncState {
        user_email: row.get(0)?,
        status: SyncStatus::parse(&state).unwrap_or(SyncStatus::Error),
        history_id: row.get(2)?,
        last_sync_at: row.get(3)?,
        last_error: row.get(4)?,
        consecutive_failures: row.get::<_, i64>(5)? as u32,
        next_poll_at: row.get(6)?,
        last_verify_at: row.get(7)?,
        verify_gaps: row.get::<_, i64>(8)? as u64,
        backfill_due: row.get(9)?,
        watch_expires_at: row.get(10)?,
        push_state: row
            .get::<_, Option<String>>(11)?
            .as_deref()
            .and_then(PushState::parse),
    })
}

/// A user's words as an FTS5 query: each word quoted (so FTS5 syntax in it is just text),
/// all of them required. `None` when there is no word.
fn fts_query(query: &str) -> Option<String> {
    let words = read_rules::search_words(query)?;
    Some(
        words
            .iter()
            .map(|word| format!("\"{word}\""))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// A contact is visible to the viewer when it has no `visible_to` list, lists the viewer, or
/// the viewer is an admin. `?1` = viewer email, `?2` = viewer is admin.
const CONTACT_VISIBLE_TO_VIEWER: &str = "(?2 OR NOT EXISTS (SELECT 1 FROM contact_visible_to v WHERE v.contact_id = ac.contact_id)
     OR EXISTS (SELECT 1 FROM contact_visible_to v WHERE v.contact_id = ac.contact_id AND v.user_email = ?1))";

/// The read path's rule 2 as SQL (see `read_rules::content_shown`): the viewer is shown
/// activity `a`'s content. `?1` = viewer email, `?2` = viewer is admin, `?6` =
/// admins_see_private_emails. A participants-only activity passed rule 1 only for its
/// participants.
fn content_shown_to_viewer() -> String {
    format!(
        "({level} != 'private'
          OR EXISTS (SELECT 1 FROM activity_sources s WHERE s.activity_id = a.id AND s.user_email = ?1)
          OR (?2 AND ?6))",
        level = read_rules::ACTIVITY_LEVEL
    )
}

fn rfc3339(seconds: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|date| date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// From how many matching activities a search for a page walks the activities by date
/// instead of collecting the matches. Collecting costs about 2 µs per match (checked against
/// the read path's rules, then sorted); walking about 12 µs per activity read (the index is
/// asked about each), and a walk reads about 50 × activities ÷ matches of them for a page of
/// 50. The two cost the same near √(350 × activities) matches: 8,000 of 200,000, 1,300 of
/// 5,000 (measured with the read-path benchmark and criterion's `read_path_5000`). A power
/// of two, so the statement asking for it takes few shapes as the store grows. The newest id
/// stands in for the number of activities (a count would read them all).
fn common_search_matches(connection: &Connection) -> Result<i64, StoreError> {
    let newest: i64 = connection
        .prepare_cached("SELECT coalesce(max(id), 0) FROM activities")?
        .query_row([], |row| row.get(0))?;
    let threshold = ((350.0 * newest as f64).sqrt() as u64).next_power_of_two();
    Ok((threshold as i64).clamp(256, 32_768))
}

/// Whether an FTS5 query matches at least `count` activities; reads at most that many ids.
fn matches_at_least(connection: &Connection, words: &str, count: i64) -> Result<bool, StoreError> {
    let found: i64 = connection
        .prepare_cached(&format!(
            "SELECT count(*) FROM (SELECT rowid FROM activity_search WHERE activity_search MATCH ?1 {})",
            limit_clause(Some(count.max(0) as usize))
        ))?
        .query_row(params![words], |row| row.get(0))?;
    Ok(found >= count)
}

/// How a search finds its activities (see `read_path`); both give the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SearchPlan {
    CollectMatches,
    WalkByDate,
}

/// The one place that decides what a viewer sees; the spec's read path, rule by rule. It also
/// keeps the access log, so no read command can forget it: private content shown to someone
/// who is not among its owners (an admin with `admins_see_private_emails`), and any export
/// that includes private content, each get one row per activity per read, written before the
/// content is returned (if the row cannot be written, nothing is shown).
fn read_path(
    connection: &Connection,
    viewer: &Viewer,
    query: &ReadQuery<'_>,
) -> Result<Vec<ActivityView>, StoreError> {
    read_path_planned(connection, viewer, query, None)
}

/// The read path with the search plan forced (`Some`) or chosen by the number of matches.
fn read_path_planned(
    connection: &Connection,
    viewer: &Viewer,
    query: &ReadQuery<'_>,
    plan: Option<SearchPlan>,
) -> Result<Vec<ActivityView>, StoreError> {
    // Rule 1: V sees an activity if it came from V's mailbox or V may see one of its contacts.
    // With a contact filter, V must be able to see that contact on this activity, which
    // implies rule 1; the feed is then read from the contact's own links, newest first
    // (`activity_contacts_by_contact_date`), and stops at the limit, whether the contact is
    // on three activities or on a tenth of the store. A contact with two addresses on one
    // message has two links: only the first address's counts.
    let (from, rule_one, contact_filter) = match query.contact {
        Some(_) => (
            "activity_contacts ac CROSS JOIN activities a ON a.id = ac.activity_id",
            "1".to_string(),
            format!(
                "AND ac.contact_id = (SELECT contact_id FROM contact_emails WHERE email = ?3)
                 AND ac.address = (SELECT min(x.address) FROM activity_contacts x
                                   WHERE x.activity_id = ac.activity_id AND x.contact_id = ac.contact_id)
                 AND {CONTACT_VISIBLE_TO_VIEWER}"
            ),
        ),
        None => (
            "activities a",
            format!(
                "(EXISTS (SELECT 1 FROM activity_sources s WHERE s.activity_id = a.id AND s.user_email = ?1)
                  OR EXISTS (SELECT 1 FROM activity_contacts ac WHERE ac.activity_id = a.id AND {CONTACT_VISIBLE_TO_VIEWER}))"
            ),
            "AND ?3 IS NULL".to_string(),
        ),
    };
    // Search: the words must be in content this viewer is shown (rule 2 below, as SQL), so
    // words inside withheld content never match for this viewer.
    //
    // Two plans, chosen by how many activities hold the words. Few: collect their ids from
    // the index and read those, newest first. Many (the words most mail holds): walk the
    // activities newest first and ask the index about each, stopping at the limit, instead of
    // collecting a set as large as the store.
    // Rule 1, participants: an activity for its participants is seen by them alone.
    let rule_one = format!(
        "{rule_one} AND ({level} != 'participants' OR {participant})",
        level = read_rules::ACTIVITY_LEVEL,
        participant = read_rules::participant_sql(viewer, "?1", "instr"),
    );
    let content_shown = content_shown_to_viewer();
    let fts = query.search.and_then(fts_query);
    let plan = match (fts.as_deref(), plan) {
        (Some(_), Some(plan)) => plan,
        // Without a limit every match is read anyway: collecting them is cheapest.
        (Some(words), None)
            if query.limit.is_some()
                && matches_at_least(connection, words, common_search_matches(connection)?)? =>
        {
            SearchPlan::WalkByDate
        }
        _ => SearchPlan::CollectMatches,
    };
    let search_filter = match (fts.as_deref(), plan) {
        (Some(_), SearchPlan::WalkByDate) => format!(
            "AND EXISTS (SELECT 1 FROM activity_search WHERE activity_search MATCH ?5 AND rowid = a.id)
             AND {content_shown}"
        ),
        (Some(_), SearchPlan::CollectMatches) => format!(
            "AND a.id IN (SELECT rowid FROM activity_search WHERE activity_search MATCH ?5)
             AND {content_shown}"
        ),
        (None, _) => "AND ?5 IS NULL AND ?6 IS NOT NULL".to_string(),
    };
    // An attachment fetch: activities carrying that content, whose content V is shown;
    // those that need no access record (visible, or V's own) first.
    let (attachment_filter, order) = match query.attachment {
        Some(_) => (
            format!(
                "AND a.content_erased_at IS NULL
                 AND EXISTS (SELECT 1 FROM attachments t WHERE t.activity_id = a.id AND t.sha256 = ?7 AND t.stored)
                 AND {content_shown}"
            ),
            "(is_owner OR level = 'visible') DESC, a.date DESC, a.id DESC",
        ),
        // NULL sorts lowest in SQLite, so undated activities come last, and these orders
        // are the `activities_by_date` and `activity_contacts_by_contact_date` indexes': the
        // newest page is read, not sorted.
        None if query.contact.is_some() => {
            ("AND ?7 IS NULL".to_string(), "ac.date DESC, ac.activity_id DESC")
        }
        None => ("AND ?7 IS NULL".to_string(), "a.date DESC, a.id DESC"),
    };
    let sql = format!(
        "SELECT a.id, a.message_id, a.date, a.direction, a.subject, a.body,
                EXISTS (SELECT 1 FROM activity_sources s WHERE s.activity_id = a.id AND s.user_email = ?1) AS is_owner,
                {level} AS level,
                a.content_erased_at, a.conversation
         FROM {from}
         WHERE {rule_one}
           {contact_filter}
           {search_filter}
           {attachment_filter}
         ORDER BY {order}
         {limit}",
        level = read_rules::ACTIVITY_LEVEL,
        limit = limit_clause(query.limit)
    );
    // ?4 was the limit; it is in the text now (see limit_clause), and the slot stays so the
    // other parameters keep their numbers.
    let unused_limit: Option<i64> = None;
    let mut statement = connection.prepare_cached(&sql)?;
    let rows: Vec<_> = statement
        .query_map(
            params![
                viewer.email,
                viewer.is_admin,
                query.contact.map(crate::address::normalize),
                unused_limit,
                fts,
                viewer.admins_see_private_emails,
                query.attachment,
            ],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, Option<String>>(5)?,
                    row.get::<_, bool>(6)?,
                    row.get::<_, Option<String>>(7)?,
                    row.get::<_, Option<i64>>(8)?,
                    row.get::<_, Option<String>>(9)?,
                ))
            },
        )?
        .collect::<Result<_, _>>()?;
    let mut contacts_of = connection.prepare_cached(&format!(
        "SELECT ac.address FROM activity_contacts ac
         WHERE ac.activity_id = ?3 AND {CONTACT_VISIBLE_TO_VIEWER}
         ORDER BY ac.address"
    ))?;
    let mut sources_of = connection.prepare_cached(
        "SELECT user_email FROM activity_sources WHERE activity_id = ?1 ORDER BY user_email",
    )?;
    let mut attachments_of = connection.prepare_cached(
        "SELECT file_name, content_type, size_bytes, sha256, stored, too_large
         FROM attachments WHERE activity_id = ?1 ORDER BY position",
    )?;
    let mut views = Vec::new();
    let mut accesses = Vec::new();
    for (
        id,
        message_id,
        date,
        direction,
        subject,
        body,
        is_owner,
        level,
        erased_at,
        conversation,
    ) in rows
    {
        let level = level
            .as_deref()
            .and_then(Visibility::parse)
            .unwrap_or(Visibility::Private);
        let facts = ActivityFacts {
            viewer_owns_a_source: is_owner,
            level,
            content_erased: erased_at.is_some(),
        };
        let content_shown = read_rules::content_shown(viewer, facts);
        if read_rules::must_record_access(viewer, facts, query.path) {
            accesses.push((id, message_id.clone(), is_owner));
        }
        let contacts: Vec<String> = contacts_of
            .query_map(params![viewer.email, viewer.is_admin, id], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let sources: Vec<String> = sources_of
            .query_map([id], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let attachments = if content_shown {
            Some(
                attachments_of
                    .query_map([id], |row| {
                        Ok(AttachmentView {
                            file_name: row.get(0)?,
                            content_type: row.get(1)?,
                            size_bytes: row.get::<_, i64>(2)? as u64,
                            sha256: row.get(3)?,
                            stored: row.get(4)?,
                            too_large: row.get(5)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?,
            )
        } else {
            None
        };
        views.push(ActivityView {
            activity_id: id,
            message_id,
            date: date.and_then(rfc3339),
            direction,
            contacts: dedup_sorted(contacts),
            conversation: conversation.unwrap_or_default(),
            level,
            private: level != Visibility::Visible,
            subject: if content_shown { subject } else { None },
            body: if content_shown { body } else { None },
            attachments,
            sources,
            content_erased_at: erased_at.and_then(rfc3339),
        });
    }
    if !accesses.is_empty() {
        // One transaction for the whole read; if it fails the caller gets the error and no
        // content.
        let transaction = connection.unchecked_transaction()?;
        {
            let mut record = transaction.prepare_cached(
                "INSERT INTO access_log (viewer, activity_id, message_id, path, viewer_is_owner, accessed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let at = now();
            for (id, message_id, is_owner) in &accesses {
                record.execute(params![
                    viewer.email,
                    id,
                    message_id,
                    query.path.as_str(),
                    is_owner,
                    at
                ])?;
            }
        }
        transaction.commit()?;
    }
    Ok(views)
}

fn dedup_sorted(values: Vec<String>) -> Vec<String> {
    values
        .into_iter()
        .map(|value| (value, ()))
        .collect::<BTreeMap<_, _>>()
        .into_keys()
        .collect()
}

/// Proof that this process is the only daemon writing to a store: an exclusive lock on
/// `<store>.lock`, held until dropped (the OS releases it if the process dies, even by
/// SIGKILL, so a crash never leaves a stale lock behind).
#[derive(Debug)]
pub struct StoreLock {
    _file: std::fs::File,
    pub path: std::path::PathBuf,
}

impl StoreLock {
    /// Locks the store's canonical path (symlinks resolved), so that two configs reaching one
    /// store by different paths still find each other's lock.
    pub fn acquire(store_path: &Path) -> Result<StoreLock, StoreError> {
        create_parent_folder(store_path)?;
        let store_path = canonical_store_path(store_path).map_err(|error| {
            StoreError::Conflict(format!(
                "cannot resolve the store path {}: {error}",
                store_path.display()
            ))
        })?;
        let mut name = store_path.as_os_str().to_owned();
        name.push(".lock");
        let path = std::path::PathBuf::from(name);
        create_parent_folder(&path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| {
                StoreError::Conflict(format!("cannot open lock file {}: {error}", path.display()))
            })?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for `status`: the pid and when it started.
                let mut file = file;
                let holder = format!(
                    "{} {}\n",
                    std::process::id(),
                    chrono::Utc::now().timestamp()
                );
                use std::io::Write;
                let _ = file
                    .set_len(0)
                    .and_then(|()| file.write_all(holder.as_bytes()));
                Ok(StoreLock { _file: file, path })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Conflict(format!(
                "another mailsync daemon is already running on this store (lock {} is held)",
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(error)) => Err(StoreError::Conflict(format!(
                "cannot lock {}: {error}",
                path.display()
            ))),
        }
    }
}

/// The daemon holding a SQLite store's lock, as its lock file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    /// When it took the lock (seconds since the epoch).
    pub since: i64,
}

impl StoreLock {
    /// Whether a daemon holds the lock of the store at `store_path` now, and which; `None`
    /// when none does. Creates nothing, and takes no lock (a daemon starting at that moment
    /// must find it free): the lock file names the process that took it, and that process
    /// must still be a running mailsync.
    pub fn holder(store_path: &Path) -> Result<Option<LockHolder>, StoreError> {
        let Ok(store_path) = canonical_store_path(store_path) else {
            return Ok(None);
        };
        let mut name = store_path.as_os_str().to_owned();
        name.push(".lock");
        let Ok(text) = std::fs::read_to_string(std::path::PathBuf::from(name)) else {
            return Ok(None);
        };
        let mut fields = text.split_whitespace();
        let (Some(pid), Some(since)) = (
            fields.next().and_then(|pid| pid.parse::<u32>().ok()),
            fields.next().and_then(|since| since.parse::<i64>().ok()),
        ) else {
            return Ok(None);
        };
        // A process by that id that is mailsync: not one that reused a dead daemon's id.
        let running = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|exe| {
                exe.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .is_some_and(|name| name.starts_with("mailsync"));
        Ok(running.then_some(LockHolder { pid, since }))
    }
}

/// The store file's path with every symlink resolved: the file itself when it exists (it may
/// be a link), else its folder's canonical path joined with its name.
fn canonical_store_path(store_path: &Path) -> std::io::Result<std::path::PathBuf> {
    match std::fs::canonicalize(store_path) {
        Ok(path) => Ok(path),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let folder = match store_path.parent() {
                Some(folder) if !folder.as_os_str().is_empty() => folder,
                _ => Path::new("."),
            };
            let name = store_path.file_name().ok_or(error)?;
            Ok(std::fs::canonicalize(folder)?.join(name))
        }
        Err(error) => Err(error),
    }
}

/// Stored sources matching `filter` (over `s`, the source, and `a`, its activity), with their
/// activities' contact addresses.
fn sources_where<P: rusqlite::Params>(
    connection: &rusqlite::Connection,
    filter: &str,
    params: P,
) -> Result<Vec<StoredSource>, StoreError> {
    let mut statement = connection.prepare(&format!(
        "SELECT s.activity_id, a.message_id, s.user_email, s.source, s.source_id, s.visibility, s.parties,
                a.automated, a.calendar_only, s.decided_by, s.labels, a.conversation
         FROM activity_sources s JOIN activities a ON a.id = s.activity_id
         WHERE {filter}
         ORDER BY s.activity_id, s.user_email"
    ))?;
    let rows = statement.query_map(params, |row| {
        let visibility: String = row.get(5)?;
        let parties: String = row.get(6)?;
        let decided_by: String = row.get(9)?;
        let labels: String = row.get(10)?;
        let conversation: Option<String> = row.get(11)?;
        Ok(StoredSource {
            activity_id: row.get(0)?,
            message_id: row.get(1)?,
            user_email: row.get(2)?,
            source: row.get(3)?,
            source_id: row.get(4)?,
            visibility: Visibility::parse(&visibility).unwrap_or(Visibility::Private),
            decided_by: DecidedBy::parse(&decided_by).unwrap_or(DecidedBy::Default),
            labels: serde_json::from_str(&labels).unwrap_or_default(),
            conversation: conversation.unwrap_or_default(),
            parties: serde_json::from_str(&parties).unwrap_or_default(),
            contacts: Vec::new(),
            facts: MessageFacts {
                automated: row.get(7)?,
                calendar_only: row.get(8)?,
            },
        })
    })?;
    let mut sources: Vec<StoredSource> = rows.collect::<Result<_, _>>()?;
    let mut contacts_of = connection.prepare_cached(
        "SELECT address FROM activity_contacts WHERE activity_id = ?1 ORDER BY address",
    )?;
    for source in &mut sources {
        source.contacts = contacts_of
            .query_map([source.activity_id], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
    }
    Ok(sources)
}

/// Applies changes to stored sources inside `transaction`, counting them, and collecting the
/// attachment files that may no longer be referenced.
fn apply_changes(
    transaction: &rusqlite::Transaction<'_>,
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
                let mut hashes = transaction.prepare_cached(
                    "SELECT sha256 FROM attachments WHERE activity_id = ?1 AND stored",
                )?;
                for sha256 in hashes.query_map([source.activity_id], |row| row.get(0))? {
                    candidates.insert(sha256?);
                }
                drop(hashes);
                applied.sources_removed += transaction.execute(
                    "DELETE FROM activity_sources WHERE activity_id = ?1 AND user_email = ?2",
                    params![source.activity_id, source.user_email],
                )? as u64;
                transaction.execute(
                    "UPDATE decisions SET decision = 'skipped', reason = ?5, rules = ?1,
                       activity_id = NULL, decided_at = ?2, labels = ?6, conversation_hash = ?7
                     WHERE user_email = ?3 AND activity_id = ?4",
                    params![
                        rules_json,
                        now(),
                        source.user_email,
                        source.activity_id,
                        reason.as_str(),
                        labels_json,
                        super::identity::conversation_hash(&source.conversation)
                    ],
                )?;
                applied.activities_removed += transaction.execute(
                    "DELETE FROM activities WHERE id = ?1
                       AND NOT EXISTS (SELECT 1 FROM activity_sources WHERE activity_id = ?1)",
                    [source.activity_id],
                )? as u64;
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
                    "UPDATE activity_sources SET visibility = ?1, rules = ?2, decided_by = ?5, labels = ?6
                     WHERE activity_id = ?3 AND user_email = ?4
                       AND (visibility != ?1 OR decided_by != ?5 OR labels != ?6)",
                    params![
                        visibility.as_str(),
                        rules_json,
                        source.activity_id,
                        source.user_email,
                        decided_by.as_str(),
                        labels_json
                    ],
                )? as u64;
                transaction.execute(
                    "UPDATE decisions SET labels = ?1 WHERE user_email = ?2 AND activity_id = ?3",
                    params![labels_json, source.user_email, source.activity_id],
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::rules::{Policy, RuleSet};
    use crate::source::SourceMessage;
    use crate::sync::{self, Mode};

    /// Two mailboxes (one private user, one visible), three viewers (the two and an admin),
    /// 40 messages from alice@customer.com, every third about pineapple and every fourth
    /// with bob@bigclient.io, a contact only eve may see, in copy.
    fn small_world() -> SqliteStore {
        let config = Config::from_toml(
            Path::new("/cfg/mailsync.toml"),
            "[company]\ndomains = [\"abcorp.com\"]\n[store]\npath = \"crm.sqlite3\"\n\
             [[users]]\nemail = \"dave@abcorp.com\"\nsync = true\n\
             [[users]]\nemail = \"eve@abcorp.com\"\nsync = true\nemails_visible = true\n\
             [[users]]\nemail = \"root@abcorp.com\"\nrole = \"admin\"\n"
                .to_string(),
        )
        .expect("valid test config");
        let policy = Policy::new(config, RuleSet::default());
        let store = SqliteStore::open_in_memory().expect("store");
        for (address, visible_to) in [
            ("alice@customer.com", None),
            ("bob@bigclient.io", Some(vec!["eve@abcorp.com".to_string()])),
        ] {
            store
                .add_contact(&NewContact {
                    emails: vec![address.to_string()],
                    visible_to,
                    ..NewContact::default()
                })
                .expect("contact");
        }
        for index in 0..40 {
            let owner = if index % 2 == 0 { "dave" } else { "eve" };
            let word = if index % 3 == 0 {
                "pineapple"
            } else {
                "banana"
            };
            let cc = if index % 4 == 0 {
                "Cc: bob@bigclient.io\n"
            } else {
                ""
            };
            let raw = format!(
                "From: alice@customer.com\nTo: {owner}@abcorp.com\n{cc}Subject: about {word}\n\
                 Date: Mon, 02 Sep 2024 09:{index:02}:00 +0000\nMessage-ID: <s{index}@customer.com>\n\n{word} {index}\n"
            );
            let user = policy
                .config
                .user_by_address(&format!("{owner}@abcorp.com"))
                .unwrap()
                .clone();
            let message = SourceMessage {
                source_id: index.to_string(),
                raw: raw.into_bytes(),
                labels: Vec::new(),
            };
            sync::process(&policy, &store, &user, "test", &message, Mode::Write).unwrap();
        }
        store
    }

    fn small_world_viewers() -> Vec<Viewer> {
        ["dave@abcorp.com", "eve@abcorp.com", "root@abcorp.com"]
            .into_iter()
            .map(|viewer| Viewer {
                email: viewer.to_string(),
                addresses: vec![viewer.to_string()],
                is_admin: viewer.starts_with("root"),
                admins_see_private_emails: false,
            })
            .collect()
    }

    /// Mail that does and does not hold the searched word: both search plans must give every
    /// viewer the same answer.
    #[test]
    fn both_search_plans_show_each_viewer_the_same() {
        let store = small_world();
        for viewer in small_world_viewers() {
            for limit in [None, Some(3)] {
                let query = ReadQuery::search("pineapple", limit);
                let plan = |plan| {
                    read_path_planned(&store.connection().unwrap(), &viewer, &query, Some(plan))
                        .unwrap()
                };
                let collected = plan(SearchPlan::CollectMatches);
                assert_eq!(
                    collected,
                    plan(SearchPlan::WalkByDate),
                    "{viewer:?} {limit:?}"
                );
                assert!(!collected.is_empty() || viewer.email.starts_with("root"));
                assert!(
                    collected
                        .iter()
                        .all(|view| view.subject.as_deref() == Some("about pineapple")),
                    "only matching content that this viewer is shown"
                );
            }
        }
    }

    /// A contact's feed, read from the contact's links, is the full feed narrowed to that
    /// contact, page for page: for a contact everyone may see, one only eve may see (asked in
    /// another case), and every viewer.
    #[test]
    fn a_contacts_feed_is_the_feed_narrowed_to_that_contact() {
        let store = small_world();
        for viewer in small_world_viewers() {
            let everything = store.feed(&viewer, None, None).unwrap();
            for contact in ["alice@customer.com", "BOB@bigclient.io"] {
                let address = contact.to_ascii_lowercase();
                let narrowed: Vec<ActivityView> = everything
                    .iter()
                    .filter(|view| view.contacts.contains(&address))
                    .cloned()
                    .collect();
                let may_see = contact.starts_with("alice")
                    || viewer.email.starts_with("eve")
                    || viewer.is_admin;
                let expected_count = if contact.starts_with("alice") { 40 } else { 10 };
                assert_eq!(
                    narrowed.len(),
                    if may_see { expected_count } else { 0 },
                    "{viewer:?} {contact}"
                );
                for limit in [None, Some(3)] {
                    let page = store.feed(&viewer, Some(contact), limit).unwrap();
                    let wanted: Vec<ActivityView> = narrowed
                        .iter()
                        .take(limit.unwrap_or(usize::MAX))
                        .cloned()
                        .collect();
                    assert_eq!(page, wanted, "{viewer:?} {contact} {limit:?}");
                }
            }
        }
    }

    /// A bound LIMIT makes SQLite prepare the statement again at every execution (it plans
    /// with the value), which undid the statement cache on the hottest paths: limits are
    /// written into the SQL text instead.
    #[test]
    fn no_statement_binds_its_limit() {
        let source = include_str!("mod.rs");
        let bound = ["LIMIT ?", "limit ?"];
        for (number, line) in source.lines().enumerate() {
            if line.contains("let bound =") {
                continue;
            }
            assert!(
                !bound.iter().any(|pattern| line.contains(pattern)),
                "sqlite/mod.rs:{}: a bound LIMIT: {line}",
                number + 1
            );
        }
        let store = SqliteStore::open_in_memory().unwrap();
        let sql = format!(
            "SELECT id FROM contact_events ORDER BY id {}",
            limit_clause(Some(5))
        );
        for _ in 0..3 {
            let connection = store.connection().unwrap();
            let mut statement = connection.prepare_cached(&sql).unwrap();
            let _: Vec<i64> = statement
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(
                statement.get_status(rusqlite::StatementStatus::RePrepare),
                0
            );
        }
    }
}
