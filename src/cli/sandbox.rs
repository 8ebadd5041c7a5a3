//! `mailsync sandbox`: the Gmail-compatible server, for tests, demos and trying mailsync
//! without a Google account. Bind it to loopback only: its control routes have no auth.

use std::io::Write;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use super::{CommandResult, ExitStatus, SandboxArgs, runtime};
use crate::gmail::sandbox::{FaultConfig, FaultKind, OAuthClient, Sandbox, SandboxConfig};

pub fn run(args: SandboxArgs) -> CommandResult {
    if !args.listen.ip().is_loopback() {
        return Err(super::CommandError::Usage(
            crate::gmail::sandbox::not_loopback_message(args.listen),
        ));
    }
    let kinds = args
        .fault_kinds
        .iter()
        .map(|kind| kind.parse::<FaultKind>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| super::CommandError::Usage(error.to_string()))?;
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
    runtime()?.block_on(async {
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
        Ok(ExitStatus::Success)
    })
}
