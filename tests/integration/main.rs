//! mailsync's integration tests, one binary for the whole crate (each file used to link the
//! whole crate on its own). Run one area with `cargo test --test integration cli::`.
//!
//! - `decision_table` — the decision spec as data (`tests/fixtures/decisions/cases.toml`).
//! - `store`, `privacy` — the read path per viewer, idempotence, backfill, retention, the
//!   access log, attachment content.
//! - `conversations` — per-conversation privacy: label rules, the owner's override, the
//!   participants level, each viewer's feed, search and export, on each backend.
//! - `properties` — invariants under proptest.
//! - `cli`, `shipped_files` — the built binary as a user runs it; the files we ship.
//! - `packaging` — the Debian package (built by CI, named by `MAILSYNC_DEB`).
//! - `gmail_daemon`, `candidates`, `operability`, `reliability` — the daemon and the
//!   Gmail-compatible server as processes over loopback: sync, push of faults, signals,
//!   notifications, metrics, crashes.
//! - `hostile`, `corpus`, `parse_snapshots` — hostile mail, real mail, snapshots.
//!
//! Shared set-up (builders that read like sentences) lives in `common`.

mod common;

mod candidates;
mod cli;
mod conversations;
mod corpus;
mod decision_table;
mod gmail_daemon;
mod hostile;
mod operability;
mod packaging;
mod parse_snapshots;
mod postgres_store;
mod privacy;
mod properties;
mod push;
mod reliability;
mod shipped_files;
mod store;
