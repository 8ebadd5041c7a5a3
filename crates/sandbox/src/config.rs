//! Configuration and error types of the Gmail-compatible sandbox server.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::faults::{FaultConfig, PushFaultConfig};

/// Everything [`super::Sandbox::load`] needs; `Default` gives the 2026 Gmail figures.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// One sub-folder per user, named by the user's address; every regular file in it is one
    /// message. Hidden files (name starting with `.`) are skipped so editor and OS litter
    /// (`.DS_Store`) does not turn into mail.
    pub mailboxes_dir: PathBuf,
    /// Per user, over a sliding 60 s window, as Google's "Queries per minute per user".
    pub quota_units_per_minute: u32,
    /// Requests in flight for one user above which Gmail answers 429.
    pub max_concurrent_per_user: u32,
    /// Quota units charged per method.
    pub costs: MethodCosts,
    /// Random faults injected into Gmail API requests (not into OAuth or control routes).
    pub faults: FaultConfig,
    /// `expires_in` of issued access tokens.
    pub access_token_lifetime_secs: u64,
    /// Installed-app clients accepted by the refresh and authorization-code grants.
    pub oauth_clients: Vec<OAuthClient>,
    /// Pub/Sub topics and subscriptions that Gmail push (`users.watch`) publishes to.
    pub pubsub: PubSubConfig,
    /// Faults injected into push notifications and Pub/Sub pulls.
    pub push_faults: PushFaultConfig,
    /// Seeds message ids, history ids and faults, so a run can be reproduced.
    pub seed: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            mailboxes_dir: PathBuf::from("."),
            quota_units_per_minute: 6000,
            max_concurrent_per_user: 10,
            costs: MethodCosts::default(),
            faults: FaultConfig::default(),
            access_token_lifetime_secs: 3599,
            oauth_clients: Vec::new(),
            pubsub: PubSubConfig::default(),
            push_faults: PushFaultConfig::default(),
            seed: 0,
        }
    }
}

/// The topic of [`PubSubConfig::default`].
pub const DEFAULT_TOPIC: &str = "projects/sandbox/topics/gmail";
/// The subscription of [`PubSubConfig::default`], attached to [`DEFAULT_TOPIC`].
pub const DEFAULT_SUBSCRIPTION: &str = "projects/sandbox/subscriptions/mailsync";

/// The Cloud Pub/Sub side of Gmail push: which topics exist (a watch on any other topic
/// answers 404), which subscriptions receive what is published to them, and how long a pulled
/// message waits for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubConfig {
    /// Full names, `projects/P/topics/T`.
    pub topics: Vec<String>,
    /// Each attached to one of `topics`.
    pub subscriptions: Vec<SubscriptionConfig>,
    /// A pulled message not acknowledged within this many seconds is delivered again
    /// (Google's default is 10; 1 to 600).
    pub ack_deadline_secs: u64,
    /// How long a pull waits for a message when none is ready, as Google's servers hold a
    /// pull open for a while before answering `{}`.
    pub pull_wait_ms: u64,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            topics: vec![DEFAULT_TOPIC.to_string()],
            subscriptions: vec![SubscriptionConfig {
                name: DEFAULT_SUBSCRIPTION.to_string(),
                topic: DEFAULT_TOPIC.to_string(),
            }],
            ack_deadline_secs: 10,
            pull_wait_ms: 2000,
        }
    }
}

/// A pull subscription: every message published to `topic` is queued on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionConfig {
    /// Full name, `projects/P/subscriptions/S`.
    pub name: String,
    /// Full name of the topic, `projects/P/topics/T`.
    pub topic: String,
}

impl PubSubConfig {
    /// Names must have Google's form, subscriptions must name a configured topic and be
    /// unique, and the ack deadline must be within 1..=600 s. Every problem is reported.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let mut problems = Vec::new();
        for topic in &self.topics {
            if resource_name(topic, "topics").is_none() {
                problems.push(format!(
                    "topic {topic:?} is not of the form projects/PROJECT/topics/TOPIC"
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for subscription in &self.subscriptions {
            if resource_name(&subscription.name, "subscriptions").is_none() {
                problems.push(format!(
                    "subscription {:?} is not of the form projects/PROJECT/subscriptions/SUBSCRIPTION",
                    subscription.name
                ));
            }
            if !self.topics.contains(&subscription.topic) {
                problems.push(format!(
                    "subscription {} names topic {:?}, which is not a configured topic",
                    subscription.name, subscription.topic
                ));
            }
            if !seen.insert(&subscription.name) {
                problems.push(format!(
                    "subscription {} is configured twice",
                    subscription.name
                ));
            }
        }
        if !(1..=600).contains(&self.ack_deadline_secs) {
            problems.push(format!(
                "ack deadline {} s is outside 1..=600",
                self.ack_deadline_secs
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SandboxError::InvalidPubSub(problems.join("; ")))
        }
    }
}

/// The short name `T` of `projects/P/{collection}/T`, if `name` has that form.
pub(super) fn resource_name<'a>(name: &'a str, collection: &str) -> Option<&'a str> {
    let mut parts = name.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("projects"), Some(project), Some(kind), Some(short), None)
            if kind == collection && !project.is_empty() && !short.is_empty() =>
        {
            Some(short)
        }
        _ => None,
    }
}

/// Quota units per Gmail method, as on Google's quota page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodCosts {
    pub get_profile: u32,
    pub labels_list: u32,
    pub history_list: u32,
    pub messages_list: u32,
    pub messages_get: u32,
    /// `users.watch`.
    pub watch: u32,
    /// `users.stop`.
    pub stop: u32,
    pub messages_modify: u32,
    pub threads_modify: u32,
    pub labels_create: u32,
}

impl Default for MethodCosts {
    fn default() -> Self {
        MethodCosts {
            get_profile: 1,
            labels_list: 1,
            history_list: 2,
            messages_list: 5,
            messages_get: 20,
            watch: 100,
            stop: 50,
            messages_modify: 5,
            threads_modify: 10,
            labels_create: 5,
        }
    }
}

/// An installed-app OAuth client (`client_id` / `client_secret` of a client secret file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
}

/// Why the sandbox could not start or a control operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read mailboxes folder {path}: {source}")]
    ReadMailboxes {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unknown sandbox user {0}")]
    UnknownUser(String),
    #[error("unknown message {0}")]
    UnknownMessage(String),
    #[error("unknown thread {0}")]
    UnknownThread(String),
    /// A label to remove that does not exist, or a name no label can have.
    #[error("unknown label {0:?}")]
    UnknownLabel(String),
    #[error("label {0:?} cannot be both added and removed")]
    LabelAddedAndRemoved(String),
    #[error("cannot bind sandbox listener: {0}")]
    Bind(std::io::Error),
    #[error(
        "invalid fault kind {0:?} (expected 500, 503, 429, 403, drop, slow, truncate or 404new)"
    )]
    InvalidFaultKind(String),
    #[error("invalid pub/sub configuration: {0}")]
    InvalidPubSub(String),
}
