//! The CRM store: contacts, activities and their sources, the decision log and sync state.
//!
//! Only this module knows SQL. The rest of the program talks to the [`Store`] trait, which is
//! deliberately narrow (a PostgreSQL backend for multi-instance deployments is planned and must
//! be able to implement it without the callers changing). [`SqliteStore`] is the one backend
//! today: bundled SQLite in WAL mode with versioned migrations.

mod files;
mod identity;
pub mod migrate;
mod postgres;
pub(crate) mod read_rules;
mod sqlite;
pub mod tables;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::parse::ParsedMessage;
use crate::rules::{
    Action, ContactBook, ConversationContext, DecidedBy, Decision, Direction, MessageFacts, Reason,
    Visibility,
};

pub use files::is_sha256_hex;
pub use identity::MessageIdentity;
pub use postgres::{PostgresSettings, PostgresStore};
pub use sqlite::{LockHolder, SqliteStore, StoreLock};

use crate::config::StoreLocation;

/// Opens the store the config names, bringing its schema up to date, with the config's
/// options: the one way commands and the daemon reach the store.
pub fn open(config: &crate::config::Config) -> Result<SharedStore, StoreError> {
    let options = StoreOptions::from_config(config);
    Ok(match &config.store {
        StoreLocation::Sqlite { path } => {
            std::sync::Arc::new(SqliteStore::open(path)?.with_options(options))
        }
        StoreLocation::Postgres { .. } => std::sync::Arc::new(
            PostgresStore::open(&postgres_settings(&config.store))?.with_options(options),
        ),
    })
}

/// The store the config names, if it exists: `status` must not create a SQLite store (a
/// mistyped `[store] path` would otherwise look like a store no daemon has reached yet). A
/// PostgreSQL database is the CRM's own: its schema is brought up to date as for any command.
pub fn open_existing(config: &crate::config::Config) -> Result<SharedStore, StoreError> {
    if let StoreLocation::Sqlite { path } = &config.store
        && std::fs::metadata(path).is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound)
    {
        return Err(StoreError::Conflict(format!(
            "there is no store at {}: no daemon or command has run with this config yet, or `[store] path` in {} is not the daemon's",
            path.display(),
            config.source_path.display()
        )));
    }
    open(config)
}

/// For dry runs and `explain`: the existing store, changing nothing (an empty SQLite store in
/// memory when the file does not exist yet).
pub fn open_for_looking(config: &crate::config::Config) -> Result<SharedStore, StoreError> {
    Ok(match &config.store {
        StoreLocation::Sqlite { path } => {
            std::sync::Arc::new(SqliteStore::open_read_only_or_empty(path)?)
        }
        StoreLocation::Postgres { .. } => std::sync::Arc::new(PostgresStore::open_for_looking(
            &postgres_settings(&config.store),
        )?),
    })
}

/// What a daemon holds on its store while it runs: with SQLite, the lock file that makes it
/// the only daemon (released by the operating system when the process dies); with
/// PostgreSQL nothing, because any number of instances share the store through mailbox
/// leases (`Store::join`, `Store::lease_round`).
pub enum DaemonLock {
    Sqlite(StoreLock),
    Shared,
}

impl DaemonLock {
    pub fn acquire(location: &StoreLocation) -> Result<DaemonLock, StoreError> {
        Ok(match location {
            StoreLocation::Sqlite { path } => DaemonLock::Sqlite(StoreLock::acquire(path)?),
            StoreLocation::Postgres { .. } => DaemonLock::Shared,
        })
    }
}

fn postgres_settings(location: &StoreLocation) -> PostgresSettings {
    match location {
        StoreLocation::Postgres { url, password_file } => PostgresSettings {
            url: url.clone(),
            password_file: password_file.clone(),
        },
        StoreLocation::Sqlite { .. } => unreachable!("only called for a PostgreSQL location"),
    }
}

/// What a store operation can fail with, whichever backend: callers branch on
/// [`StoreError::is_busy`] and [`StoreError::Conflict`], and report the rest.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer holds what this operation needs and the store did not wait (see
    /// [`without_waiting`]), or waited as long as its backend's busy policy allows.
    #[error("the store is busy: {0}")]
    Busy(String),
    /// The operation contradicts what is stored (an address of another contact, a schema
    /// newer than this mailsync).
    #[error("{0}")]
    Conflict(String),
    #[error("store database error: {0}")]
    Database(String),
    #[error("cannot migrate store schema: {0}")]
    Migration(String),
    #[error("cannot create store folder {path}: {source}")]
    CreateFolder {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("a synced decision was recorded without its message: this is a bug in the caller")]
    MissingMessage,
    #[error("attachment file {path}: {source}")]
    AttachmentFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// This instance no longer holds the lease on the mailbox it was writing for (it ran out,
    /// or another instance took the mailbox over): nothing was written.
    #[error("this instance no longer holds the lease on {0}'s mailbox; nothing was written")]
    Fenced(String),
}

impl StoreError {
    /// The store did not do the work because it would have had to wait: the caller may go
    /// again where waiting is allowed.
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Busy(_))
    }

    /// A contact's addresses belong to several contacts already.
    pub fn several_contacts(ids: &[i64]) -> StoreError {
        StoreError::Conflict(format!(
            "the addresses belong to {} different contacts (ids {ids:?}); merge them first",
            ids.len()
        ))
    }

    /// A new contact's address belongs to contact `existing`.
    pub fn address_taken(existing: i64) -> StoreError {
        StoreError::Conflict(format!(
            "an address already belongs to contact {existing}; use `contacts import` to update contacts"
        ))
    }

    /// The write was refused because this instance lost the mailbox's lease: the caller
    /// drops that mailbox.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Fenced(_))
    }
}

/// An instance as it records itself in a store that several share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Unique per process: host, pid and a random suffix.
    pub instance: String,
    pub host: String,
    pub pid: u32,
    pub lease_secs: u64,
    /// SHA-256 of the config and rules files it runs with.
    pub config_fingerprint: String,
}

/// What one lease round left an instance with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseRound {
    /// The mailboxes this instance may sync until its next round.
    pub held: std::collections::BTreeSet<String>,
    /// Whether this instance runs the work that must happen once (retention, rules on
    /// stored mail, the contact change log).
    pub runner: bool,
    /// Live instances, this one included.
    pub live_instances: u64,
    /// Live instances whose config fingerprint differs from this one's.
    pub config_mismatches: u64,
}

/// A live instance, for `status --instances`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceView {
    pub instance: String,
    pub host: String,
    pub pid: u32,
    pub started_at: Option<String>,
    pub heartbeat_at: Option<String>,
    /// Mailboxes it holds a lease on now.
    pub mailboxes: u64,
    pub config_fingerprint: String,
}

/// Who holds a mailbox's lease, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub user_email: String,
    /// `None` when nobody holds it (free, or expired).
    pub instance: Option<String>,
    pub expires_at: Option<String>,
}

thread_local! {
    static WITHOUT_WAITING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `work`, in which every store operation on this thread fails with
/// [`StoreError::Busy`] rather than wait: for another connection's lock, for this process's
/// connection held by another thread, or (for a backend over the network) at all. For the
/// small calls the daemon's async threads make on every poll, which must never block; on
/// `is_busy` the caller goes again on the blocking pool. Each backend decides what waiting
/// means for it and checks [`must_not_wait`].
pub fn without_waiting<T>(work: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            WITHOUT_WAITING.with(|flag| flag.set(self.0));
        }
    }
    let _reset = Reset(WITHOUT_WAITING.with(|flag| flag.replace(true)));
    work()
}

/// Whether the operation running on this thread is inside [`without_waiting`].
pub(crate) fn must_not_wait() -> bool {
    WITHOUT_WAITING.with(|flag| flag.get())
}

/// The store as the daemon shares it between mailboxes, jobs and reloads: one value, each
/// backend owning its connections and how calls from several threads meet.
pub type SharedStore = std::sync::Arc<dyn Store>;

/// How the store treats content beyond the database: where attachment content is kept, how
/// much of it, and how long subjects and bodies live. Taken from the config (`[store]`,
/// `[retention]`); the default keeps no attachment content and erases nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Content-addressed attachment files live here (`<dir>/<2 hex>/<sha256 hex>`); `None`
    /// keeps attachment metadata only.
    pub attachments_dir: Option<PathBuf>,
    /// Larger attachments keep metadata only (flagged `too_large`).
    pub max_attachment_bytes: u64,
    /// Content of messages older than this many days is erased (and not stored when such a
    /// message is first recorded).
    pub body_days: Option<u32>,
}

impl StoreOptions {
    pub fn from_config(config: &crate::config::Config) -> StoreOptions {
        StoreOptions {
            attachments_dir: config.attachments_dir.clone(),
            max_attachment_bytes: config.max_attachment_bytes,
            body_days: config.retention_body_days,
        }
    }

    /// The retention cut-off for `now` (seconds since the epoch): content of messages dated
    /// before it is erased.
    pub fn erase_before(&self, now: i64) -> Option<i64> {
        self.body_days
            .map(|days| now.saturating_sub(i64::from(days) * 86_400))
    }
}

/// A contact as an import or the CLI describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewContact {
    pub name: Option<String>,
    /// Lower-cased addresses; at least one.
    pub emails: Vec<String>,
    /// Primary emails of the users allowed to see it; empty = everyone. `None` leaves an
    /// existing contact's list as it is (a new contact is then visible to everyone): an
    /// import that does not mention it must never widen who sees a contact.
    pub visible_to: Option<Vec<String>>,
    /// Never sync this contact's mail; `None` leaves an existing contact's setting as it is.
    pub no_sync: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Contact {
    pub id: i64,
    pub name: Option<String>,
    pub emails: Vec<String>,
    pub visible_to: Vec<String>,
    /// Marked never-sync: acts as a skip rule for all of its addresses.
    pub no_sync: bool,
}

/// What the contact change events after the daemon's own mark hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContactEvents {
    /// Addresses added to contacts (new contacts or new addresses). Each mailbox backfills
    /// them from its own mark; the daemon only reports them.
    pub addresses_added: u64,
    /// Contacts whose never-sync switch changed: stored activities need rechecking.
    pub no_sync_changed: u64,
    /// The id of the last event read, to hand to [`Store::finish_contact_events`] once they
    /// are dealt with; `None` when there was nothing new.
    pub through: Option<i64>,
}

/// What a mailbox still has to backfill: the contact change log after its mark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingBackfill {
    /// The distinct addresses added after the mark, oldest first.
    pub addresses: Vec<String>,
    /// The id of the last event read, to hand to [`Store::finish_backfill`] once those
    /// addresses are done; `None` when there was nothing new.
    pub through: Option<i64>,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactChange {
    Created(i64),
    Updated(i64),
    Unchanged(i64),
}

/// Which message in which mailbox a decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    /// The mailbox owner's primary email.
    pub user_email: String,
    /// `gmail`, `dir:<path>` or `mbox:<path>`.
    pub source: String,
    /// The message's name in that source (Gmail id, file name, mbox position).
    pub source_id: String,
}

/// The message content a synced decision stores.
#[derive(Debug, Clone, Copy)]
pub struct MessageToStore<'a> {
    pub parsed: &'a ParsedMessage,
    /// The SHA-256 of the raw bytes: identifies the message when it has no Message-ID (and
    /// is only computed then).
    pub raw_sha256: Option<&'a str>,
    /// Relative to the company (sent by any configured user or not), unlike the decision's
    /// direction, which is relative to the mailbox owner.
    pub company_direction: Direction,
    /// `metadata`: the subject, body and attachments are neither stored nor indexed (the
    /// identity of the message is still computed from all of it, so copies in other
    /// mailboxes join the same activity).
    pub capture: crate::config::Capture,
}

/// One decision to record, with the message content a synced decision stores.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub source: &'a SourceRef,
    pub decision: &'a Decision,
    pub message: Option<MessageToStore<'a>>,
}

/// A sync cursor to move in the same transaction as the records it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub user_email: String,
    pub history_id: String,
}

/// A user's sync health as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    Ok,
    Syncing,
    NeedsReauth,
    Error,
    Disabled,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Ok => "ok",
            SyncStatus::Syncing => "syncing",
            SyncStatus::NeedsReauth => "needs_reauth",
            SyncStatus::Error => "error",
            SyncStatus::Disabled => "disabled",
        }
    }

    pub fn parse(text: &str) -> Option<SyncStatus> {
        [
            SyncStatus::Ok,
            SyncStatus::Syncing,
            SyncStatus::NeedsReauth,
            SyncStatus::Error,
            SyncStatus::Disabled,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// What the store knows of one user's sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub user_email: String,
    pub status: SyncStatus,
    /// The Gmail history id everything up to which is stored; `None` before the first full
    /// sync completes (or after history expired).
    pub history_id: Option<String>,
    /// When the last successful sync ended (seconds since the epoch).
    pub last_sync_at: Option<i64>,
    pub last_error: Option<String>,
    /// Failed polls in a row; 0 after a success.
    pub consecutive_failures: u32,
    /// When the daemon plans to poll next.
    pub next_poll_at: Option<i64>,
    /// When reconciliation last compared Gmail's listing with the decision log.
    pub last_verify_at: Option<i64>,
    /// Listed messages it found without a decision (each then repaired by the daemon).
    pub verify_gaps: u64,
    /// Contact addresses appeared after this mailbox's backfill mark, or it has no mark
    /// yet: its next backfill has work to do.
    pub backfill_due: bool,
    /// When the mailbox's Gmail watch runs out (seconds since the epoch); `None` without one.
    pub watch_expires_at: Option<i64>,
    /// How new mail reaches the mailbox; `None` when push is not configured.
    pub push_state: Option<PushState>,
}

/// How new mail reaches a mailbox while push is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushState {
    /// Its watch is live and notifications are pulled: it is polled only every
    /// `safety_poll_secs`.
    Push,
    /// No live watch, or pulling fails: it is polled every `poll_interval_secs`.
    Polling,
}

impl PushState {
    pub fn as_str(self) -> &'static str {
        match self {
            PushState::Push => "push",
            PushState::Polling => "polling",
        }
    }

    pub fn parse(text: &str) -> Option<PushState> {
        match text {
            "push" => Some(PushState::Push),
            "polling" => Some(PushState::Polling),
            _ => None,
        }
    }
}

/// The conversation a decision row names (hashed), for a decision that weighed it: a synced
/// copy, or one a label or its owner skipped. Other skipped mail names none.
pub(crate) fn decided_conversation_hash(
    decision: &Decision,
    message: Option<MessageToStore<'_>>,
) -> Result<Option<String>, StoreError> {
    if decision.approval().is_none() && decision.decided_by().is_none() {
        return Ok(None);
    }
    let Some(message) = message else {
        return Ok(None);
    };
    Ok(Some(MessageIdentity::of(&message)?.conversation_hash()))
}

/// Whether a decision's rules (as stored, JSON) name one of `rules`.
pub(crate) fn names_any(stored_rules: &str, rules: &[String]) -> bool {
    serde_json::from_str::<Vec<String>>(stored_rules)
        .unwrap_or_default()
        .iter()
        .any(|name| rules.contains(name))
}

/// Who chose a logged decision, as SQL over decision `d` (both backends).
/// A skipped decision names its conversation only when a label or its owner skipped it.
pub(crate) const LOGGED_DECIDED_BY: &str = "COALESCE(
    (SELECT s.decided_by FROM activity_sources s WHERE s.activity_id = d.activity_id AND s.user_email = d.user_email),
    CASE WHEN d.reason = 'skipped_by_owner' THEN 'owner'
         WHEN d.reason = 'blocked_by_rule' AND d.conversation_hash IS NOT NULL THEN 'label' END)";

/// One row of the decision log, as support reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoggedDecision {
    pub user: String,
    pub source: String,
    pub source_id: String,
    pub decision: String,
    pub reason: String,
    pub rules: Vec<String>,
    /// Which level chose: for a synced message its copy's (`owner`, `label`, `rule`,
    /// `default`), `owner` for a copy its owner skipped; otherwise `None`.
    pub decided_by: Option<String>,
    /// For synced messages: the activity, its Message-ID and the contact addresses linked.
    pub activity_id: Option<i64>,
    pub message_id: Option<String>,
    pub contacts: Vec<String>,
    /// What the decision rested on when that is not the message itself (e.g. "decided by
    /// search"), or the excluded label or parse problem; never message content.
    pub detail: Option<String>,
    /// RFC 3339, UTC.
    pub decided_at: String,
}

/// A stored source, with what retroactive rules need to decide it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSource {
    pub activity_id: i64,
    pub message_id: Option<String>,
    pub user_email: String,
    pub source: String,
    pub source_id: String,
    pub visibility: Visibility,
    /// Which level chose `visibility` (`owner` is an override no rule changes).
    pub decided_by: DecidedBy,
    /// The labels label rules matched on this copy (lower-cased).
    pub labels: Vec<String>,
    /// The activity's conversation key.
    pub conversation: String,
    pub parties: Vec<crate::rules::PartyFingerprint>,
    /// The activity's linked contact addresses.
    pub contacts: Vec<String>,
    /// Message facts kept with the activity (unknown for activities stored before they were).
    pub facts: MessageFacts,
}

/// A change to one stored source: by retroactive rules, a label changed in Gmail, or the
/// owner's override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceChange {
    /// The copy's choice is now skip: the source goes, its decision becomes `reason`
    /// (`blocked_by_rule` or `skipped_by_owner`), and the activity goes with its last source.
    Remove {
        source: StoredSource,
        reason: Reason,
        rules: Vec<String>,
        /// The copy's own labels now (kept with its decision, for later replies).
        labels: Vec<String>,
    },
    /// The copy's choice changed (its level, who made it, or the labels behind it).
    SetVisibility {
        source: StoredSource,
        visibility: Visibility,
        decided_by: DecidedBy,
        labels: Vec<String>,
        rules: Vec<String>,
    },
}

impl SourceChange {
    pub fn source(&self) -> &StoredSource {
        match self {
            SourceChange::Remove { source, .. } | SourceChange::SetVisibility { source, .. } => {
                source
            }
        }
    }
}

/// The conversation-wide part of an owner's choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationChoice {
    pub conversation: String,
    /// Per mailbox whose choice it is, the choice later replies inherit (`None`: back to
    /// labels and rules).
    pub mailboxes: Vec<(String, Option<Action>)>,
}

/// An owner's (or an admin's) choice for an activity or its conversation, as `activity set`
/// makes it: the changes to the sources, the conversation-wide choice that later replies
/// inherit, and the access-log entry, written in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerChoice {
    /// Who made the choice.
    pub viewer: String,
    pub activity_id: i64,
    pub message_id: Option<String>,
    pub viewer_is_owner: bool,
    /// With `--conversation`: what later replies of the conversation inherit.
    pub conversation: Option<ConversationChoice>,
    /// What the access log says was set, e.g. `private` or `default (conversation)`.
    pub change: String,
    pub changes: Vec<SourceChange>,
    /// `default`: the conversation's copies these mailboxes' owners skipped are forgotten, so
    /// that the next reconciliation (or a replay) decides them again.
    pub unskip: Vec<String>,
    /// The activity's conversation key.
    pub conversation_key: String,
}

/// What applying retroactive changes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AppliedChanges {
    pub sources_removed: u64,
    pub activities_removed: u64,
    pub visibility_changed: u64,
}

/// What `purge` removed for one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    /// Activities that came only from this mailbox, removed with their links and attachments.
    pub activities_removed: u64,
    /// Activities that keep other mailboxes' sources and lost only this one.
    pub sources_removed: u64,
    pub decisions_removed: u64,
    /// Attachment files no longer referenced by any remaining activity.
    pub attachment_files_removed: u64,
}

/// What retention erased (or, in a dry run, would erase).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    /// Activities whose subject, body, attachment names and content were erased.
    pub activities_erased: u64,
    /// Attachment files no longer referenced by any activity that keeps its content.
    pub attachment_files_removed: u64,
}

/// Which activities' content to erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraseSelection {
    /// Retention: dated (else recorded) before this time, seconds since the epoch.
    Before(i64),
    /// Metadata-only capture: activities whose every source is one of these mailboxes
    /// (content another mailbox captured in full stays).
    OnlyFrom(Vec<String>),
}

impl EraseSelection {
    /// The selection as SQL over `activities` (unaliased), its one parameter written `{p}`;
    /// `in_list` is how the backend tests membership of a parameter holding the mailboxes
    /// (SQLite: `IN (SELECT value FROM json_each({p}))`, PostgreSQL: `= ANY({p})`).
    pub(crate) fn due_sql(&self, placeholder: &str, in_list: &str) -> String {
        match self {
            EraseSelection::Before(_) => format!(
                "content_erased_at IS NULL AND coalesce(date, created_at) < {placeholder}"
            ),
            EraseSelection::OnlyFrom(_) => format!(
                "content_erased_at IS NULL
                 AND (subject IS NOT NULL OR body IS NOT NULL
                      OR EXISTS (SELECT 1 FROM attachments t0 WHERE t0.activity_id = activities.id))
                 AND NOT EXISTS (SELECT 1 FROM activity_sources s0 WHERE s0.activity_id = activities.id
                                 AND NOT (s0.user_email {}))",
                in_list.replace("{p}", placeholder)
            ),
        }
    }
}

/// Which read command showed an activity: the access log says how content left the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPath {
    Feed,
    Search,
    Export,
    Attachment,
}

impl ReadPath {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadPath::Feed => "feed",
            ReadPath::Search => "search",
            ReadPath::Export => "export",
            ReadPath::Attachment => "attachment",
        }
    }
}

/// One row of the access log: private content shown to someone other than its owners, or
/// exported by anyone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccessLogEntry {
    pub viewer: String,
    pub activity_id: i64,
    pub message_id: Option<String>,
    /// `feed`, `search`, `export`, `attachment`, or `set` for an owner's choice.
    pub path: String,
    /// The viewer's mailbox is one of the activity's sources (only exports and choices log
    /// owners).
    pub viewer_is_owner: bool,
    /// For `set`: what was chosen.
    pub change: Option<String>,
    /// RFC 3339, UTC.
    pub at: String,
}

/// One attachment of an activity, as a viewer who may see the content is shown it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttachmentView {
    /// `None` when the mail gave none, or retention erased it.
    pub file_name: Option<String>,
    pub content_type: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// The content is kept and `mailsync attachment` can fetch it.
    pub stored: bool,
    /// Larger than `max_attachment_bytes`: metadata only.
    pub too_large: bool,
}

/// What recording a decision changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new activity was written.
    NewActivity(i64),
    /// The activity existed (another mailbox, or an earlier run); this mailbox was added as a
    /// source or its links were completed.
    ExistingActivity(i64),
    /// Only the decision log was written.
    DecisionOnly,
}

/// Who is looking, for the read path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub email: String,
    /// The viewer's primary address and aliases (lower-cased): being on a conversation's
    /// From, To or Cc under any of them makes the viewer a participant.
    pub addresses: Vec<String>,
    pub is_admin: bool,
    /// The account setting `admins_see_private_emails`, which matters only for admins.
    pub admins_see_private_emails: bool,
}

impl Viewer {
    /// A configured user reading, under the account's `admins_see_private_emails`.
    pub fn of(user: &crate::config::User, admins_see_private_emails: bool) -> Viewer {
        Viewer {
            email: user.email.clone(),
            addresses: user.addresses().map(crate::address::normalize).collect(),
            is_admin: user.is_admin(),
            admins_see_private_emails,
        }
    }
}

/// One activity as a given viewer may see it: content withheld is `None`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActivityView {
    pub activity_id: i64,
    pub message_id: Option<String>,
    /// RFC 3339, UTC; `None` when the message carried no usable date.
    pub date: Option<String>,
    pub direction: String,
    /// Addresses of the linked contacts this viewer may see.
    pub contacts: Vec<String>,
    /// The activity's conversation key, the same in every mailbox.
    pub conversation: String,
    /// `visible`, `private` or `participants` (docs/spec/decisions.md, step 4).
    pub level: Visibility,
    /// Content withheld from others than its owners: the level is not `visible`.
    pub private: bool,
    pub subject: Option<String>,
    pub body: Option<String>,
    /// `None` when withheld from this viewer (like subject and body).
    pub attachments: Option<Vec<AttachmentView>>,
    /// The users whose mailboxes it came from.
    pub sources: Vec<String>,
    /// When retention erased subject, body and attachment content (RFC 3339, UTC).
    pub content_erased_at: Option<String>,
}

/// Per-table row counts, for summaries and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub contacts: u64,
    pub activities: u64,
    pub sources: u64,
    pub contact_links: u64,
    pub attachments: u64,
    pub decisions: u64,
}

/// The operations mailsync needs from a CRM store.
pub trait Store: Send + Sync {
    /// Where attachment content goes and how long content lives (from the config); the
    /// daemon sets them again on reload.
    fn set_options(&self, options: StoreOptions);

    /// Creates a contact, or updates the one that already owns any of its addresses (name,
    /// `visible_to` and `no_sync` replaced where given, addresses added). Addresses of two
    /// different contacts conflict.
    fn upsert_contact(&self, contact: &NewContact) -> Result<ContactChange, StoreError>;

    /// Creates a contact; fails if any of its addresses already belongs to one.
    fn add_contact(&self, contact: &NewContact) -> Result<i64, StoreError>;

    fn list_contacts(&self) -> Result<Vec<Contact>, StoreError>;

    /// Which of `addresses` (lower-cased) belong to a contact, and which of those to a contact
    /// marked never-sync.
    fn contact_book(&self, addresses: &[String]) -> Result<ContactBook, StoreError>;

    /// Sets the never-sync switch of the contact owning `address`; `None` if no contact does.
    fn set_contact_no_sync(
        &self,
        address: &str,
        no_sync: bool,
    ) -> Result<Option<Contact>, StoreError>;

    /// Every address of contacts marked never-sync, for retroactive rules.
    fn never_sync_addresses(&self) -> Result<Vec<String>, StoreError>;

    /// Every address that can make a message qualify (contacts not marked never-sync), for the
    /// candidate search of a full sync.
    fn candidate_addresses(&self) -> Result<Vec<String>, StoreError>;

    /// The contact change events (written by triggers, whoever changed the contacts) after
    /// the daemon's own mark, up to `limit` of them, counted. One indexed read: it runs every
    /// few seconds, and usually finds nothing.
    fn contact_events(&self, limit: usize) -> Result<ContactEvents, StoreError>;

    /// Moves the daemon's mark to `through` (never back), once the events up to there are
    /// dealt with, and deletes the events every mark is past.
    fn finish_contact_events(&self, through: i64) -> Result<(), StoreError>;

    /// Called as a full sync starts, before it reads the contact addresses: a mailbox without
    /// a backfill mark gets one at the current end of the contact change log, because this
    /// sync sees every contact stored by now, and every address added after this point is
    /// backfilled when it ends (one added while it runs, or before a crashed sync's retry,
    /// included). A mailbox that has a mark keeps it: its earlier decisions were made without
    /// the contacts after it. Returns whether a mark was placed.
    fn place_backfill_mark(&self, user_email: &str) -> Result<bool, StoreError>;

    /// The addresses added after `user_email`'s mark, reading at most `limit` events; `None`
    /// when the mailbox has no mark. One indexed read when nothing is pending: it runs at
    /// every poll of every mailbox. A paused mailbox keeps its mark and catches up when its
    /// sync is back on.
    fn pending_backfill(
        &self,
        user_email: &str,
        limit: usize,
    ) -> Result<Option<PendingBackfill>, StoreError>;

    /// Moves `user_email`'s mark to `through` (never back) once the addresses up to there are
    /// backfilled, and deletes the events every mark is past.
    fn finish_backfill(&self, user_email: &str, through: i64) -> Result<(), StoreError>;

    /// The recorded reason (`synced`, `no_qualifying_party`, ...) of those of `source_ids` that
    /// have a decision.
    fn decision_reasons(
        &self,
        user_email: &str,
        source: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError>;

    /// Records a decision, and for a synced one the activity, its source, its contact links
    /// and its attachments, all in one transaction. Recording the same decision again changes
    /// nothing.
    fn record(
        &self,
        source: &SourceRef,
        decision: &Decision,
        message: Option<MessageToStore<'_>>,
    ) -> Result<Recorded, StoreError> {
        let recorded = self.record_all(
            &[Record {
                source,
                decision,
                message,
            }],
            None,
        )?;
        Ok(recorded[0])
    }

    /// Records several decisions and, if given, moves the user's cursor, all in one
    /// transaction: after a crash either all of it is there or none.
    fn record_all(
        &self,
        records: &[Record<'_>],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Recorded>, StoreError>;

    /// Which of `source_ids` already have a decision for this user and source, so a resync
    /// neither fetches nor writes them again.
    fn decided(
        &self,
        user_email: &str,
        source: &str,
        source_ids: &[String],
    ) -> Result<HashSet<String>, StoreError>;

    fn sync_state(&self, user_email: &str) -> Result<Option<SyncState>, StoreError>;

    fn sync_states(&self) -> Result<Vec<SyncState>, StoreError>;

    /// Sets a user's status and last error; `ok` also stamps `last_sync_at`.
    fn set_sync_status(
        &self,
        user_email: &str,
        status: SyncStatus,
        last_error: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Records the end of one poll in one write: the status (`ok` also stamps
    /// `last_sync_at`), the last error, failures in a row and the next poll. An idle mailbox
    /// costs the store this one statement per poll.
    fn finish_poll(
        &self,
        user_email: &str,
        status: SyncStatus,
        last_error: Option<&str>,
        consecutive_failures: u32,
        next_poll_at: Option<i64>,
    ) -> Result<(), StoreError>;

    /// Records the daemon's view of a user's polling: failures in a row and the next poll.
    fn set_poll_schedule(
        &self,
        user_email: &str,
        consecutive_failures: u32,
        next_poll_at: Option<i64>,
    ) -> Result<(), StoreError>;

    /// Records the mailbox's watch (when it runs out; `None`: no watch) and how its new mail
    /// arrives (`None`: push is not configured).
    fn set_push(
        &self,
        user_email: &str,
        watch_expires_at: Option<i64>,
        state: Option<PushState>,
    ) -> Result<(), StoreError>;

    /// Records a reconciliation: how many gaps it found, and when.
    fn set_verify_result(&self, user_email: &str, gaps: u64, at: i64) -> Result<(), StoreError>;

    /// When a notification of `kind` last went out for this user.
    fn last_notified(&self, user_email: &str, kind: &str) -> Result<Option<i64>, StoreError>;

    fn set_notified(&self, user_email: &str, kind: &str, sent_at: i64) -> Result<(), StoreError>;

    /// Forgets a user's cursor (Gmail expired the history it pointed into), so the next sync is
    /// a full one.
    fn clear_cursor(&self, user_email: &str) -> Result<(), StoreError>;

    /// Sources synced in each hour since `since` (seconds since the epoch): `(hour start,
    /// count)` for the hours that had any, oldest first. For the status page's chart.
    fn synced_per_hour(&self, since: i64) -> Result<Vec<(i64, u64)>, StoreError>;

    /// Activity sources per user: how many activities each mailbox contributed.
    fn sources_per_user(&self) -> Result<std::collections::HashMap<String, u64>, StoreError>;

    /// Every stored source, for retroactive rules.
    fn stored_sources(&self) -> Result<Vec<StoredSource>, StoreError>;

    /// The stored sources of one activity (`conversation: false`) or of every activity of
    /// its conversation; empty when there is no such activity.
    fn sources_of(
        &self,
        activity_id: i64,
        conversation: bool,
    ) -> Result<Vec<StoredSource>, StoreError>;

    /// The stored source of one message of one mailbox, if it is synced.
    fn stored_source(
        &self,
        user_email: &str,
        source: &str,
        source_id: &str,
    ) -> Result<Option<StoredSource>, StoreError>;

    /// What `user_email`'s mailbox has said before about each of `conversations`: its
    /// conversation-wide override and the labels label rules matched on its stored copies,
    /// except the copies of the messages being decided (`source`, `source_ids`), whose own
    /// labels are read again. Conversations it said nothing about are left out.
    fn conversation_contexts(
        &self,
        user_email: &str,
        conversations: &[String],
        source: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, ConversationContext>, StoreError>;

    /// The choices `user_email`'s owner made for single copies among `source_ids` (`activity
    /// set` on their activity, or a skip): deciding those messages again keeps them.
    fn owner_copy_choices(
        &self,
        user_email: &str,
        source: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, Action>, StoreError>;

    /// Applies changes to stored sources in one transaction.
    fn apply_source_changes(&self, changes: &[SourceChange]) -> Result<AppliedChanges, StoreError>;

    /// [`Store::apply_source_changes`] for changes a mailbox's worker makes to that mailbox's
    /// copies (labels changed in Gmail): with several instances, fenced like every other
    /// write for the mailbox, so an instance that lost the lease changes nothing.
    fn apply_mailbox_changes(
        &self,
        _user_email: &str,
        changes: &[SourceChange],
    ) -> Result<AppliedChanges, StoreError> {
        self.apply_source_changes(changes)
    }

    /// `user_email`'s copies from `source` that carry labels a label rule matched: what a
    /// re-sync compares with the labels the mailbox has now.
    fn labelled_sources(
        &self,
        user_email: &str,
        source: &str,
    ) -> Result<Vec<StoredSource>, StoreError>;

    /// The ids of `source` messages in `user_email`'s mailbox that one of `rules` blocked.
    fn blocked_by(
        &self,
        user_email: &str,
        source: &str,
        rules: &[String],
    ) -> Result<Vec<String>, StoreError>;

    /// Applies an owner's choice, its conversation-wide record and its access-log entry in
    /// one transaction.
    fn apply_owner_choice(&self, choice: &OwnerChoice) -> Result<AppliedChanges, StoreError>;

    /// Forgets a message's decision so it is fetched and decided again (a `skip` label
    /// removed in Gmail): deleted only if it is `blocked_by_rule` by one of `rules` (the
    /// label rules that could have skipped it). Returns whether it was.
    fn forget_blocked_decision(
        &self,
        user_email: &str,
        source: &str,
        source_id: &str,
        rules: &[String],
    ) -> Result<bool, StoreError>;

    /// Removes everything that came from `user_email`'s mailbox: activities it alone
    /// contributed, its sources on shared ones, its decisions, sync state, notification
    /// history, refresh token and backfill mark, in one transaction. The access log is kept.
    fn purge_user(&self, user_email: &str) -> Result<Purged, StoreError>;

    /// The decision log of one user's mailbox, oldest first.
    fn decision_log(
        &self,
        user_email: &str,
        limit: Option<usize>,
    ) -> Result<Vec<LoggedDecision>, StoreError>;

    fn refresh_token(&self, user_email: &str) -> Result<Option<String>, StoreError>;

    fn set_refresh_token(
        &self,
        user_email: &str,
        client_id: &str,
        refresh_token: &str,
    ) -> Result<(), StoreError>;

    /// The read path: the activities `viewer` may see, newest first, each with only what the
    /// viewer may see of it. With `contact`, only activities linked to the contact owning that
    /// address (and only if the viewer may see that contact). Private content shown to a
    /// viewer who is not among its owners is recorded in the access log before it is
    /// returned (so a read can write, and fails if it cannot).
    fn feed(
        &self,
        viewer: &Viewer,
        contact: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<ActivityView>, StoreError>;

    /// Full-text search (subject, body, attachment names) through the same read path: only
    /// activities whose content this viewer is shown can match.
    fn search(
        &self,
        viewer: &Viewer,
        query: &str,
        limit: Option<usize>,
    ) -> Result<Vec<ActivityView>, StoreError>;

    /// `feed` for an export: the same read path, but every export that includes private
    /// content is recorded in the access log, even by an owner (exports leave the system).
    fn export(
        &self,
        viewer: &Viewer,
        contact: Option<&str>,
    ) -> Result<Vec<ActivityView>, StoreError>;

    /// The content of an attachment by its SHA-256 (lower-case hex), if the viewer may see the
    /// content of at least one activity carrying it and its content is kept. Goes through the
    /// read path, so an admin reading a private attachment is recorded in the access log.
    fn attachment_content(
        &self,
        viewer: &Viewer,
        sha256: &str,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Erases subject, body, attachment names, attachment content and search terms of the
    /// activities `selection` names, and removes attachment files nothing else keeps.
    /// Metadata stays. With `dry_run`, only counts.
    fn erase_content(
        &self,
        selection: &EraseSelection,
        dry_run: bool,
    ) -> Result<Erased, StoreError>;

    /// Retention: [`Store::erase_content`] of every activity whose message date (its
    /// recording time when it has no date) is before `cutoff` (seconds since the epoch).
    fn erase_content_before(&self, cutoff: i64, dry_run: bool) -> Result<Erased, StoreError> {
        self.erase_content(&EraseSelection::Before(cutoff), dry_run)
    }

    /// The access log, oldest first; `since` in seconds since the epoch.
    fn access_log(
        &self,
        since: Option<i64>,
        viewer: Option<&str>,
    ) -> Result<Vec<AccessLogEntry>, StoreError>;

    fn counts(&self) -> Result<Counts, StoreError>;

    // Several instances on one store (docs/spec/instances.md). A backend with one instance
    // (SQLite, whose daemon holds a lock file) keeps these defaults: the instance holds every
    // mailbox and runs everything, and nothing is recorded.

    /// Records this process as an instance; from now on every write for a mailbox checks
    /// that this instance holds its lease ([`StoreError::Fenced`] otherwise).
    fn join(&self, _instance: &InstanceInfo) -> Result<(), StoreError> {
        Ok(())
    }

    /// One round of leases for the mailboxes `wanted` (the sync-enabled users): the
    /// heartbeat, renewing what this instance holds, releasing what is over its fair share
    /// or no longer wanted, claiming free or expired ones up to its share, and the single
    /// runner's lease.
    fn lease_round(
        &self,
        wanted: &[String],
        _lease: std::time::Duration,
    ) -> Result<LeaseRound, StoreError> {
        Ok(LeaseRound {
            held: wanted.iter().cloned().collect(),
            runner: true,
            live_instances: 1,
            config_mismatches: 0,
        })
    }

    /// Asks the instance holding `user_email`'s lease to sync the mailbox now (a push
    /// notification this instance pulled for a mailbox it does not hold). False when no live
    /// instance holds it, and always with SQLite, whose one daemon holds every mailbox.
    fn forward_wake(&self, _user_email: &str) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// The wake-ups other instances left for this instance's mailboxes, each handed out
    /// once.
    fn take_wakes(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Releases every lease this instance holds and removes its record (a clean stop: the
    /// others take its mailboxes over at their next round, without waiting for expiry).
    fn leave(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The live instances, oldest first.
    fn instances(&self) -> Result<Vec<InstanceView>, StoreError> {
        Ok(Vec::new())
    }

    /// Every mailbox lease.
    fn leases(&self) -> Result<Vec<LeaseView>, StoreError> {
        Ok(Vec::new())
    }
}
