//! `mailsync demo`: the real daemon against the bundled Gmail-compatible server, so a new
//! user sees what mailsync does before pointing it at real mail. No Google account needed.
//!
//! The demo writes a playground folder (config, rules, contacts, three mailboxes from
//! `examples/demo/`, compiled in), starts the sandbox on loopback serving those
//! mailboxes, completes each user's OAuth consent with the sandbox (as `mailsync auth login`
//! would with a person clicking "allow"), runs the daemon's sync once for every user, and
//! prints the decisions, what two users see, and the sync status.

use std::path::PathBuf;

use clap::Args;

#[cfg(not(feature = "sandbox"))]
use super::CommandResult;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The playground folder (created if missing; reused if present).
    #[arg(long, default_value = "mailsync-demo", value_name = "PATH")]
    pub dir: PathBuf,
}

#[cfg(feature = "sandbox")]
pub use with_sandbox::run;

/// A build without the test server has no demo, and says how to get one.
#[cfg(not(feature = "sandbox"))]
pub fn run(_args: DemoArgs) -> CommandResult {
    Err(super::CommandError::Usage(
        super::sandbox::WITHOUT_SANDBOX.to_string(),
    ))
}

#[cfg(feature = "sandbox")]
mod with_sandbox {
    use std::io::Write;
    use std::path::Path;

    use anyhow::Context;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::super::contacts::ContactsCommand;
    use super::super::feed::FeedArgs;
    use super::super::{CommandResult, ExitStatus, load_policy, open_store, runtime};
    use super::DemoArgs;
    use crate::daemon::{self, Controls, RunOutcome};
    use crate::store::{PushState, SyncStatus};
    use mailsync_sandbox::{self as sandbox, OAuthClient, SandboxConfig};

    /// Every file of the demo, by path inside the demo folder.
    const DEMO_FILES: &[(&str, &[u8])] = &[
        (
            "contacts.csv",
            include_bytes!("../../examples/demo/contacts.csv"),
        ),
        (
            "mailboxes/ceo@abcorp.com/01-bookkeeper.eml",
            include_bytes!("../../examples/demo/mailboxes/ceo@abcorp.com/01-bookkeeper.eml"),
        ),
        (
            "mailboxes/ceo@abcorp.com/02-alice-thanks.eml",
            include_bytes!("../../examples/demo/mailboxes/ceo@abcorp.com/02-alice-thanks.eml"),
        ),
        (
            "mailboxes/dave@abcorp.com/01-reply-to-alice-cc.eml",
            include_bytes!(
                "../../examples/demo/mailboxes/dave@abcorp.com/01-reply-to-alice-cc.eml"
            ),
        ),
        (
            "mailboxes/dave@abcorp.com/02-bob.eml",
            include_bytes!("../../examples/demo/mailboxes/dave@abcorp.com/02-bob.eml"),
        ),
        (
            "mailboxes/michelle@abcorp.com/01-alice-asks.eml",
            include_bytes!("../../examples/demo/mailboxes/michelle@abcorp.com/01-alice-asks.eml"),
        ),
        (
            "mailboxes/michelle@abcorp.com/02-reply-to-alice.eml",
            include_bytes!(
                "../../examples/demo/mailboxes/michelle@abcorp.com/02-reply-to-alice.eml"
            ),
        ),
        (
            "mailboxes/michelle@abcorp.com/03-from-dave.eml",
            include_bytes!("../../examples/demo/mailboxes/michelle@abcorp.com/03-from-dave.eml"),
        ),
        (
            "mailboxes/michelle@abcorp.com/04-stranger.eml",
            include_bytes!("../../examples/demo/mailboxes/michelle@abcorp.com/04-stranger.eml"),
        ),
        (
            "mailboxes/michelle@abcorp.com/05-doctor-cc.eml",
            include_bytes!("../../examples/demo/mailboxes/michelle@abcorp.com/05-doctor-cc.eml"),
        ),
        (
            "mailboxes/michelle@abcorp.com/06-draft.eml",
            include_bytes!("../../examples/demo/mailboxes/michelle@abcorp.com/06-draft.eml"),
        ),
        (
            "mailboxes/michelle@abcorp.com/07-not-a-message.eml",
            include_bytes!(
                "../../examples/demo/mailboxes/michelle@abcorp.com/07-not-a-message.eml"
            ),
        ),
        (
            "mailboxes/michelle@abcorp.com/08-group-and-encoded.eml",
            include_bytes!(
                "../../examples/demo/mailboxes/michelle@abcorp.com/08-group-and-encoded.eml"
            ),
        ),
        (
            "mailboxes/michelle@abcorp.com/09-subsidiary.eml",
            include_bytes!("../../examples/demo/mailboxes/michelle@abcorp.com/09-subsidiary.eml"),
        ),
        (
            "mailboxes/michelle@abcorp.com/10-freelancer.eml",
            include_bytes!("../../examples/demo/mailboxes/michelle@abcorp.com/10-freelancer.eml"),
        ),
        (
            "mailboxes/michelle@abcorp.com/11-newsletter.eml",
            include_bytes!("../../examples/demo/mailboxes/michelle@abcorp.com/11-newsletter.eml"),
        ),
        (
            "mailboxes/michelle@abcorp.com/12-alice-private.eml",
            include_bytes!(
                "../../examples/demo/mailboxes/michelle@abcorp.com/12-alice-private.eml"
            ),
        ),
        (
            "mailboxes/michelle@abcorp.com/13-carol-never.eml",
            include_bytes!("../../examples/demo/mailboxes/michelle@abcorp.com/13-carol-never.eml"),
        ),
        (
            "mailsync.toml",
            include_bytes!("../../examples/demo/mailsync.toml"),
        ),
        (
            "rules/demo.toml",
            include_bytes!("../../examples/demo/rules/demo.toml"),
        ),
        (
            "rules/labels.toml",
            include_bytes!("../../examples/demo/rules/labels.toml"),
        ),
    ];

    /// The sandbox's OAuth client for the demo. Not a secret: it opens a server on loopback that
    /// serves the bundled sample mail.
    const DEMO_CLIENT_ID: &str = "mailsync-demo.apps.example";
    const DEMO_CLIENT_SECRET: &str = "demo-only-not-a-secret";

    pub fn run(args: DemoArgs) -> CommandResult {
        let dir = std::path::absolute(&args.dir).context("cannot resolve the demo folder")?;
        write_files(&dir)?;
        runtime()?.block_on(async {
            let server = sandbox::spawn(SandboxConfig {
                mailboxes_dir: dir.join("mailboxes"),
                oauth_clients: vec![OAuthClient {
                    client_id: DEMO_CLIENT_ID.to_string(),
                    client_secret: DEMO_CLIENT_SECRET.to_string(),
                }],
                ..SandboxConfig::default()
            })
            .await
            .context("cannot start the Gmail-compatible sandbox")?;
            heading(&format!("Gmail-compatible sandbox listening on {}", server.base_url()))?;
            write_gmail_settings(&dir, &server.base_url(), &server.token_url())?;
            let config_path = dir.join("mailsync.toml");
            let policy = load_policy(&config_path)?;

            heading(&format!("importing {}", dir.join("contacts.csv").display()))?;
            let import = ContactsCommand::Import {
                file: dir.join("contacts.csv"),
            };
            let mut status = super::super::contacts::run(&policy, import)?;

            {
                let store = open_store(&policy)?;
                for user in policy.config.users.iter().filter(|user| user.sync) {
                    let refresh_token = server.sandbox.issue_refresh_token(&user.email, DEMO_CLIENT_ID);
                    store.set_refresh_token(&user.email, DEMO_CLIENT_ID, &refresh_token)?;
                }
            }

            heading("starting the daemon (mailsync run), with push")?;
            let shutdown = CancellationToken::new();
            let (_reload_tx, reload) = mpsc::channel(1);
            let controls = Controls {
                shutdown: shutdown.clone(),
                reload,
                once: false,
            };
            // Run in this task, beside the demo's own steps (the daemon's future stays on
            // the thread that polls it).
            let daemon = daemon::run(config_path.clone(), controls);
            tokio::pin!(daemon);
            let mut stopped_early = None;
            let pushed = tokio::select! {
                outcome = &mut daemon => {
                    stopped_early = Some(outcome);
                    Err(anyhow::anyhow!("the daemon stopped before the demo's message was stored"))
                }
                pushed = show_push(&policy, &server) => pushed,
            };
            shutdown.cancel();
            let outcome = match stopped_early {
                Some(outcome) => outcome,
                None => daemon.await,
            }
            .map_err(|error| anyhow::anyhow!("the daemon failed: {error}"))?;
            pushed?;
            if outcome == RunOutcome::SomeFailed {
                status = ExitStatus::SomeFailed;
            }
            server.shutdown().await.context("cannot stop the sandbox")?;
            let store = open_store(&policy)?;
            if store.sync_states()?.iter().any(|state| {
                matches!(state.status, SyncStatus::Error | SyncStatus::NeedsReauth)
            }) {
                status = ExitStatus::SomeFailed;
            }

            for user in policy.config.users.iter().filter(|user| user.sync) {
                heading(&format!("what the daemon decided in {}'s mailbox", user.email))?;
                let log = store.decision_log(&user.email, None)?;
                super::super::decisions::write_table(&mut std::io::stdout().lock(), &log)?;
            }
            for viewer in ["dave@abcorp.com", "michelle@abcorp.com"] {
                heading(&format!("what {viewer} sees"))?;
                let feed = FeedArgs {
                    viewer: viewer.to_string(),
                    contact: None,
                    limit: None,
                    threads: false,
                    json: false,
                };
                super::super::feed::run(&policy, feed)?;
            }
            show_labels(&policy, &*store)?;
            heading("sync status")?;
            super::super::status::run(
                &policy,
                super::super::status::StatusArgs {
                    json: false,
                    instances: false,
                    watch: false,
                    interval: 2,
                },
            )?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "\nThe store is {store}. Try:\n  mailsync --config {config} explain --user michelle@abcorp.com {example}\n  mailsync --config {config} feed --as michelle@abcorp.com --json\n  mailsync --config {config} decisions --user dave@abcorp.com",
                store = policy.config.store,
                config = config_path.display(),
                example = dir.join("mailboxes/michelle@abcorp.com/05-doctor-cc.eml").display(),
            )?;
            Ok(status)
        })
    }

    /// A message the demo delivers once every mailbox is synced and watched: from Alice, a
    /// contact, to Michelle. The same every run, so a second run adds nothing.
    const PUSHED_MESSAGE: &str = "From: Alice Customer <alice@customer.com>\r\nTo: Michelle <michelle@abcorp.com>\r\nSubject: Signed renewal attached\r\nDate: Tue, 10 Sep 2024 08:00:00 +0000\r\nMessage-ID: <renewal-signed@customer.com>\r\n\r\nHi Michelle, the signed renewal is on its way.\r\n";

    const PUSHED_MESSAGE_ID: &str = "<renewal-signed@customer.com>";

    /// Waits until every mailbox is synced and watched, then delivers [`PUSHED_MESSAGE`] and
    /// shows how soon push brought it into the store.
    async fn show_push(
        policy: &crate::rules::Policy,
        server: &sandbox::SpawnedSandbox,
    ) -> anyhow::Result<()> {
        let store = open_store(policy)?;
        let syncing: Vec<&str> = policy
            .config
            .users
            .iter()
            .filter(|user| user.sync)
            .map(|user| user.email.as_str())
            .collect();
        let ready = || -> anyhow::Result<bool> {
            let states = store.sync_states()?;
            let watches = server.sandbox.stats();
            Ok(syncing.iter().all(|user| {
                states.iter().any(|state| {
                    state.user_email == *user
                        && state.history_id.is_some()
                        && state.push_state == Some(PushState::Push)
                }) && watches
                    .users
                    .get(*user)
                    .is_some_and(|stats| stats.watch.is_some())
            }))
        };
        wait_for("every mailbox synced and watched", ready).await?;
        heading(
            "every mailbox is synced and watched; delivering a new message to michelle@abcorp.com",
        )?;
        let decided = || -> anyhow::Result<bool> {
            Ok(store
                .decision_log("michelle@abcorp.com", None)?
                .iter()
                .any(|logged| logged.message_id.as_deref() == Some(PUSHED_MESSAGE_ID)))
        };
        let asked = || {
            server
                .sandbox
                .stats()
                .users
                .get("michelle@abcorp.com")
                .map_or(0, |stats| {
                    stats.requests.get("history.list").copied().unwrap_or(0)
                })
        };
        // A second run of the demo delivers the same message again, already stored.
        let stored_before = decided()?;
        let asked_before = asked();
        let delivered = std::time::Instant::now();
        server
            .sandbox
            .deliver(
                "michelle@abcorp.com",
                PUSHED_MESSAGE.as_bytes().to_vec(),
                None,
            )
            .context("cannot deliver the demo message")?;
        wait_for("the new message stored", || {
            Ok(asked() > asked_before && decided()?)
        })
        .await?;
        let elapsed = delivered.elapsed().as_millis();
        let poll = policy.config.gmail.poll_interval_secs;
        let mut out = std::io::stdout().lock();
        if stored_before {
            writeln!(
                out,
                "Gmail's push notification woke michelle@abcorp.com's sync {elapsed} ms after the message arrived (an earlier run of the demo stored it already; without push, the next poll would have been up to {poll} s later)"
            )?;
        } else {
            writeln!(
                out,
                "stored {elapsed} ms after it arrived: Gmail's push notification woke michelle@abcorp.com's sync (without it, the next poll would have been up to {poll} s later)"
            )?;
        }
        Ok(())
    }

    /// The two conversations Michelle labelled in Gmail (`X-Gmail-Labels` in the demo's
    /// mailbox), as the store has them.
    fn show_labels(
        policy: &crate::rules::Policy,
        store: &dyn crate::store::Store,
    ) -> anyhow::Result<()> {
        heading("michelle@abcorp.com labelled two conversations in Gmail")?;
        let mut out = std::io::stdout().lock();
        let dave = crate::store::Viewer::of(
            policy
                .config
                .user_by_address("dave@abcorp.com")
                .context("the demo config has dave")?,
            policy.config.admins_see_private_emails,
        );
        let private = store
            .feed(&dave, None, None)?
            .into_iter()
            .find(|activity| activity.message_id.as_deref() == Some(LABELLED_PRIVATE));
        match private {
            Some(activity) => writeln!(
                out,
                "CRM/Private on {LABELLED_PRIVATE}: activity #{} is {}; dave@abcorp.com sees that it happened, subject {}",
                activity.activity_id,
                activity.level.as_str(),
                if activity.subject.is_some() {
                    "shown"
                } else {
                    "withheld"
                }
            )?,
            None => writeln!(
                out,
                "CRM/Private on {LABELLED_PRIVATE}: not in dave@abcorp.com's feed"
            )?,
        }
        let never = store
            .decision_log("michelle@abcorp.com", None)?
            .into_iter()
            .filter(|logged| logged.rules.iter().any(|rule| rule == "label: CRM/Never"))
            .count();
        writeln!(
            out,
            "CRM/Never: {never} message{} of michelle@abcorp.com's mailbox never synced (decision blocked_by_rule, rule \"label: CRM/Never\"); nothing of {} is stored",
            if never == 1 { "" } else { "s" },
            if never == 1 { "it" } else { "them" }
        )?;
        writeln!(
            out,
            "Remove a label in Gmail and the next sync undoes it (see rules/labels.toml)."
        )?;
        Ok(())
    }

    const LABELLED_PRIVATE: &str = "<salary-1@customer.com>";

    /// Polls `done` until it holds (a minute at most).
    async fn wait_for(
        what: &str,
        mut done: impl FnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !done()? {
            if std::time::Instant::now() > deadline {
                anyhow::bail!("timed out waiting for {what}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn heading(text: &str) -> std::io::Result<()> {
        writeln!(std::io::stdout().lock(), "\n== {text} ==")
    }

    /// Points the config at this run's sandbox (its port changes every run) and writes the OAuth
    /// client secret file, private as mailsync requires.
    fn write_gmail_settings(dir: &Path, base_url: &str, token_url: &str) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let secret_path = dir.join("client_secret.json");
        let secret = serde_json::json!({
            "installed": {
                "client_id": DEMO_CLIENT_ID,
                "client_secret": DEMO_CLIENT_SECRET,
                "auth_uri": format!("{base_url}o/oauth2/auth"),
                "token_uri": token_url,
                "redirect_uris": ["http://127.0.0.1"],
            }
        });
        std::fs::write(&secret_path, serde_json::to_vec_pretty(&secret)?)
            .context("cannot write the demo client secret")?;
        std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600))?;
        let base_config = DEMO_FILES
            .iter()
            .find(|(path, _)| *path == "mailsync.toml")
            .map(|(_, content)| String::from_utf8_lossy(content).into_owned())
            .expect("the demo ships a config");
        // Pulling push notifications takes a service account's own key; the sandbox makes a
        // throwaway one (the demo's users sign in with OAuth, which has none).
        let key_path = dir.join("pubsub-key.json");
        let key =
            sandbox::throwaway_service_account_key(token_url, "mailsync-demo@sandbox.example")
                .map_err(|error| anyhow::anyhow!(error))?;
        std::fs::write(&key_path, serde_json::to_vec_pretty(&key)?)
            .context("cannot write the demo's Pub/Sub key")?;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
        let config = format!(
            "{base_config}\n# Written by `mailsync demo` for this run's sandbox.\n[gmail]\napi_base_url = \"{base_url}\"\nclient_secret = \"client_secret.json\"\n# The sample mail is from 2024; look back far enough to see it.\ninitial_sync_days = 36500\n\n# Push: the sandbox publishes a notification for every change of a watched mailbox.\n[gmail.push]\ntopic = \"{}\"\nsubscription = \"{}\"\npubsub_base_url = \"{base_url}\"\nservice_account_key = \"pubsub-key.json\"\n",
            sandbox::DEFAULT_TOPIC,
            sandbox::DEFAULT_SUBSCRIPTION,
        );
        std::fs::write(dir.join("mailsync.toml"), config)
            .context("cannot write the demo config")?;
        Ok(())
    }

    /// Writes the bundled files, leaving any the user has edited alone so the playground can be
    /// played with (the config is rewritten on every run: it names this run's sandbox port).
    fn write_files(dir: &Path) -> anyhow::Result<()> {
        for (relative, content) in DEMO_FILES {
            let path = dir.join(relative);
            if path.exists() {
                continue;
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, content)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The compiled-in list must be exactly the fixture folder, so a fixture added for the
        /// demo cannot be silently left out of the binary.
        #[test]
        fn demo_files_match_the_fixture_folder() {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
            let mut on_disk = Vec::new();
            let mut folders = vec![root.clone()];
            while let Some(folder) = folders.pop() {
                for entry in std::fs::read_dir(&folder).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        folders.push(path);
                    } else if !path.to_string_lossy().contains(".sqlite3") {
                        // A store made by running commands against the fixture config is not part
                        // of the demo.
                        on_disk.push(
                            path.strip_prefix(&root)
                                .unwrap()
                                .to_string_lossy()
                                .into_owned(),
                        );
                    }
                }
            }
            on_disk.sort();
            let compiled: Vec<String> = DEMO_FILES
                .iter()
                .map(|(path, _)| path.to_string())
                .collect();
            assert_eq!(compiled, on_disk);
            for (path, content) in DEMO_FILES {
                assert_eq!(std::fs::read(root.join(path)).unwrap(), *content, "{path}");
            }
        }
    }
}
