//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mailsync::config::Config;
use mailsync::rules::{Policy, RuleSet};

pub mod gmail;
pub mod logs;
pub mod postgres;
pub mod scenario;
pub mod smtp;
pub mod world;

/// The demo's own files (`examples/demo`): config, rules, contacts and three mailboxes, which
/// `mailsync demo` compiles in and many tests use as a small, realistic company.
pub fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo")
}

/// The repository's `tests/fixtures` folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A policy from config and rules text, as if read from `/cfg/mailsync.toml`.
pub fn policy(config: &str, rules: &str) -> Policy {
    let config = Config::from_toml(Path::new("/cfg/mailsync.toml"), config.to_string())
        .unwrap_or_else(|problems| panic!("test config invalid:\n{problems}"));
    let rules = RuleSet::from_files(
        vec![(PathBuf::from("/cfg/rules/test.toml"), rules.to_string())],
        &config,
    )
    .unwrap_or_else(|problems| panic!("test rules invalid:\n{problems}"));
    Policy::new(config, rules)
}

/// Every row of every table, as text, in a stable order: two equal dumps mean two equal
/// stores.
pub fn dump_store(path: &Path) -> Vec<String> {
    let connection = rusqlite::Connection::open(path).expect("open store for dump");
    let mut tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables.sort();
    let mut lines = Vec::new();
    for table in tables {
        let rows = sorted_rows(&connection, &format!("SELECT * FROM {table}"));
        lines.extend(rows.into_iter().map(|row| format!("{table}: {row}")));
    }
    lines
}

/// The rows `sql` selects, each as its cells' debug text joined by ` | `, sorted: equal
/// lists mean equal results whatever order SQLite returned them in.
pub fn sorted_rows(connection: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let mut statement = connection.prepare(sql).unwrap();
    let columns = statement.column_count();
    let mut rows: Vec<String> = statement
        .query_map([], |row| {
            let mut cells = Vec::new();
            for index in 0..columns {
                let value: rusqlite::types::Value = row.get(index)?;
                cells.push(format!("{value:?}"));
            }
            Ok(cells.join(" | "))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.sort();
    rows
}
