//! The set-up of a Gmail-path test, said once: which mailboxes the sandbox serves, who the
//! users and contacts are, how mailsync signs in, and what else the sandbox or the config
//! needs. It reads as a sentence:
//!
//! ```ignore
//! let (sandbox, setup) = Scenario::new()
//!     .mailbox(MICHELLE, mail)
//!     .contacts(&[ALICE, BOB])
//!     .service_account()
//!     .start();
//! let daemon = setup.start_daemon();
//! ```
//!
//! Everything still runs through [`SandboxProcess`] and [`Setup`] (the real binaries over
//! loopback); this only removes the dozen hand-written copies of "temp dir, write the
//! mailboxes, start the sandbox, write config and credentials, import contacts".

use std::ops::Deref;
use std::path::{Path, PathBuf};

use super::gmail::{Auth, SandboxProcess, Setup};

/// The sandbox's default Pub/Sub topic and the subscription attached to it.
pub const PUSH_TOPIC: &str = "projects/sandbox/topics/gmail";
pub const PUSH_SUBSCRIPTION: &str = "projects/sandbox/subscriptions/mailsync";

/// One message file of a sandbox mailbox: its file name and its bytes. The name matters: the
/// sandbox derives message ids from it and orders messages of the same date by it.
pub type MailFile = (String, Vec<u8>);

/// What a test needs of the sandbox and of mailsync's config, built up a phrase at a time.
#[derive(Clone, Default)]
pub struct Scenario {
    mailboxes: Vec<(String, Vec<MailFile>)>,
    sandbox_flags: Vec<String>,
    users: Option<Vec<String>>,
    contacts: Vec<String>,
    auth: Option<Auth>,
    gmail_settings: String,
    config_after_users: String,
    postgres: bool,
    push: Option<u64>,
}

impl Scenario {
    pub fn new() -> Scenario {
        Scenario::default()
    }

    /// The sandbox serves `user`'s mailbox holding `mail` (possibly none). Unless
    /// [`Scenario::users`] says otherwise, every mailbox's owner is a user with sync on, in
    /// the order the mailboxes were given.
    pub fn mailbox(mut self, user: &str, mail: impl IntoIterator<Item = MailFile>) -> Self {
        self.mailboxes
            .push((user.to_string(), mail.into_iter().collect()));
        self
    }

    /// The configured users (all with sync on), when they are not simply the mailboxes'
    /// owners.
    pub fn users(mut self, users: &[&str]) -> Self {
        self.users = Some(users.iter().map(|u| u.to_string()).collect());
        self
    }

    /// Push is on (`[gmail.push]` on the sandbox's default topic and subscription), with a
    /// safety poll every `safety_poll_secs`.
    pub fn push(mut self, safety_poll_secs: u64) -> Self {
        self.push = Some(safety_poll_secs);
        self
    }

    /// The store is a scratch PostgreSQL database (`[store] url`) instead of a SQLite file.
    pub fn postgres(mut self) -> Self {
        self.postgres = true;
        self
    }

    /// The contacts imported into the store before anything runs.
    pub fn contacts(mut self, contacts: &[&str]) -> Self {
        self.contacts = contacts.iter().map(|c| c.to_string()).collect();
        self
    }

    /// mailsync signs in with a service account key (domain-wide delegation).
    pub fn service_account(mut self) -> Self {
        self.auth = Some(Auth::ServiceAccount);
        self
    }

    /// mailsync signs in with a refresh token per user, already granted and stored.
    pub fn refresh_tokens(mut self) -> Self {
        self.auth = Some(Auth::RefreshTokens);
        self
    }

    /// More command-line flags for `mailsync sandbox` (faults, quota).
    pub fn sandbox_flags(mut self, flags: &[&str]) -> Self {
        self.sandbox_flags
            .extend(flags.iter().map(|f| f.to_string()));
        self
    }

    /// More lines at the end of the config's `[gmail]` section (which may open sub-tables
    /// such as `[gmail.quota]`); each call adds a line.
    pub fn gmail_settings(mut self, lines: &str) -> Self {
        if !self.gmail_settings.is_empty() {
            self.gmail_settings.push('\n');
        }
        self.gmail_settings.push_str(lines);
        self
    }

    /// Config sections added at the end, after the users, once the contacts are imported
    /// (`[notify]`, `[metrics]`, `[rules]`): the import runs without them.
    pub fn config_after_users(mut self, text: &str) -> Self {
        self.config_after_users.push_str(text);
        self
    }

    /// Writes the mailboxes and starts the sandbox, then writes the config and credentials
    /// for it and imports the contacts.
    pub fn start(&self) -> (Sandbox, Setup) {
        let sandbox = self.start_sandbox();
        let setup = self.setup_for(&sandbox);
        (sandbox, setup)
    }

    /// Writes the mailboxes and starts the sandbox only (for tests that give one sandbox
    /// several setups).
    pub fn start_sandbox(&self) -> Sandbox {
        let mailboxes = tempfile::tempdir().unwrap();
        for (user, mail) in &self.mailboxes {
            let folder = mailboxes.path().join(user);
            std::fs::create_dir_all(&folder).unwrap();
            for (name, raw) in mail {
                std::fs::write(folder.join(name), raw).unwrap();
            }
        }
        let flags: Vec<&str> = self.sandbox_flags.iter().map(String::as_str).collect();
        Sandbox {
            process: SandboxProcess::start(mailboxes.path(), &flags),
            mailboxes,
        }
    }

    /// A folder with config, credentials and contacts for an already running sandbox.
    pub fn setup_for(&self, sandbox: &SandboxProcess) -> Setup {
        let auth = self.auth.expect(
            "a scenario says how mailsync signs in: .service_account() or .refresh_tokens()",
        );
        let users: Vec<&str> = match &self.users {
            Some(users) => users.iter().map(String::as_str).collect(),
            None => self
                .mailboxes
                .iter()
                .map(|(user, _)| user.as_str())
                .collect(),
        };
        let users: Vec<(&str, bool)> = users.into_iter().map(|user| (user, true)).collect();
        let contacts: Vec<&str> = self.contacts.iter().map(String::as_str).collect();
        let database = self.postgres.then(super::postgres::ScratchDatabase::create);
        let mut gmail_settings = self.gmail_settings.clone();
        if let Some(safety_poll_secs) = self.push {
            // Last: the lines after a table header belong to it.
            gmail_settings.push_str(&format!(
                "\n[gmail.push]\ntopic = \"{PUSH_TOPIC}\"\nsubscription = \"{PUSH_SUBSCRIPTION}\"\npubsub_base_url = \"{}\"\nsafety_poll_secs = {safety_poll_secs}\n",
                sandbox.base_url
            ));
        }
        let setup = Setup::new(sandbox, &users, &contacts, auth, &gmail_settings, database);
        if !self.config_after_users.is_empty() {
            setup.edit_config(|config| format!("{config}{}", self.config_after_users));
        }
        setup
    }
}

/// The running sandbox and the folder of mailboxes it serves (kept until the sandbox is
/// dropped: a test may start another sandbox on the same mailboxes, or write more mail).
pub struct Sandbox {
    // Declared first, so dropped first: the process stops before its folder goes.
    pub process: SandboxProcess,
    mailboxes: tempfile::TempDir,
}

impl Sandbox {
    /// The folder holding one sub-folder per mailbox.
    pub fn mailboxes(&self) -> &Path {
        self.mailboxes.path()
    }

    /// `user`'s mailbox folder.
    pub fn mailbox(&self, user: &str) -> PathBuf {
        self.mailboxes.path().join(user)
    }
}

/// A `Sandbox` is used as the process it runs: `sandbox.deliver(...)`, `sandbox.answers(...)`.
impl Deref for Sandbox {
    type Target = SandboxProcess;

    fn deref(&self) -> &SandboxProcess {
        &self.process
    }
}
