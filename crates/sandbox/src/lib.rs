//! A Gmail-compatible HTTP server ("the sandbox") for integration tests and the demo: its own
//! crate, so that the product binary carries it only through the `sandbox` cargo feature
//! (`mailsync demo` and `mailsync sandbox`), and a production build can leave it out.
//!
//! The real Gmail API cannot be reached from our machines, so this server stands in for it and
//! behaves like it in everything a sync client depends on (see `docs/spec/gmail-api.md`): the
//! REST routes `GET profile`, `messages` (list), `messages/{id}` (get), `history` and `labels`,
//! and `POST watch`, `stop`, `messages/{id}/modify`, `threads/{id}/modify` and `labels`
//! (create), under `/gmail/v1/users/{userId}/`; bearer tokens from its own `POST /token`
//! (refresh, service-account JWT with `sub` for a mailbox or without it for the service account
//! itself, and authorization-code grants) and consent page `GET /o/oauth2/auth`; 16-hex message
//! ids stable across restarts; history ids with random gaps and a retention floor, whose
//! records are `messagesAdded`, `labelsAdded` and `labelsRemoved` (one per message and kind,
//! none for a change that changes nothing, as a sync client following labels must cope with all
//! three); newest-first listing with cursor page tokens and a `q` subset in which an unknown
//! term can only widen a result; padded `raw`; omitted empty fields; Google's error bodies; a
//! per-user sliding-minute quota with Gmail's cost table and a concurrency cap; and switches
//! for revocation, history expiry and random faults.
//!
//! Gmail push: a watched mailbox publishes `{"emailAddress","historyId"}` for each change its
//! label filter admits to the watch's topic, and the Cloud Pub/Sub REST routes
//! `POST /v1/projects/P/subscriptions/S:pull` (held open up to the pull wait),
//! `:acknowledge`, `:modifyAckDeadline` and `GET /v1/projects/P/subscriptions/S` serve the
//! subscriptions attached to it, with ack deadlines and redelivery, to the service account's own
//! token with the `pubsub` scope. Notifications can be dropped, duplicated or delayed, and
//! pulls and watches refused, on request.
//!
//! Unauthenticated control routes under `/sandbox/` (deliver, label, revoke, expire-history,
//! rename, faults, push, expire-watches, refresh-token, stats) mirror the methods of
//! [`Sandbox`]; `label` changes a conversation's labels by name as Gmail's UI does, since a
//! test plays the user, not a client holding label ids. They hand out tokens and the API serves
//! mail to whoever holds one, so [`Sandbox::serve`] refuses a listener on any address but
//! loopback.
//!
//! Running it in a test:
//! ```text
//! let server = mailsync_sandbox::spawn(SandboxConfig { mailboxes_dir, oauth_clients, ..Default::default() }).await?;
//! let refresh = server.sandbox.issue_refresh_token("me@example.com", "client-id");
//! // point the client at server.base_url() and server.token_url() ...
//! server.shutdown().await?;
//! ```
//!
//! Module map: `server` (loading, shared state, accept loop, control operations, publishing a
//! change), `http` (routing and Gmail's wire format; `http::watch` for `watch`/`stop` and the
//! notification, `http::labels` for label changes, `http::pubsub` for the Pub/Sub routes),
//! `mailbox` and `query` (the mailbox model), `push` (each mailbox's watch and label filter),
//! `pubsub` (topics, subscriptions, queues, ack ids and deadlines), `oauth`, `faults` (faults,
//! quota, statistics), `config`, `cli`.
//!
//! Architecture invariants:
//! - `mailbox`, `query`, `push` and `pubsub` do no I/O and take the time as an argument;
//!   `mailbox` and `query` never fail on message bytes or query text.
//! - Only `http` (with its submodules) knows the wire format; only `server` (and `cli`, which
//!   binds the listener) touches the file system and sockets.
//! - No lock is held across an `.await` (a waiting pull waits on a `Notify`, not a lock); one
//!   connection's failure never reaches the accept loop.
//! - Gmail faults and quota apply to Gmail API routes only, never to OAuth, Pub/Sub or control
//!   routes; push faults apply to publishing, watches and Pub/Sub subscription calls only.
//! - Message content is never logged.

pub mod cli;
mod config;
mod faults;
mod http;
mod keys;
mod mailbox;
mod oauth;
mod pubsub;
mod push;
mod query;
mod server;

#[cfg(test)]
mod e2e_tests;

pub use config::{
    DEFAULT_SUBSCRIPTION, DEFAULT_TOPIC, MethodCosts, OAuthClient, PubSubConfig, SandboxConfig,
    SandboxError, SubscriptionConfig,
};
pub use faults::{
    FaultConfig, FaultKind, PullFailure, PushFaultConfig, PushFaultUpdate, Stats, UserStats,
};
pub use keys::throwaway_service_account_key;
pub use mailbox::LabelTarget;
pub use oauth::{CLOUD_PLATFORM_SCOPE, METADATA_SCOPE, PUBSUB_SCOPE, READONLY_SCOPE};
pub use pubsub::PubSubStats;
pub use push::WatchStats;
pub use server::{Delivered, LabelsChanged, Sandbox, SpawnedSandbox, not_loopback_message, spawn};
