//! mailsync: an email-sync ingestion daemon for CRMs.
//!
//! A raw message from a user's mailbox goes in; a decision comes out, exactly as the decision
//! spec defines it; a synced message is written once, idempotently, into the CRM store.
//! See `ARCHITECTURE.md` for the map of modules and the invariants they keep.

pub mod address;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod diagnostic;
pub mod freemail;
pub mod gmail;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod parse;
pub mod printable;
pub mod rules;
pub mod secret_file;
pub mod settings;
pub mod source;
pub mod store;
pub mod sync;
pub mod tomlfile;
