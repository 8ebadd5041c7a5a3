//! The store as the sync reaches it from async code: blocking work on the blocking pool, and
//! small calls in place when the store can answer without waiting (see
//! `try_without_waiting`).

use super::SyncError;
use crate::store::{SharedStore, Store, StoreError};

/// Runs blocking store work off the async threads.
pub(super) async fn with_store<T: Send + 'static>(
    store: &SharedStore,
    work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, SyncError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(&*store))
        .await
        .map_err(|error| SyncError::Task(error.to_string()))?
        .map_err(SyncError::Store)
}

/// Runs `work` at once if the store can do it without waiting (`store::without_waiting`);
/// `None` when it would have had to wait (another mailbox's batch holds SQLite's connection,
/// another process its write lock, or the backend is over the network), and the caller goes
/// again where waiting is allowed. For the small calls the async thread makes on every poll:
/// a hop to the blocking pool costs more than they do, and SQLite is almost always free.
pub(crate) fn try_without_waiting<T>(
    store: &SharedStore,
    work: &mut impl FnMut(&dyn Store) -> Result<T, StoreError>,
) -> Option<Result<T, StoreError>> {
    match crate::store::without_waiting(|| work(&**store)) {
        Err(error) if error.is_busy() => None,
        result => Some(result),
    }
}

/// Small store work (a state row, a cursor, a batch's "already decided?"): in place when
/// [`try_without_waiting`] can, else on the blocking pool, where it runs again (every
/// caller's work is a read or an idempotent write).
pub(super) async fn with_store_quick<T: Send + 'static>(
    store: &SharedStore,
    mut work: impl FnMut(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, SyncError> {
    match try_without_waiting(store, &mut work) {
        Some(result) => result.map_err(SyncError::Store),
        None => with_store(store, work).await,
    }
}
