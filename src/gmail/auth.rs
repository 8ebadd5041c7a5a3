//! Access tokens for Gmail: Workspace domain-wide delegation (a service account acting as
//! each user) or per-user OAuth (an installed-app client and a refresh token per user).
//!
//! yup-oauth2 signs and exchanges the service-account JWT. Per-user refresh is done here,
//! against the client secret's own `token_uri`: yup-oauth2's authorized-user flow hard-codes
//! Google's URL, and its installed flow falls back to an interactive browser flow when a
//! refresh fails, which a daemon must never do.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::error::{AuthError, AuthErrorCode};
use yup_oauth2::{ApplicationSecret, ServiceAccountKey};

use super::error::GmailError;
use super::http::{Connector, OAuthClient};

/// The one scope mailsync asks for. Never also `gmail.metadata`: Gmail would then apply
/// metadata restrictions (no `q`, no raw) to the whole token.
pub const GMAIL_READONLY: &str = "https://www.googleapis.com/auth/gmail.readonly";

/// A token counts as expired this long before Gmail says it does, so it never expires in
/// flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Problems with the credential files themselves, found before any request is made.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no Gmail credentials: set [gmail] service_account_key (Workspace domain-wide delegation) or [gmail] client_secret (per-user OAuth) in the config"
    )]
    Missing,
    #[error("set only one of [gmail] service_account_key and [gmail] client_secret")]
    Both,
    #[error(transparent)]
    File(#[from] crate::secret_file::SecretFileError),
    #[error("{path} is not a valid {kind}: {reason}")]
    Invalid {
        path: PathBuf,
        kind: &'static str,
        reason: String,
    },
    #[error(
        "{path}: token_uri `{uri}` is not https (plain http is allowed only to this machine, for tests)"
    )]
    InsecureTokenUri { path: PathBuf, uri: String },
}

/// Tokens must travel over TLS, except to a test server on this machine.
fn check_token_uri(path: &Path, uri: &str) -> Result<(), CredentialsError> {
    if uri.starts_with("https://")
        || (uri.starts_with("http://") && crate::config::is_loopback_url(uri))
    {
        Ok(())
    } else {
        Err(CredentialsError::InsecureTokenUri {
            path: path.to_path_buf(),
            uri: uri.to_string(),
        })
    }
}

fn invalid(path: &Path, kind: &'static str, reason: String) -> CredentialsError {
    CredentialsError::Invalid {
        path: path.to_path_buf(),
        kind,
        reason,
    }
}

/// How mailsync proves it may read a mailbox.
#[derive(Clone)]
pub enum Credentials {
    ServiceAccount(Arc<ServiceAccountKey>),
    InstalledApp(Arc<ApplicationSecret>),
}

impl std::fmt::Debug for Credentials {
    // The key and the client secret must never reach a log line, even at debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::ServiceAccount(key) => write!(f, "ServiceAccount({})", key.client_email),
            Credentials::InstalledApp(secret) => write!(f, "InstalledApp({})", secret.client_id),
        }
    }
}

impl Credentials {
    /// Reads the configured credential file after checking its permissions, and checks that
    /// it is usable (a service account's private key is parsed here, not at the first token).
    pub async fn load(
        service_account_key: Option<&Path>,
        client_secret: Option<&Path>,
    ) -> Result<Credentials, CredentialsError> {
        match (service_account_key, client_secret) {
            (Some(_), Some(_)) => Err(CredentialsError::Both),
            (None, None) => Err(CredentialsError::Missing),
            (Some(path), None) => Credentials::load_service_account_key(path).await,
            (None, Some(path)) => Credentials::load_client_secret(path).await,
        }
    }

    pub async fn load_service_account_key(path: &Path) -> Result<Credentials, CredentialsError> {
        const KIND: &str = "service account key (the JSON key file from the Google Cloud console)";
        let text = crate::secret_file::read(path)?;
        let key = yup_oauth2::parse_service_account_key(&text)
            .map_err(|error| invalid(path, KIND, error.to_string()))?;
        check_token_uri(path, &key.token_uri)?;
        // Building the authenticator parses the PEM key; nothing is sent.
        yup_oauth2::ServiceAccountAuthenticator::with_client(
            key.clone(),
            yup_oauth2::CustomHyperClientBuilder::from(super::http::oauth_client()),
        )
        .build()
        .await
        .map_err(|error| invalid(path, KIND, format!("private_key: {error}")))?;
        Ok(Credentials::ServiceAccount(Arc::new(key)))
    }

    pub async fn load_client_secret(path: &Path) -> Result<Credentials, CredentialsError> {
        const KIND: &str =
            "OAuth client secret (the \"Desktop app\" JSON from the Google Cloud console)";
        let text = crate::secret_file::read(path)?;
        let secret = yup_oauth2::parse_application_secret(&text)
            .map_err(|error| invalid(path, KIND, error.to_string()))?;
        check_token_uri(path, &secret.token_uri)?;
        Ok(Credentials::InstalledApp(Arc::new(secret)))
    }

    /// What kind of credentials these are, naming the account or client, never the secret.
    pub fn describe(&self) -> String {
        match self {
            Credentials::ServiceAccount(key) => format!(
                "service account {} (domain-wide delegation)",
                key.client_email
            ),
            Credentials::InstalledApp(secret) => {
                format!("OAuth client {} (per-user consent)", secret.client_id)
            }
        }
    }

    pub fn needs_refresh_tokens(&self) -> bool {
        matches!(self, Credentials::InstalledApp(_))
    }
}

struct CachedToken {
    token: String,
    usable_until: Instant,
}

enum Flow {
    ServiceAccount {
        key: Arc<ServiceAccountKey>,
        authenticator: tokio::sync::Mutex<Option<Authenticator<Connector>>>,
    },
    Refresh {
        secret: Arc<ApplicationSecret>,
        refresh_token: Option<String>,
        cache: tokio::sync::Mutex<Option<CachedToken>>,
    },
}

/// Access tokens for one user. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<TokenSourceInner>,
}

struct TokenSourceInner {
    user_email: String,
    flow: Flow,
    /// The token in use, whichever flow made it: every Gmail request asks for one, and
    /// answering from here skips the flow's async lock and yup-oauth2's token store.
    current: std::sync::Mutex<Option<CachedToken>>,
    http: OAuthClient,
    timeout: Duration,
}

impl TokenSource {
    /// `refresh_token` is the user's stored token, needed only for per-user OAuth.
    pub fn new(
        credentials: &Credentials,
        user_email: &str,
        refresh_token: Option<String>,
        http: OAuthClient,
        timeout: Duration,
    ) -> Self {
        let flow = match credentials {
            Credentials::ServiceAccount(key) => Flow::ServiceAccount {
                key: key.clone(),
                authenticator: tokio::sync::Mutex::new(None),
            },
            Credentials::InstalledApp(secret) => Flow::Refresh {
                secret: secret.clone(),
                refresh_token,
                cache: tokio::sync::Mutex::new(None),
            },
        };
        TokenSource {
            inner: Arc::new(TokenSourceInner {
                user_email: user_email.to_string(),
                flow,
                current: std::sync::Mutex::new(None),
                http,
                timeout,
            }),
        }
    }

    fn needs_reauth(&self, code: &str) -> GmailError {
        GmailError::NeedsReauth {
            user: self.inner.user_email.clone(),
            code: code.to_string(),
        }
    }

    /// A bearer token for this user; `force_refresh` after Gmail answered 401.
    pub async fn access_token(&self, force_refresh: bool) -> Result<String, GmailError> {
        let inner = &self.inner;
        {
            let mut current = inner.current.lock().expect("never poisoned");
            match current.as_ref() {
                Some(cached) if !force_refresh && cached.usable_until > Instant::now() => {
                    return Ok(cached.token.clone());
                }
                _ => *current = None,
            }
        }
        let work = async {
            match &inner.flow {
                Flow::ServiceAccount { key, authenticator } => {
                    let mut authenticator = authenticator.lock().await;
                    if authenticator.is_none() {
                        let built = yup_oauth2::ServiceAccountAuthenticator::with_client(
                            (**key).clone(),
                            yup_oauth2::CustomHyperClientBuilder::from(inner.http.clone()),
                        )
                        .subject(inner.user_email.clone())
                        .build()
                        .await
                        .map_err(|error| {
                            GmailError::Token(format!("cannot set up service account: {error}"))
                        })?;
                        *authenticator = Some(built);
                    }
                    let authenticator = authenticator.as_ref().expect("built just above");
                    let token = if force_refresh {
                        authenticator.force_refreshed_token(&[GMAIL_READONLY]).await
                    } else {
                        authenticator.token(&[GMAIL_READONLY]).await
                    };
                    match token {
                        Ok(token) => {
                            let text = token.token().map(str::to_string).ok_or_else(|| {
                                GmailError::Token(
                                    "token endpoint returned no access token".to_string(),
                                )
                            })?;
                            // Kept as long as yup-oauth2 would keep it, less the margin.
                            if let Some(expires) =
                                token.expiration_time().map(|time| time.unix_timestamp())
                            {
                                let left = expires - chrono::Utc::now().timestamp();
                                self.keep(&text, Duration::from_secs(left.max(0) as u64));
                            }
                            Ok(text)
                        }
                        Err(error) => Err(self.classify_yup_error(error)),
                    }
                }
                Flow::Refresh {
                    secret,
                    refresh_token,
                    cache,
                } => {
                    let mut cache = cache.lock().await;
                    if !force_refresh
                        && let Some(cached) =
                            cache.as_ref().filter(|c| c.usable_until > Instant::now())
                    {
                        return Ok(cached.token.clone());
                    }
                    let refresh_token = refresh_token
                        .as_deref()
                        .ok_or_else(|| self.needs_reauth("no refresh token stored"))?;
                    let fresh =
                        refresh(&inner.http, secret, refresh_token)
                            .await
                            .map_err(|error| match error {
                                RefreshError::Revoked(code) => self.needs_reauth(&code),
                                RefreshError::Other(message) => GmailError::Token(message),
                            })?;
                    let token = fresh.access_token.clone();
                    self.keep(
                        &token,
                        Duration::from_secs(fresh.expires_in.unwrap_or(3600)),
                    );
                    *cache = Some(CachedToken {
                        token: fresh.access_token,
                        usable_until: Instant::now()
                            + Duration::from_secs(fresh.expires_in.unwrap_or(3600))
                                .saturating_sub(EXPIRY_MARGIN),
                    });
                    Ok(token)
                }
            }
        };
        tokio::time::timeout(inner.timeout, work)
            .await
            .map_err(|_| {
                GmailError::Token(format!(
                    "token endpoint did not answer within {:?}",
                    inner.timeout
                ))
            })?
    }

    /// Makes `token`, valid for `lifetime`, the one handed out until it is within
    /// `EXPIRY_MARGIN` of expiring, as Google's own clients count it (a token living less than
    /// the margin is not kept at all).
    fn keep(&self, token: &str, lifetime: Duration) {
        *self.inner.current.lock().expect("never poisoned") = Some(CachedToken {
            token: token.to_string(),
            usable_until: Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN),
        });
    }

    fn classify_yup_error(&self, error: yup_oauth2::Error) -> GmailError {
        match &error {
            yup_oauth2::Error::AuthError(AuthError {
                error:
                    code @ (AuthErrorCode::InvalidGrant
                    | AuthErrorCode::UnauthorizedClient
                    | AuthErrorCode::InvalidClient),
                ..
            }) => self.needs_reauth(code.as_str()),
            _ => GmailError::Token(error.to_string()),
        }
    }
}

impl google_gmail1::common::GetToken for TokenSource {
    fn get_token<'a>(
        &'a self,
        _scopes: &'a [&str],
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<Option<String>, Box<dyn std::error::Error + Send + Sync>>,
                > + Send
                + 'a,
        >,
    > {
        Box::pin(async move {
            self.access_token(false)
                .await
                .map(Some)
                .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>)
        })
    }
}

#[derive(Debug, serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Debug, serde::Deserialize)]
struct TokenErrorAnswer {
    error: String,
}

enum RefreshError {
    /// The grant is gone: `invalid_grant`, `unauthorized_client`, `invalid_client`.
    Revoked(String),
    Other(String),
}

/// The OAuth refresh grant, posted to the client secret's own `token_uri`.
async fn refresh(
    http: &OAuthClient,
    secret: &ApplicationSecret,
    refresh_token: &str,
) -> Result<TokenAnswer, RefreshError> {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("client_id", &secret.client_id)
        .append_pair("client_secret", &secret.client_secret)
        .append_pair("refresh_token", refresh_token)
        .finish();
    let request = hyper::Request::post(&secret.token_uri)
        .header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .map_err(|error| {
            RefreshError::Other(format!("bad token_uri {}: {error}", secret.token_uri))
        })?;
    let response = http
        .request(request)
        .await
        .map_err(|error| RefreshError::Other(format!("token endpoint unreachable: {error}")))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|error| RefreshError::Other(format!("token endpoint answer cut short: {error}")))?
        .to_bytes();
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|error| {
            RefreshError::Other(format!("token endpoint answer is not a token: {error}"))
        });
    }
    match serde_json::from_slice::<TokenErrorAnswer>(&bytes) {
        Ok(answer)
            if ["invalid_grant", "unauthorized_client", "invalid_client"]
                .contains(&answer.error.as_str()) =>
        {
            Err(RefreshError::Revoked(answer.error))
        }
        Ok(answer) => Err(RefreshError::Other(format!(
            "token endpoint answered {status} {}",
            answer.error
        ))),
        Err(_) => Err(RefreshError::Other(format!(
            "token endpoint answered {status}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_uris_must_be_https_unless_local() {
        let path = Path::new("key.json");
        assert!(check_token_uri(path, "https://oauth2.googleapis.com/token").is_ok());
        assert!(check_token_uri(path, "http://127.0.0.1:9/token").is_ok());
        assert!(check_token_uri(path, "http://oauth2.googleapis.com/token").is_err());
    }

    #[test]
    fn credentials_debug_shows_no_secret() {
        let secret = ApplicationSecret {
            client_id: "id.apps.example".into(),
            client_secret: "very-secret-value".into(),
            token_uri: "https://oauth2.googleapis.com/token".into(),
            auth_uri: "https://accounts.google.com/o/oauth2/auth".into(),
            ..ApplicationSecret::default()
        };
        let debug = format!("{:?}", Credentials::InstalledApp(Arc::new(secret)));
        assert!(debug.contains("id.apps.example"));
        assert!(!debug.contains("very-secret-value"), "{debug}");
    }
}
