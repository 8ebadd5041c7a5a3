//! What the daemon runs with: the policy (config and rules) and the Gmail credentials, loaded
//! by one function for `run`, for every reload and for `check-config`, so that a config
//! `check-config` passes is one the daemon starts with, and the other way round. Every problem
//! comes back as a diagnostic with its file and line, never only the first.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::gmail::auth::{Credentials, CredentialsError};
use crate::rules::{Policy, RuleSet};
use crate::tomlfile::{KeyPath, TomlFile};

/// What the daemon runs with.
pub struct Settings {
    pub policy: Policy,
    pub credentials: Credentials,
    /// The service account that pulls push notifications (`[gmail.push]`).
    pub push_key: Option<Arc<yup_oauth2::ServiceAccountKey>>,
}

/// Loads and checks everything `run` needs before it touches the store or Gmail.
pub async fn load(config_path: &Path) -> Result<Settings, Diagnostics> {
    let config = Config::load(config_path)?;
    let rules = match &config.rules_dir {
        Some(dir) => RuleSet::load(dir, &config),
        None => Ok(RuleSet::default()),
    };
    let credentials = load_credentials(&config).await;
    let push_key = load_push_key(&config).await;
    match (rules, credentials, push_key) {
        (Ok(rules), Ok(credentials), Ok(push_key)) => Ok(Settings {
            policy: Policy::new(config, rules),
            credentials,
            push_key,
        }),
        (rules, credentials, push_key) => {
            let mut diagnostics = rules.err().unwrap_or_default();
            diagnostics.extend(credentials.err().unwrap_or_default());
            diagnostics.extend(push_key.err().unwrap_or_default());
            Err(diagnostics.sorted())
        }
    }
}

/// The key `[gmail.push]` pulls with: checked like the Gmail credentials (private, parsed,
/// a usable private key), whether it is `[gmail.push]`'s own or `[gmail]`'s.
async fn load_push_key(
    config: &Config,
) -> Result<Option<Arc<yup_oauth2::ServiceAccountKey>>, Diagnostics> {
    let Some(push) = &config.gmail.push else {
        return Ok(None);
    };
    match Credentials::load_service_account_key(&push.service_account_key).await {
        Ok(Credentials::ServiceAccount(key)) => Ok(Some(key)),
        Ok(Credentials::InstalledApp(_)) => unreachable!("a service account key loads as one"),
        Err(error) => Err(config_diagnostic_at(
            config,
            &["gmail", "push", "service_account_key"],
            error.to_string(),
        )
        .into()),
    }
}

/// The `[gmail]` credentials: exactly one kind, its file private, readable and usable. Each
/// configured file is checked even when both are set, so one run reports everything.
async fn load_credentials(config: &Config) -> Result<Credentials, Diagnostics> {
    let gmail = &config.gmail;
    let located = |key: &str, error: CredentialsError| {
        config_diagnostic(config, Some(key), error.to_string())
    };
    let service_account = match &gmail.service_account_key {
        Some(path) => Some(
            Credentials::load_service_account_key(path)
                .await
                .map_err(|error| located("service_account_key", error)),
        ),
        None => None,
    };
    let client_secret = match &gmail.client_secret {
        Some(path) => Some(
            Credentials::load_client_secret(path)
                .await
                .map_err(|error| located("client_secret", error)),
        ),
        None => None,
    };
    match (service_account, client_secret) {
        (Some(Ok(credentials)), None) | (None, Some(Ok(credentials))) => Ok(credentials),
        (Some(Err(problem)), None) | (None, Some(Err(problem))) => Err(problem.into()),
        (None, None) => {
            Err(config_diagnostic(config, None, CredentialsError::Missing.to_string()).into())
        }
        (Some(first), Some(second)) => {
            let mut diagnostics: Diagnostics =
                located("client_secret", CredentialsError::Both).into();
            for problem in [first.err(), second.err()].into_iter().flatten() {
                diagnostics.push(problem);
            }
            Err(diagnostics)
        }
    }
}

/// A problem located at `[gmail] key` of the config file (or at `[gmail]`, or the file).
fn config_diagnostic(config: &Config, key: Option<&str>, message: String) -> Diagnostic {
    match key {
        Some(key) => config_diagnostic_at(config, &["gmail", key], message),
        None => config_diagnostic_at(config, &["gmail"], message),
    }
}

/// A problem located at the deepest of `keys` the config file has (`[gmail.push]` when its
/// `service_account_key` is `[gmail]`'s), or at the file.
fn config_diagnostic_at(config: &Config, keys: &[&str], message: String) -> Diagnostic {
    let path = &config.source_path;
    let line = std::fs::read_to_string(path).ok().and_then(|text| {
        let file = TomlFile::new(path, text);
        (1..=keys.len()).rev().find_map(|depth| {
            let at = keys[..depth]
                .iter()
                .fold(KeyPath::default(), |at, key| at.key(key));
            file.line_of(&at)
        })
    });
    Diagnostic::new(path, line, message)
}
