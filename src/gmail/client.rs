//! One user's Gmail, as the sync needs it: profile, message ids, raw messages, history.
//!
//! Every request goes through [`GmailClient::execute`], which holds the three disciplines of
//! a good Gmail citizen: stay under the per-user quota (a token bucket in quota units, set a
//! little below Gmail's sliding minute so its window never fills), keep few requests in
//! flight, and back off exponentially with jitter on the errors the spec calls transient.
//! google-gmail1 retries nothing by itself; its `Delegate` is used only to see the status and
//! `Retry-After` of failures.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use google_gmail1::Gmail;
use google_gmail1::api::Scope;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use super::auth::TokenSource;
use super::error::{GmailError, classify_status, status_and_reason};
use super::http::{ApiClient, Connector};
use crate::config::{GmailConfig, QuotaConfig};

/// The Gmail methods mailsync calls, each with its own quota cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    GetProfile,
    LabelsList,
    HistoryList,
    MessagesList,
    MessagesGet,
    Watch,
    Stop,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Method::GetProfile,
        Method::LabelsList,
        Method::HistoryList,
        Method::MessagesList,
        Method::MessagesGet,
        Method::Watch,
        Method::Stop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::GetProfile => "users.getProfile",
            Method::LabelsList => "users.labels.list",
            Method::HistoryList => "users.history.list",
            Method::MessagesList => "users.messages.list",
            Method::MessagesGet => "users.messages.get",
            Method::Watch => "users.watch",
            Method::Stop => "users.stop",
        }
    }

    pub fn cost(self, quota: &QuotaConfig) -> u32 {
        match self {
            Method::GetProfile => quota.get_profile,
            Method::LabelsList => quota.labels_list,
            Method::HistoryList => quota.history_list,
            Method::MessagesList => quota.messages_list,
            Method::MessagesGet => quota.messages_get,
            Method::Watch => quota.watch,
            Method::Stop => quota.stop,
        }
    }
}

/// Requests made, by method and outcome, with retries and time spent backing off.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestStats {
    /// `(method, outcome)` → count; outcome is an HTTP status or an error kind.
    pub requests: BTreeMap<(String, String), u64>,
    pub retries: u64,
    pub backoff_millis: u64,
    pub quota_units: u64,
}

impl RequestStats {
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }

    pub fn requests_for(&self, method: Method) -> u64 {
        self.requests
            .iter()
            .filter(|((name, _), _)| name == method.as_str())
            .map(|(_, count)| count)
            .sum()
    }
}

/// Watches google-gmail1's failures to learn what it does not return: the HTTP status of a
/// JSON error and the `Retry-After` header.
#[derive(Default)]
struct Observer {
    status: Option<u16>,
    retry_after: Option<Duration>,
}

impl google_gmail1::Delegate for Observer {
    fn http_failure(
        &mut self,
        response: &google_gmail1::common::Response,
        _body: Option<&serde_json::Value>,
    ) -> google_gmail1::common::Retry {
        self.status = Some(response.status().as_u16());
        self.retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        google_gmail1::common::Retry::Abort
    }
}

/// A page of `users.messages.list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagePage {
    pub ids: Vec<String>,
    pub next_page_token: Option<String>,
}

/// A message fetched with `format=raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub id: String,
    pub raw: Vec<u8>,
    pub label_ids: Vec<String>,
    /// Milliseconds since the epoch, as Gmail received it.
    pub internal_date: Option<i64>,
}

/// A message that history says was added, with the labels it had then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedMessage {
    pub id: String,
    pub label_ids: Vec<String>,
}

/// A message whose labels history says changed, with the labels it has after the page's
/// last change to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelChange {
    pub id: String,
    pub label_ids: Vec<String>,
}

/// A page of `users.history.list`: messages added, and messages whose labels changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    pub added: Vec<AddedMessage>,
    /// One per message, in the order of its last change on the page.
    pub label_changes: Vec<LabelChange>,
    /// The highest history record id on this page.
    pub last_record_id: Option<u64>,
    pub next_page_token: Option<String>,
    /// The mailbox's current history id.
    pub history_id: Option<u64>,
}

/// How the client paces and retries.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub backoff_max: Duration,
    pub max_in_flight: u32,
    pub list_page_size: u32,
    pub quota: QuotaConfig,
}

impl ClientSettings {
    pub fn from_config(config: &GmailConfig) -> Self {
        ClientSettings {
            request_timeout: Duration::from_secs(config.request_timeout_secs),
            max_attempts: config.max_attempts,
            backoff_max: Duration::from_secs(config.backoff_max_secs),
            max_in_flight: config.max_concurrent_requests_per_user,
            list_page_size: config.list_page_size,
            quota: config.quota,
        }
    }
}

/// Builds a token bucket that can never put more than `units_per_minute` into any sliding
/// minute: refill at 95% of the budget and allow a burst of the remaining 5% (but at least one
/// request of the most expensive method).
fn quota_limiter(quota: &QuotaConfig) -> DefaultDirectRateLimiter {
    let largest_cost = quota.largest_cost();
    let burst = (quota.units_per_minute / 20).max(largest_cost);
    let refill = quota.units_per_minute.saturating_sub(burst).max(1);
    let per_unit = Duration::from_secs_f64(60.0 / f64::from(refill));
    let quota = Quota::with_period(per_unit)
        .expect("a positive period")
        .allow_burst(NonZeroU32::new(burst).expect("burst is at least 1"));
    RateLimiter::direct(quota)
}

pub struct GmailClient {
    hub: Arc<Gmail<Connector>>,
    tokens: TokenSource,
    user_email: String,
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
    settings: ClientSettings,
    stats: Mutex<RequestStats>,
    metrics: Option<crate::metrics::Metrics>,
    /// Set once `users.getProfile` has shown that the grant opens this user's mailbox.
    mailbox_confirmed: AtomicBool,
    /// Told of every error about to be retried, so that a sync stuck in retries can say so
    /// before it gives up (`status` shows the error meanwhile).
    on_retry: Option<RetryHook>,
    /// The mailbox's label names by id, from `users.labels.list`, and when they were read:
    /// read again when a label id it does not know turns up, or after
    /// [`LABEL_NAMES_TTL`] (a label renamed in Gmail).
    label_names: Mutex<(Option<std::time::Instant>, HashMap<String, String>)>,
}

/// What [`GmailClient::with_retry_hook`] calls: with the error about to be retried, and with
/// `None` when a request that was retried succeeds.
pub type RetryHook = Arc<dyn Fn(Option<&GmailError>) + Send + Sync>;

/// What `users.getProfile` says of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The mailbox's own (primary) address, whoever asked for it.
    pub email_address: String,
    pub history_id: u64,
}

impl GmailClient {
    pub fn new(
        http: ApiClient,
        api_base_url: &str,
        tokens: TokenSource,
        user_email: &str,
        settings: ClientSettings,
    ) -> Self {
        let mut hub = Gmail::new(http, tokens.clone());
        hub.base_url(api_base_url.to_string());
        hub.root_url(api_base_url.to_string());
        GmailClient {
            hub: Arc::new(hub),
            tokens,
            user_email: user_email.to_string(),
            limiter: quota_limiter(&settings.quota),
            in_flight: Semaphore::new(settings.max_in_flight.max(1) as usize),
            settings,
            stats: Mutex::new(RequestStats::default()),
            metrics: None,
            mailbox_confirmed: AtomicBool::new(false),
            label_names: Mutex::new((None, HashMap::new())),
            on_retry: None,
        }
    }

    /// A client for one user with the configured settings. `refresh_token` is the user's
    /// stored token, needed only for per-user OAuth.
    pub fn for_user(
        config: &GmailConfig,
        credentials: &super::auth::Credentials,
        user_email: &str,
        refresh_token: Option<String>,
        api_http: ApiClient,
        oauth_http: super::http::OAuthClient,
    ) -> Self {
        let timeout = Duration::from_secs(config.request_timeout_secs);
        let tokens = TokenSource::new(credentials, user_email, refresh_token, oauth_http, timeout);
        GmailClient::new(
            api_http,
            &config.api_base_url,
            tokens,
            user_email,
            ClientSettings::from_config(config),
        )
    }

    /// Calls `hook` with every error about to be retried, and when a retried request succeeds.
    pub fn with_retry_hook(mut self, hook: RetryHook) -> Self {
        self.on_retry = Some(hook);
        self
    }

    /// Also counts requests, retries and backoff into `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn user_email(&self) -> &str {
        &self.user_email
    }

    pub fn stats(&self) -> RequestStats {
        self.stats
            .lock()
            .expect("stats lock is never poisoned")
            .clone()
    }

    fn count(&self, method: Method, outcome: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.request(method.as_str(), outcome);
        }
        let mut stats = self.stats.lock().expect("stats lock is never poisoned");
        *stats
            .requests
            .entry((method.as_str().to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    /// Runs one Gmail call with pacing, retries and the 401 refresh. `request` makes one
    /// attempt; it gets the hub and hands back its observer with the result (owned, so the
    /// attempt's future is `Send` and can run on any worker).
    async fn execute<T, Attempt>(
        &self,
        method: Method,
        mut request: impl FnMut(Arc<Gmail<Connector>>) -> Attempt,
    ) -> Result<T, GmailError>
    where
        Attempt: Future<Output = (Result<T, google_gmail1::Error>, Observer)>,
    {
        let cost = NonZeroU32::new(method.cost(&self.settings.quota).max(1)).expect("at least 1");
        let mut refreshed_after_401 = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = {
                let _permit = self
                    .in_flight
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                // The bucket is sized so the largest cost always fits; an error here would be a
                // bug in quota_limiter, and waiting on it would hang, so it is surfaced.
                self.limiter.until_n_ready(cost).await.map_err(|_| {
                    GmailError::Token("quota bucket smaller than one request".to_string())
                })?;
                self.stats.lock().expect("stats lock").quota_units += u64::from(cost.get());
                if let Some(metrics) = &self.metrics {
                    metrics.quota_used(&self.user_email, u64::from(cost.get()));
                }
                match tokio::time::timeout(self.settings.request_timeout, request(self.hub.clone()))
                    .await
                {
                    Ok((Ok(value), _)) => Ok(value),
                    Ok((Err(error), observer)) => Err(classify(error, &observer)),
                    Err(_) => Err(GmailError::Timeout(self.settings.request_timeout)),
                }
            };
            let error = match outcome {
                Ok(value) => {
                    self.count(method, "200");
                    if attempt > 1
                        && let Some(hook) = &self.on_retry
                    {
                        hook(None);
                    }
                    return Ok(value);
                }
                Err(error) => error,
            };
            self.count(method, &outcome_label(&error));
            match &error {
                GmailError::Unauthorized if !refreshed_after_401 => {
                    refreshed_after_401 = true;
                    tracing::debug!(user = %self.user_email, method = method.as_str(), "access token rejected; refreshing once");
                    self.tokens.access_token(true).await?;
                }
                error if error.is_retryable() && attempt < self.settings.max_attempts => {
                    let pause = backoff(attempt, self.settings.backoff_max, retry_after(error));
                    tracing::debug!(
                        user = %self.user_email,
                        method = method.as_str(),
                        attempt,
                        error_kind = error.kind(),
                        pause_ms = pause.as_millis() as u64,
                        "retrying gmail request"
                    );
                    {
                        let mut stats = self.stats.lock().expect("stats lock");
                        stats.retries += 1;
                        stats.backoff_millis += pause.as_millis() as u64;
                    }
                    if let Some(metrics) = &self.metrics {
                        metrics.gmail_retries.inc();
                        metrics.gmail_backoff_seconds.inc_by(pause.as_secs_f64());
                    }
                    if let Some(hook) = &self.on_retry {
                        hook(Some(error));
                    }
                    tokio::time::sleep(pause).await;
                }
                _ => return Err(error),
            }
        }
    }

    /// `users.getProfile`: whose mailbox the grant opens, and its current history id.
    pub async fn profile(&self) -> Result<Profile, GmailError> {
        let profile = self
            .execute(
                Method::GetProfile,
                |hub: Arc<Gmail<Connector>>| async move {
                    let mut observer = Observer::default();
                    let result = hub
                        .users()
                        .get_profile("me")
                        .add_scope(Scope::Readonly)
                        .delegate(&mut observer)
                        .doit()
                        .await
                        .map(|(_, profile)| profile);
                    (result, observer)
                },
            )
            .await?;
        let history_id = profile
            .history_id
            .ok_or_else(|| GmailError::BadResponse("profile without historyId".to_string()))?;
        let email_address = profile
            .email_address
            .ok_or_else(|| GmailError::BadResponse("profile without emailAddress".to_string()))?;
        Ok(Profile {
            email_address,
            history_id,
        })
    }

    /// The mailbox's current history id.
    pub async fn history_id(&self) -> Result<u64, GmailError> {
        Ok(self.profile().await?.history_id)
    }

    /// Proves that the grant opens the mailbox of `addresses` (the user's primary address and
    /// aliases) before anything is read from it: Gmail is always asked for `me`, and `me` is
    /// whoever gave consent, which need not be the user the token is stored for. Asks Gmail
    /// once per client; a client is built anew whenever credentials or settings change.
    pub async fn confirm_mailbox<'a>(
        &self,
        addresses: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), GmailError> {
        if self.mailbox_confirmed.load(Ordering::Acquire) {
            return Ok(());
        }
        let reached = crate::address::normalize(&self.profile().await?.email_address);
        if !addresses
            .into_iter()
            .any(|address| crate::address::normalize(address) == reached)
        {
            return Err(GmailError::WrongMailbox {
                user: self.user_email.clone(),
                reached,
            });
        }
        self.mailbox_confirmed.store(true, Ordering::Release);
        Ok(())
    }

    /// `users.watch`: Gmail publishes a notification to `topic` whenever this mailbox
    /// changes, except for mail in spam and trash, which is never synced. Returns when the
    /// watch expires (seconds since the epoch); Google asks for a new call daily.
    pub async fn watch(&self, topic: &str) -> Result<i64, GmailError> {
        let request = google_gmail1::api::WatchRequest {
            topic_name: Some(topic.to_string()),
            label_ids: Some(vec!["SPAM".to_string(), "TRASH".to_string()]),
            label_filter_behavior: Some("exclude".to_string()),
            label_filter_action: None,
        };
        let answer = self
            .execute(Method::Watch, |hub: Arc<Gmail<Connector>>| {
                let request = request.clone();
                async move {
                    let mut observer = Observer::default();
                    let result = hub
                        .users()
                        .watch(request, "me")
                        .add_scope(Scope::Readonly)
                        .delegate(&mut observer)
                        .doit()
                        .await
                        .map(|(_, answer)| answer);
                    (result, observer)
                }
            })
            .await?;
        let expiration_ms = answer
            .expiration
            .ok_or_else(|| GmailError::BadResponse("watch without expiration".to_string()))?;
        Ok(expiration_ms.div_euclid(1000))
    }

    /// `users.stop`: no more notifications for this mailbox.
    pub async fn stop_watch(&self) -> Result<(), GmailError> {
        self.execute(Method::Stop, |hub: Arc<Gmail<Connector>>| async move {
            let mut observer = Observer::default();
            let result = hub
                .users()
                .stop("me")
                .add_scope(Scope::Readonly)
                .delegate(&mut observer)
                .doit()
                .await
                .map(drop);
            (result, observer)
        })
        .await
    }

    /// One page of `users.messages.list` for a Gmail search, or with `label_id` of the
    /// messages carrying that label.
    pub async fn list_messages(
        &self,
        query: &str,
        label_id: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<MessagePage, GmailError> {
        let page_size = self.settings.list_page_size;
        let list = self
            .execute(Method::MessagesList, |hub: Arc<Gmail<Connector>>| {
                let query = query.to_string();
                let label_id = label_id.map(str::to_string);
                let page_token = page_token.map(str::to_string);
                async move {
                    let mut observer = Observer::default();
                    let users = hub.users();
                    let mut call = users
                        .messages_list("me")
                        .max_results(page_size)
                        .add_scope(Scope::Readonly);
                    if !query.is_empty() {
                        call = call.q(&query);
                    }
                    if let Some(label_id) = &label_id {
                        call = call.add_label_ids(label_id);
                    }
                    if let Some(token) = &page_token {
                        call = call.page_token(token);
                    }
                    let result = call
                        .delegate(&mut observer)
                        .doit()
                        .await
                        .map(|(_, list)| list);
                    (result, observer)
                }
            })
            .await?;
        Ok(MessagePage {
            ids: list
                .messages
                .unwrap_or_default()
                .into_iter()
                .filter_map(|message| message.id)
                .collect(),
            next_page_token: list.next_page_token.filter(|token| !token.is_empty()),
        })
    }

    /// `users.messages.get` with `format=raw`.
    pub async fn get_raw(&self, id: &str) -> Result<RawMessage, GmailError> {
        let result = self
            .execute(Method::MessagesGet, |hub: Arc<Gmail<Connector>>| {
                let id = id.to_string();
                async move {
                    let mut observer = Observer::default();
                    let result = hub
                        .users()
                        .messages_get("me", &id)
                        .format("raw")
                        .add_scope(Scope::Readonly)
                        .delegate(&mut observer)
                        .doit()
                        .await
                        .map(|(_, message)| message);
                    (result, observer)
                }
            })
            .await;
        let message = match result {
            Err(GmailError::Refused { status: 404, .. }) => {
                return Err(GmailError::MessageNotFound(id.to_string()));
            }
            other => other?,
        };
        Ok(RawMessage {
            id: message.id.unwrap_or_else(|| id.to_string()),
            raw: message.raw.ok_or_else(|| {
                GmailError::BadResponse(format!("message {id} without raw content"))
            })?,
            label_ids: message.label_ids.unwrap_or_default(),
            internal_date: message.internal_date,
        })
    }

    /// One page of `users.history.list` after `start_history_id`: message additions, and
    /// label changes (the labels a label rule may match, docs/spec/gmail-api.md).
    pub async fn history(
        &self,
        start_history_id: u64,
        page_token: Option<&str>,
    ) -> Result<HistoryPage, GmailError> {
        let page_size = self.settings.list_page_size;
        let result = self
            .execute(Method::HistoryList, |hub: Arc<Gmail<Connector>>| {
                let page_token = page_token.map(str::to_string);
                async move {
                    let mut observer = Observer::default();
                    let users = hub.users();
                    let mut call = users
                        .history_list("me")
                        .start_history_id(start_history_id)
                        .add_history_types("messageAdded")
                        .add_history_types("labelAdded")
                        .add_history_types("labelRemoved")
                        .max_results(page_size)
                        .add_scope(Scope::Readonly);
                    if let Some(token) = &page_token {
                        call = call.page_token(token);
                    }
                    let result = call
                        .delegate(&mut observer)
                        .doit()
                        .await
                        .map(|(_, history)| history);
                    (result, observer)
                }
            })
            .await;
        let history = match result {
            Err(GmailError::Refused { status: 404, .. }) => {
                return Err(GmailError::HistoryExpired(start_history_id));
            }
            other => other?,
        };
        let records = history.history.unwrap_or_default();
        let last_record_id = records.iter().filter_map(|record| record.id).max();
        let mut added = Vec::new();
        let mut label_changes: Vec<LabelChange> = Vec::new();
        for record in records {
            for message in record
                .messages_added
                .unwrap_or_default()
                .into_iter()
                .filter_map(|added| added.message)
            {
                if let Some(id) = message.id {
                    added.push(AddedMessage {
                        id,
                        label_ids: message.label_ids.unwrap_or_default(),
                    });
                }
            }
            let changed = record
                .labels_added
                .unwrap_or_default()
                .into_iter()
                .filter_map(|change| change.message)
                .chain(
                    record
                        .labels_removed
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|change| change.message),
                );
            for message in changed {
                let Some(id) = message.id else { continue };
                // Each record carries the message's labels after it: the last one wins.
                label_changes.retain(|known| known.id != id);
                label_changes.push(LabelChange {
                    id,
                    label_ids: message.label_ids.unwrap_or_default(),
                });
            }
        }
        Ok(HistoryPage {
            added,
            label_changes,
            last_record_id,
            next_page_token: history.next_page_token.filter(|token| !token.is_empty()),
            history_id: history.history_id,
        })
    }
}

/// How long label names are trusted before `users.labels.list` is asked again (1 quota unit).
pub const LABEL_NAMES_TTL: Duration = Duration::from_secs(600);

impl GmailClient {
    /// The names of `label_ids` (system labels are their own names, `INBOX`; user labels
    /// have ids like `Label_12`). Reads `users.labels.list` once, and again when an id it
    /// does not know turns up (a label made since); an id still unknown then keeps its id.
    pub async fn label_names(&self, label_ids: &[String]) -> Result<Vec<String>, GmailError> {
        let stale = {
            let (read_at, names) = &*self.label_names.lock().expect("label names lock");
            label_ids.iter().any(|id| {
                id.starts_with("Label_")
                    && (!names.contains_key(id)
                        || read_at.is_none_or(|read_at| read_at.elapsed() > LABEL_NAMES_TTL))
            })
        };
        if stale {
            let listed = self.list_labels().await?;
            *self.label_names.lock().expect("label names lock") =
                (Some(std::time::Instant::now()), listed);
        }
        let (_, names) = &*self.label_names.lock().expect("label names lock");
        Ok(label_ids
            .iter()
            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
            .collect())
    }

    /// The ids of the labels named one of `names` (lower-cased, as label rules keep them),
    /// from a fresh `users.labels.list`: a label made or renamed since the last read counts.
    pub async fn label_ids_named(&self, names: &[String]) -> Result<Vec<String>, GmailError> {
        let listed = self.list_labels().await?;
        let mut ids: Vec<String> = listed
            .iter()
            .filter(|(_, name)| names.contains(&name.trim().to_lowercase()))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort_unstable();
        *self.label_names.lock().expect("label names lock") =
            (Some(std::time::Instant::now()), listed);
        Ok(ids)
    }

    /// `users.labels.list`: every label's name by id.
    async fn list_labels(&self) -> Result<HashMap<String, String>, GmailError> {
        let listed = self
            .execute(
                Method::LabelsList,
                |hub: Arc<Gmail<Connector>>| async move {
                    let mut observer = Observer::default();
                    let result = hub
                        .users()
                        .labels_list("me")
                        .add_scope(Scope::Readonly)
                        .delegate(&mut observer)
                        .doit()
                        .await
                        .map(|(_, labels)| labels);
                    (result, observer)
                },
            )
            .await?;
        Ok(listed
            .labels
            .unwrap_or_default()
            .into_iter()
            .filter_map(|label| Some((label.id?, label.name?)))
            .collect())
    }
}

fn outcome_label(error: &GmailError) -> String {
    match error {
        GmailError::RateLimited { status, .. }
        | GmailError::Backend { status }
        | GmailError::Refused { status, .. } => status.to_string(),
        GmailError::Unauthorized => "401".to_string(),
        other => other.kind().to_string(),
    }
}

fn retry_after(error: &GmailError) -> Option<Duration> {
    match error {
        GmailError::RateLimited { retry_after, .. } => *retry_after,
        _ => None,
    }
}

/// Exponential from 1 s, capped, with "equal jitter" (half fixed, half random) so retries
/// of many requests spread out but still grow; never shorter than a `Retry-After`.
pub fn backoff(attempt: u32, cap: Duration, retry_after: Option<Duration>) -> Duration {
    let exponential = Duration::from_secs(1).saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let ceiling = exponential.min(cap);
    let half = ceiling / 2;
    let jitter = half.mul_f64(rand::random::<f64>());
    (half + jitter).max(retry_after.unwrap_or_default())
}

/// Maps google-gmail1's error to ours, using what the observer saw.
fn classify(error: google_gmail1::Error, observer: &Observer) -> GmailError {
    use google_gmail1::Error;
    match error {
        Error::BadRequest(body) => {
            let (status, reason) = status_and_reason(&body);
            classify_status(
                observer.status.unwrap_or(status),
                &reason,
                observer.retry_after,
            )
        }
        Error::Failure(response) => {
            let status = response.status().as_u16();
            let retry_after = observer.retry_after;
            classify_status(status, "", retry_after)
        }
        Error::HttpError(error) => GmailError::Connection(error.to_string()),
        Error::Io(error) => GmailError::Connection(error.to_string()),
        Error::JsonDecodeError(_, error) => GmailError::BadResponse(error.to_string()),
        Error::MissingToken(error) => match error.downcast::<GmailError>() {
            Ok(error) => *error,
            Err(error) => GmailError::Token(error.to_string()),
        },
        other => GmailError::Refused {
            status: 0,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        for attempt in 1..=10 {
            let pause = backoff(attempt, Duration::from_secs(32), None);
            let ceiling = Duration::from_secs(1 << (attempt - 1)).min(Duration::from_secs(32));
            assert!(
                pause >= ceiling / 2 && pause <= ceiling,
                "attempt {attempt}: {pause:?}"
            );
        }
        assert!(
            backoff(1, Duration::from_secs(32), Some(Duration::from_secs(7)))
                >= Duration::from_secs(7)
        );
    }

    #[test]
    fn the_quota_bucket_never_overfills_a_minute() {
        let quota = QuotaConfig::default();
        let limiter = quota_limiter(&quota);
        // The whole burst is available at once, and no more.
        let mut granted = 0;
        while limiter
            .check_n(NonZeroU32::new(20).unwrap())
            .is_ok_and(|r| r.is_ok())
        {
            granted += 20;
        }
        assert!(granted <= 300, "burst {granted}");
        assert!(granted >= 20);
    }
}
