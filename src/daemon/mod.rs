//! `mailsync run`: the long-running service. One task per sync-enabled user polls that
//! user's Gmail under a global cap on mailboxes synced at once; reload and shutdown come in
//! as [`Controls`], so tests drive them without signals and `main` wires real ones.

mod instance;
mod push;
pub mod status_page;
mod supervisor;
mod worker;

pub use supervisor::{Controls, DaemonError, RunOutcome, run};
