//! The store-level world of `store.rs` and `privacy.rs`: a policy (config and rules as text)
//! and a real store, with its migrations, in a folder of its own: a SQLite file, or a scratch
//! PostgreSQL database. Tests declared with `conformance!` run once on each backend (the
//! world reads which from the thread the test runs on), so one test body is the contract
//! for both. Messages go through
//! `sync::process`, as the daemon's sync records them; readers are `Viewer`s of the config's
//! users. One world for both files, so a test reads the same way in either:
//!
//! ```ignore
//! let mut world = World::new(CONFIG, RULES).with_contact(contact("Alice", &[ALICE], &[]));
//! world.replay("dave@abcorp.com", "1", MESSAGE);
//! let feed = world.store.feed(&world.viewer("erin@abcorp.com"), None, None);
//! ```

use std::path::{Path, PathBuf};

use mailsync::rules::Policy;
use mailsync::source::SourceMessage;
use mailsync::store::{
    NewContact, PostgresSettings, PostgresStore, Recorded, SharedStore, SqliteStore, StoreOptions,
    Viewer,
};
use mailsync::sync::{self, Mode, Processed};

/// Which store a world is made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Sqlite) };
}

/// Runs `test` with every world it makes on `backend`.
pub fn on_backend(backend: Backend, test: impl FnOnce()) {
    BACKEND.with(|cell| cell.set(backend));
    test();
}

/// The backend worlds are made on in this test.
pub fn backend() -> Backend {
    BACKEND.with(|cell| cell.get())
}

/// Declares a test that runs once per backend: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! conformance {
    ($(#[$meta:meta])* fn $name:ident() $body:block) => {
        mod $name {
            #[test]
            fn sqlite() {
                $crate::common::world::on_backend($crate::common::world::Backend::Sqlite, super::$name)
            }
            #[test]
            fn postgres() {
                $crate::common::world::on_backend($crate::common::world::Backend::Postgres, super::$name)
            }
        }
        $(#[$meta])*
        fn $name() $body
    };
}

pub struct World {
    pub policy: Policy,
    pub store: SharedStore,
    pub backend: Backend,
    /// The store file of a SQLite world.
    pub path: PathBuf,
    /// The database of a PostgreSQL world, dropped after the store is closed.
    pub database: Option<super::postgres::ScratchDatabase>,
    /// The world's folder: the store, and what the config puts there (attachments). Declared
    /// last, so it is removed after the store is closed.
    pub dir: tempfile::TempDir,
}

/// A contact to add, visible to `visible_to` (empty: everyone).
pub fn contact(name: &str, emails: &[&str], visible_to: &[&str]) -> NewContact {
    NewContact {
        name: Some(name.to_string()),
        emails: emails.iter().map(|e| e.to_string()).collect(),
        visible_to: Some(visible_to.iter().map(|e| e.to_string()).collect()),
        no_sync: None,
    }
}

impl World {
    /// A world under `config` and `rules` (as if read from `/cfg`), with an empty store.
    pub fn new(config: &str, rules: &str) -> World {
        World::in_folder(|_| config.to_string(), rules)
    }

    /// A world whose config names places in the world's own folder (an attachments folder):
    /// `config` is given that folder.
    pub fn in_folder(config: impl FnOnce(&Path) -> String, rules: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let policy = super::policy(&config(dir.path()), rules);
        let path = dir.path().join("crm.sqlite3");
        // The store treats attachments and retention as the config says, as the daemon's does.
        let options = StoreOptions::from_config(&policy.config);
        let (store, database): (SharedStore, _) = match backend() {
            Backend::Sqlite => (
                std::sync::Arc::new(SqliteStore::open(&path).unwrap().with_options(options)),
                None,
            ),
            Backend::Postgres => {
                let database = super::postgres::ScratchDatabase::create();
                let settings = PostgresSettings {
                    url: database.url(),
                    password_file: None,
                };
                let store = PostgresStore::open(&settings)
                    .unwrap()
                    .with_options(options);
                (std::sync::Arc::new(store), Some(database))
            }
        };
        World {
            policy,
            store,
            backend: backend(),
            path,
            database,
            dir,
        }
    }

    /// Runs `sql` on a connection of its own, as a CRM writing its tables directly would;
    /// `Err` with the database's message when it fails. `sql` is plain SQL both backends
    /// read alike (no parameters).
    pub fn crm_execute(&self, sql: &str) -> Result<(), String> {
        match &self.database {
            Some(database) => database
                .client()
                .batch_execute(sql)
                .map_err(|error| format!("{error:?}")),
            None => rusqlite::Connection::open(&self.path)
                .unwrap()
                .execute_batch(sql)
                .map_err(|error| error.to_string()),
        }
    }

    /// The integer the first column of the first row of `sql` holds (a count, an id from
    /// `RETURNING id`), read on a connection of its own.
    pub fn crm_number(&self, sql: &str) -> i64 {
        match &self.database {
            Some(database) => database.client().query_one(sql, &[]).unwrap().get(0),
            None => rusqlite::Connection::open(&self.path)
                .unwrap()
                .query_row(sql, [], |row| row.get(0))
                .unwrap(),
        }
    }

    /// Every row of every table of the store, as text, sorted: equal dumps, equal stores.
    pub fn dump(&self) -> Vec<String> {
        match &self.database {
            Some(database) => database.dump(),
            None => super::dump_store(&self.path),
        }
    }

    pub fn with_contact(self, contact: NewContact) -> World {
        self.store.add_contact(&contact).unwrap();
        self
    }

    /// Records one message of `user`'s mailbox (a `dir:` source) as the sync would.
    pub fn replay(&mut self, user: &str, source_id: &str, text: &str) -> Processed {
        self.replay_labelled(user, source_id, text, &[])
    }

    /// [`World::replay`] of a message carrying Gmail labels (names, as Takeout writes them).
    pub fn replay_labelled(
        &mut self,
        user: &str,
        source_id: &str,
        text: &str,
        labels: &[&str],
    ) -> Processed {
        let user = self.policy.config.user_by_address(user).unwrap().clone();
        sync::process(
            &self.policy,
            &*self.store,
            &user,
            "dir:/test",
            &SourceMessage {
                source_id: source_id.to_string(),
                raw: text.as_bytes().to_vec(),
                labels: labels.iter().map(|label| label.to_string()).collect(),
            },
            Mode::Write,
        )
        .unwrap()
    }

    /// Records several messages of `user`'s mailbox in one batch, as the Gmail sync does:
    /// one `prepare_all` and one `record_all`. Returns what each record did, in order.
    pub fn replay_batch(&mut self, user: &str, messages: &[(&str, &str)]) -> Vec<Recorded> {
        let user = self.policy.config.user_by_address(user).unwrap().clone();
        let messages: Vec<SourceMessage> = messages
            .iter()
            .map(|(source_id, text)| SourceMessage {
                source_id: source_id.to_string(),
                raw: text.as_bytes().to_vec(),
                labels: Vec::new(),
            })
            .collect();
        let prepared =
            sync::prepare_all(&self.policy, &*self.store, &user, "dir:/test", &messages).unwrap();
        let records: Vec<_> = prepared.iter().map(sync::Prepared::record).collect();
        self.store.record_all(&records, None).unwrap()
    }

    /// The user `email` reading, with `admins_see_private_emails` as the config says.
    pub fn viewer(&self, email: &str) -> Viewer {
        self.viewer_with(email, self.policy.config.admins_see_private_emails)
    }

    /// The user `email` reading, with `admins_see_private_emails` set as given (to compare
    /// both settings in one world).
    pub fn viewer_with(&self, email: &str, admins_see_private_emails: bool) -> Viewer {
        let user = self.policy.config.user_by_address(email).unwrap();
        Viewer::of(user, admins_see_private_emails)
    }

    /// The attachments folder the config names.
    pub fn attachments_dir(&self) -> PathBuf {
        self.policy
            .config
            .attachments_dir
            .clone()
            .expect("the config names an attachments_dir")
    }

    /// Every file under the attachments folder, relative to it, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut files = Vec::new();
        let root = self.attachments_dir();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    files.push(
                        path.strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        files.sort();
        files
    }

    /// How many activities the full-text index finds for `word`, read straight from the
    /// database.
    pub fn search_index_matches(&self, word: &str) -> i64 {
        if let Some(database) = &self.database {
            return database
                .client()
                .query_one(
                    "SELECT count(*) FROM activity_search WHERE document @@ plainto_tsquery('simple', $1)",
                    &[&word],
                )
                .unwrap()
                .get(0);
        }
        let connection = rusqlite::Connection::open(&self.path).unwrap();
        connection
            .query_row(
                "SELECT count(*) FROM activity_search WHERE activity_search MATCH ?1",
                [format!("\"{word}\"")],
                |row| row.get(0),
            )
            .unwrap()
    }

    /// The access log as (viewer, activity, path, viewer is an owner).
    pub fn access_rows(&self) -> Vec<(String, i64, String, bool)> {
        self.store
            .access_log(None, None)
            .unwrap()
            .into_iter()
            .map(|r| (r.viewer, r.activity_id, r.path, r.viewer_is_owner))
            .collect()
    }
}
