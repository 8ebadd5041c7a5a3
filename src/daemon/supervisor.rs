//! Starts and stops the users' workers: at start-up, on reload (SIGHUP) and on shutdown
//! (SIGTERM/SIGINT), and tells systemd what it is doing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::push::{PushHealth, Wakes};
use super::worker::{Shared, Stopped, run_worker};
use crate::diagnostic::Diagnostics;
use crate::gmail::http;
use crate::metrics::Metrics;
use crate::rules::Policy;
use crate::store::{DaemonLock, Store, StoreError, StoreOptions, SyncStatus};

/// How the outside world steers a running daemon.
pub struct Controls {
    /// Cancelled to stop: in-flight work is abandoned at the next safe point.
    pub shutdown: CancellationToken,
    /// A message asks for the config and rules to be read again.
    pub reload: mpsc::Receiver<()>,
    /// Sync every enabled mailbox once, then stop.
    pub once: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Stopped on request (or, with `once`, every mailbox synced).
    Clean,
    /// With `once`: at least one mailbox failed to sync.
    SomeFailed,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(Diagnostics),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Metrics(String),
    #[error("a start-up task failed: {0}")]
    Task(String),
}

/// Loads settings the same way at start-up and on reload: one code path, so a config that
/// starts also reloads and vice versa.
async fn load(config_path: &Path) -> Result<crate::settings::Settings, DaemonError> {
    crate::settings::load(config_path)
        .await
        .map_err(DaemonError::Config)
}

fn notify_systemd(state: &[sd_notify::NotifyState<'_>]) {
    // Outside systemd there is no socket and this is a no-op.
    if let Err(error) = sd_notify::notify(false, state) {
        tracing::debug!(error = %error, "cannot notify systemd");
    }
}

struct Workers {
    running: HashMap<String, (CancellationToken, JoinHandle<Stopped>)>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    /// The mailboxes this instance holds a lease on (every sync-enabled one with SQLite).
    held: std::collections::BTreeSet<String>,
}

impl Workers {
    /// Starts a worker for every sync-enabled user whose lease this instance holds and who
    /// has no live worker, and stops those whose sync is off, who left the config, or whose
    /// lease is no longer this instance's.
    fn reconcile(&mut self, policy: &Policy) {
        let held = &self.held;
        self.running.retain(|email, (cancel, handle)| {
            let wanted = policy
                .config
                .user_by_address(email)
                .is_some_and(|user| user.sync);
            let keep = wanted && held.contains(email) && !handle.is_finished();
            if !keep {
                cancel.cancel();
                if !handle.is_finished() {
                    if wanted {
                        tracing::info!(user = %email, "mailbox lease given up; stopping at once");
                    } else {
                        tracing::info!(user = %email, "sync turned off; stopping at once");
                    }
                }
            }
            keep
        });
        let disabled: Vec<String> = policy
            .config
            .users
            .iter()
            .filter(|user| !user.sync)
            .map(|user| user.email.clone())
            .collect();
        for email in &disabled {
            self.shared
                .metrics
                .register_user(email, SyncStatus::Disabled);
        }
        if !disabled.is_empty() {
            // Store calls block: off the async threads.
            let store = self.shared.store.clone();
            let watched = policy.config.gmail.push.is_some();
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let recorded = tokio::task::spawn_blocking({
                    let disabled = disabled.clone();
                    move || {
                        for email in disabled {
                            if let Err(error) =
                                store.set_sync_status(&email, SyncStatus::Disabled, None)
                            {
                                tracing::error!(user = %email, error = %error, "cannot record sync status");
                            }
                        }
                    }
                });
                let _ = recorded.await;
                if watched {
                    for email in disabled {
                        super::worker::stop_watch(shared.clone(), email).await;
                    }
                }
            });
        }
        for user in &policy.config.users {
            if !user.sync || !self.held.contains(&user.email) {
                continue;
            }
            if self.running.contains_key(&user.email) {
                continue;
            }
            let cancel = self.shutdown.child_token();
            let handle = tokio::spawn(run_worker(
                self.shared.clone(),
                user.email.clone(),
                cancel.clone(),
            ));
            tracing::info!(user = %user.email, "sync started");
            self.running.insert(user.email.clone(), (cancel, handle));
        }
    }

    /// Cancels everything and waits for the workers, at most `timeout`.
    async fn stop(self, timeout: Duration) {
        for (cancel, _) in self.running.values() {
            cancel.cancel();
        }
        let all = futures_join(
            self.running
                .into_values()
                .map(|(_, handle)| handle)
                .collect(),
        );
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!(
                timeout_secs = timeout.as_secs(),
                "workers did not stop in time; exiting anyway (every write is transactional)"
            );
        }
    }
}

async fn futures_join(handles: Vec<JoinHandle<Stopped>>) {
    for handle in handles {
        let _ = handle.await;
    }
}

/// Runs a background job's store work off the async threads. A failure (a store error, or a
/// panic in the job) is logged with the job's name and gives `None`: the job runs again at its
/// next turn and the daemon carries on.
async fn store_job<T: Send + 'static>(
    store: &crate::sync::gmail::SharedStore,
    job: &'static str,
    work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Option<T> {
    let store = store.clone();
    let outcome = tokio::task::spawn_blocking(move || work(&*store)).await;
    match outcome {
        Ok(Ok(value)) => Some(value),
        Ok(Err(error)) => {
            tracing::error!(job, error = %error, "store job failed; it runs again at its next turn");
            None
        }
        Err(error) => {
            tracing::error!(job, error = %error, "store job panicked; it runs again at its next turn");
            None
        }
    }
}

/// The spec's retroactive rules, after start-up and every reload: stored activities a skip
/// rule now matches are removed, visibility is recomputed. Returns whether that worked (a
/// failure is logged by `store_job`).
async fn apply_rules_to_stored(
    store: &crate::sync::gmail::SharedStore,
    policy: &Arc<Policy>,
) -> bool {
    let policy = policy.clone();
    let applied = store_job(store, "apply rules to stored activities", move |store| {
        crate::sync::retro::apply(&policy, store, false)
    })
    .await;
    let Some(result) = applied else {
        return false;
    };
    match result.applied {
        Some(applied) => tracing::info!(
            sources_removed = applied.sources_removed,
            activities_removed = applied.activities_removed,
            visibility_changed = applied.visibility_changed,
            "rules applied to stored activities"
        ),
        None => tracing::debug!("no rule change applied to stored activities"),
    }
    true
}

/// How often the daemon looks for contacts added or marked never-sync by anyone (the CLI or
/// the CRM writing to the store): a read of the small `contact_events` table, which triggers
/// fill, never of the contacts table.
const CONTACT_EVENTS_INTERVAL: Duration = Duration::from_secs(5);

/// Contact change events the daemon reads per turn; the rest wait for the next (5 s later).
const CONTACT_EVENTS_PER_TURN: usize = 10_000;

/// Turns contact changes into work: a changed never-sync switch re-applies the rules to
/// stored activities at once; new addresses are only reported, because each mailbox backfills
/// them from its own mark in the log at its next poll (a paused one when its sync is back on).
/// With nothing new, which is nearly every turn, this is one indexed read: no user list, no
/// per-mailbox query, no write.
async fn process_contact_events(store: &crate::sync::gmail::SharedStore, policy: &Arc<Policy>) {
    let Some(events) = store_job(store, "read contact changes", |store| {
        store.contact_events(CONTACT_EVENTS_PER_TURN)
    })
    .await
    else {
        return;
    };
    let Some(through) = events.through else {
        return;
    };
    if events.addresses_added > 0 {
        tracing::info!(
            addresses = events.addresses_added,
            "new contact addresses; their earlier mail is backfilled at each mailbox's next poll"
        );
    }
    if events.no_sync_changed > 0 {
        tracing::info!(
            contacts = events.no_sync_changed,
            "a contact's never-sync switch changed; applying it to stored activities"
        );
        // Until it has worked, the changes stay unhandled and the next turn (5 s later) tries
        // again: a never-sync switch the CRM set during a busy moment must not leave that
        // contact's mail readable until the next restart.
        if !apply_rules_to_stored(store, policy).await {
            return;
        }
    }
    // After applying, so a crash in between applies them again rather than never.
    store_job(store, "mark contact changes handled", move |store| {
        store.finish_contact_events(through)
    })
    .await;
}

/// Retention, once: content older than `[retention] body_days` is erased. A failure is logged
/// and tried again at the next run; it never stops the daemon.
async fn apply_retention(store: &crate::sync::gmail::SharedStore, policy: &Arc<Policy>) {
    if policy.config.retention_body_days.is_none() {
        return;
    }
    let policy = policy.clone();
    let erased = store_job(store, "apply retention", move |store| {
        crate::sync::retention::apply(&policy.config, store, false)
    })
    .await
    .flatten();
    match erased {
        Some(erased) if erased != Default::default() => tracing::info!(
            activities_erased = erased.activities_erased,
            attachment_files_removed = erased.attachment_files_removed,
            "retention applied"
        ),
        _ => tracing::debug!("retention: nothing erased"),
    }
}

/// Applies retention every `interval` (the first run is at start, before this loop) with
/// the current settings, until `shutdown` is cancelled.
async fn retention_loop(
    store: crate::sync::gmail::SharedStore,
    policy: watch::Receiver<Arc<Policy>>,
    runner: watch::Receiver<bool>,
    shutdown: CancellationToken,
    interval: Duration,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                // Work that must happen once: on the elected instance only.
                if !*runner.borrow() {
                    continue;
                }
                let current = policy.borrow().clone();
                apply_retention(&store, &current).await;
            }
        }
    }
}

/// Runs the daemon until `controls.shutdown` is cancelled.
pub async fn run(config_path: PathBuf, mut controls: Controls) -> Result<RunOutcome, DaemonError> {
    let crate::settings::Settings {
        policy,
        credentials,
        push_key,
    } = load(&config_path).await?;
    let store_location = policy.config.store.clone();
    // Blocking work (a file lock, a database connection): off the async threads.
    let (_lock, store) = {
        let config = policy.config.clone();
        tokio::task::spawn_blocking(move || {
            let lock = DaemonLock::acquire(&config.store)?;
            Ok::<_, StoreError>((lock, crate::store::open(&config)?))
        })
        .await
        .map_err(|error| DaemonError::Task(error.to_string()))??
    };
    let (policy_tx, policy_rx) = watch::channel(Arc::new(policy));
    let (credentials_tx, credentials_rx) = watch::channel(credentials);
    // Cloned out of the channel: a borrow held across an await would keep the daemon's
    // future from moving between threads.
    let metrics_config = policy_rx.borrow().config.metrics.clone();
    let metrics = Metrics::with_hashed_users(
        metrics_config
            .as_ref()
            .is_some_and(|config| config.hash_users),
    );
    metrics.register_methods(crate::gmail::client::Method::ALL.map(|method| method.as_str()));
    if let Some(config) = &metrics_config {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|error| {
                DaemonError::Metrics(format!(
                    "cannot listen on {} for /metrics: {error}",
                    config.listen
                ))
            })?;
        tracing::info!(listen = %config.listen, "serving Prometheus metrics at /metrics and the status page at /status");
        let page: crate::metrics::StatusPage = {
            let (store, policy, metrics) = (store.clone(), policy_rx.clone(), metrics.clone());
            let hash_users = config.hash_users;
            std::sync::Arc::new(move || {
                let policy = policy.borrow().clone();
                super::status_page::PageData::gather(
                    &store,
                    &policy,
                    &|user| metrics.quota_today(user),
                    &|user| metrics.user(user).user,
                    hash_users,
                )
                .map(|data| super::status_page::render(&data))
                .map_err(|error| error.to_string())
            })
        };
        tokio::spawn(crate::metrics::serve(
            listener,
            metrics.clone(),
            Some(page),
            controls.shutdown.clone(),
        ));
    }
    let (push_tx, push_rx) = watch::channel(PushHealth::Off);
    let shared = Arc::new(Shared {
        wakes: Wakes::default(),
        push: push_rx,
        store,
        policy: policy_rx.clone(),
        credentials: credentials_rx,
        api_http: http::api_client(),
        oauth_http: http::oauth_client(),
        slots: Arc::new(Semaphore::new(
            policy_rx.borrow().config.daemon.max_concurrent_users as usize,
        )),
        once: controls.once,
        metrics,
    });
    let mut workers = Workers {
        running: HashMap::new(),
        shared,
        shutdown: controls.shutdown.clone(),
        held: Default::default(),
    };
    // Join the store's instances and take this instance's share of the mailboxes (all of
    // them with SQLite, where it is the only instance).
    let mut leases =
        super::instance::LeaseKeeper::new(super::instance::identify(&policy_rx.borrow()));
    {
        let store = workers.shared.store.clone();
        let instance = leases.instance.clone();
        tokio::task::spawn_blocking(move || store.join(&instance))
            .await
            .map_err(|error| DaemonError::Task(error.to_string()))??;
    }
    let first = leases
        .round(
            &workers.shared.store,
            &policy_rx.borrow().clone(),
            &workers.shared.metrics,
        )
        .await;
    workers.held = first.held;
    let (runner_tx, runner_rx) = watch::channel(first.runner);
    if first.runner {
        // Never-sync switches changed while no daemon ran are applied before the first poll
        // (new addresses need nothing from here: each mailbox backfills from its mark).
        process_contact_events(&workers.shared.store, &policy_rx.borrow().clone()).await;
    }
    workers.reconcile(&policy_rx.borrow().clone());
    if first.runner {
        // The rules may have changed while no daemon ran, and content come of age.
        apply_rules_to_stored(&workers.shared.store, &policy_rx.borrow().clone()).await;
        apply_retention(&workers.shared.store, &policy_rx.borrow().clone()).await;
    }
    let users = policy_rx
        .borrow()
        .config
        .users
        .iter()
        .filter(|user| user.sync)
        .count();
    tracing::info!(
        config = %config_path.display(),
        store = %store_location,
        instance = %leases.instance.instance,
        users,
        mailboxes = workers.held.len(),
        "mailsync daemon started"
    );
    notify_systemd(&[sd_notify::NotifyState::Ready]);
    if controls.once {
        let outcome = run_once(workers.running, &controls.shutdown).await;
        leave(&workers.shared.store).await;
        return Ok(outcome);
    }
    let push = policy_rx.borrow().config.gmail.push.clone();
    if let (Some(push), Some(key)) = (push, push_key) {
        // With several instances, a notification one pulls may be for another's mailbox.
        if matches!(
            store_location,
            crate::config::StoreLocation::Postgres { .. }
        ) {
            tokio::spawn(super::push::forwarded_wakes_loop(
                workers.shared.clone(),
                controls.shutdown.clone(),
            ));
        }
        start_pulling(
            &workers.shared,
            &push,
            key,
            push_tx,
            controls.shutdown.clone(),
        )
        .await;
    }
    tokio::spawn(retention_loop(
        workers.shared.store.clone(),
        policy_rx.clone(),
        runner_rx.clone(),
        controls.shutdown.clone(),
        crate::sync::retention::INTERVAL,
    ));
    let mut lease_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + leases.interval(),
        leases.interval(),
    );
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Only instances sharing a store have leases to renew and others to watch for; with
    // SQLite the one daemon holds every mailbox, and what it holds changes only on reload.
    // (A round over 10,000 users every 5 s was a third of an idle daemon's CPU.)
    let shares_mailboxes = matches!(
        store_location,
        crate::config::StoreLocation::Postgres { .. }
    );
    let mut trim_tick = tokio::time::interval(MEMORY_TRIM_INTERVAL);
    trim_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    let mut watchdog_usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec)
        .then(|| Duration::from_micros(watchdog_usec / 2).max(Duration::from_millis(100)));
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    watchdog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut contact_events_tick = tokio::time::interval(CONTACT_EVENTS_INTERVAL);
    contact_events_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            () = controls.shutdown.cancelled() => break,
            message = controls.reload.recv() => {
                if message.is_none() {
                    // The reload source is gone; keep running until shutdown.
                    controls.shutdown.cancelled().await;
                    break;
                }
                notify_systemd(&[sd_notify::NotifyState::Reloading]);
                match load(&config_path).await {
                    Ok(settings) if settings.policy.config.gmail.push != policy_rx.borrow().config.gmail.push => {
                        tracing::error!("config reload rejected: [gmail.push] cannot change while running; restart instead; keeping the old config");
                        drop(settings);
                    }
                    Ok(crate::settings::Settings { policy, credentials, .. }) if policy.config.store == store_location => {
                        tracing::info!("config reloaded");
                        let policy = Arc::new(policy);
                        workers
                            .shared
                            .store
                            .set_options(StoreOptions::from_config(&policy.config));
                        // Workers read the policy from the channel as they start: it must
                        // hold the new one before `reconcile` starts a user the reload turned
                        // on (or added), or that worker sees the old config and stops.
                        let _ = credentials_tx.send(credentials);
                        let _ = policy_tx.send(policy.clone());
                        leases.reloaded(&workers.shared.store, &policy).await;
                        // At once, not at the next round: a user the reload turned on is
                        // held (with SQLite, whose one daemon has no rounds, only here).
                        let round = leases.round(&workers.shared.store, &policy, &workers.shared.metrics).await;
                        workers.held = round.held;
                        let _ = runner_tx.send(round.runner);
                        workers.reconcile(&policy);
                        if *runner_rx.borrow() {
                            apply_rules_to_stored(&workers.shared.store, &policy).await;
                        }
                    }
                    Ok(_) => tracing::error!("config reload rejected: [store] path cannot change while running; restart instead; keeping the old config"),
                    Err(error) => tracing::error!(error = %error, "config reload rejected; keeping the old config"),
                }
                notify_systemd(&[sd_notify::NotifyState::Ready]);
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                notify_systemd(&[sd_notify::NotifyState::Watchdog]);
            }
            _ = contact_events_tick.tick(), if *runner_rx.borrow() => {
                let policy = policy_rx.borrow().clone();
                process_contact_events(&workers.shared.store, &policy).await;
            }
            _ = trim_tick.tick() => release_free_memory(),
            _ = lease_tick.tick(), if shares_mailboxes => {
                let policy = policy_rx.borrow().clone();
                let round = leases.round(&workers.shared.store, &policy, &workers.shared.metrics).await;
                workers.held = round.held;
                let _ = runner_tx.send(round.runner);
                workers.reconcile(&policy);
                if round.became_runner {
                    // The work that must happen once is this instance's now: catch up on
                    // what the last runner may have left undone.
                    process_contact_events(&workers.shared.store, &policy).await;
                    apply_rules_to_stored(&workers.shared.store, &policy).await;
                }
            }
        }
    }
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    let timeout = Duration::from_secs(policy_rx.borrow().config.daemon.shutdown_timeout_secs);
    tracing::info!("shutting down: finishing in-flight writes");
    let store = workers.shared.store.clone();
    workers.stop(timeout).await;
    leave(&store).await;
    tracing::info!("mailsync daemon stopped");
    Ok(RunOutcome::Clean)
}

/// Starts pulling push notifications. A key that cannot even be made into a client is
/// reported, and every mailbox is polled as without push.
async fn start_pulling(
    shared: &Arc<Shared>,
    push: &crate::config::PushConfig,
    key: Arc<yup_oauth2::ServiceAccountKey>,
    health: watch::Sender<PushHealth>,
    shutdown: CancellationToken,
) {
    match crate::gmail::pubsub::PubSubClient::new(
        push,
        key,
        shared.api_http.clone(),
        shared.oauth_http.clone(),
    )
    .await
    {
        Ok(client) => {
            tokio::spawn(super::push::pull_loop(
                client,
                shared.clone(),
                health,
                shutdown,
            ));
        }
        Err(error) => {
            tracing::error!(error = %error, "cannot pull push notifications; every mailbox is polled every poll_interval_secs");
            health.send_replace(PushHealth::Failing);
        }
    }
}

/// How often freed memory goes back to the system.
const MEMORY_TRIM_INTERVAL: Duration = Duration::from_secs(60);

/// Gives memory the allocator holds free back to the system. A burst (every mailbox's first
/// sync at start, a safety poll of every mailbox at once) leaves glibc's heap holding tens
/// of megabytes it would reuse but never returns; an idle daemon should not keep them.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it takes the
    // allocator's own locks and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Gives this instance's leases back so the others take its mailboxes over at once.
async fn leave(store: &crate::store::SharedStore) {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.leave()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "could not give the leases back; they run out on their own")
        }
        Err(error) => tracing::warn!(error = %error, "could not give the leases back"),
    }
}

/// Waits for every worker's single poll (or for shutdown).
async fn run_once(
    running: HashMap<String, (CancellationToken, JoinHandle<Stopped>)>,
    shutdown: &CancellationToken,
) -> RunOutcome {
    let mut outcome = RunOutcome::Clean;
    for (email, (cancel, handle)) in running {
        let stopped = tokio::select! {
            stopped = handle => stopped.unwrap_or(Stopped::FailedOnce),
            () = shutdown.cancelled() => { cancel.cancel(); Stopped::Cancelled }
        };
        if stopped != Stopped::PolledOnce {
            tracing::warn!(user = %email, outcome = ?stopped, "mailbox not synced");
            outcome = RunOutcome::SomeFailed;
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::rules::RuleSet;
    use crate::store::NewContact;

    fn policy() -> Policy {
        let config = Config::from_toml(
            Path::new("/cfg/mailsync.toml"),
            "[company]\ndomains = [\"abcorp.com\"]\n[store]\npath = \"crm.sqlite3\"\n\
             [retention]\nbody_days = 30\n[[users]]\nemail = \"dave@abcorp.com\"\nsync = true\n"
                .to_string(),
        )
        .expect("valid test config");
        Policy::new(config, RuleSet::default())
    }

    /// The periodic job erases what is due at each tick, with the settings of the moment, and
    /// stops when shutdown is cancelled.
    #[tokio::test]
    async fn retention_runs_on_its_interval_until_shutdown() {
        let policy = Arc::new(policy());
        let store = crate::store::SqliteStore::open_in_memory().expect("store");
        store
            .add_contact(&NewContact {
                name: None,
                emails: vec!["alice@customer.com".to_string()],
                visible_to: None,
                no_sync: None,
            })
            .expect("contact");
        let user = policy.config.users[0].clone();
        let message = crate::source::SourceMessage {
            source_id: "1".to_string(),
            raw: b"From: alice@customer.com\nTo: dave@abcorp.com\nSubject: old news\n\
                   Date: Mon, 02 Sep 2024 09:15:00 +0000\nMessage-ID: <old@x>\n\nbody\n"
                .to_vec(),
            labels: Vec::new(),
        };
        crate::sync::process(
            &policy,
            &store,
            &user,
            "dir:/t",
            &message,
            crate::sync::Mode::Write,
        )
        .expect("recorded");
        let store: crate::store::SharedStore = Arc::new(store);
        let (_policy_tx, policy_rx) = watch::channel(policy);
        let shutdown = CancellationToken::new();
        let (_runner_tx, runner_rx) = watch::channel(true);
        let job = tokio::spawn(retention_loop(
            store.clone(),
            policy_rx,
            runner_rx,
            shutdown.clone(),
            Duration::from_millis(20),
        ));
        let viewer = crate::store::Viewer {
            email: "dave@abcorp.com".to_string(),
            addresses: vec!["dave@abcorp.com".to_string()],
            is_admin: false,
            admins_see_private_emails: false,
        };
        let erased = async {
            loop {
                let feed = store.feed(&viewer, None, None).expect("feed");
                if feed[0].content_erased_at.is_some() {
                    return feed;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let feed = tokio::time::timeout(Duration::from_secs(10), erased)
            .await
            .expect("retention ran");
        assert_eq!(feed[0].subject, None);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), job)
            .await
            .expect("the job stops on shutdown")
            .expect("no panic");
    }
}
