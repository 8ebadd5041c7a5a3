//! The PostgreSQL store's tables as rows, for `store migrate`.

use postgres::types::ToSql;

use super::PostgresStore;
use crate::store::StoreError;
use crate::store::read_rules::index_words;
use crate::store::tables::{Cell, TableSpec, Tables};

/// Tables whose id is drawn from a sequence, which must move past copied ids.
const SERIAL_TABLES: [&str; 4] = ["contacts", "activities", "access_log", "contact_events"];

/// Activities indexed per statement when the search index is rebuilt.
const INDEX_BATCH: i64 = 1_000;

/// A cell as a bound value for `column`: booleans as booleans, every other as its text or
/// number; NULL is written into the statement, so that its type never has to be guessed.
enum Bound {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
}

impl Bound {
    fn of(table: &TableSpec, column: &str, cell: &Cell) -> Bound {
        match cell {
            Cell::Null => Bound::Null,
            Cell::Int(value) if table.is_boolean(column) => Bound::Bool(*value != 0),
            Cell::Text(text) if table.is_boolean(column) => {
                Bound::Bool(text == "1" || text == "true")
            }
            Cell::Int(value) => Bound::Int(*value),
            Cell::Text(text) => Bound::Text(text.clone()),
        }
    }
}

/// The SQL for `values` (`$n` with a cast, or `NULL`) and the parameters the `$n` stand for.
fn placeholders(values: &[Bound]) -> (Vec<String>, Vec<&(dyn ToSql + Sync)>) {
    let mut sql = Vec::with_capacity(values.len());
    let mut parameters: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(values.len());
    for value in values {
        let (cast, parameter): (&str, &(dyn ToSql + Sync)) = match value {
            Bound::Null => {
                sql.push("NULL".to_string());
                continue;
            }
            Bound::Int(value) => ("BIGINT", value),
            Bound::Bool(value) => ("BOOLEAN", value),
            Bound::Text(value) => ("TEXT", value),
        };
        parameters.push(parameter);
        sql.push(format!("${}::{cast}", parameters.len()));
    }
    (sql, parameters)
}

fn cell(row: &postgres::Row, index: usize, table: &TableSpec) -> Result<Cell, StoreError> {
    let column = row.columns()[index].type_().clone();
    let name = table.columns[index];
    Ok(if table.is_boolean(name) {
        match row.try_get::<_, Option<bool>>(index)? {
            None => Cell::Null,
            Some(value) => Cell::Int(i64::from(value)),
        }
    } else if column == postgres::types::Type::INT8 {
        row.try_get::<_, Option<i64>>(index)?
            .map_or(Cell::Null, Cell::Int)
    } else {
        row.try_get::<_, Option<String>>(index)?
            .map_or(Cell::Null, Cell::Text)
    })
}

impl Tables for PostgresStore {
    fn count_rows(&self, table: &TableSpec) -> Result<u64, StoreError> {
        let count: i64 = self
            .client()?
            .query_one(&format!("SELECT count(*) FROM {}", table.name), &[])?
            .get(0);
        Ok(count as u64)
    }

    fn read_rows(
        &self,
        table: &TableSpec,
        after: Option<&[Cell]>,
        limit: usize,
    ) -> Result<Vec<Vec<Cell>>, StoreError> {
        let key = table.key.join(", ");
        let bound: Vec<Bound> = after
            .unwrap_or_default()
            .iter()
            .zip(table.key)
            .map(|(cell, column)| Bound::of(table, column, cell))
            .collect();
        let (values, parameters) = placeholders(&bound);
        let filter = if bound.is_empty() {
            String::new()
        } else {
            format!("WHERE ({key}) > ({})", values.join(", "))
        };
        let rows = self.client()?.query(
            &format!(
                "SELECT {} FROM {} {filter} ORDER BY {key} LIMIT {limit}",
                table.columns.join(", "),
                table.name
            ),
            &parameters,
        )?;
        rows.iter()
            .map(|row| {
                (0..table.columns.len())
                    .map(|index| cell(row, index, table))
                    .collect()
            })
            .collect()
    }

    fn write_rows(&self, table: &TableSpec, rows: &[Vec<Cell>]) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut transaction = client.transaction()?;
        let on_conflict = table.on_conflict();
        for row in rows {
            let bound: Vec<Bound> = row
                .iter()
                .zip(table.columns)
                .map(|(cell, column)| Bound::of(table, column, cell))
                .collect();
            let (values, parameters) = placeholders(&bound);
            transaction.execute(
                &format!(
                    "INSERT INTO {} ({}) VALUES ({}) {on_conflict}",
                    table.name,
                    table.columns.join(", "),
                    values.join(", "),
                ),
                &parameters,
            )?;
        }
        transaction.commit()?;
        Ok(())
    }

    fn clear_contact_events(&self) -> Result<(), StoreError> {
        self.client()?.execute("DELETE FROM contact_events", &[])?;
        Ok(())
    }

    fn finish_copy(&self) -> Result<(), StoreError> {
        let mut client = self.client()?;
        for table in SERIAL_TABLES {
            client.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                                   GREATEST((SELECT max(id) FROM {table}), 1))"
                ),
                &[],
            )?;
        }
        // The search index from the activities whose content is kept, its words split and
        // folded as when they were first stored.
        client.execute("DELETE FROM activity_search", &[])?;
        let mut after = 0i64;
        loop {
            let rows = client.query(
                "SELECT a.id, coalesce(a.subject, ''), coalesce(a.body, ''),
                        coalesce((SELECT string_agg(t.file_name, ' ') FROM attachments t
                                  WHERE t.activity_id = a.id), '')
                 FROM activities a
                 WHERE a.content_erased_at IS NULL AND a.id > $1
                 ORDER BY a.id LIMIT $2",
                &[&after, &INDEX_BATCH],
            )?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.get(0);
            let mut transaction = client.transaction()?;
            for row in &rows {
                let (subject, body, names): (String, String, String) =
                    (row.get(1), row.get(2), row.get(3));
                transaction.execute(
                    "INSERT INTO activity_search (activity_id, document)
                     VALUES ($1, to_tsvector('simple', $2) || to_tsvector('simple', $3) || to_tsvector('simple', $4))
                     ON CONFLICT (activity_id) DO NOTHING",
                    &[
                        &row.get::<_, i64>(0),
                        &index_words(&subject),
                        &index_words(&body),
                        &index_words(&names),
                    ],
                )?;
            }
            transaction.commit()?;
        }
        // A copied database has no statistics yet, and without them the planner reads the
        // read path's pages the slow way until autovacuum gets round to it.
        client.batch_execute("ANALYZE")?;
        Ok(())
    }
}
