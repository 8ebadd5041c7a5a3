//! Push: the pull loop that turns Gmail's notifications into wake-ups of the mailboxes'
//! workers, and the health every worker reads to choose how often it polls anyway.
//!
//! A notification only wakes a worker, which then syncs from its own cursor, so duplicates,
//! reordering and notifications for mailboxes nobody syncs are harmless: at worst one more
//! `history.list`. A lost one is found by the safety poll. A notification is acknowledged
//! once the wake-up is in the worker's hands; a worker that has not started yet syncs at its
//! start anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::worker::{Shared, notify};
use crate::gmail::pubsub::PubSubClient;
use crate::metrics::Metrics;
use crate::notify::Alert;

/// Whether notifications arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushHealth {
    /// No `[gmail.push]`: every mailbox is polled every `poll_interval_secs`.
    Off,
    /// Pulling works: a mailbox with a live watch is polled only every `safety_poll_secs`.
    Pulling,
    /// Pulling fails: every mailbox is polled every `poll_interval_secs` until it works.
    Failing,
}

/// The longest pause between failed pulls.
const RETRY_CAP: Duration = Duration::from_secs(60);

/// One wake-up per running worker, by mailbox.
#[derive(Clone, Default)]
pub struct Wakes {
    workers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl Wakes {
    /// The wake-up of `user_email`'s worker, until the handle is dropped.
    pub fn register(&self, user_email: &str) -> WakeHandle {
        let notify = Arc::new(Notify::new());
        self.workers
            .lock()
            .expect("never poisoned")
            .insert(user_email.to_string(), notify.clone());
        WakeHandle {
            wakes: self.clone(),
            notify,
        }
    }

    /// Wakes `user_email`'s worker; false when this instance runs none.
    pub fn wake(&self, user_email: &str) -> bool {
        match self.workers.lock().expect("never poisoned").get(user_email) {
            Some(notify) => {
                // Stores one permit: a burst of notifications is one sync.
                notify.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A worker's end of its wake-up.
pub struct WakeHandle {
    wakes: Wakes,
    notify: Arc<Notify>,
}

impl WakeHandle {
    /// Resolves when a notification names the mailbox.
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

impl Drop for WakeHandle {
    fn drop(&mut self) {
        let mut workers = self.wakes.workers.lock().expect("never poisoned");
        // A worker started again for the same mailbox has registered a handle of its own.
        workers.retain(|_, notify| !Arc::ptr_eq(notify, &self.notify));
    }
}

/// Pulls notifications until `shutdown`, waking workers and publishing whether pulling
/// works. Never gives up: after a failure it tries again, at most a minute later.
pub async fn pull_loop(
    client: PubSubClient,
    shared: Arc<Shared>,
    health: watch::Sender<PushHealth>,
    shutdown: CancellationToken,
) {
    let mut failures: u32 = 0;
    loop {
        let pulled = tokio::select! {
            pulled = client.pull() => pulled,
            () = shutdown.cancelled() => return,
        };
        match pulled {
            Ok(messages) => {
                if failures > 0 || *health.borrow() != PushHealth::Pulling {
                    if failures > 0 {
                        tracing::info!("pulling push notifications works again; back to push");
                    } else {
                        tracing::info!(
                            subscription = client.subscription(),
                            "pulling push notifications"
                        );
                    }
                    health.send_replace(PushHealth::Pulling);
                    shared.metrics.push_pulling(true);
                }
                failures = 0;
                let mut ack_ids = Vec::with_capacity(messages.len());
                for message in messages {
                    let outcome = match &message.notification {
                        Ok(notification) => deliver(&shared, &notification.email_address).await,
                        Err(error) => {
                            tracing::warn!(error = %error, "push notification dropped");
                            Some("malformed")
                        }
                    };
                    // Not acknowledged when the wake-up could not be recorded: Pub/Sub
                    // delivers it again after its ack deadline.
                    if let Some(outcome) = outcome {
                        Metrics::outcome(&shared.metrics.push_notifications, outcome);
                        ack_ids.push(message.ack_id);
                    }
                }
                // A failed acknowledgement means the notifications come again: harmless.
                if let Err(error) = client.acknowledge(ack_ids).await {
                    tracing::warn!(error = %error, "cannot acknowledge push notifications; they will be delivered again");
                }
            }
            Err(error) => {
                failures += 1;
                if *health.borrow() != PushHealth::Failing {
                    tracing::warn!(error = %error, "pulling push notifications failed; every mailbox is polled every poll_interval_secs until it works again");
                    health.send_replace(PushHealth::Failing);
                    shared.metrics.push_pulling(false);
                    let policy = shared.policy.borrow().clone();
                    notify(
                        &shared,
                        &policy,
                        Alert::PushFailing {
                            subscription: client.subscription().to_string(),
                            error: error.to_string(),
                        },
                    );
                } else {
                    tracing::debug!(error = %error, failures, "pulling push notifications still fails");
                }
                // Capped at a minute: a missing subscription or role is fixed by a person,
                // and a minute after that is soon enough.
                let pause = crate::gmail::client::backoff(failures, RETRY_CAP, None);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// Hands a notification for `user_email` to whoever syncs the mailbox: this instance's
/// worker, or the instance holding its lease (through the store). `None` when that could
/// not be recorded.
async fn deliver(shared: &Arc<Shared>, user_email: &str) -> Option<&'static str> {
    if shared.wakes.wake(user_email) {
        return Some("woke");
    }
    let store = shared.store.clone();
    let user = user_email.to_string();
    match tokio::task::spawn_blocking(move || store.forward_wake(&user)).await {
        Ok(Ok(true)) => Some("forwarded"),
        // Nobody syncs this mailbox: unknown, turned off, purged, or not claimed yet (then
        // its first sync is ahead anyway).
        Ok(Ok(false)) => Some("ignored"),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "cannot forward a push notification to the instance holding the mailbox; it comes again");
            None
        }
        Err(error) => {
            tracing::warn!(error = %error, "cannot forward a push notification; it comes again");
            None
        }
    }
}

/// How often an instance looks for wake-ups the others left for its mailboxes.
const FORWARDED_WAKES_INTERVAL: Duration = Duration::from_millis(500);

/// With several instances: wakes this instance's workers for the notifications other
/// instances pulled, until `shutdown`.
pub async fn forwarded_wakes_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(FORWARDED_WAKES_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.take_wakes()).await {
            Ok(Ok(users)) => {
                for user in users {
                    shared.wakes.wake(&user);
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cannot read forwarded push wake-ups; trying again")
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot read forwarded push wake-ups; trying again")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wake-up reaches the registered worker once however many notifications came, and a
    /// dropped handle leaves nothing behind, unless a newer worker took the mailbox over.
    #[tokio::test]
    async fn wakes_coalesce_and_follow_the_running_worker() {
        let wakes = Wakes::default();
        assert!(!wakes.wake("dave@abcorp.com"), "no worker yet");
        let first = wakes.register("dave@abcorp.com");
        assert!(wakes.wake("dave@abcorp.com"));
        assert!(wakes.wake("dave@abcorp.com"));
        tokio::time::timeout(Duration::from_secs(1), first.woken())
            .await
            .expect("woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), first.woken())
                .await
                .is_err(),
            "two notifications, one wake-up"
        );
        let second = wakes.register("dave@abcorp.com");
        drop(first);
        assert!(
            wakes.wake("dave@abcorp.com"),
            "the newer worker is still there"
        );
        tokio::time::timeout(Duration::from_secs(1), second.woken())
            .await
            .expect("the newer worker is woken");
        drop(second);
        assert!(!wakes.wake("dave@abcorp.com"));
    }
}
