//! Who this daemon is among the instances sharing a store, and how often it says so: its
//! name, host and pid, the fingerprint of the config it runs (instances must agree), and the
//! lease round's interval.

use std::time::Duration;

use crate::rules::Policy;
use crate::store::InstanceInfo;

/// Rounds per lease: a lease is renewed three times before it runs out, so one slow round
/// does not lose it.
const ROUNDS_PER_LEASE: u32 = 3;

/// The longest wait between rounds, whatever the lease: a dead instance's mailboxes are
/// claimed within this of their expiry, which the failover promise counts on
/// (`lease_secs` + `poll_interval_secs` + 5 s).
const MAX_ROUND_INTERVAL: Duration = Duration::from_secs(5);

/// How often an instance runs its lease round.
pub fn round_interval(lease: Duration) -> Duration {
    (lease / ROUNDS_PER_LEASE).min(MAX_ROUND_INTERVAL)
}

/// This process as an instance: `host-pid-xxxx`, unique even when a pid is reused.
pub fn identify(policy: &Policy) -> InstanceInfo {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let pid = std::process::id();
    InstanceInfo {
        instance: format!("{host}-{pid}-{:04x}", rand::random::<u16>()),
        host,
        pid,
        lease_secs: policy.config.daemon.lease_secs,
        config_fingerprint: config_fingerprint(policy),
    }
}

/// SHA-256 over the config file and every rules file, in path order: equal for instances
/// that run the same settings, whatever machine they run on.
pub fn config_fingerprint(policy: &Policy) -> String {
    use sha2::{Digest, Sha256};
    let mut files: Vec<&std::path::Path> = policy
        .rules
        .rules
        .iter()
        .map(|rule| rule.file.as_path())
        .collect();
    files.sort();
    files.dedup();
    let mut hasher = Sha256::new();
    for path in std::iter::once(policy.config.source_path.as_path()).chain(files) {
        hasher.update(
            path.file_name()
                .map(|name| name.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update([0]);
        hasher.update(std::fs::read(path).unwrap_or_default());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// This instance's side of the lease rounds: runs them off the async threads, keeps what the
/// last one left, and stops syncing on its own when it cannot renew in time.
pub struct LeaseKeeper {
    pub instance: InstanceInfo,
    lease: Duration,
    last_renewed: std::time::Instant,
    last: crate::store::LeaseRound,
}

/// What a round changed, for the supervisor to act on.
pub struct RoundOutcome {
    /// The mailboxes this instance may sync now.
    pub held: std::collections::BTreeSet<String>,
    pub runner: bool,
    /// It was not the runner before this round.
    pub became_runner: bool,
}

impl LeaseKeeper {
    pub fn new(instance: InstanceInfo) -> LeaseKeeper {
        LeaseKeeper {
            lease: Duration::from_secs(instance.lease_secs),
            instance,
            last_renewed: std::time::Instant::now(),
            last: crate::store::LeaseRound::default(),
        }
    }

    pub fn interval(&self) -> Duration {
        round_interval(self.lease)
    }

    /// After a reload: the store records the new config's fingerprint, so that instances
    /// left on the old one are reported. The lease length stays the one read at start.
    pub async fn reloaded(&mut self, store: &crate::store::SharedStore, policy: &Policy) {
        self.instance.config_fingerprint = config_fingerprint(policy);
        let store = store.clone();
        let instance = self.instance.clone();
        match tokio::task::spawn_blocking(move || store.join(&instance)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(error = %error, "cannot record the reloaded config's fingerprint")
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot record the reloaded config's fingerprint")
            }
        }
    }

    /// One round for the sync-enabled users of `policy`. If the store cannot be reached,
    /// what is held stays held until the lease would have run out, then nothing is: the
    /// mailboxes may be another instance's by then, and its writes would be refused anyway.
    pub async fn round(
        &mut self,
        store: &crate::store::SharedStore,
        policy: &Policy,
        metrics: &crate::metrics::Metrics,
    ) -> RoundOutcome {
        let wanted: Vec<String> = policy
            .config
            .users
            .iter()
            .filter(|user| user.sync)
            .map(|user| user.email.clone())
            .collect();
        let store = store.clone();
        let lease = self.lease;
        let round = tokio::task::spawn_blocking(move || store.lease_round(&wanted, lease)).await;
        let was_runner = self.last.runner;
        match round {
            Ok(Ok(round)) => {
                self.last_renewed = std::time::Instant::now();
                if round.config_mismatches > 0 && self.last.config_mismatches == 0 {
                    tracing::error!(
                        instance = %self.instance.instance,
                        differing_instances = round.config_mismatches,
                        "instances on this store run different configs or rules; run the same everywhere (see `mailsync status --instances`)"
                    );
                }
                if round.held != self.last.held {
                    tracing::info!(
                        instance = %self.instance.instance,
                        mailboxes = round.held.len(),
                        live_instances = round.live_instances,
                        runner = round.runner,
                        "mailbox leases changed"
                    );
                }
                self.last = round;
            }
            Ok(Err(error)) => {
                tracing::error!(error = %error, "lease round failed; retrying at the next round");
                self.drop_everything_if_expired();
            }
            Err(error) => {
                tracing::error!(error = %error, "lease round panicked; retrying at the next round");
                self.drop_everything_if_expired();
            }
        }
        metrics.leases(&self.last);
        RoundOutcome {
            held: self.last.held.clone(),
            runner: self.last.runner,
            became_runner: self.last.runner && !was_runner,
        }
    }

    fn drop_everything_if_expired(&mut self) {
        if self.last_renewed.elapsed() >= self.lease && !self.last.held.is_empty() {
            tracing::error!(
                mailboxes = self.last.held.len(),
                "leases not renewed in time: syncing nothing until the store answers"
            );
            self.last.held.clear();
            self.last.runner = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_come_three_times_a_lease_and_at_least_every_five_seconds() {
        let cases = [(3, 1_000), (9, 3_000), (30, 5_000), (600, 5_000)];
        for (lease_secs, round_ms) in cases {
            assert_eq!(
                round_interval(Duration::from_secs(lease_secs)),
                Duration::from_millis(round_ms),
                "{lease_secs}"
            );
        }
    }
}
