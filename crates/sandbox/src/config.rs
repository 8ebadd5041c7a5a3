//! Configuration and error types of the Gmail-compatible sandbox server.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::faults::FaultConfig;

/// Everything [`super::Sandbox::load`] needs; `Default` gives the 2026 Gmail figures.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// One sub-folder per user, named by the user's address; every regular file in it is one
    /// message. Hidden files (name starting with `.`) are skipped so editor and OS litter
    /// (`.DS_Store`) does not turn into mail.
    pub mailboxes_dir: PathBuf,
    /// Per user, over a sliding 60 s window, as Google's "Queries per minute per user".
    pub quota_units_per_minute: u32,
    /// Requests in flight for one user above which Gmail answers 429.
    pub max_concurrent_per_user: u32,
    /// Quota units charged per method.
    pub costs: MethodCosts,
    /// Random faults injected into Gmail API requests (not into OAuth or control routes).
    pub faults: FaultConfig,
    /// `expires_in` of issued access tokens.
    pub access_token_lifetime_secs: u64,
    /// Installed-app clients accepted by the refresh and authorization-code grants.
    pub oauth_clients: Vec<OAuthClient>,
    /// Seeds message ids, history ids and faults, so a run can be reproduced.
    pub seed: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            mailboxes_dir: PathBuf::from("."),
            quota_units_per_minute: 6000,
            max_concurrent_per_user: 10,
            costs: MethodCosts::default(),
            faults: FaultConfig::default(),
            access_token_lifetime_secs: 3599,
            oauth_clients: Vec::new(),
            seed: 0,
        }
    }
}

/// Quota units per Gmail method, as on Google's quota page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodCosts {
    pub get_profile: u32,
    pub labels_list: u32,
    pub history_list: u32,
    pub messages_list: u32,
    pub messages_get: u32,
}

impl Default for MethodCosts {
    fn default() -> Self {
        MethodCosts {
            get_profile: 1,
            labels_list: 1,
            history_list: 2,
            messages_list: 5,
            messages_get: 20,
        }
    }
}

/// An installed-app OAuth client (`client_id` / `client_secret` of a client secret file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
}

/// Why the sandbox could not start or a control operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read mailboxes folder {path}: {source}")]
    ReadMailboxes {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unknown sandbox user {0}")]
    UnknownUser(String),
    #[error("cannot bind sandbox listener: {0}")]
    Bind(std::io::Error),
    #[error(
        "invalid fault kind {0:?} (expected 500, 503, 429, 403, drop, slow, truncate or 404new)"
    )]
    InvalidFaultKind(String),
}
