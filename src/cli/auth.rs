//! `mailsync auth login`: the one-time OAuth consent for a user (per-user OAuth only). The
//! refresh token it yields is kept in the store, where the daemon finds it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::{CommandError, CommandResult, ExitStatus, find_user, open_store, runtime};
use crate::gmail::auth::{Credentials, GMAIL_READONLY};
use crate::gmail::http;
use crate::rules::Policy;
use crate::store::{SqliteStore, Store};

/// yup-oauth2's token storage, backed by our store: the refresh token the consent flow
/// produces goes into `oauth_tokens` for this user, and nowhere else (no token file on disk).
/// Access tokens are not kept: the daemon refreshes its own.
#[derive(Clone)]
struct StoreTokenStorage {
    store: Arc<Mutex<SqliteStore>>,
    user_email: String,
    client_id: String,
    stored: Arc<Mutex<bool>>,
}

#[async_trait::async_trait]
impl yup_oauth2::storage::TokenStorage for StoreTokenStorage {
    async fn set(
        &self,
        _scopes: &[&str],
        token: yup_oauth2::storage::TokenInfo,
    ) -> Result<(), yup_oauth2::storage::TokenStorageError> {
        let Some(refresh_token) = token.refresh_token else {
            return Ok(());
        };
        let mut store = self
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        store
            .set_refresh_token(&self.user_email, &self.client_id, &refresh_token)
            .map_err(|error| {
                yup_oauth2::storage::TokenStorageError::Other(error.to_string().into())
            })?;
        *self
            .stored
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        Ok(())
    }

    async fn get(&self, _scopes: &[&str]) -> Option<yup_oauth2::storage::TokenInfo> {
        // Always run the consent flow: this command exists to get a new grant.
        None
    }
}

/// Prints the consent URL plainly, on its own line, so a person can open it and a script can
/// read it.
struct PrintUrl;

impl yup_oauth2::authenticator_delegate::InstalledFlowDelegate for PrintUrl {
    fn present_user_url<'a>(
        &'a self,
        url: &'a str,
        _need_code: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>
    {
        Box::pin(async move {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "Open this URL in a browser and allow read-only access to Gmail:"
            );
            let _ = writeln!(out, "{url}");
            let _ = out.flush();
            Ok(String::new())
        })
    }
}

pub fn login(policy: &Policy, user: &str) -> CommandResult {
    let user = find_user(policy, user)?;
    runtime()?.block_on(async {
        let credentials = super::load_credentials(policy).await?;
        let Credentials::InstalledApp(secret) = credentials else {
            return Err(CommandError::Usage(
                "auth login is for per-user OAuth ([gmail] client_secret); with a service account, authorise domain-wide delegation in the Workspace admin console instead".to_string(),
            ));
        };
        let storage = StoreTokenStorage {
            store: Arc::new(Mutex::new(open_store(policy)?)),
            user_email: user.email.clone(),
            client_id: secret.client_id.clone(),
            stored: Arc::new(Mutex::new(false)),
        };
        let authenticator = yup_oauth2::InstalledFlowAuthenticator::with_client(
            (*secret).clone(),
            yup_oauth2::InstalledFlowReturnMethod::HTTPRedirect,
            yup_oauth2::CustomHyperClientBuilder::from(http::oauth_client()),
        )
        .force_account_selection(true)
        .flow_delegate(Box::new(PrintUrl))
        .with_storage(Box::new(storage.clone()))
        .build()
        .await
        .context("cannot start the consent flow")?;
        authenticator
            .token(&[GMAIL_READONLY])
            .await
            .context("the consent flow did not complete")?;
        if !*storage.stored.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) {
            return Err(anyhow::anyhow!(
                "the token endpoint returned no refresh token; revoke mailsync's access in the Google account and try again"
            )
            .into());
        }
        println!("authorized {}: refresh token stored; reload the daemon (systemctl reload mailsync) to resume its sync", user.email);
        tracing::info!(user = %user.email, "refresh token stored");
        Ok(ExitStatus::Success)
    })
}
