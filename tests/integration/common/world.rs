//! The store-level world of `store.rs` and `privacy.rs`: a policy (config and rules as text)
//! and a real SQLite store, with its migrations, in a folder of its own. Messages go through
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
use mailsync::store::{NewContact, SqliteStore, Store, StoreOptions, Viewer};
use mailsync::sync::{self, Mode, Processed};

pub struct World {
    pub policy: Policy,
    pub store: SqliteStore,
    /// The store file.
    pub path: PathBuf,
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
        let store = SqliteStore::open(&path)
            .unwrap()
            .with_options(StoreOptions::from_config(&policy.config));
        World {
            policy,
            store,
            path,
            dir,
        }
    }

    pub fn with_contact(self, contact: NewContact) -> World {
        self.store.add_contact(&contact).unwrap();
        self
    }

    /// Records one message of `user`'s mailbox (a `dir:` source) as the sync would.
    pub fn replay(&mut self, user: &str, source_id: &str, text: &str) -> Processed {
        let user = self.policy.config.user_by_address(user).unwrap().clone();
        sync::process(
            &self.policy,
            &self.store,
            &user,
            "dir:/test",
            &SourceMessage {
                source_id: source_id.to_string(),
                raw: text.as_bytes().to_vec(),
                labels: Vec::new(),
            },
            Mode::Write,
        )
        .unwrap()
    }

    /// The user `email` reading, with `admins_see_private_emails` as the config says.
    pub fn viewer(&self, email: &str) -> Viewer {
        self.viewer_with(email, self.policy.config.admins_see_private_emails)
    }

    /// The user `email` reading, with `admins_see_private_emails` set as given (to compare
    /// both settings in one world).
    pub fn viewer_with(&self, email: &str, admins_see_private_emails: bool) -> Viewer {
        let user = self.policy.config.user_by_address(email).unwrap();
        Viewer {
            email: user.email.clone(),
            is_admin: user.is_admin(),
            admins_see_private_emails,
        }
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

    /// How many activities the full-text index finds for `word`, read straight from SQLite.
    pub fn search_index_matches(&self, word: &str) -> i64 {
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
