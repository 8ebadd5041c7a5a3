//! An in-process mailsync for the benchmarks: a config and rules folder on disk, loaded
//! through `Policy::load` as the daemon loads them, and a real store with its migrations and
//! contacts: a SQLite file, or a scratch PostgreSQL database. Messages go through the same `prepare_all` + `record_all` batches as
//! the daemon's sync.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailsync::rules::Policy;
use mailsync::source::SourceMessage;
use mailsync::store::{
    NewContact, PostgresSettings, PostgresStore, SqliteStore, Store, StoreOptions,
};

use super::e2e::postgres::ScratchDatabase;
use mailsync::sync::{Prepared, prepare_all};

/// Messages per transaction, as the daemon writes them.
pub const BATCH: usize = 25;

pub struct World {
    pub dir: tempfile::TempDir,
    pub policy: Policy,
    pub store: Box<dyn Store>,
    /// Set when the world works on a kept store file rather than its own.
    store_file: Option<PathBuf>,
    /// The database of a PostgreSQL world (dropped after the store).
    pub database: Option<ScratchDatabase>,
}

/// The users of every benchmark world: an admin, two users and a CEO whose mail with the
/// bookkeeper is private.
pub const USERS: &[(&str, &str)] = &[
    ("michelle@abcorp.com", "admin"),
    ("dave@abcorp.com", "user"),
    ("ceo@abcorp.com", "user"),
    ("sam@abcorp.com", "user"),
];

const RULES: &str = r#"
[[rule]]
name = "ceo: bookkeeper private"
match = { domain = "bookkeeper.example" }
action = "private"
users = ["ceo@abcorp.com"]

[[rule]]
name = "customer0 visible"
match = { domain = "customer0.example" }
action = "visible"

[[rule]]
name = "never the doctor"
match = { address = "dr.jones@clinic.example" }
action = "skip"

[[rule]]
name = "no newsletters"
match = { automated = true }
action = "skip"
"#;

impl World {
    /// A world on SQLite; `extra_store` goes into `[store]` (e.g. an attachments folder).
    pub fn new(extra_store: &str) -> World {
        World::with_store(extra_store, None)
    }

    /// The same world on a scratch PostgreSQL database.
    pub fn on_postgres(extra_store: &str) -> World {
        World::with_store(extra_store, Some(ScratchDatabase::create()))
    }

    /// A world on an existing PostgreSQL database, which it leaves in place (a kept
    /// benchmark store).
    pub fn on_kept_database(url: &str) -> World {
        let mut world = World::new("");
        world.store = Box::new(
            PostgresStore::open(&PostgresSettings {
                url: url.to_string(),
                password_file: None,
            })
            .expect("kept database opens")
            .with_options(StoreOptions::from_config(&world.policy.config)),
        );
        world
    }

    fn with_store(extra_store: &str, database: Option<ScratchDatabase>) -> World {
        let dir = tempfile::tempdir().expect("a temp dir");
        let rules = dir.path().join("rules");
        std::fs::create_dir_all(&rules).expect("rules dir");
        std::fs::write(rules.join("bench.toml"), RULES).expect("rules file");
        let store_line = match &database {
            Some(database) => format!("url = \"{}\"", database.url()),
            None => "path = \"crm.sqlite3\"".to_string(),
        };
        let mut config = format!(
            "[company]\ndomains = [\"abcorp.com\"]\n[store]\n{store_line}\n{extra_store}\n[rules]\ndir = \"rules\"\n"
        );
        for (email, role) in USERS {
            config.push_str(&format!(
                "[[users]]\nemail = \"{email}\"\nrole = \"{role}\"\nsync = true\nemails_visible = {}\n",
                *email != "ceo@abcorp.com"
            ));
        }
        let config_path = dir.path().join("mailsync.toml");
        std::fs::write(&config_path, config).expect("config file");
        let policy = Policy::load(&config_path).unwrap_or_else(|e| panic!("bench config: {e}"));
        let options = StoreOptions::from_config(&policy.config);
        let store: Box<dyn Store> = match &database {
            Some(database) => Box::new(
                PostgresStore::open(&PostgresSettings {
                    url: database.url(),
                    password_file: None,
                })
                .expect("store opens")
                .with_options(options),
            ),
            None => Box::new(
                SqliteStore::open(&Self::sqlite_path(&policy))
                    .expect("store opens")
                    .with_options(options),
            ),
        };
        World {
            dir,
            policy,
            store,
            store_file: None,
            database,
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.store_file
            .clone()
            .unwrap_or_else(|| Self::sqlite_path(&self.policy))
    }

    fn sqlite_path(policy: &Policy) -> PathBuf {
        match &policy.config.store {
            mailsync::config::StoreLocation::Sqlite { path } => path.clone(),
            other => panic!("the benchmark world is SQLite, not {other}"),
        }
    }

    /// Works on the store at `path` instead of this world's own (a kept benchmark store).
    pub fn use_store(&mut self, path: &Path) {
        self.store = Box::new(
            SqliteStore::open(path)
                .expect("kept store opens")
                .with_options(StoreOptions::from_config(&self.policy.config)),
        );
        self.store_file = Some(path.to_path_buf());
    }

    /// Copies this world's store to `path` for later runs, and goes on with the copy.
    pub fn keep_store_as(&mut self, path: &Path) {
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).expect("results folder");
        }
        // Closing the last connection checkpoints the WAL into the file, which can then be
        // copied whole.
        let own = self.store_path();
        self.store = Box::new(SqliteStore::open_in_memory().expect("an in-memory store"));
        let temporary = path.with_extension("partial");
        std::fs::copy(&own, &temporary).expect("the store copies");
        std::fs::rename(&temporary, path).expect("the copy is kept");
        self.use_store(path);
    }

    /// Adds contacts; every `restricted_every`-th one is visible only to the CEO.
    pub fn add_contacts(&mut self, addresses: &[String], restricted_every: usize) {
        for (index, address) in addresses.iter().enumerate() {
            let visible_to = if restricted_every > 0 && index % restricted_every == 1 {
                vec!["ceo@abcorp.com".to_string()]
            } else {
                Vec::new()
            };
            self.store
                .add_contact(&NewContact {
                    name: Some(format!("Contact {index}")),
                    emails: vec![address.clone()],
                    visible_to: Some(visible_to),
                    no_sync: None,
                })
                .expect("contact added");
        }
    }

    /// Runs `messages` (source id, raw) through the pipeline for `user`, in the daemon's
    /// batches; returns how many were synced.
    pub fn ingest(&mut self, user: &str, messages: &[(String, &[u8])]) -> usize {
        let messages: Vec<SourceMessage> = messages
            .iter()
            .map(|(source_id, raw)| SourceMessage {
                source_id: source_id.clone(),
                raw: raw.to_vec(),
                labels: Vec::new(),
            })
            .collect();
        self.ingest_messages(user, &messages).synced
    }

    /// The pipeline over messages already in memory, as the daemon holds them after a fetch;
    /// times its two halves.
    pub fn ingest_messages(&mut self, user: &str, messages: &[SourceMessage]) -> Ingested {
        let user = self
            .policy
            .config
            .user_by_address(user)
            .expect("a bench user")
            .clone();
        let mut ingested = Ingested::default();
        for batch in messages.chunks(BATCH) {
            let started = Instant::now();
            let prepared =
                prepare_all(&self.policy, &*self.store, &user, "gmail", batch).expect("prepared");
            let decided = Instant::now();
            ingested.synced += prepared
                .iter()
                .filter(|p| p.decision.approval().is_some())
                .count();
            let records: Vec<_> = prepared.iter().map(Prepared::record).collect();
            self.store.record_all(&records, None).expect("recorded");
            ingested.parse_and_decide += decided - started;
            ingested.store += decided.elapsed();
        }
        ingested
    }
}

/// What [`World::ingest_messages`] did and how long each half took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ingested {
    pub synced: usize,
    pub parse_and_decide: Duration,
    pub store: Duration,
}

/// The on-disk size of a store: the database and its WAL.
pub fn store_bytes(path: &Path) -> u64 {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    [path.to_path_buf(), wal]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}
