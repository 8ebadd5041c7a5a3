//! A Gmail-compatible HTTP server ("the sandbox") for integration tests and the demo: its own
//! crate, so that the product binary carries it only through the `sandbox` cargo feature
//! (`mailsync demo` and `mailsync sandbox`), and a production build can leave it out.
//!
//! The real Gmail API cannot be reached from our machines, so this server stands in for it and
//! behaves like it in everything a sync client depends on (see `docs/spec/gmail-api.md`):
//! the REST routes `profile`, `messages` (list), `messages/{id}` (get), `history` and `labels`
//! under `/gmail/v1/users/{userId}/`; bearer tokens from its own `POST /token` (refresh,
//! service-account JWT and authorization-code grants) and consent page `GET /o/oauth2/auth`;
//! 16-hex message ids stable across restarts; history ids with random gaps and a retention
//! floor; newest-first listing with cursor page tokens and a `q` subset in which an unknown
//! term can only widen a result; padded `raw`; omitted empty fields; Google's error bodies; a
//! per-user sliding-minute quota with Gmail's cost table and a concurrency cap; and switches for
//! revocation, history expiry and random faults.
//!
//! Unauthenticated control routes under `/sandbox/` (deliver, revoke, expire-history, rename,
//! faults, refresh-token, stats) mirror the methods of [`Sandbox`]. They hand out tokens and
//! the API serves mail to whoever holds one, so [`Sandbox::serve`] refuses a listener on any
//! address but loopback.
//!
//! Running it in a test:
//! ```text
//! let server = mailsync_sandbox::spawn(SandboxConfig { mailboxes_dir, oauth_clients, ..Default::default() }).await?;
//! let refresh = server.sandbox.issue_refresh_token("me@example.com", "client-id");
//! // point the client at server.base_url() and server.token_url() ...
//! server.shutdown().await?;
//! ```
//!
//! Architecture invariants:
//! - `mailbox` and `query` do no I/O and never fail on message bytes or query text.
//! - Only `http` knows the wire format; only `server` (and `cli`, which binds the listener)
//!   touches the file system and sockets.
//! - No lock is held across an `.await`; one connection's failure never reaches the accept loop.
//! - Faults and quota apply to Gmail API routes only, never to OAuth or control routes.

pub mod cli;
mod config;
mod faults;
mod http;
mod mailbox;
mod oauth;
mod query;
mod server;

#[cfg(test)]
mod e2e_tests;

pub use config::{MethodCosts, OAuthClient, SandboxConfig, SandboxError};
pub use faults::{FaultConfig, FaultKind, Stats, UserStats};
pub use oauth::{METADATA_SCOPE, READONLY_SCOPE};
pub use server::{Sandbox, SpawnedSandbox, not_loopback_message, spawn};
