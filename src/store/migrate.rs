//! Moving a store between backends (`mailsync store migrate --from … --to …`): every table
//! copied in key order, a batch per transaction, each row written as an upsert, so an
//! interrupted copy is finished by running it again and a finished one changes nothing when
//! run again; then the search index rebuilt, and every table compared by row count and an
//! order-independent checksum.

use std::path::PathBuf;

use super::tables::{Cell, TABLES, TableSpec, Tables};
use super::{PostgresSettings, PostgresStore, SqliteStore, StoreError};

/// Rows per read and per write transaction.
const BATCH: usize = 500;

/// One side of a migration.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Sqlite(PathBuf),
    Postgres(PostgresSettings),
}

impl Endpoint {
    /// A `postgres://` or `postgresql://` URL, or a SQLite file's path. The password of a
    /// database comes from `password_file`, `PGPASSWORD` or the passfile, never the URL.
    pub fn parse(text: &str, password_file: Option<PathBuf>) -> Result<Endpoint, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let parsed: postgres::Config = text
                .parse()
                .map_err(|error| format!("not a PostgreSQL URL ({error})"))?;
            if parsed.get_password().is_some() {
                return Err(
                    "the URL holds a password: use --password-file, PGPASSWORD or ~/.pgpass"
                        .to_string(),
                );
            }
            Ok(Endpoint::Postgres(PostgresSettings {
                url: text.to_string(),
                password_file,
            }))
        } else {
            Ok(Endpoint::Sqlite(PathBuf::from(text)))
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Sqlite(path) => write!(f, "{}", path.display()),
            Endpoint::Postgres(settings) => f.write_str(&settings.url),
        }
    }
}

/// A store opened for copying.
pub type OpenedTables = Box<dyn Tables + Send + Sync>;

/// The source, which must exist (a SQLite file is brought to the current schema first).
pub fn open_source(endpoint: &Endpoint) -> Result<OpenedTables, StoreError> {
    Ok(match endpoint {
        Endpoint::Sqlite(path) => {
            if !path.is_file() {
                return Err(StoreError::Conflict(format!(
                    "the source store {} does not exist",
                    path.display()
                )));
            }
            Box::new(SqliteStore::open(path)?)
        }
        Endpoint::Postgres(settings) => Box::new(PostgresStore::open_for_looking(settings)?),
    })
}

/// The target, created and migrated if needed.
pub fn open_target(endpoint: &Endpoint) -> Result<OpenedTables, StoreError> {
    Ok(match endpoint {
        Endpoint::Sqlite(path) => Box::new(SqliteStore::open(path)?),
        Endpoint::Postgres(settings) => Box::new(PostgresStore::open(settings)?),
    })
}

/// Rows every table of `source` holds, for a progress bar's length.
pub fn total_rows(source: &dyn Tables) -> Result<u64, StoreError> {
    TABLES.iter().map(|table| source.count_rows(table)).sum()
}

/// Copies every table; `progress` is told how many rows each batch wrote.
pub fn copy(
    source: &dyn Tables,
    target: &dyn Tables,
    progress: &mut dyn FnMut(&'static str, u64),
) -> Result<(), StoreError> {
    for table in TABLES {
        if table.name == "contact_events" {
            target.clear_contact_events()?;
        }
        let mut after: Option<Vec<Cell>> = None;
        loop {
            let rows = source.read_rows(table, after.as_deref(), BATCH)?;
            let Some(last) = rows.last() else {
                break;
            };
            after = Some(key_of(table, last));
            target.write_rows(table, &rows)?;
            progress(table.name, rows.len() as u64);
            if rows.len() < BATCH {
                break;
            }
        }
    }
    target.finish_copy()
}

fn key_of(table: &TableSpec, row: &[Cell]) -> Vec<Cell> {
    table
        .key
        .iter()
        .map(|key| {
            let index = table
                .columns
                .iter()
                .position(|column| column == key)
                .expect("a key is one of its table's columns");
            row[index].clone()
        })
        .collect()
}

/// One table compared on both sides.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableCheck {
    pub table: &'static str,
    pub source_rows: u64,
    pub target_rows: u64,
    pub source_checksum: String,
    pub target_checksum: String,
}

impl TableCheck {
    pub fn matches(&self) -> bool {
        self.source_rows == self.target_rows && self.source_checksum == self.target_checksum
    }
}

/// Every table's rows and checksum on both sides.
pub fn verify(source: &dyn Tables, target: &dyn Tables) -> Result<Vec<TableCheck>, StoreError> {
    TABLES
        .iter()
        .map(|table| {
            let (source_rows, source_checksum) = checksum(source, table)?;
            let (target_rows, target_checksum) = checksum(target, table)?;
            Ok(TableCheck {
                table: table.name,
                source_rows,
                target_rows,
                source_checksum,
                target_checksum,
            })
        })
        .collect()
}

/// The rows of a table and the sum of their SHA-256 (its first 16 bytes, wrapping): equal
/// for equal sets of rows whatever order each backend reads them in.
fn checksum(tables: &dyn Tables, table: &TableSpec) -> Result<(u64, String), StoreError> {
    use sha2::{Digest, Sha256};
    let mut sum: u128 = 0;
    let mut rows = 0u64;
    let mut after: Option<Vec<Cell>> = None;
    let mut bytes = Vec::new();
    loop {
        let batch = tables.read_rows(table, after.as_deref(), BATCH)?;
        let Some(last) = batch.last() else {
            break;
        };
        after = Some(key_of(table, last));
        for row in &batch {
            bytes.clear();
            for cell in row {
                cell.canonical(&mut bytes);
            }
            let digest = Sha256::digest(&bytes);
            sum = sum.wrapping_add(u128::from_be_bytes(
                digest[..16].try_into().expect("16 bytes"),
            ));
            rows += 1;
        }
        if batch.len() < BATCH {
            break;
        }
    }
    Ok((rows, format!("{sum:032x}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_urls_or_paths_and_never_hold_a_password() {
        assert!(matches!(
            Endpoint::parse("/var/lib/mailsync/crm.sqlite3", None),
            Ok(Endpoint::Sqlite(_))
        ));
        assert!(matches!(
            Endpoint::parse("postgresql://mailsync@db/crm", None),
            Ok(Endpoint::Postgres(_))
        ));
        let refused = Endpoint::parse("postgres://u:hunter2@db/crm", None).unwrap_err();
        assert!(
            refused.contains("password") && !refused.contains("hunter2"),
            "{refused}"
        );
    }

    #[test]
    fn every_table_keys_on_its_own_columns() {
        for table in TABLES {
            for key in table.key.iter().chain(table.booleans) {
                assert!(table.columns.contains(key), "{}.{key}", table.name);
            }
        }
    }
}
