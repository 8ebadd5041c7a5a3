//! `mailsync auth login`: the one-time OAuth consent for a user (per-user OAuth only). The
//! refresh token it yields is kept in the store, where the daemon finds it, once Gmail has
//! shown that it opens this user's mailbox and no other.

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::{CommandError, CommandResult, ExitStatus, find_user, open_store, runtime};
use crate::config::User;
use crate::gmail::auth::{Credentials, GMAIL_READONLY};
use crate::gmail::{GmailClient, GmailError, http};
use crate::rules::Policy;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Run the OAuth consent flow for one user and keep the refresh token in the store.
    ///
    /// Prints a URL to open in a browser; a listener on 127.0.0.1 receives Google's answer.
    /// The grant is kept only if Gmail says it opens this user's mailbox (primary address or
    /// an alias); consent given with another account stores nothing and exits 1. Run it with
    /// the daemon's config, so the token lands in the daemon's store.
    Login {
        /// The user (primary address or alias).
        #[arg(long, value_name = "EMAIL")]
        user: String,
        /// The listener's port, fixed (for an SSH tunnel: ssh -L N:127.0.0.1:N HOST); with
        /// --no-browser, the port of the address the browser is sent back to.
        #[arg(long, value_name = "N")]
        port: Option<u16>,
        /// Print the URL and read back, from standard input, the address the browser was sent
        /// back to (or the code alone): for a machine without a browser.
        #[arg(long)]
        no_browser: bool,
    },
}

/// How the consent's answer comes back from the browser.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginOptions {
    /// The port of the loopback listener the browser is sent back to (for an SSH tunnel);
    /// any free port when `None`.
    pub port: Option<u16>,
    /// No listener: the person pastes the address the browser was sent back to (or its code).
    pub no_browser: bool,
}

/// Where the browser is sent back to with `--no-browser` and no `--port`. Nothing listens
/// there: the browser shows an error page, and the address in its address bar holds the code.
/// Port 1 is reserved and never served, so no local web server sees the code first.
const NO_BROWSER_DEFAULT_PORT: u16 = 1;

/// yup-oauth2's token storage, holding the new refresh token in memory only: it reaches the
/// store after Gmail has confirmed whose mailbox it opens. Access tokens are not kept: the
/// daemon refreshes its own.
#[derive(Clone, Default)]
struct CapturedRefreshToken(Arc<Mutex<Option<String>>>);

impl CapturedRefreshToken {
    fn take(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

#[async_trait::async_trait]
impl yup_oauth2::storage::TokenStorage for CapturedRefreshToken {
    async fn set(
        &self,
        _scopes: &[&str],
        token: yup_oauth2::storage::TokenInfo,
    ) -> Result<(), yup_oauth2::storage::TokenStorageError> {
        if let Some(refresh_token) = token.refresh_token {
            *self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(refresh_token);
        }
        Ok(())
    }

    async fn get(&self, _scopes: &[&str]) -> Option<yup_oauth2::storage::TokenInfo> {
        // Always run the consent flow: this command exists to get a new grant.
        None
    }
}

/// Shows the consent URL, with the user's address as `login_hint` so that Google offers the
/// right account first, and with `--no-browser` reads back what the person pastes.
struct Consent {
    login_hint: String,
    redirect_uri: Option<String>,
}

impl Consent {
    fn url_for(&self, url: &str) -> String {
        let hint = form_urlencoded::Serializer::new(String::new())
            .append_pair("login_hint", &self.login_hint)
            .finish();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}{hint}")
    }
}

impl yup_oauth2::authenticator_delegate::InstalledFlowDelegate for Consent {
    fn redirect_uri(&self) -> Option<&str> {
        self.redirect_uri.as_deref()
    }

    fn present_user_url<'a>(
        &'a self,
        url: &'a str,
        need_code: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>
    {
        let url = self.url_for(url);
        Box::pin(async move {
            {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "Open this URL in a browser, sign in as {} and allow read-only access to Gmail:",
                    self.login_hint
                );
                // Alone on its line, so a person can copy it and a script can read it.
                let _ = writeln!(out, "{url}");
                if need_code {
                    let _ = writeln!(
                        out,
                        "The browser then fails to load a page on localhost: that is expected. Copy the whole address from its address bar and paste it here:"
                    );
                }
                let _ = out.flush();
            }
            if !need_code {
                return Ok(String::new());
            }
            tokio::task::spawn_blocking(read_pasted_code)
                .await
                .map_err(|error| error.to_string())?
        })
    }
}

/// Reads one line from standard input: the address the browser was sent back to, or the code
/// alone.
fn read_pasted_code() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| format!("cannot read standard input: {error}"))?;
    code_from_pasted(&line)
}

/// The authorization code in what the person pasted: a redirect address with `code=` (or
/// `error=` when consent was refused), or the bare code.
fn code_from_pasted(pasted: &str) -> Result<String, String> {
    let pasted = pasted.trim();
    if pasted.is_empty() {
        return Err("nothing was pasted".to_string());
    }
    let Some((_, query)) = pasted.split_once('?') else {
        return Ok(pasted.to_string());
    };
    let query = query.split('#').next().unwrap_or("");
    let mut code = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "code" => code = Some(value.into_owned()),
            "error" => return Err(format!("consent was not given ({value})")),
            _ => {}
        }
    }
    code.ok_or_else(|| "the pasted address has no `code` parameter".to_string())
}

pub fn login(policy: &Policy, user: &str, options: LoginOptions) -> CommandResult {
    let user = find_user(policy, user)?;
    runtime()?.block_on(async {
        let credentials = super::load_credentials(policy).await?;
        let Credentials::InstalledApp(secret) = &credentials else {
            return Err(CommandError::Usage(
                "auth login is for per-user OAuth ([gmail] client_secret); with a service account, authorise domain-wide delegation in the Workspace admin console instead".to_string(),
            ));
        };
        let (method, redirect_uri) = if options.no_browser {
            let port = options.port.unwrap_or(NO_BROWSER_DEFAULT_PORT);
            (
                yup_oauth2::InstalledFlowReturnMethod::Interactive,
                Some(format!("http://localhost:{port}/")),
            )
        } else if let Some(port) = options.port {
            (
                yup_oauth2::InstalledFlowReturnMethod::HTTPPortRedirect(port),
                None,
            )
        } else {
            (yup_oauth2::InstalledFlowReturnMethod::HTTPRedirect, None)
        };
        let captured = CapturedRefreshToken::default();
        let authenticator = yup_oauth2::InstalledFlowAuthenticator::with_client(
            (**secret).clone(),
            method,
            yup_oauth2::CustomHyperClientBuilder::from(http::oauth_client()),
        )
        .force_account_selection(true)
        .flow_delegate(Box::new(Consent {
            login_hint: user.email.clone(),
            redirect_uri,
        }))
        .with_storage(Box::new(captured.clone()))
        .build()
        .await
        .with_context(|| match options.port {
            Some(port) => format!("cannot start the consent flow (is port {port} free on 127.0.0.1?)"),
            None => "cannot start the consent flow".to_string(),
        })?;
        authenticator
            .token(&[GMAIL_READONLY])
            .await
            .context("the consent flow did not complete")?;
        let Some(refresh_token) = captured.take() else {
            return Err(anyhow::anyhow!(
                "the token endpoint returned no refresh token; revoke mailsync's access in the Google account and try again"
            )
            .into());
        };
        confirm_mailbox(policy, &credentials, user, &refresh_token).await?;
        let store = open_store(policy)?;
        store
            .set_refresh_token(&user.email, &secret.client_id, &refresh_token)
            .context("cannot store the refresh token")?;
        println!("authorized {}: refresh token stored; reload the daemon (systemctl reload mailsync) to resume its sync", user.email);
        tracing::info!(user = %user.email, "refresh token stored");
        Ok(ExitStatus::Success)
    })
}

/// Asks Gmail, with the new grant and through the daemon's own client, whose mailbox it
/// opens. Another account's grant is dropped (exit 1), naming both accounts.
async fn confirm_mailbox(
    policy: &Policy,
    credentials: &Credentials,
    user: &User,
    refresh_token: &str,
) -> Result<(), CommandError> {
    let client = GmailClient::for_user(
        &policy.config.gmail,
        credentials,
        &user.email,
        Some(refresh_token.to_string()),
        http::api_client(),
        http::oauth_client(),
    );
    match client.confirm_mailbox(user.addresses()).await {
        Ok(()) => Ok(()),
        Err(GmailError::WrongMailbox { reached, .. }) => Err(anyhow::anyhow!(
            "consent was given for {reached}, not for {user_email}: nothing was stored. Run `mailsync auth login --user {user_email}` again and sign in as {user_email} (if {reached} is this person's own address, add it to the user's aliases first)",
            user_email = user.email
        )
        .into()),
        Err(error) => Err(anyhow::Error::new(error)
            .context("cannot confirm whose mailbox the new grant opens; nothing was stored")
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_codes() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("4/abc\n", Ok("4/abc")),
            ("http://localhost:1/?code=4%2Fabc&scope=x", Ok("4/abc")),
            (
                "  http://localhost:1/?scope=x&code=c0de#frag \r\n",
                Ok("c0de"),
            ),
            (
                "http://localhost:1/?error=access_denied",
                Err("consent was not given (access_denied)"),
            ),
            (
                "http://localhost:1/?scope=x",
                Err("the pasted address has no `code` parameter"),
            ),
            ("\n", Err("nothing was pasted")),
        ];
        for (pasted, expected) in cases {
            let got = code_from_pasted(pasted);
            assert_eq!(
                got.as_deref().map_err(String::as_str),
                *expected,
                "{pasted:?}"
            );
        }
    }

    #[test]
    fn the_consent_url_names_the_user() {
        let consent = Consent {
            login_hint: "chris+crm@abcorp.com".to_string(),
            redirect_uri: None,
        };
        assert_eq!(
            consent.url_for("https://accounts.example/o/oauth2/auth?scope=s&client_id=c"),
            "https://accounts.example/o/oauth2/auth?scope=s&client_id=c&login_hint=chris%2Bcrm%40abcorp.com"
        );
    }
}
