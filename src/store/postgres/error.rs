//! PostgreSQL errors as the store's backend-neutral ones. A server error's DETAIL can quote
//! the row it is about (`Key (email)=(alice@customer.com) already exists`), and errors reach
//! logs: only the SQLSTATE and the primary message, which names constraints and never values,
//! are kept.

use postgres::error::SqlState;

use crate::store::StoreError;

/// The error without anything a row could put in it.
pub(super) fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> StoreError {
        let busy = error.code().is_some_and(|code| {
            [
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::QUERY_CANCELED,
            ]
            .contains(code)
        });
        if busy {
            StoreError::Busy(describe(&error))
        } else {
            StoreError::Database(describe(&error))
        }
    }
}

impl From<r2d2::Error> for StoreError {
    /// The pool found no free connection in time, or none could be made.
    fn from(error: r2d2::Error) -> StoreError {
        StoreError::Busy(format!("no PostgreSQL connection: {error}"))
    }
}
