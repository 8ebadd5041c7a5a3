//! `mailsync run`: the daemon, with real signals wired to its controls.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{CommandError, CommandResult, ExitStatus, daemon_runtime};
use crate::daemon::{self, Controls, DaemonError, RunOutcome};

use clap::Args;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Sync every enabled mailbox once and exit (1 if any failed), instead of polling.
    #[arg(long)]
    pub once: bool,
}

pub fn run(config_path: &std::path::Path, args: RunArgs) -> CommandResult {
    daemon_runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        let (reload_tx, reload) = mpsc::channel(4);
        let mut terminate = signal(SignalKind::terminate()).map_err(anyhow::Error::from)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(anyhow::Error::from)?;
        let mut hangup = signal(SignalKind::hangup()).map_err(anyhow::Error::from)?;
        let signals = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = terminate.recv() => { tracing::info!("SIGTERM: shutting down"); shutdown.cancel(); break; }
                        _ = interrupt.recv() => { tracing::info!("SIGINT: shutting down"); shutdown.cancel(); break; }
                        _ = hangup.recv() => {
                            tracing::info!("SIGHUP: reloading config and rules");
                            let _ = reload_tx.try_send(());
                        }
                    }
                }
            })
        };
        let controls = Controls {
            shutdown,
            reload,
            once: args.once,
        };
        let outcome = daemon::run(config_path.to_path_buf(), controls).await;
        signals.abort();
        match outcome {
            Ok(RunOutcome::Clean) => Ok(ExitStatus::Success),
            Ok(RunOutcome::SomeFailed) => Ok(ExitStatus::SomeFailed),
            Err(DaemonError::Config(diagnostics)) => Err(CommandError::Config(diagnostics)),
            Err(error) => Err(CommandError::Failed(error.into())),
        }
    })
}
