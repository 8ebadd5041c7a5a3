//! Scratch PostgreSQL databases for tests: each test gets a database of its own, created
//! empty and dropped when it ends, on the server `MAILSYNC_TEST_POSTGRES` names
//! (`postgresql://postgres@127.0.0.1:5432` by default: the machine's PostgreSQL 15 with trust
//! authentication, which `.ci/run` starts when it is not running).

use std::sync::atomic::{AtomicU32, Ordering};

/// The server tests use, without a database name.
pub fn server_url() -> String {
    std::env::var("MAILSYNC_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432".to_string())
        .trim_end_matches('/')
        .to_string()
}

fn admin() -> postgres::Client {
    let url = format!("{}/postgres", server_url());
    postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|error| {
        panic!(
            "PostgreSQL is not reachable at {url} ({error}): start it (`.ci/run` does, with pg_ctlcluster) \
             or point MAILSYNC_TEST_POSTGRES at a server where this user may create databases"
        )
    })
}

/// A database that exists for as long as this value does.
pub struct ScratchDatabase {
    pub name: String,
}

impl ScratchDatabase {
    pub fn create() -> ScratchDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "mailsync_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = admin();
        // One statement per call: CREATE DATABASE cannot run inside the implicit transaction
        // of a multi-statement batch.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&sql)
                .unwrap_or_else(|error| panic!("{sql}: {error:?}"));
        }
        ScratchDatabase { name }
    }

    /// The URL a store config names (`[store] url`).
    pub fn url(&self) -> String {
        format!("{}/{}?sslmode=disable", server_url(), self.name)
    }

    /// A client of its own, as the CRM would have.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }

    /// Every row of every table, as text, sorted: two equal dumps mean two equal stores.
    pub fn dump(&self) -> Vec<String> {
        let mut client = self.client();
        let tables: Vec<String> = client
            .query(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut lines = Vec::new();
        for table in tables {
            let mut rows: Vec<String> = client
                .query(&format!("SELECT t::TEXT FROM {table} t"), &[])
                .unwrap()
                .iter()
                .map(|row| format!("{table}: {}", row.get::<_, String>(0)))
                .collect();
            rows.sort();
            lines.extend(rows);
        }
        lines
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let _ = admin().batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}
