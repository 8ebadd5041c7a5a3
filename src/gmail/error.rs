//! What can go wrong talking to Gmail, sorted by what the caller should do about it.

use std::time::Duration;

/// A failed Gmail request (after the client's own retries, when they apply).
#[derive(Debug, thiserror::Error)]
pub enum GmailError {
    /// 429, or 403 with `rateLimitExceeded`/`userRateLimitExceeded`: back off and retry.
    #[error("gmail rate limit ({status} {reason})")]
    RateLimited {
        status: u16,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// 5xx: a transient backend problem.
    #[error("gmail backend error ({status})")]
    Backend { status: u16 },
    /// The connection failed or was dropped.
    #[error("connection to gmail failed: {0}")]
    Connection(String),
    /// A 2xx answer that was cut short or was not the JSON we expect.
    #[error("gmail answer was incomplete or malformed: {0}")]
    BadResponse(String),
    #[error("gmail did not answer within {0:?}")]
    Timeout(Duration),
    /// 401: the access token was rejected. The client refreshes and retries once.
    #[error("gmail rejected the access token (401)")]
    Unauthorized,
    /// The grant is gone (revoked refresh token, delegation not authorised): nothing will
    /// work for this user until someone re-authorises.
    #[error(
        "authorization for {user} is revoked or not granted ({code}): run `mailsync auth login --user {user}` or fix the domain-wide delegation"
    )]
    NeedsReauth { user: String, code: String },
    /// `users.getProfile` names a mailbox that is not the user's: a consent given with another
    /// Google account, a refresh token stored under the wrong user, or a Workspace user renamed
    /// since the config was written. Nothing is read from it.
    #[error(
        "the grant for {user} opens the mailbox of {reached}, which is neither {user} nor one of its aliases; nothing was read from it: run `mailsync auth login --user {user}` and sign in as {user} (or, if {reached} is this person's own address, add it to the user's aliases)"
    )]
    WrongMailbox { user: String, reached: String },
    /// 404 on `users.history.list`: the cursor is older than Gmail keeps history.
    #[error("history id {0} is no longer available")]
    HistoryExpired(u64),
    /// 404 on a message: it was deleted since it was listed.
    #[error("gmail has no message {0}")]
    MessageNotFound(String),
    /// A refusal that retrying will not fix (400, 403 other than rate limits).
    #[error("gmail refused the request ({status} {reason})")]
    Refused { status: u16, reason: String },
    /// The token endpoint failed for a reason other than a revoked grant.
    #[error("cannot get an access token: {0}")]
    Token(String),
}

impl GmailError {
    /// Worth retrying the same request after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            GmailError::RateLimited { .. }
                | GmailError::Backend { .. }
                | GmailError::Connection(_)
                | GmailError::BadResponse(_)
                | GmailError::Timeout(_)
                | GmailError::Token(_)
        )
    }

    /// Nothing will work for this user until someone authorises again (or fixes the config):
    /// the user's sync stops instead of retrying.
    pub fn needs_reauth(&self) -> bool {
        matches!(
            self,
            GmailError::NeedsReauth { .. } | GmailError::WrongMailbox { .. }
        )
    }

    /// A short, stable label for metrics and `status` (`429`, `500`, `connection`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            GmailError::RateLimited { .. } => "rate_limited",
            GmailError::Backend { .. } => "backend",
            GmailError::Connection(_) => "connection",
            GmailError::BadResponse(_) => "bad_response",
            GmailError::Timeout(_) => "timeout",
            GmailError::Unauthorized => "unauthorized",
            GmailError::NeedsReauth { .. } => "needs_reauth",
            GmailError::WrongMailbox { .. } => "wrong_mailbox",
            GmailError::HistoryExpired(_) => "history_expired",
            GmailError::MessageNotFound(_) => "not_found",
            GmailError::Refused { .. } => "refused",
            GmailError::Token(_) => "token",
        }
    }
}

/// The parts of a Gmail JSON error body a client branches on.
pub(crate) fn status_and_reason(body: &serde_json::Value) -> (u16, String) {
    let error = &body["error"];
    let status = error["code"]
        .as_u64()
        .and_then(|code| u16::try_from(code).ok())
        .unwrap_or(0);
    let reason = error["errors"][0]["reason"]
        .as_str()
        .or_else(|| error["status"].as_str())
        .unwrap_or("")
        .to_string();
    (status, reason)
}

/// Sorts an HTTP failure by status and Gmail's `reason`.
pub(crate) fn classify_status(
    status: u16,
    reason: &str,
    retry_after: Option<Duration>,
) -> GmailError {
    match status {
        401 => GmailError::Unauthorized,
        429 => GmailError::RateLimited {
            status,
            reason: reason.to_string(),
            retry_after,
        },
        403 if reason == "rateLimitExceeded" || reason == "userRateLimitExceeded" => {
            GmailError::RateLimited {
                status,
                reason: reason.to_string(),
                retry_after,
            }
        }
        500..=599 => GmailError::Backend { status },
        _ => GmailError::Refused {
            status,
            reason: reason.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_as_the_spec_table_says() {
        assert!(classify_status(429, "rateLimitExceeded", None).is_retryable());
        assert!(classify_status(403, "userRateLimitExceeded", None).is_retryable());
        assert!(classify_status(403, "rateLimitExceeded", None).is_retryable());
        assert!(!classify_status(403, "dailyLimitExceeded", None).is_retryable());
        assert!(!classify_status(403, "insufficientPermissions", None).is_retryable());
        assert!(!classify_status(400, "invalidArgument", None).is_retryable());
        for status in [500, 502, 503, 504] {
            assert!(classify_status(status, "backendError", None).is_retryable());
        }
        assert!(matches!(
            classify_status(401, "authError", None),
            GmailError::Unauthorized
        ));
    }

    #[test]
    fn error_bodies_are_read() {
        let body = serde_json::json!({"error": {"code": 403, "message": "m", "errors": [{"message": "m", "domain": "usageLimits", "reason": "userRateLimitExceeded"}], "status": "PERMISSION_DENIED"}});
        assert_eq!(
            status_and_reason(&body),
            (403, "userRateLimitExceeded".to_string())
        );
    }
}
