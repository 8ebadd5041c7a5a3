//! The command line: argument definitions, and one module per command. Commands return a
//! [`CommandError`] that says which exit code the failure deserves.

mod activity;
mod auth;
mod check_config;
mod contacts;
mod context;
mod decisions;
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
mod shell;
mod status;
mod store;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;
use crate::logging::LogFormat;

pub use activity::ActivityCommand;
pub use auth::AuthCommand;
pub use contacts::ContactsCommand;
use context::{daemon_runtime, find_user, load_credentials, load_policy, open_store, runtime};
pub use decisions::DecisionsArgs;
pub use demo::DemoArgs;
pub use explain::ExplainArgs;
pub use feed::{ExportArgs, ExportFormat, FeedArgs, SearchArgs};
pub use notify::NotifyCommand;
pub use output::{CommandError, CommandResult, ExitStatus};
pub use privacy::{AttachmentArgs, AuditArgs, CaptureCommand, RetentionCommand};
pub use purge::PurgeArgs;
pub use replay::ReplayArgs;
pub use rules::RulesCommand;
pub use run::RunArgs;
pub use status::StatusArgs;
pub use verify::VerifyArgs;

/// The version, the commit it was built from and the build date, as `--version` prints them.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MAILSYNC_COMMIT"),
    ", built ",
    env!("MAILSYNC_BUILD_DATE"),
    ")"
);

/// mailsync reads CRM users' mailboxes, decides which messages belong in the CRM and who may
/// see them, and writes them as activities into the CRM store.
#[derive(Debug, Parser)]
#[command(
    name = "mailsync",
    version = VERSION,
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

    /// An activity's privacy, as its owner sets it: `activity set`.
    #[command(subcommand)]
    Activity(ActivityCommand),

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
    Decisions(DecisionsArgs),

    /// Find messages Gmail has that were never decided (silent gaps), and with --repair decide
    /// them now. Exits 1 while gaps remain.
    Verify(VerifyArgs),

    /// Show each user's sync state: on/off, health, cursor, last sync, last error, activities.
    Status(StatusArgs),

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
    Search(SearchArgs),

    /// Remove everything that came only from one user's mailbox (offboarding, a deletion
    /// request); activities other mailboxes also saw lose only that source. Asks for
    /// confirmation unless --yes.
    Purge(PurgeArgs),

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

    /// Metadata-only capture: erase what was stored from mailboxes switched to
    /// `capture = "metadata"` (metadata stays).
    #[command(subcommand)]
    Capture(CaptureCommand),

    /// The access log: private content shown to someone other than its owners (an admin with
    /// admins_see_private_emails), and exports that included private content.
    Audit(AuditArgs),

    /// Write an attachment's content (by its SHA-256, as feed --json shows it), if the user
    /// may see the content of at least one activity carrying it. Needs [store]
    /// attachments_dir. Exits 1 otherwise, without saying whether it exists.
    Attachment(AttachmentArgs),

    /// The store itself: move it to another backend.
    #[command(subcommand)]
    Store(store::StoreCommand),

    /// Print shell completions to standard output (bash, zsh, fish, elvish, powershell).
    Completions(shell::CompletionsArgs),

    /// Print the man page (roff) to standard output.
    Man,

    /// Start the Gmail-compatible sandbox with bundled mailboxes, run the daemon's sync against
    /// it into a local SQLite file, and print what was synced and skipped and what two users
    /// see. Needs no Google account.
    ///
    /// Ignores --config: the demo writes and uses its own.
    Demo(DemoArgs),
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

/// Runs the command the user asked for.
pub fn run(cli: Cli) -> CommandResult {
    let config_path = cli.config.as_path();
    match cli.command {
        Command::CheckConfig => check_config::run(config_path),
        Command::Contacts(command) => contacts::run(&load_policy(config_path)?, command),
        Command::Replay(args) => replay::run(&load_policy(config_path)?, args),
        Command::Explain(args) => explain::run(&load_policy(config_path)?, args),
        Command::Feed(args) => feed::run(&load_policy(config_path)?, args),
        Command::Activity(command) => activity::run(&load_policy(config_path)?, command),
        Command::Search(args) => feed::search(&load_policy(config_path)?, args),
        Command::Export(args) => feed::export(&load_policy(config_path)?, args),
        Command::Purge(args) => purge::run(&load_policy(config_path)?, args),
        Command::Retention(RetentionCommand::Apply { dry_run, json }) => {
            privacy::retention_apply(&load_policy(config_path)?, dry_run, json)
        }
        Command::Capture(CaptureCommand::Apply { dry_run, json }) => {
            privacy::capture_apply(&load_policy(config_path)?, dry_run, json)
        }
        Command::Audit(args) => privacy::audit(&load_policy(config_path)?, args),
        Command::Attachment(args) => privacy::attachment(&load_policy(config_path)?, args),
        Command::Run(args) => run::run(config_path, args),
        Command::Rules(RulesCommand::Apply { dry_run, json }) => {
            rules::apply(&load_policy(config_path)?, dry_run, json)
        }
        Command::Rules(RulesCommand::Check) => rules::check(&load_policy(config_path)?),
        Command::Decisions(args) => decisions::run(&load_policy(config_path)?, args),
        Command::Status(args) => status::run(&load_policy(config_path)?, args),
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
        Command::Demo(args) => demo::run(args),
        Command::Completions(args) => shell::completions(args),
        Command::Man => shell::man(),
        Command::Store(command) => store::run(command),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    /// Every command and every option of every command says what it is for in `--help`, the
    /// man page and the completions (clap's own `--help` and `--version` aside).
    #[test]
    fn every_command_and_option_has_help_text() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in command.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_name() != "help" && sub.get_about().is_none() {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "mailsync", &mut missing);
        assert!(
            missing.is_empty(),
            "without help text:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn the_version_names_the_commit_and_the_build_date() {
        let version = Cli::command().render_version();
        assert!(version.starts_with("mailsync 0."), "{version}");
        assert!(version.contains(" (commit "), "{version}");
        assert!(version.contains(", built 20"), "{version}");
    }

    /// A mistyped command gets a suggestion (clap's, through strsim).
    #[test]
    fn a_mistyped_command_gets_a_suggestion() {
        let error = Cli::try_parse_from(["mailsync", "stauts"]).unwrap_err();
        assert!(error.to_string().contains("status"), "{error}");
    }
}
