//! The server's command line, shared by the `mailsync-sandbox` binary and `mailsync sandbox`:
//! serve folders of mail until SIGTERM or SIGINT, on loopback only (the control routes have no
//! authentication).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    FaultConfig, FaultKind, OAuthClient, PubSubConfig, PushFaultConfig, Sandbox, SandboxConfig,
    SubscriptionConfig, not_loopback_message,
};

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// A folder with one sub-folder of .eml files per mailbox, named by the user's email.
    #[arg(long, value_name = "DIR")]
    pub mailboxes: PathBuf,
    /// Where to listen: a loopback address only (any other is refused); port 0 picks a free
    /// port (printed on the first line).
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: std::net::SocketAddr,
    /// An installed-app OAuth client the token endpoint accepts (with --client-secret).
    #[arg(long)]
    pub client_id: Option<String>,
    /// The secret of the OAuth client `--client-id` registers (a test value: the sandbox
    /// serves sample mail only).
    #[arg(long)]
    pub client_secret: Option<String>,
    /// Probability (0 to 1) that a Gmail API request gets an injected fault.
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Which faults: 500, 503, 429, 403, drop, slow, truncate, 404new (repeatable; default all).
    #[arg(long = "fault-kind", value_name = "KIND")]
    pub fault_kinds: Vec<String>,
    /// Per-user quota (default: Gmail's 6,000 units per minute).
    #[arg(long)]
    pub quota_units_per_minute: Option<u32>,
    /// Lifetime of issued access tokens (default 3599).
    #[arg(long)]
    pub access_token_lifetime_secs: Option<u64>,
    /// A Pub/Sub topic `users.watch` may name, as projects/PROJECT/topics/TOPIC (repeatable;
    /// replaces the default projects/sandbox/topics/gmail).
    #[arg(long = "pubsub-topic", value_name = "NAME")]
    pub pubsub_topics: Vec<String>,
    /// A pull subscription, as projects/PROJECT/subscriptions/SUB=projects/PROJECT/topics/TOPIC
    /// (repeatable; replaces the default projects/sandbox/subscriptions/mailsync on the first
    /// topic).
    #[arg(long = "pubsub-subscription", value_name = "SUB=TOPIC")]
    pub pubsub_subscriptions: Vec<String>,
    /// Seconds a pulled message waits for its acknowledgement before it is delivered again
    /// (default 10, at most 600).
    #[arg(long)]
    pub ack_deadline_secs: Option<u64>,
    /// How long a pull waits for a message when none is ready (default 2000).
    #[arg(long)]
    pub pull_wait_ms: Option<u64>,
    /// Probability (0 to 1) that a push notification is silently lost.
    #[arg(long, default_value_t = 0.0)]
    pub push_drop_rate: f64,
    /// Probability (0 to 1) that a push notification is delivered twice.
    #[arg(long, default_value_t = 0.0)]
    pub push_duplicate_rate: f64,
    /// Milliseconds before a published push notification can be pulled.
    #[arg(long, default_value_t = 0)]
    pub push_delay_ms: u64,
    /// Seed for ids, history gaps and faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Why the server did not run: a mistake in the arguments (exit 2), or a failure (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        CliError::Failed(error.into())
    }
}

/// The topics and subscriptions the flags ask for, checked: a mistake is a usage error.
fn pubsub_config(args: &SandboxArgs) -> Result<PubSubConfig, String> {
    let mut config = PubSubConfig::default();
    if !args.pubsub_topics.is_empty() {
        config.topics = args.pubsub_topics.clone();
        if let Some(subscription) = config.subscriptions.first_mut() {
            subscription.topic = config.topics[0].clone();
        }
    }
    if !args.pubsub_subscriptions.is_empty() {
        config.subscriptions = args
            .pubsub_subscriptions
            .iter()
            .map(|pair| {
                let (name, topic) = pair.split_once('=').ok_or_else(|| {
                    format!("--pubsub-subscription {pair:?} is not of the form SUB=TOPIC")
                })?;
                Ok(SubscriptionConfig {
                    name: name.trim().to_string(),
                    topic: topic.trim().to_string(),
                })
            })
            .collect::<Result<_, String>>()?;
    }
    if let Some(seconds) = args.ack_deadline_secs {
        config.ack_deadline_secs = seconds;
    }
    if let Some(milliseconds) = args.pull_wait_ms {
        config.pull_wait_ms = milliseconds;
    }
    config.validate().map_err(|error| error.to_string())?;
    Ok(config)
}

/// Loads the mailboxes and serves them until SIGTERM or SIGINT.
pub fn run(args: SandboxArgs) -> Result<(), CliError> {
    if !args.listen.ip().is_loopback() {
        return Err(CliError::Usage(not_loopback_message(args.listen)));
    }
    let kinds = args
        .fault_kinds
        .iter()
        .map(|kind| kind.parse::<FaultKind>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| CliError::Usage(error.to_string()))?;
    let pubsub = pubsub_config(&args).map_err(CliError::Usage)?;
    for (flag, rate) in [
        ("--push-drop-rate", args.push_drop_rate),
        ("--push-duplicate-rate", args.push_duplicate_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(CliError::Usage(format!(
                "{flag} must be between 0 and 1, not {rate}"
            )));
        }
    }
    let mut config = SandboxConfig {
        mailboxes_dir: args.mailboxes.clone(),
        pubsub,
        push_faults: PushFaultConfig {
            drop_rate: args.push_drop_rate,
            duplicate_rate: args.push_duplicate_rate,
            delay_ms: args.push_delay_ms,
            ..PushFaultConfig::default()
        },
        faults: FaultConfig {
            rate: args.fault_rate,
            kinds: if kinds.is_empty() {
                FaultKind::ALL.to_vec()
            } else {
                kinds
            },
        },
        seed: args.seed,
        ..SandboxConfig::default()
    };
    if let Some(units) = args.quota_units_per_minute {
        config.quota_units_per_minute = units;
    }
    if let Some(lifetime) = args.access_token_lifetime_secs {
        config.access_token_lifetime_secs = lifetime;
    }
    if let (Some(client_id), Some(client_secret)) = (&args.client_id, &args.client_secret) {
        config.oauth_clients.push(OAuthClient {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
        });
    }
    let sandbox = Sandbox::load(config)
        .with_context(|| format!("cannot load mailboxes from {}", args.mailboxes.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        {
            // Tests and scripts read the first line to learn the port, and may close the pipe
            // after it: that must not stop the server, so a failed write is ignored.
            let banner = format!(
                "listening on http://{address}/\nmailboxes: {}\n",
                sandbox.users().join(", ")
            );
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
        }
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        };
        sandbox
            .serve(listener, shutdown)
            .await
            .context("sandbox server failed")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{DEFAULT_SUBSCRIPTION, DEFAULT_TOPIC};

    #[derive(Debug, clap::Parser)]
    struct Arguments {
        #[command(flatten)]
        sandbox: SandboxArgs,
    }

    fn pubsub(flags: &[&str]) -> Result<PubSubConfig, String> {
        let arguments =
            Arguments::try_parse_from(["sandbox", "--mailboxes", "."].iter().chain(flags))
                .expect("flags parse");
        pubsub_config(&arguments.sandbox)
    }

    #[test]
    fn pubsub_flags_replace_the_defaults() {
        assert_eq!(pubsub(&[]), Ok(PubSubConfig::default()));
        let topic_only = pubsub(&["--pubsub-topic", "projects/p/topics/t"]).expect("valid");
        assert_eq!(topic_only.topics, ["projects/p/topics/t"]);
        assert_eq!(
            topic_only.subscriptions,
            [SubscriptionConfig {
                name: DEFAULT_SUBSCRIPTION.into(),
                topic: "projects/p/topics/t".into()
            }],
            "the default subscription follows the first topic"
        );
        let both = pubsub(&[
            "--pubsub-topic",
            DEFAULT_TOPIC,
            "--pubsub-topic",
            "projects/p/topics/t",
            "--pubsub-subscription",
            "projects/p/subscriptions/a=projects/p/topics/t",
            "--pubsub-subscription",
            &format!("projects/p/subscriptions/b={DEFAULT_TOPIC}"),
            "--ack-deadline-secs",
            "1",
            "--pull-wait-ms",
            "100",
        ])
        .expect("valid");
        assert_eq!(both.subscriptions.len(), 2);
        assert_eq!(both.subscriptions[1].topic, DEFAULT_TOPIC);
        assert_eq!((both.ack_deadline_secs, both.pull_wait_ms), (1, 100));
        let error = pubsub(&[
            "--pubsub-subscription",
            "projects/p/subscriptions/a=projects/p/topics/t",
            "--pubsub-subscription",
            "projects/p/subscriptions/a=projects/p/topics/t",
        ])
        .expect_err("unknown topic, twice");
        assert!(
            error.contains("not a configured topic") && error.contains("configured twice"),
            "{error}"
        );
    }
}
