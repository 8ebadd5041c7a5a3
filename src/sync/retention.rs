//! Retention: subjects, bodies and attachment content of messages older than `[retention]
//! body_days` are erased; metadata stays. Run by `mailsync retention apply` and by the daemon
//! at start and every hour.

use crate::config::Config;
use crate::store::{Erased, Store, StoreError, StoreOptions};

/// How often the daemon applies retention (after once at start).
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Erases (or with `dry_run` counts) what is due now; `None` when no retention is configured.
pub fn apply(
    config: &Config,
    store: &dyn Store,
    dry_run: bool,
) -> Result<Option<Erased>, StoreError> {
    let Some(cutoff) =
        StoreOptions::from_config(config).erase_before(chrono::Utc::now().timestamp())
    else {
        return Ok(None);
    };
    store.erase_content_before(cutoff, dry_run).map(Some)
}
