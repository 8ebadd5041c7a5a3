//! The server's command line, shared by the `mailsync-sandbox` binary and `mailsync sandbox`:
//! serve folders of mail until SIGTERM or SIGINT, on loopback only (the control routes have no
//! authentication).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::{FaultConfig, FaultKind, OAuthClient, Sandbox, SandboxConfig, not_loopback_message};

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
    let mut config = SandboxConfig {
        mailboxes_dir: args.mailboxes.clone(),
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
