//! The SQLite store's tables as rows, for `store migrate`.

use rusqlite::types::{Value, ValueRef};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::tables::{Cell, TableSpec, Tables};

fn cell(value: ValueRef<'_>) -> Cell {
    match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(value) => Cell::Int(value),
        ValueRef::Real(value) => Cell::Int(value as i64),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            Cell::Text(String::from_utf8_lossy(bytes).into_owned())
        }
    }
}

fn value(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Int(value) => Value::Integer(*value),
        Cell::Text(text) => Value::Text(text.clone()),
    }
}

impl Tables for SqliteStore {
    fn count_rows(&self, table: &TableSpec) -> Result<u64, StoreError> {
        let connection = self.connection()?;
        let count: i64 =
            connection.query_row(&format!("SELECT count(*) FROM {}", table.name), [], |row| {
                row.get(0)
            })?;
        Ok(count as u64)
    }

    fn read_rows(
        &self,
        table: &TableSpec,
        after: Option<&[Cell]>,
        limit: usize,
    ) -> Result<Vec<Vec<Cell>>, StoreError> {
        let connection = self.connection()?;
        let key = table.key.join(", ");
        let placeholders = vec!["?"; table.key.len()].join(", ");
        let filter = match after {
            Some(_) => format!("WHERE ({key}) > ({placeholders})"),
            None => String::new(),
        };
        let mut statement = connection.prepare(&format!(
            "SELECT {} FROM {} {filter} ORDER BY {key} LIMIT {limit}",
            table.columns.join(", "),
            table.name,
        ))?;
        let bound: Vec<Value> = after.unwrap_or_default().iter().map(value).collect();
        let rows = statement
            .query_map(rusqlite::params_from_iter(bound), |row| {
                (0..table.columns.len())
                    .map(|index| row.get_ref(index).map(cell))
                    .collect::<Result<Vec<Cell>, _>>()
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn write_rows(&self, table: &TableSpec, rows: &[Vec<Cell>]) -> Result<(), StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction()?;
        {
            let on_conflict = table.on_conflict();
            let mut statement = transaction.prepare(&format!(
                "INSERT INTO {} ({}) VALUES ({}) {on_conflict}",
                table.name,
                table.columns.join(", "),
                vec!["?"; table.columns.len()].join(", "),
            ))?;
            for row in rows {
                statement.execute(rusqlite::params_from_iter(row.iter().map(value)))?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    fn clear_contact_events(&self) -> Result<(), StoreError> {
        self.connection()?
            .execute("DELETE FROM contact_events", [])?;
        Ok(())
    }

    fn finish_copy(&self) -> Result<(), StoreError> {
        let mut connection = self.connection()?;
        let transaction = connection.transaction()?;
        // The index is contentless: rebuilt whole from the activities whose content is kept.
        transaction.execute("DELETE FROM activity_search", [])?;
        transaction.execute(
            "INSERT INTO activity_search (rowid, subject, body, attachment_names)
             SELECT a.id, coalesce(a.subject, ''), coalesce(a.body, ''),
                    coalesce((SELECT group_concat(t.file_name, ' ') FROM attachments t
                              WHERE t.activity_id = a.id AND t.file_name IS NOT NULL), '')
             FROM activities a WHERE a.content_erased_at IS NULL",
            [],
        )?;
        transaction.commit()?;
        Ok(())
    }
}
