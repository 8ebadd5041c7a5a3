//! Gmail: the only module that knows HTTP, OAuth and Gmail's JSON.
//!
//! - [`client`] — one user's mailbox through google-gmail1, paced to the quota, with retries.
//! - [`auth`] — access tokens (service account with domain-wide delegation, or per-user OAuth).
//! - [`error`] — failures sorted by what to do about them.
//! - [`search`] — Gmail's search syntax: the window and the candidate searches.
//! - [`pubsub`] — push notifications, pulled from a Cloud Pub/Sub subscription.

pub mod auth;
pub mod client;
pub mod error;
pub mod http;
pub mod pubsub;
pub mod search;

pub use client::{GmailClient, Method};
pub use error::GmailError;
