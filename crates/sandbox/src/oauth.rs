//! Google's OAuth token endpoint and consent screen, as far as a daemon uses them: refresh
//! grant, service-account JWT grant (claims checked, signature trusted; with `sub` a token for
//! that mailbox, without it a token for the service account itself, which Pub/Sub takes) and
//! authorization-code grant, with Google's flat `{"error","error_description"}` answers.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use serde::Serialize;

use super::config::OAuthClient;

pub const READONLY_SCOPE: &str = "https://www.googleapis.com/auth/gmail.readonly";
pub const METADATA_SCOPE: &str = "https://www.googleapis.com/auth/gmail.metadata";
/// What a Pub/Sub subscriber's token needs (or [`CLOUD_PLATFORM_SCOPE`]).
pub const PUBSUB_SCOPE: &str = "https://www.googleapis.com/auth/pubsub";
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const REVOKED: &str = "Token has been expired or revoked.";
const UNAUTHORIZED_CLIENT: &str = "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.";

/// An OAuth error in Google's flat form, with the HTTP status it is sent with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthError {
    #[serde(skip)]
    pub status: u16,
    pub error: &'static str,
    pub error_description: String,
}

fn oauth_error(status: u16, error: &'static str, description: &str) -> OAuthError {
    OAuthError {
        status,
        error,
        error_description: description.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
    pub token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// Who an access token speaks for, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    /// The mailbox the token opens (lower case). For a service account's own token, the
    /// account's `client_email`, which opens no mailbox.
    pub user: String,
    /// Granted with `gmail.metadata`: Gmail then refuses `q` and `format=raw`.
    pub metadata_only: bool,
    /// Issued by a JWT grant without `sub`: the token speaks for the service account itself,
    /// which Pub/Sub accepts and Gmail refuses (it is nobody's mailbox).
    pub service_account: bool,
    /// The scopes granted, as requested.
    pub scopes: Vec<String>,
}

impl AccessGrant {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }
}

#[derive(Debug, Clone)]
struct AccessToken {
    grant: AccessGrant,
    /// `None` when the configured lifetime is too long to represent: the token never expires.
    expires_at: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Issued {
    user: String,
    client_id: String,
    scope: String,
    redirect_uri: String,
}

/// What the consent endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentAnswer {
    Redirect(String),
    Page { status: u16, html: String },
}

/// Token state. Revoking a user drops its tokens and makes JWT grants for it fail until the
/// user consents again (a new refresh token is issued), which is what re-authorisation means.
#[derive(Debug)]
pub struct OAuth {
    clients: Vec<OAuthClient>,
    users: Vec<String>,
    lifetime: Duration,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, Issued>,
    codes: HashMap<String, Issued>,
    revoked: HashSet<String>,
}

impl OAuth {
    pub fn new(clients: Vec<OAuthClient>, users: Vec<String>, lifetime: Duration) -> OAuth {
        OAuth {
            clients,
            users,
            lifetime,
            access: HashMap::new(),
            refresh: HashMap::new(),
            codes: HashMap::new(),
            revoked: HashSet::new(),
        }
    }

    pub fn issue_refresh_token(&mut self, user: &str, client_id: &str, scope: &str) -> String {
        let user = user.to_ascii_lowercase();
        self.revoked.remove(&user);
        let token = random_token("1//sandbox-");
        self.refresh.insert(
            token.clone(),
            Issued {
                user,
                client_id: client_id.to_string(),
                scope: scope.to_string(),
                redirect_uri: String::new(),
            },
        );
        token
    }

    pub fn revoke(&mut self, user: &str) {
        let user = user.to_ascii_lowercase();
        self.refresh.retain(|_, issued| issued.user != user);
        self.codes.retain(|_, issued| issued.user != user);
        self.access
            .retain(|_, token| token.grant.service_account || token.grant.user != user);
        self.revoked.insert(user);
    }

    /// The grant behind a bearer token, if it is one we issued and it has not expired.
    pub fn authenticate(&mut self, bearer: &str, now: Instant) -> Option<AccessGrant> {
        let token = self.access.get(bearer)?;
        if token.expires_at.is_some_and(|expires_at| now >= expires_at) {
            self.access.remove(bearer);
            return None;
        }
        Some(token.grant.clone())
    }

    /// `POST /token`. `token_urls` are the URLs this server is reachable at, for the JWT `aud`.
    pub fn token(
        &mut self,
        form: &HashMap<String, String>,
        token_urls: &[String],
        now: Instant,
        now_secs: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
        match field("grant_type") {
            "refresh_token" => {
                let client_id = self.check_client(field("client_id"), field("client_secret"))?;
                let refresh_token = field("refresh_token");
                if refresh_token.is_empty() {
                    return Err(oauth_error(
                        400,
                        "invalid_request",
                        "Missing required parameter: refresh_token",
                    ));
                }
                let issued = self
                    .refresh
                    .get(refresh_token)
                    .ok_or_else(|| oauth_error(400, "invalid_grant", REVOKED))?
                    .clone();
                if issued.client_id != client_id {
                    return Err(oauth_error(401, "unauthorized_client", "Unauthorized"));
                }
                Ok(self.issue_access(&issued.user, false, &issued.scope, None, now))
            }
            "authorization_code" => {
                let client_id = self.check_client(field("client_id"), field("client_secret"))?;
                let issued = self
                    .codes
                    .remove(field("code"))
                    .ok_or_else(|| oauth_error(400, "invalid_grant", "Malformed auth code."))?;
                if issued.client_id != client_id {
                    return Err(oauth_error(400, "invalid_grant", "Unauthorized"));
                }
                if issued.redirect_uri != field("redirect_uri") {
                    return Err(oauth_error(400, "redirect_uri_mismatch", "Bad Request"));
                }
                let refresh = self.issue_refresh_token(&issued.user, &client_id, &issued.scope);
                Ok(self.issue_access(&issued.user, false, &issued.scope, Some(refresh), now))
            }
            JWT_GRANT => {
                let claims = check_jwt(field("assertion"), token_urls, now_secs)?;
                let Some(subject) = &claims.subject else {
                    // The service account itself: no mailbox, no revocation.
                    let account = claims.issuer.to_ascii_lowercase();
                    return Ok(self.issue_access(&account, true, &claims.scope, None, now));
                };
                let user = subject.to_ascii_lowercase();
                if !self.users.contains(&user) {
                    return Err(oauth_error(401, "unauthorized_client", UNAUTHORIZED_CLIENT));
                }
                if self.revoked.contains(&user) {
                    return Err(oauth_error(400, "invalid_grant", REVOKED));
                }
                Ok(self.issue_access(&user, false, &claims.scope, None, now))
            }
            "" => Err(oauth_error(
                400,
                "invalid_request",
                "Missing required parameter: grant_type",
            )),
            other => Err(oauth_error(
                400,
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            )),
        }
    }

    fn check_client(&self, client_id: &str, client_secret: &str) -> Result<String, OAuthError> {
        let client = self
            .clients
            .iter()
            .find(|client| client.client_id == client_id)
            .ok_or_else(|| oauth_error(401, "invalid_client", "The OAuth client was not found."))?;
        if client.client_secret != client_secret {
            return Err(oauth_error(401, "invalid_client", "Unauthorized"));
        }
        Ok(client.client_id.clone())
    }

    fn issue_access(
        &mut self,
        user: &str,
        service_account: bool,
        scope: &str,
        refresh_token: Option<String>,
        now: Instant,
    ) -> TokenResponse {
        let access_token = random_token("ya29.sandbox-");
        let grant = AccessGrant {
            user: user.to_string(),
            metadata_only: scope.split_whitespace().any(|s| s == METADATA_SCOPE),
            service_account,
            scopes: scope.split_whitespace().map(str::to_string).collect(),
        };
        self.access.insert(
            access_token.clone(),
            AccessToken {
                grant,
                expires_at: now.checked_add(self.lifetime),
            },
        );
        TokenResponse {
            access_token,
            expires_in: self.lifetime.as_secs(),
            scope: scope.to_string(),
            token_type: "Bearer",
            refresh_token,
        }
    }

    /// `GET /o/oauth2/auth`. With a `login_hint` naming a mailbox, consent is given at once
    /// (for tests); otherwise a page lists the mailboxes as links that add the hint.
    pub fn consent(&mut self, params: &[(String, String)]) -> ConsentAnswer {
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
                .unwrap_or("")
        };
        let error_page = |status: u16, text: &str| ConsentAnswer::Page {
            status,
            html: format!(
                "<!doctype html><title>Error {status}</title><h1>Error {status}: {}</h1>",
                html_escape(text)
            ),
        };
        if !self
            .clients
            .iter()
            .any(|client| client.client_id == param("client_id"))
        {
            return error_page(401, "invalid_client");
        }
        let redirect_uri = param("redirect_uri");
        if redirect_uri.is_empty() || param("scope").is_empty() {
            return error_page(
                400,
                "invalid_request: Missing required parameter: redirect_uri or scope",
            );
        }
        if param("response_type") != "code" {
            return error_page(400, "unsupported_response_type");
        }
        let hint = param("login_hint").to_ascii_lowercase();
        if self.users.contains(&hint) {
            let code = random_token("4/sandbox-");
            let issued = Issued {
                user: hint,
                client_id: param("client_id").to_string(),
                scope: param("scope").to_string(),
                redirect_uri: redirect_uri.to_string(),
            };
            self.codes.insert(code.clone(), issued);
            let mut answer = form_urlencoded::Serializer::new(String::new());
            answer
                .append_pair("code", &code)
                .append_pair("scope", param("scope"));
            if !param("state").is_empty() {
                answer.append_pair("state", param("state"));
            }
            let separator = if redirect_uri.contains('?') { '&' } else { '?' };
            return ConsentAnswer::Redirect(format!(
                "{redirect_uri}{separator}{}",
                answer.finish()
            ));
        }
        let mut links = String::new();
        for user in &self.users {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.extend_pairs(params.iter().filter(|(key, _)| key != "login_hint"));
            query.append_pair("login_hint", user);
            links.push_str(&format!(
                "<li><a href=\"/o/oauth2/auth?{}\">{}</a></li>\n",
                html_escape(&query.finish()),
                html_escape(user)
            ));
        }
        let html = format!(
            "<!doctype html>\n<title>Choose an account</title>\n<h1>Choose an account</h1>\n<p>Gmail sandbox: consent is given for the account you pick.</p>\n<ul>\n{links}</ul>\n"
        );
        ConsentAnswer::Page { status: 200, html }
    }
}

fn random_token(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::rng().random();
    format!("{prefix}{}", hex::encode(bytes))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The claims of an accepted JWT assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtClaims {
    /// The service account's `client_email`.
    pub issuer: String,
    /// The mailbox to act for (domain-wide delegation); `None` when `sub` is missing, null or
    /// empty: the token is then the service account's own.
    pub subject: Option<String>,
    pub scope: String,
}

/// Checks a service-account assertion's header and claims. The RS256 signature is **not**
/// verified: the sandbox has no service-account keys, so it trusts the claims, while real Google
/// rejects a bad signature with `invalid_grant` "Invalid JWT Signature.".
pub fn check_jwt(
    assertion: &str,
    token_urls: &[String],
    now_secs: i64,
) -> Result<JwtClaims, OAuthError> {
    let invalid = |text: &str| oauth_error(400, "invalid_grant", text);
    let decode = |part: &str| -> Option<serde_json::Value> {
        let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, _signature] = parts.as_slice() else {
        return Err(invalid("Invalid JWT: not a compact JWS"));
    };
    let (Some(header), Some(claims)) = (decode(header), decode(claims)) else {
        return Err(invalid("Invalid JWT Signature."));
    };
    if header.get("alg").and_then(|alg| alg.as_str()) != Some("RS256") {
        return Err(invalid("Invalid JWT Signature."));
    }
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(|value| value.as_str())
            .unwrap_or("")
            .to_string()
    };
    let number = |name: &str| {
        claims
            .get(name)
            .and_then(|value| value.as_i64().or_else(|| value.as_f64().map(|f| f as i64)))
    };
    let audience = text("aud");
    if !token_urls
        .iter()
        .any(|url| url.trim_end_matches('/') == audience.trim_end_matches('/'))
    {
        return Err(invalid(
            "Invalid JWT: Failed audience check. The expected value is the token URL.",
        ));
    }
    let timeframe = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
    let (Some(issued_at), Some(expires)) = (number("iat"), number("exp")) else {
        return Err(invalid(timeframe));
    };
    // Five minutes of clock skew for iat, as a lenient server would allow.
    if expires <= now_secs || expires > issued_at.saturating_add(3600) || issued_at > now_secs + 300
    {
        return Err(invalid(timeframe));
    }
    if text("iss").is_empty() {
        return Err(invalid("Invalid JWT: missing iss"));
    }
    let scope = text("scope");
    let subject = Some(text("sub")).filter(|subject| !subject.is_empty());
    match subject {
        // Delegation is authorised for gmail.readonly only.
        Some(_) if !scope.split_whitespace().any(|s| s == READONLY_SCOPE) => {
            return Err(oauth_error(401, "unauthorized_client", UNAUTHORIZED_CLIENT));
        }
        None if scope.trim().is_empty() => {
            return Err(oauth_error(
                400,
                "invalid_scope",
                "Empty or missing scope not allowed.",
            ));
        }
        _ => {}
    }
    Ok(JwtClaims {
        issuer: text("iss"),
        subject,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:4000/token";
    const NOW: i64 = 1_700_000_000;

    fn jwt(claims: serde_json::Value, padded: bool) -> String {
        let encode = |value: &serde_json::Value| {
            let text = URL_SAFE_NO_PAD.encode(value.to_string());
            if padded {
                format!("{text}{}", "=".repeat((4 - text.len() % 4) % 4))
            } else {
                text
            }
        };
        format!(
            "{}.{}.c2ln",
            encode(&serde_json::json!({"alg": "RS256", "typ": "JWT"})),
            encode(&claims)
        )
    }

    fn claims(aud: &str, iat: i64, exp: i64, scope: &str) -> serde_json::Value {
        serde_json::json!({"iss": "sa@p.iam.gserviceaccount.com", "aud": aud, "iat": iat, "exp": exp, "scope": scope, "sub": "me@x.com"})
    }

    fn check(assertion: &str) -> Result<JwtClaims, &'static str> {
        check_jwt(assertion, &[URL.to_string()], NOW).map_err(|error| error.error)
    }

    #[test]
    fn jwt_claim_checks() {
        let good = claims(URL, NOW, NOW + 3600, READONLY_SCOPE);
        assert_eq!(
            check(&jwt(good.clone(), false))
                .expect("good")
                .subject
                .as_deref(),
            Some("me@x.com")
        );
        assert!(check(&jwt(good, true)).is_ok(), "padding is tolerated");
        assert!(
            check(&jwt(
                claims(&format!("{URL}/"), NOW, NOW + 60, READONLY_SCOPE),
                false
            ))
            .is_ok()
        );
        let both = format!("{READONLY_SCOPE} {METADATA_SCOPE}");
        assert_eq!(
            check(&jwt(claims(URL, NOW, NOW + 60, &both), false))
                .expect("metadata")
                .scope,
            both
        );
        let cases = [
            (
                claims(
                    "https://oauth2.googleapis.com/token",
                    NOW,
                    NOW + 60,
                    READONLY_SCOPE,
                ),
                "invalid_grant",
            ),
            (
                claims(URL, NOW, NOW + 3601, READONLY_SCOPE),
                "invalid_grant",
            ),
            (
                claims(URL, NOW - 7200, NOW - 3600, READONLY_SCOPE),
                "invalid_grant",
            ),
            (
                claims(URL, NOW, NOW + 60, METADATA_SCOPE),
                "unauthorized_client",
            ),
            (
                serde_json::json!({"aud": URL, "scope": READONLY_SCOPE}),
                "invalid_grant",
            ),
            (
                serde_json::json!({"iss": "sa@p.iam.gserviceaccount.com", "aud": URL, "iat": NOW, "exp": NOW + 60, "sub": null}),
                "invalid_scope",
            ),
        ];
        for (claims, expected) in cases {
            assert_eq!(
                check(&jwt(claims.clone(), false)).err(),
                Some(expected),
                "{claims}"
            );
        }
        for garbage in ["", "a.b", "a.b.c", "....", "é.é.é"] {
            assert_eq!(check(garbage).err(), Some("invalid_grant"), "{garbage:?}");
        }
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn refresh_revoke_and_code_flows() {
        let client = OAuthClient {
            client_id: "cid".into(),
            client_secret: "secret".into(),
        };
        let mut oauth = OAuth::new(
            vec![client],
            vec!["me@x.com".into()],
            Duration::from_secs(3599),
        );
        let now = Instant::now();
        let refresh = oauth.issue_refresh_token("me@x.com", "cid", READONLY_SCOPE);
        let request = form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "cid"),
            ("client_secret", "secret"),
            ("refresh_token", &refresh),
        ]);
        let answer = oauth.token(&request, &[], now, NOW).expect("token");
        assert_eq!(
            (
                answer.expires_in,
                answer.token_type,
                answer.refresh_token.is_none()
            ),
            (3599, "Bearer", true)
        );
        assert_eq!(
            oauth
                .authenticate(&answer.access_token, now)
                .expect("grant")
                .user,
            "me@x.com"
        );
        assert!(
            oauth
                .authenticate(&answer.access_token, now + Duration::from_secs(3599))
                .is_none(),
            "expired"
        );
        let wrong_secret = form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "cid"),
            ("client_secret", "x"),
            ("refresh_token", &refresh),
        ]);
        assert_eq!(
            oauth
                .token(&wrong_secret, &[], now, NOW)
                .err()
                .map(|e| (e.status, e.error)),
            Some((401, "invalid_client"))
        );
        let answer = oauth.token(&request, &[], now, NOW).expect("token");
        oauth.revoke("me@x.com");
        let error = oauth.token(&request, &[], now, NOW).expect_err("revoked");
        assert_eq!(
            (error.status, error.error, error.error_description.as_str()),
            (400, "invalid_grant", REVOKED)
        );
        assert!(oauth.authenticate(&answer.access_token, now).is_none());
        let consent_params: Vec<(String, String)> = [
            ("client_id", "cid"),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("scope", READONLY_SCOPE),
            ("response_type", "code"),
            ("state", "s1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let ConsentAnswer::Page { status: 200, html } = oauth.consent(&consent_params) else {
            panic!("expected the account page")
        };
        assert!(html.contains("login_hint=me%40x.com"), "{html}");
        let mut hinted = consent_params.clone();
        hinted.push(("login_hint".into(), "ME@x.com".into()));
        let ConsentAnswer::Redirect(location) = oauth.consent(&hinted) else {
            panic!("expected a redirect")
        };
        let query: HashMap<String, String> =
            form_urlencoded::parse(location.split_once('?').expect("query").1.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(query["state"], "s1");
        let exchange = form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "cid"),
            ("client_secret", "secret"),
            ("code", &query["code"]),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
        ]);
        let answer = oauth.token(&exchange, &[], now, NOW).expect("exchange");
        assert!(answer.refresh_token.is_some());
        assert_eq!(
            oauth.token(&exchange, &[], now, NOW).err().map(|e| e.error),
            Some("invalid_grant"),
            "codes are single-use"
        );
    }

    #[test]
    fn a_jwt_without_sub_gets_the_service_accounts_own_token() {
        let mut oauth = OAuth::new(Vec::new(), vec!["me@x.com".into()], Duration::from_secs(60));
        let now = Instant::now();
        let grant = |oauth: &mut OAuth, claims: serde_json::Value| {
            let request = form(&[
                ("grant_type", JWT_GRANT),
                ("assertion", &jwt(claims, false)),
            ]);
            oauth
                .token(&request, &[URL.to_string()], now, NOW)
                .map(|answer| {
                    (
                        answer.scope.clone(),
                        oauth.authenticate(&answer.access_token, now),
                    )
                })
                .map_err(|error| error.error)
        };
        let mut own = claims(URL, NOW, NOW + 60, PUBSUB_SCOPE);
        own.as_object_mut().expect("object").remove("sub");
        let (scope, access) = grant(&mut oauth, own.clone()).expect("own token");
        let access = access.expect("authenticates");
        assert_eq!(scope, PUBSUB_SCOPE);
        assert!(access.service_account && access.has_scope(PUBSUB_SCOPE));
        assert_eq!(access.user, "sa@p.iam.gserviceaccount.com");
        own["sub"] = "".into();
        assert!(
            grant(&mut oauth, own.clone()).is_ok(),
            "an empty sub is no sub"
        );
        let (_, delegated) =
            grant(&mut oauth, claims(URL, NOW, NOW + 60, READONLY_SCOPE)).expect("delegated");
        let delegated = delegated.expect("authenticates");
        assert!(!delegated.service_account && !delegated.has_scope(PUBSUB_SCOPE));
        assert_eq!(
            grant(&mut oauth, claims(URL, NOW, NOW + 60, PUBSUB_SCOPE)).err(),
            Some("unauthorized_client"),
            "delegation is for gmail.readonly only"
        );
    }
}
