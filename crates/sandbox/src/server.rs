//! The sandbox itself: loading mailboxes from disk, the shared state behind the HTTP server,
//! the accept loop with injected shutdown, the direct control operations used by tests, and
//! the publishing of a watched mailbox's changes to Pub/Sub.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, UNIX_EPOCH};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::config::{SandboxConfig, SandboxError};
use super::faults::{
    FaultConfig, FaultInjector, Limiter, PushFaultConfig, PushFaultInjector, PushFaultUpdate, Stats,
};
use super::mailbox::{LabelTarget, Mailbox, SourceFile};
use super::oauth::{OAuth, READONLY_SCOPE};
use super::pubsub::PubSub;
use super::push::Watches;

/// Files larger than this are skipped with a warning; Gmail refuses messages over 50 MB too.
const MAX_MESSAGE_BYTES: u64 = 64 * 1024 * 1024;
/// How long `serve` waits for open connections after shutdown before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running or ready-to-run Gmail-compatible server. Cloning is cheap and every clone
/// controls the same mailboxes, tokens, faults and statistics.
#[derive(Clone)]
pub struct Sandbox {
    pub(super) shared: Arc<Shared>,
}

/// State shared by all connections. Locks are std mutexes because no lock is held across an
/// `.await`, and each critical section is short. The push path (`watches`, `push_faults`,
/// `pubsub`) takes its locks one at a time, never nested in another.
pub(super) struct Shared {
    pub config: SandboxConfig,
    pub mailboxes: Mutex<HashMap<String, Mailbox>>,
    pub oauth: Mutex<OAuth>,
    pub limiter: Mutex<Limiter>,
    pub faults: Mutex<FaultInjector>,
    pub watches: Mutex<Watches>,
    pub pubsub: Mutex<PubSub>,
    pub push_faults: Mutex<PushFaultInjector>,
    /// Woken whenever a message may have become pullable, so that waiting pulls look again.
    pub pubsub_ready: Notify,
}

impl Shared {
    /// Publishes one change of `user`'s mailbox (the new history id `history_id`; per message
    /// changed, the labels the change touched) to the topic of the user's watch, if it has a
    /// live one that admits the change for one of those messages, through the push faults.
    /// One notification per change, however many messages it touched, as Gmail may fold
    /// several changes into one notification.
    pub fn publish_change(
        &self,
        user: &str,
        email_address: &str,
        history_id: u64,
        touched: &[Vec<String>],
    ) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let topic = {
            let watches = lock(&self.watches);
            touched
                .iter()
                .find_map(|labels| watches.topic_for_change(user, labels, now_ms))
                .map(str::to_string)
        };
        let Some(topic) = topic else {
            return;
        };
        let data = super::http::notification_data(email_address, history_id);
        let fate = lock(&self.push_faults).decide();
        let published = lock(&self.pubsub).publish(&topic, data, now_ms, fate, Instant::now());
        // No address: the log says what happened, not to whom.
        tracing::debug!(
            history_id,
            published = published.is_some(),
            duplicated = fate.duplicated,
            "push notification"
        );
        self.pubsub_ready.notify_waiters();
    }
}

/// Locks a mutex, ignoring poisoning: a panic elsewhere must not take the whole server down,
/// and every critical section leaves its data consistent before it could panic.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sandbox {
    /// Reads every mailbox now. Users are the sub-folders whose name contains `@`, lower-cased;
    /// a file that cannot be read is skipped with a warning naming it.
    pub fn load(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        config.pubsub.validate()?;
        let dir = &config.mailboxes_dir;
        let entries = std::fs::read_dir(dir).map_err(|source| SandboxError::ReadMailboxes {
            path: dir.clone(),
            source,
        })?;
        let mut mailboxes = HashMap::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_lowercase();
            if !name.contains('@') || !entry.path().is_dir() {
                tracing::debug!(entry = %entry.path().display(), "not a mailbox folder, skipped");
                continue;
            }
            let files = read_mailbox_files(&entry.path());
            tracing::debug!(user = %name, messages = files.len(), "mailbox loaded");
            mailboxes.insert(name.clone(), Mailbox::new(&name, config.seed, files));
        }
        let mut users: Vec<String> = mailboxes.keys().cloned().collect();
        users.sort();
        let oauth = OAuth::new(
            config.oauth_clients.clone(),
            users,
            Duration::from_secs(config.access_token_lifetime_secs),
        );
        let shared = Shared {
            limiter: Mutex::new(Limiter::new(
                config.quota_units_per_minute,
                config.max_concurrent_per_user,
                config.seed,
            )),
            faults: Mutex::new(FaultInjector::new(config.faults.clone(), config.seed)),
            watches: Mutex::new(Watches::default()),
            pubsub: Mutex::new(PubSub::new(&config.pubsub, config.seed)),
            push_faults: Mutex::new(PushFaultInjector::new(
                config.push_faults.clone(),
                config.seed,
            )),
            pubsub_ready: Notify::new(),
            oauth: Mutex::new(oauth),
            mailboxes: Mutex::new(mailboxes),
            config,
        };
        Ok(Sandbox {
            shared: Arc::new(shared),
        })
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then lets open connections
    /// finish for up to 5 s. A failing connection is logged and never stops the accept loop.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let address = listener.local_addr()?;
        if !address.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                not_loopback_message(address),
            ));
        }
        let (stop_sender, stop_receiver) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // Out of file descriptors and the like: wait instead of spinning.
                            tracing::warn!(%error, "sandbox accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let local = stream.local_addr().ok();
                    let shared = Arc::clone(&self.shared);
                    let mut stop = stop_receiver.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| super::http::handle(Arc::clone(&shared), request, local));
                        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                        tokio::pin!(connection);
                        let result = tokio::select! {
                            result = connection.as_mut() => result,
                            _ = stop.changed() => {
                                connection.as_mut().graceful_shutdown();
                                connection.await
                            }
                        };
                        if let Err(error) = result {
                            tracing::debug!(%peer, %error, "sandbox connection ended with an error");
                        }
                    });
                }
            }
        }
        let _ = stop_sender.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.shutdown().await;
        }
        Ok(())
    }

    /// Adds a message to `user`'s mailbox as if Gmail had just received it, recording a
    /// `messageAdded` history entry, and publishes a push notification if the mailbox is
    /// watched. Deliveries live in memory only. Returns the message id.
    pub fn deliver(
        &self,
        user: &str,
        raw: Vec<u8>,
        labels: Option<Vec<String>>,
    ) -> Result<String, SandboxError> {
        self.deliver_message(user, raw, labels)
            .map(|delivered| delivered.id)
    }

    /// [`Sandbox::deliver`], also telling which thread the message joined, so that a test can
    /// then change the labels of that conversation.
    pub fn deliver_message(
        &self,
        user: &str,
        raw: Vec<u8>,
        labels: Option<Vec<String>>,
    ) -> Result<Delivered, SandboxError> {
        let key = user.to_ascii_lowercase();
        let (id, thread_id, email_address, history_id, label_ids) = {
            let mut mailboxes = lock(&self.shared.mailboxes);
            let mailbox = mailboxes
                .get_mut(&key)
                .ok_or_else(|| SandboxError::UnknownUser(user.to_string()))?;
            let id = mailbox.deliver(
                raw,
                labels,
                chrono::Utc::now().timestamp_millis(),
                Instant::now(),
            );
            let (thread_id, label_ids) = mailbox
                .get(&id)
                .map(|message| (message.thread_id.clone(), message.label_ids.clone()))
                .unwrap_or_default();
            let address = mailbox.primary_address().to_string();
            (id, thread_id, address, mailbox.history_id(), label_ids)
        };
        self.shared
            .publish_change(&key, &email_address, history_id, &[label_ids]);
        Ok(Delivered { id, thread_id })
    }

    /// Changes labels as a user does in Gmail's UI: on every message of a thread (or on one
    /// message), adding the labels named `add` and removing those named `remove`. Names are
    /// label names, not ids (`CRM/Private`, `INBOX`), ignoring case; a user label named in
    /// `add` that does not exist yet is created first, as the UI does. Each message that really
    /// changes gets a `labelsAdded` and/or a `labelsRemoved` history record, and a watched
    /// mailbox is notified once.
    pub fn change_labels(
        &self,
        user: &str,
        target: LabelTarget<'_>,
        add: &[String],
        remove: &[String],
    ) -> Result<LabelsChanged, SandboxError> {
        let key = user.to_ascii_lowercase();
        let (email_address, history_id, touched) = {
            let mut mailboxes = lock(&self.shared.mailboxes);
            let mailbox = mailboxes
                .get_mut(&key)
                .ok_or_else(|| SandboxError::UnknownUser(user.to_string()))?;
            let message_ids = mailbox
                .target_messages(target)
                .ok_or_else(|| match target {
                    LabelTarget::Message(id) => SandboxError::UnknownMessage(id.to_string()),
                    LabelTarget::Thread(id) => SandboxError::UnknownThread(id.to_string()),
                })?;
            // A label to remove must exist: creating it would only hide a typo in the test.
            let remove_ids = remove
                .iter()
                .map(|name| {
                    mailbox
                        .label_id_by_name(name)
                        .ok_or_else(|| SandboxError::UnknownLabel(name.clone()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            // Checked before any label is created, so that a refused change leaves no trace.
            if let Some(both) = add.iter().find(|name| {
                mailbox
                    .label_id_by_name(name)
                    .is_some_and(|id| remove_ids.contains(&id))
            }) {
                return Err(SandboxError::LabelAddedAndRemoved(both.clone()));
            }
            let mut add_ids = Vec::new();
            for name in add {
                let id = match mailbox.label_id_by_name(name) {
                    Some(id) => id,
                    None => {
                        mailbox
                            .create_label(name)
                            .map_err(|_| SandboxError::UnknownLabel(name.clone()))?
                            .id
                    }
                };
                add_ids.push(id);
            }
            let changed = mailbox.modify_labels(&message_ids, &add_ids, &remove_ids);
            let touched: Vec<Vec<String>> = changed
                .into_iter()
                .map(|message| message.touched_label_ids)
                .collect();
            (
                mailbox.primary_address().to_string(),
                mailbox.history_id(),
                touched,
            )
        };
        if !touched.is_empty() {
            self.shared
                .publish_change(&key, &email_address, history_id, &touched);
        }
        Ok(LabelsChanged {
            history_id,
            changed: touched.len(),
        })
    }

    /// Every watch expires now: nothing is published until the client calls `users.watch`
    /// again. Returns how many watches were live.
    pub fn expire_watches(&self) -> usize {
        lock(&self.shared.watches).expire_all(chrono::Utc::now().timestamp_millis())
    }

    /// Replaces the push faults.
    pub fn set_push_faults(&self, faults: PushFaultConfig) {
        lock(&self.shared.push_faults).set(faults);
    }

    /// Changes the push faults `update` names, leaves the others, and returns them all.
    pub fn update_push_faults(&self, update: &PushFaultUpdate) -> PushFaultConfig {
        let mut injector = lock(&self.shared.push_faults);
        let mut faults = injector.config().clone();
        faults.apply(update);
        injector.set(faults.clone());
        faults
    }

    pub fn push_faults(&self) -> PushFaultConfig {
        lock(&self.shared.push_faults).config().clone()
    }

    /// Refresh tokens and JWT grants for `user` now answer `invalid_grant`, and its access tokens
    /// 401, until a new refresh token is issued (re-consent).
    pub fn revoke(&self, user: &str) {
        lock(&self.shared.oauth).revoke(user);
    }

    /// The Workspace renames `user`: `users.getProfile` reports `new_primary_address` from now
    /// on, while grants for `user` still open the mailbox.
    pub fn rename(&self, user: &str, new_primary_address: &str) {
        if let Some(mailbox) = lock(&self.shared.mailboxes).get_mut(&user.to_ascii_lowercase()) {
            mailbox.rename(new_primary_address);
        }
    }

    /// Every `startHistoryId` below the mailbox's current history id now answers 404.
    pub fn expire_history(&self, user: &str) {
        if let Some(mailbox) = lock(&self.shared.mailboxes).get_mut(&user.to_ascii_lowercase()) {
            mailbox.expire_history();
        }
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        lock(&self.shared.faults).set(faults);
    }

    /// What a completed consent would give `client_id` for `user` (scope `gmail.readonly`).
    pub fn issue_refresh_token(&self, user: &str, client_id: &str) -> String {
        lock(&self.shared.oauth).issue_refresh_token(user, client_id, READONLY_SCOPE)
    }

    pub fn stats(&self) -> Stats {
        let mut stats = lock(&self.shared.limiter).stats.clone();
        stats.pubsub = lock(&self.shared.pubsub).stats();
        for (user, watch) in lock(&self.shared.watches).stats() {
            stats.user(user).watch = Some(watch);
        }
        stats
    }

    /// The mailbox addresses, sorted.
    pub fn users(&self) -> Vec<String> {
        let mut users: Vec<String> = lock(&self.shared.mailboxes).keys().cloned().collect();
        users.sort();
        users
    }

    /// The mailbox's current history id, as `getProfile` would report it.
    pub fn history_id(&self, user: &str) -> Option<u64> {
        lock(&self.shared.mailboxes)
            .get(&user.to_ascii_lowercase())
            .map(Mailbox::history_id)
    }
}

fn read_mailbox_files(dir: &Path) -> Vec<SourceFile> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(folder = %dir.display(), %error, "cannot read mailbox folder, skipped");
            return Vec::new();
        }
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => metadata,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot read message file, skipped");
                continue;
            }
        };
        if metadata.len() > MAX_MESSAGE_BYTES {
            tracing::warn!(file = %path.display(), bytes = metadata.len(), "message file too large, skipped");
            continue;
        }
        let mtime_ms = metadata
            .modified()
            .ok()
            .and_then(|modified| modified.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            });
        match std::fs::read(&path) {
            Ok(raw) => files.push(SourceFile {
                name,
                raw,
                mtime_ms,
            }),
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot read message file, skipped")
            }
        }
    }
    files
}

/// A message [`Sandbox::deliver_message`] added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub id: String,
    pub thread_id: String,
}

/// What [`Sandbox::change_labels`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelsChanged {
    /// The mailbox's history id afterwards (unchanged when nothing changed).
    pub history_id: u64,
    /// How many messages changed; a message already as asked is not counted.
    pub changed: usize,
}

/// A sandbox serving on a free loopback port in this process, for tests and demos.
/// Dropping it (or calling [`SpawnedSandbox::shutdown`]) stops the server.
pub struct SpawnedSandbox {
    pub addr: SocketAddr,
    pub sandbox: Sandbox,
    pub task: JoinHandle<std::io::Result<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl SpawnedSandbox {
    /// `http://127.0.0.1:PORT/`, the Gmail base URL (with the trailing slash Google uses).
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// `http://127.0.0.1:PORT/token`, the `token_uri` and the JWT `aud` to use.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Stops accepting, waits for open connections (up to 5 s) and returns the server's result.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .unwrap_or_else(|join_error| Err(std::io::Error::other(join_error)))
    }
}

/// Loads `config` and serves it on `127.0.0.1:0` in a background task.
pub async fn spawn(config: SandboxConfig) -> Result<SpawnedSandbox, SandboxError> {
    let sandbox = Sandbox::load(config)?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(SandboxError::Bind)?;
    let addr = listener.local_addr().map_err(SandboxError::Bind)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(sandbox.clone().serve(listener, async move {
        // Resolves on an explicit stop and when the handle is dropped.
        let _ = stopped.await;
    }));
    Ok(SpawnedSandbox {
        addr,
        sandbox,
        task,
        stop: Some(stop),
    })
}

/// Why the sandbox will not listen on `address`, and what to do instead.
pub fn not_loopback_message(address: std::net::SocketAddr) -> String {
    format!(
        "the sandbox listens on loopback only (127.0.0.1 or [::1]), not {address}: its control routes hand out tokens without authentication and its API serves the mail; to reach it from another machine, use an SSH tunnel (ssh -L 8089:127.0.0.1:8089 HOST)"
    )
}
