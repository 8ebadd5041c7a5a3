//! What most commands need before they can work: settings, the user they are about, the
//! store, Gmail credentials and an async runtime, each failing with the right exit code.

use std::path::Path;

use super::CommandError;
use crate::config::User;
use crate::rules::Policy;
use crate::store::SharedStore;

/// The configured Gmail credentials; a missing or unsafe file is a config problem (exit 2).
pub(super) async fn load_credentials(
    policy: &Policy,
) -> Result<crate::gmail::auth::Credentials, CommandError> {
    let gmail = &policy.config.gmail;
    crate::gmail::auth::Credentials::load(
        gmail.service_account_key.as_deref(),
        gmail.client_secret.as_deref(),
    )
    .await
    .map_err(|error| CommandError::Usage(error.to_string()))
}

/// The async runtime for the commands that talk to Gmail.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    build_runtime(tokio::runtime::Builder::new_multi_thread().enable_all())
}

/// The daemon's runtime: one async worker thread. Its async work is waiting on Gmail; parsing
/// and storing run on the blocking pool, which uses every core. A second async thread only
/// added wake-ups between the two (a third of the CPU of 10,000 idle mailboxes).
pub(super) fn daemon_runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    build_runtime(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all(),
    )
}

fn build_runtime(
    builder: &mut tokio::runtime::Builder,
) -> Result<tokio::runtime::Runtime, CommandError> {
    builder.build().map_err(|error| {
        CommandError::Failed(anyhow::Error::new(error).context("cannot start the async runtime"))
    })
}

pub(super) fn load_policy(config_path: &Path) -> Result<Policy, CommandError> {
    Policy::load(config_path).map_err(CommandError::Config)
}

/// The configured user with this address, or a usage error naming the config.
pub(super) fn find_user<'a>(policy: &'a Policy, address: &str) -> Result<&'a User, CommandError> {
    policy.config.user_by_address(address).ok_or_else(|| {
        let known = policy.config.users.iter().flat_map(|user| user.addresses());
        let hint = match crate::diagnostic::closest(address, known) {
            Some(near) => format!("did you mean `{near}`? If not, add"),
            None => "add".to_string(),
        };
        CommandError::Usage(format!(
            "`{address}` is not a user in {}: {hint} it under [[users]] first",
            policy.config.source_path.display()
        ))
    })
}

pub(super) fn open_store(policy: &Policy) -> Result<SharedStore, CommandError> {
    crate::store::open(&policy.config).map_err(|error| {
        CommandError::Failed(
            anyhow::Error::new(error).context(format!("cannot open store {}", policy.config.store)),
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::diagnostic::closest;

    #[test]
    fn a_likely_typo_gets_the_nearest_name_and_a_stranger_gets_none() {
        let users = ["michelle@abcorp.com", "dave@abcorp.com", "m@abcorp.com"];
        assert_eq!(closest("dav@abcorp.com", users), Some("dave@abcorp.com"));
        assert_eq!(
            closest("Michele@abcorp.com", users),
            Some("michelle@abcorp.com")
        );
        assert_eq!(closest("someone@else.example", users), None);
    }
}
