//! The command line: argument definitions, and one module per command. Commands return a
//! [`CommandError`] that says which exit code the failure deserves.

mod auth;
mod check_config;
mod contacts;
mod context;
mod decisions;
#[cfg(feature = "sandbox")]
mod demo;
mod explain;
mod feed;
mod notify;
mod output;
mod privacy;
mod purge;
mod replay;
mod rules;
mod run;
mod sandbox;
mod status;
mod verify;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::DEFAULT_CONFIG_PATH;
use crate::logging::LogFormat;

use context::{daemon_runtime, find_user, load_credentials, load_policy, open_store, runtime};
pub use output::{CommandError, CommandResult, ExitStatus};

/// mailsync reads CRM users' mailboxes, decides which messages belong in the CRM and who may
/// see them, and writes them as activities into the CRM store.
#[derive(Debug, Parser)]
#[command(
    name = "mailsync",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "MAILSYNC_CONFIG", default_value = DEFAULT_CONFIG_PATH, value_name = "PATH")]
    pub config: PathBuf,

    /// How log lines on standard error are written. The level is set with RUST_LOG
    /// (default: warn for interactive commands), e.g. RUST_LOG=mailsync=debug.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config and every rules file; print every problem with its file and line.
    ///
    /// Exits 0 when all is well, 2 when anything is wrong. Nothing is written.
    CheckConfig,

    /// Manage the contacts that decide which mail is synced.
    #[command(subcommand)]
    Contacts(ContactsCommand),

    /// Run every message of a mailbox dump through the pipeline for one user.
    ///
    /// Prints one line per message with its decision, and a summary. Without --dry-run,
    /// synced messages are written to the store; replaying again changes nothing.
    Replay(ReplayArgs),

    /// Explain the decision for one message file in one user's mailbox: every party's
    /// verdict and the rules that matched. Writes nothing.
    Explain(ExplainArgs),

    /// Show the activities a user may see, newest first, with content withheld where the
    /// decision spec says so.
    Feed(FeedArgs),

    /// Run the sync daemon: poll every sync-enabled user's Gmail until SIGTERM or SIGINT.
    ///
    /// SIGHUP reloads the config and rules (an invalid new config is rejected and the old one
    /// kept). A second daemon on the same store refuses to start.
    Run(RunArgs),

    /// Rules: apply them to what is already stored, or check the rules folder.
    #[command(subcommand)]
    Rules(RulesCommand),

    /// Show the decision log of one user's mailbox: each message's decision, reason, rules and
    /// (when synced) contacts.
    Decisions {
        /// The user (primary address or alias).
        #[arg(long, value_name = "EMAIL")]
        user: String,
        /// At most this many decisions.
        #[arg(long)]
        limit: Option<usize>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },

    /// Find messages Gmail has that were never decided (silent gaps), and with --repair decide
    /// them now. Exits 1 while gaps remain.
    Verify(VerifyArgs),

    /// Show each user's sync state: on/off, health, cursor, last sync, last error, activities.
    Status {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },

    /// Email notifications to ops.
    #[command(subcommand)]
    Notify(NotifyCommand),

    /// Per-user OAuth: authorise mailsync to read a user's Gmail.
    #[command(subcommand)]
    Auth(AuthCommand),

    /// Serve mailboxes from folders of .eml files over a Gmail-compatible API (with OAuth,
    /// quota, history and fault injection), for tests and demos. Loopback only.
    Sandbox(sandbox::SandboxArgs),

    /// Full-text search (subject, body, attachment names) over what a user may see; words in
    /// content withheld from that user never match. Same JSON objects as `feed`.
    Search {
        /// The user looking.
        #[arg(long = "as", value_name = "EMAIL")]
        viewer: String,
        /// The words to find (all of them).
        #[arg(required = true)]
        query: Vec<String>,
        #[arg(long)]
        limit: Option<usize>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },

    /// Remove everything that came only from one user's mailbox (offboarding, a deletion
    /// request); activities other mailboxes also saw lose only that source. Asks for
    /// confirmation unless --yes.
    Purge {
        /// The user whose mailbox's contribution goes (may already be gone from the config).
        #[arg(long, value_name = "EMAIL")]
        user: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },

    /// Export the activities a user may see, one row each, withheld fields empty (CSV header:
    /// activity_id,message_id,date,direction,contacts,private,subject,body,sources; a cell
    /// whose first non-blank character is =, +, -, @ or a full-width form of them, or that
    /// starts with a tab or CR, gets a leading ' so spreadsheets do not run it; control and
    /// bidi characters are written as \u{202e}). JSON holds the `feed --json` objects,
    /// attachments included. An export that includes private content is recorded in the
    /// access log.
    Export(ExportArgs),

    /// Retention: erase subjects, bodies and attachment content of activities older than
    /// `[retention] body_days` (metadata stays). The daemon does it at start and every hour.
    #[command(subcommand)]
    Retention(RetentionCommand),

    /// The access log: private content shown to someone other than its owners (an admin with
    /// admins_see_private_emails), and exports that included private content.
    Audit {
        /// Only accesses at or after this time (RFC 3339, e.g. 2026-01-31T00:00:00Z).
        #[arg(long, value_name = "RFC3339")]
        since: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// Only this viewer's accesses.
        #[arg(long, value_name = "EMAIL")]
        viewer: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },

    /// Write an attachment's content (by its SHA-256, as feed --json shows it), if the user
    /// may see the content of at least one activity carrying it. Needs [store]
    /// attachments_dir. Exits 1 otherwise, without saying whether it exists.
    Attachment {
        /// The user asking.
        #[arg(long = "as", value_name = "EMAIL")]
        viewer: String,
        /// The attachment's SHA-256 (64 hex digits).
        sha256: String,
        /// Write to this file (created 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },

    /// Start the Gmail-compatible sandbox with bundled mailboxes, run the daemon's sync against
    /// it into a local SQLite file, and print what was synced and skipped and what two users
    /// see. Needs no Google account.
    ///
    /// Ignores --config: the demo writes and uses its own.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Sync every enabled mailbox once and exit (1 if any failed), instead of polling.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The user whose mailbox to check.
    #[arg(long, value_name = "EMAIL")]
    pub user: String,
    /// The window start (YYYY-MM-DD); default: the initial_sync_days window.
    #[arg(long, value_name = "DATE")]
    pub since: Option<chrono::NaiveDate>,
    /// Run every undecided message through the pipeline now.
    #[arg(long)]
    pub repair: bool,
    /// The report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Decide the stored activities again against the current rules: sources a skip rule now
    /// matches are removed (the activity with its last source), visibility is recomputed.
    /// The daemon does the same on every reload.
    Apply {
        /// Show exactly what would change, as a list and counts, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON object per change.
        #[arg(long)]
        json: bool,
    },
    /// Check the rules folder (every problem with its file and line) and list the rules.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Erase the content that is due now, and remove attachment files nothing else keeps.
    Apply {
        /// Count what would be erased, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The counts as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send one test email to the [notify] ops recipients through the configured relay.
    Test,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Run the OAuth consent flow for one user and keep the refresh token in the store.
    ///
    /// Prints a URL to open in a browser; a listener on 127.0.0.1 receives Google's answer.
    /// The grant is kept only if Gmail says it opens this user's mailbox (primary address or
    /// an alias); consent given with another account stores nothing and exits 1. Run it with
    /// the daemon's config, so the token lands in the daemon's store.
    Login {
        /// The user (primary address or alias).
        #[arg(long, value_name = "EMAIL")]
        user: String,
        /// The listener's port, fixed (for an SSH tunnel: ssh -L N:127.0.0.1:N HOST); with
        /// --no-browser, the port of the address the browser is sent back to.
        #[arg(long, value_name = "N")]
        port: Option<u16>,
        /// Print the URL and read back, from standard input, the address the browser was sent
        /// back to (or the code alone): for a machine without a browser.
        #[arg(long)]
        no_browser: bool,
    },
}

impl Command {
    /// Interactive commands print their results on standard output, so their logs stay quiet
    /// unless asked (RUST_LOG=info); the services log at info.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Run(_) | Command::Sandbox(_) => "info",
            _ => "warn",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Import contacts from a CSV file with the header `name,email,visible_to[,no_sync]`.
    ///
    /// Several emails (or visible_to users) in one field are separated by `;`. A row whose
    /// addresses belong to an existing contact updates it; an empty field (or a missing
    /// column) leaves that contact's setting as it is. visible_to lists the users who may see
    /// the contact: empty means every user for a new contact, `*` means every user (and
    /// clears an existing list). `no_sync` is `true`/`false` (or `yes`/`no`, `1`/`0`): true
    /// never syncs the contact's mail and removes what is stored. Bad rows are reported with
    /// their line; the others are imported.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// Add one contact with one or more addresses.
    Add {
        /// The contact's email addresses.
        #[arg(required = true, value_name = "EMAIL")]
        emails: Vec<String>,
        /// The contact's name.
        #[arg(long)]
        name: Option<String>,
        /// A user allowed to see this contact (repeatable). Without it, every user may.
        #[arg(long = "visible-to", value_name = "USER")]
        visible_to: Vec<String>,
    },
    /// List the contacts.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Change a contact's settings: `--no-sync` never syncs its mail (in any mailbox, and
    /// what is stored is removed now), `--sync` lifts that.
    ///
    /// Mail removed by `--no-sync` comes back with `--sync` only through a backfill (the daemon
    /// does one for new addresses) or a `replay`: what was removed is not kept anywhere.
    Set {
        /// Any address of the contact.
        #[arg(value_name = "EMAIL")]
        email: String,
        /// Never sync this contact's mail.
        #[arg(long, conflicts_with = "sync")]
        no_sync: bool,
        /// Sync this contact's mail again.
        #[arg(long)]
        sync: bool,
        /// Show what `--no-sync` would remove, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The user whose mailbox this is (primary address or alias).
    #[arg(long, value_name = "EMAIL")]
    pub user: String,
    /// dir:PATH (every regular file in the folder, by name; links, FIFOs, folders and
    /// hidden files are counted, not read), mbox:PATH (an mbox file, e.g. a Google Takeout
    /// export, whose X-Gmail-Labels are honoured), or gmail (the user's mailbox through the
    /// API, re-fetching every message of the window).
    #[arg(long, value_name = "SOURCE")]
    pub source: crate::source::SourceSpec,
    /// With --source gmail: messages since this date (YYYY-MM-DD); default: the
    /// initial_sync_days window.
    #[arg(long, value_name = "DATE")]
    pub since: Option<chrono::NaiveDate>,
    /// Decide but write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// One decision object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The user whose mailbox the message is in.
    #[arg(long, value_name = "EMAIL")]
    pub user: String,
    /// The message file (.eml).
    pub file: PathBuf,
    /// The decision object of the spec instead of the readable explanation.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FeedArgs {
    /// The user looking.
    #[arg(long = "as", value_name = "EMAIL")]
    pub viewer: String,
    /// Only activities linked to the contact with this address.
    #[arg(long, value_name = "ADDR")]
    pub contact: Option<String>,
    /// At most this many activities.
    #[arg(long)]
    pub limit: Option<usize>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The user the export is for.
    #[arg(long = "as", value_name = "EMAIL")]
    pub viewer: String,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Only activities linked to the contact with this address.
    #[arg(long, value_name = "ADDR")]
    pub contact: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The playground folder (created if missing; reused if present).
    #[arg(long, default_value = "mailsync-demo", value_name = "PATH")]
    pub dir: PathBuf,
}

/// Runs the command the user asked for.
pub fn run(cli: Cli) -> CommandResult {
    let config_path = cli.config.as_path();
    match cli.command {
        Command::CheckConfig => check_config::run(config_path),
        Command::Contacts(command) => contacts::run(&load_policy(config_path)?, command),
        Command::Replay(args) => replay::run(&load_policy(config_path)?, args),
        Command::Explain(args) => explain::run(&load_policy(config_path)?, args),
        Command::Feed(args) => feed::run(&load_policy(config_path)?, args),
        Command::Search {
            viewer,
            query,
            limit,
            json,
        } => feed::search(
            &load_policy(config_path)?,
            &viewer,
            &query.join(" "),
            limit,
            json,
        ),
        Command::Export(args) => feed::export(&load_policy(config_path)?, args),
        Command::Purge { user, yes } => purge::run(&load_policy(config_path)?, &user, yes),
        Command::Retention(RetentionCommand::Apply { dry_run, json }) => {
            privacy::retention_apply(&load_policy(config_path)?, dry_run, json)
        }
        Command::Audit {
            since,
            viewer,
            json,
        } => privacy::audit(&load_policy(config_path)?, since, viewer.as_deref(), json),
        Command::Attachment {
            viewer,
            sha256,
            output,
        } => privacy::attachment(
            &load_policy(config_path)?,
            &viewer,
            &sha256,
            output.as_deref(),
        ),
        Command::Run(args) => run::run(config_path, args),
        Command::Rules(RulesCommand::Apply { dry_run, json }) => {
            rules::apply(&load_policy(config_path)?, dry_run, json)
        }
        Command::Rules(RulesCommand::Check) => rules::check(&load_policy(config_path)?),
        Command::Decisions { user, limit, json } => {
            decisions::run(&load_policy(config_path)?, &user, limit, json)
        }
        Command::Status { json } => status::run(&load_policy(config_path)?, json),
        Command::Auth(AuthCommand::Login {
            user,
            port,
            no_browser,
        }) => auth::login(
            &load_policy(config_path)?,
            &user,
            auth::LoginOptions { port, no_browser },
        ),
        Command::Sandbox(args) => sandbox::run(args),
        Command::Verify(args) => verify::run(&load_policy(config_path)?, args),
        Command::Notify(NotifyCommand::Test) => notify::test(&load_policy(config_path)?),
        #[cfg(feature = "sandbox")]
        Command::Demo(args) => demo::run(args),
        #[cfg(not(feature = "sandbox"))]
        Command::Demo(_) => Err(CommandError::Usage(sandbox::WITHOUT_SANDBOX.to_string())),
    }
}
