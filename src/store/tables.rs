//! The store's tables as rows, for moving a store from one backend to the other
//! (`store migrate`): which tables hold data, in which order they are copied, their columns
//! and keys, and the two operations each backend offers on them. Both backends have the same
//! tables with the same columns; PostgreSQL has booleans where SQLite has 0 and 1.

use super::StoreError;

/// One value of a row, as both backends can hold it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

impl Cell {
    /// Bytes that identify the value, for checksums that must agree across backends.
    pub fn canonical(&self, into: &mut Vec<u8>) {
        match self {
            Cell::Null => into.push(0),
            Cell::Int(value) => {
                into.push(1);
                into.extend_from_slice(&value.to_be_bytes());
            }
            Cell::Text(text) => {
                into.push(2);
                into.extend_from_slice(&(text.len() as u64).to_be_bytes());
                into.extend_from_slice(text.as_bytes());
            }
        }
    }
}

/// A table that holds data, as the copy sees it.
#[derive(Debug)]
pub struct TableSpec {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    /// The primary key: rows are read in its order, and a row already there is replaced.
    pub key: &'static [&'static str],
    /// Columns that are booleans in PostgreSQL (0 and 1 in SQLite).
    pub booleans: &'static [&'static str],
}

impl TableSpec {
    pub fn is_boolean(&self, column: &str) -> bool {
        self.booleans.contains(&column)
    }

    /// The upsert both backends write a copied row with: `ON CONFLICT (key)` replaces every
    /// other column, so copying a row again changes nothing.
    pub fn on_conflict(&self) -> String {
        let updates: Vec<String> = self
            .columns
            .iter()
            .filter(|column| !self.key.contains(column))
            .map(|column| format!("{column} = excluded.{column}"))
            .collect();
        let action = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        format!("ON CONFLICT ({}) {action}", self.key.join(", "))
    }
}

/// Every table with data, parents before children. Search indexes are not copied: the
/// target rebuilds its own from the activities. Lease and instance tables are not copied
/// either: they describe running instances, not data.
pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "contacts",
        columns: &["id", "name", "created_at", "no_sync"],
        key: &["id"],
        booleans: &["no_sync"],
    },
    TableSpec {
        name: "contact_emails",
        columns: &["email", "contact_id"],
        key: &["email"],
        booleans: &[],
    },
    TableSpec {
        name: "contact_visible_to",
        columns: &["contact_id", "user_email"],
        key: &["contact_id", "user_email"],
        booleans: &[],
    },
    TableSpec {
        name: "activities",
        columns: &[
            "id",
            "message_key",
            "message_id",
            "date",
            "direction",
            "subject",
            "body",
            "in_reply_to",
            "created_at",
            "fingerprint",
            "automated",
            "calendar_only",
            "content_erased_at",
            "conversation",
        ],
        key: &["id"],
        booleans: &["automated", "calendar_only"],
    },
    TableSpec {
        name: "activity_sources",
        columns: &[
            "activity_id",
            "user_email",
            "source",
            "source_id",
            "visibility",
            "direction",
            "rules",
            "synced_at",
            "parties",
            "decided_by",
            "labels",
        ],
        key: &["activity_id", "user_email"],
        booleans: &[],
    },
    TableSpec {
        name: "conversation_overrides",
        columns: &["user_email", "conversation", "choice", "set_at"],
        key: &["user_email", "conversation"],
        booleans: &[],
    },
    TableSpec {
        name: "activity_contacts",
        columns: &["activity_id", "contact_id", "address", "date"],
        key: &["activity_id", "contact_id", "address"],
        booleans: &[],
    },
    TableSpec {
        name: "attachments",
        columns: &[
            "activity_id",
            "position",
            "file_name",
            "content_type",
            "size_bytes",
            "sha256",
            "stored",
            "too_large",
        ],
        key: &["activity_id", "position"],
        booleans: &["stored", "too_large"],
    },
    TableSpec {
        name: "decisions",
        columns: &[
            "user_email",
            "source",
            "source_id",
            "decision",
            "reason",
            "rules",
            "activity_id",
            "decided_at",
            "detail",
            "conversation_hash",
            "labels",
        ],
        key: &["user_email", "source", "source_id"],
        booleans: &[],
    },
    TableSpec {
        name: "sync_state",
        columns: &[
            "user_email",
            "state",
            "history_id",
            "last_sync_at",
            "last_error",
            "consecutive_failures",
            "next_poll_at",
            "last_verify_at",
            "verify_gaps",
            "watch_expires_at",
            "push_state",
        ],
        key: &["user_email"],
        booleans: &[],
    },
    TableSpec {
        name: "oauth_tokens",
        columns: &["user_email", "client_id", "refresh_token", "updated_at"],
        key: &["user_email"],
        booleans: &[],
    },
    TableSpec {
        name: "notifications",
        columns: &["user_email", "kind", "sent_at"],
        key: &["user_email", "kind"],
        booleans: &[],
    },
    TableSpec {
        name: "access_log",
        columns: &[
            "id",
            "viewer",
            "activity_id",
            "message_id",
            "path",
            "viewer_is_owner",
            "accessed_at",
            "change",
        ],
        key: &["id"],
        booleans: &["viewer_is_owner"],
    },
    TableSpec {
        name: "backfill_marks",
        columns: &["user_email", "covered_through"],
        key: &["user_email"],
        booleans: &[],
    },
    TableSpec {
        name: "event_marks",
        columns: &["name", "covered_through"],
        key: &["name"],
        booleans: &[],
    },
    // Last: copying contact_emails fired the target's own triggers, whose events the
    // source's log replaces.
    TableSpec {
        name: "contact_events",
        columns: &["id", "kind", "email", "contact_id", "at"],
        key: &["id"],
        booleans: &[],
    },
];

/// What a backend offers for copying a store.
pub trait Tables {
    fn count_rows(&self, table: &TableSpec) -> Result<u64, StoreError>;

    /// Up to `limit` rows in key order, after the row whose key is `after`.
    fn read_rows(
        &self,
        table: &TableSpec,
        after: Option<&[Cell]>,
        limit: usize,
    ) -> Result<Vec<Vec<Cell>>, StoreError>;

    /// Writes `rows` in one transaction; a row whose key is already there is replaced by it,
    /// so copying again changes nothing.
    fn write_rows(&self, table: &TableSpec, rows: &[Vec<Cell>]) -> Result<(), StoreError>;

    /// Before `contact_events` is copied: removes the events the copy itself made.
    fn clear_contact_events(&self) -> Result<(), StoreError>;

    /// After the copy: the search index rebuilt from the activities, id sequences moved
    /// past the copied ids.
    fn finish_copy(&self) -> Result<(), StoreError>;
}
