//! End-to-end tests: the server on 127.0.0.1:0 against a temporary mailbox folder, driven by
//! hyper-util's legacy client over plain HTTP, as the sync client will drive it. Push and
//! Pub/Sub are in `push`, label changes in `labels`.

mod labels;
mod push;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::{
    FaultConfig, FaultKind, METADATA_SCOPE, OAuthClient, READONLY_SCOPE, SandboxConfig,
    SpawnedSandbox, spawn,
};

const ALICE: &str = "alice@example.com";

const FIRST: &str = "From: Bob <bob@customer.com>\r\nTo: alice@example.com\r\nSubject: First\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m1@customer.com>\r\n\r\nFirst message body\r\n";
const REPLY: &str = "From: alice@example.com\r\nTo: bob@customer.com\r\nSubject: Re: First\r\nDate: Tue, 02 Jan 2024 10:00:00 +0000\r\nIn-Reply-To: <m1@customer.com>\r\n\r\nReply\r\n";
const MULTIPART: &str = "From: carol@vendor.org\r\nTo: alice@example.com\r\nSubject: Third\r\nDate: Wed, 03 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nPlain part\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>HTML part</p>\r\n--b1--\r\n";
const SPAM: &str = "From: spam@junk.net\r\nX-Gmail-Labels: Spam\r\nDate: Thu, 04 Jan 2024 10:00:00 +0000\r\n\r\nBuy\r\n";

struct Harness {
    server: SpawnedSandbox,
    client: Client<HttpConnector, Full<Bytes>>,
    _dir: tempfile::TempDir,
}

/// Status, content type and body of an answer, or the client's error as text.
type Answer = Result<(u16, String, Bytes), String>;

impl Harness {
    async fn start(configure: impl FnOnce(&mut SandboxConfig)) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let alice = dir.path().join(ALICE);
        std::fs::create_dir(&alice).expect("mailbox");
        for (name, text) in [
            ("1.eml", FIRST),
            ("2.eml", REPLY),
            ("3.eml", MULTIPART),
            ("4.eml", SPAM),
        ] {
            std::fs::write(alice.join(name), text).expect("write message");
        }
        // Invalid UTF-8 and no headers at all still make a message; hidden files and folders
        // without an `@` are not mail.
        std::fs::write(alice.join("5.eml"), b"\xff\xfe garbage \x80\r\n").expect("write");
        std::fs::write(alice.join(".DS_Store"), b"junk").expect("write");
        std::fs::create_dir(dir.path().join("Bob@Example.com")).expect("mailbox");
        std::fs::write(dir.path().join("Bob@Example.com").join("1.eml"), FIRST).expect("write");
        std::fs::create_dir(dir.path().join("not-a-user")).expect("folder");
        let mut config = SandboxConfig {
            mailboxes_dir: dir.path().to_path_buf(),
            oauth_clients: vec![OAuthClient {
                client_id: "cid".into(),
                client_secret: "secret".into(),
            }],
            seed: 42,
            ..SandboxConfig::default()
        };
        configure(&mut config);
        let server = spawn(config).await.expect("spawn");
        Harness {
            server,
            client: Client::builder(TokioExecutor::new()).build_http(),
            _dir: dir,
        }
    }

    async fn send(&self, method: &str, path: &str, bearer: Option<&str>, body: &[u8]) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.server.addr));
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if method == "POST" && path == "/token" {
            request = request.header("content-type", "application/x-www-form-urlencoded");
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| format!("request: {error:?}"))?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| format!("body: {error:?}"))?
                .to_bytes();
            Ok((status, content_type, body))
        };
        tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .unwrap_or_else(|_| Err("timeout".into()))
    }

    /// A Gmail API GET that must answer; returns the status and the JSON body.
    async fn api(&self, token: &str, path: &str) -> (u16, Value) {
        let (status, content_type, body) = self
            .send("GET", &format!("/gmail/v1/users/{path}"), Some(token), b"")
            .await
            .expect("answer");
        assert_eq!(content_type, "application/json; charset=UTF-8", "{path}");
        (status, serde_json::from_slice(&body).expect("json"))
    }

    async fn post_json(&self, path: &str, body: &[u8]) -> (u16, Value) {
        let (status, _, body) = self.send("POST", path, None, body).await.expect("answer");
        (status, serde_json::from_slice(&body).expect("json"))
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.post_json("/token", body.as_bytes()).await
    }

    async fn refresh_grant(&self, refresh_token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "cid"),
            ("client_secret", "secret"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    async fn access_token(&self) -> String {
        let refresh = self.server.sandbox.issue_refresh_token(ALICE, "cid");
        let (status, answer) = self.refresh_grant(&refresh).await;
        assert_eq!(status, 200, "{answer}");
        answer["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    async fn jwt_grant(&self, claims: Value) -> (u16, Value) {
        self.token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &jwt(claims)),
        ])
        .await
    }

    async fn set_faults(&self, rate: f64, kinds: &[&str]) {
        let body = json!({"rate": rate, "kinds": kinds}).to_string();
        assert_eq!(
            self.post_json("/sandbox/faults", body.as_bytes()).await.0,
            200
        );
    }
}

fn reason(body: &Value) -> &str {
    body["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}

fn jwt(claims: Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string());
    // Padded claims: the sandbox must tolerate `=`.
    format!(
        "{header}.{}.c2lnbmF0dXJl",
        URL_SAFE.encode(claims.to_string())
    )
}

fn file_bytes(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(ALICE).join(name)).expect("read back")
}

#[tokio::test]
async fn a_sync_client_session_end_to_end() {
    let harness = Harness::start(|_| {}).await;
    assert_eq!(
        harness.server.sandbox.users(),
        ["alice@example.com", "bob@example.com"]
    );

    // Auth: no token and a made-up token are 401 authError; the refresh grant gives a token.
    for bearer in [None, Some("ya29.made-up")] {
        let (status, _, body) = harness
            .send("GET", "/gmail/v1/users/me/profile", bearer, b"")
            .await
            .expect("answer");
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            (status, reason(&body), body["error"]["status"].as_str()),
            (401, "authError", Some("UNAUTHENTICATED"))
        );
    }
    let refresh = harness.server.sandbox.issue_refresh_token(ALICE, "cid");
    let (status, answer) = harness.refresh_grant(&refresh).await;
    assert_eq!(
        (
            status,
            answer["expires_in"].as_u64(),
            answer["token_type"].as_str()
        ),
        (200, Some(3599), Some("Bearer"))
    );
    assert!(answer.get("refresh_token").is_none());
    let token = answer["access_token"].as_str().expect("token").to_string();

    // Profile: 64-bit numbers as strings, 32-bit as numbers; spam counts as a message.
    let (status, profile) = harness.api(&token, "me/profile?alt=json").await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            profile["emailAddress"].as_str(),
            profile["messagesTotal"].as_u64(),
            profile["threadsTotal"].as_u64()
        ),
        (Some(ALICE), Some(5), Some(4))
    );
    let start_history: u64 = profile["historyId"]
        .as_str()
        .expect("string historyId")
        .parse()
        .expect("number");

    // Delegation: alice's token may name herself, not bob.
    assert_eq!(
        harness.api(&token, "alice%40example.com/profile").await.0,
        200
    );
    let (status, body) = harness.api(&token, "bob@example.com/profile").await;
    assert_eq!((status, reason(&body)), (403, "forbidden"));
    assert_eq!(harness.api(&token, "me/drafts").await.0, 404);

    // List every page, newest first; spam is left out unless asked for.
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let (status, page) = harness
            .api(
                &token,
                &format!("me/messages?alt=json&maxResults=2&pageToken={page_token}"),
            )
            .await;
        assert_eq!(
            (status, page["resultSizeEstimate"].as_u64()),
            (200, Some(4))
        );
        ids.extend(
            page["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .map(|m| m["id"].as_str().expect("id").to_string()),
        );
        match page["nextPageToken"].as_str() {
            Some(next) => page_token = next.to_string(),
            None => break,
        }
    }
    assert_eq!(ids.len(), 4);
    let mut dates = Vec::new();
    for id in &ids {
        let (status, message) = harness
            .api(&token, &format!("me/messages/{id}?format=minimal"))
            .await;
        assert_eq!(status, 200);
        assert!(message.get("payload").is_none() && message.get("raw").is_none());
        assert!(message["sizeEstimate"].is_u64());
        dates.push(
            message["internalDate"]
                .as_str()
                .expect("string internalDate")
                .parse::<i64>()
                .expect("ms"),
        );
    }
    assert!(dates.windows(2).all(|pair| pair[0] >= pair[1]), "{dates:?}");
    let (_, all) = harness
        .api(&token, "me/messages?includeSpamTrash=true")
        .await;
    assert_eq!(all["resultSizeEstimate"], 5);
    let (_, spam) = harness.api(&token, "me/messages?q=in%3Aspam").await;
    assert_eq!(spam["messages"].as_array().map(Vec::len), Some(1));
    let (_, none) = harness
        .api(&token, "me/messages?q=from%3Anobody%40nowhere")
        .await;
    assert_eq!(
        (
            none.get("messages"),
            none.get("nextPageToken"),
            none["resultSizeEstimate"].as_u64()
        ),
        (None, None, Some(0))
    );
    let (status, body) = harness.api(&token, "me/messages?pageToken=bogus").await;
    assert_eq!((status, reason(&body)), (400, "invalidArgument"));

    // Get: padded raw equals the file bytes; replies share the thread; formats differ.
    let (_, from_bob) = harness
        .api(&token, "me/messages?q=from%3Abob%40customer.com")
        .await;
    let first_id = from_bob["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (_, raw) = harness
        .api(&token, &format!("me/messages/{first_id}?format=raw"))
        .await;
    let decoded = URL_SAFE
        .decode(raw["raw"].as_str().expect("raw"))
        .expect("padded base64url");
    assert_eq!(decoded, file_bytes(harness._dir.path(), "1.eml"));
    assert_eq!(
        (raw["threadId"].as_str(), raw["snippet"].as_str()),
        (Some(first_id.as_str()), Some("First message body"))
    );
    assert_eq!(raw["labelIds"], json!(["INBOX", "UNREAD"]));
    let (_, reply) = harness.api(&token, "me/messages?q=from%3Ame").await;
    assert_eq!(
        reply["messages"][0]["threadId"].as_str(),
        Some(first_id.as_str())
    );
    let (_, metadata) = harness.api(&token, &format!("me/messages/{first_id}?format=metadata&metadataHeaders=subject&metadataHeaders=From")).await;
    assert_eq!(
        metadata["payload"]["headers"],
        json!([{"name": "From", "value": "Bob <bob@customer.com>"}, {"name": "Subject", "value": "First"}])
    );
    let (_, multipart) = harness.api(&token, "me/messages?q=from%3Acarol").await;
    let multipart_id = multipart["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (_, full) = harness
        .api(&token, &format!("me/messages/{multipart_id}"))
        .await;
    assert_eq!(full["payload"]["mimeType"], "multipart/alternative");
    assert_eq!(full["payload"]["parts"][1]["partId"], "1");
    let data = full["payload"]["parts"][0]["body"]["data"]
        .as_str()
        .expect("data");
    assert!(!data.contains('='));
    assert_eq!(
        URL_SAFE_NO_PAD.decode(data).expect("unpadded"),
        b"Plain part"
    );
    let (status, body) = harness.api(&token, "me/messages/0123456789abcdef").await;
    assert_eq!((status, reason(&body)), (404, "notFound"));
    let (_, labels) = harness.api(&token, "me/labels").await;
    assert!(
        labels["labels"]
            .as_array()
            .expect("labels")
            .iter()
            .any(|label| label["id"] == "INBOX" && label["type"] == "system")
    );

    // Deliver, then see the message in history; history is always stamped with historyId.
    let (status, delivered) = harness
        .post_json(
            &format!("/sandbox/deliver?user={ALICE}"),
            b"From: dan@customer.com\r\nSubject: New\r\n\r\nnew\r\n",
        )
        .await;
    assert_eq!(status, 200);
    let new_id = delivered["id"].as_str().expect("id").to_string();
    let (status, history) = harness
        .api(
            &token,
            &format!("me/history?startHistoryId={start_history}&historyTypes=messageAdded"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        history["history"][0]["messagesAdded"][0]["message"]["id"].as_str(),
        Some(new_id.as_str())
    );
    let record_id: u64 = history["history"][0]["id"]
        .as_str()
        .expect("string id")
        .parse()
        .expect("number");
    let current: u64 = history["historyId"]
        .as_str()
        .expect("string historyId")
        .parse()
        .expect("number");
    assert!(record_id > start_history && current == record_id);
    assert_eq!(harness.api(&token, "me/history").await.0, 400);
    let (status, unchanged) = harness
        .api(&token, &format!("me/history?startHistoryId={current}"))
        .await;
    assert_eq!((status, unchanged.get("history")), (200, None));

    // Expire history: the old start id is 404, the current one still works.
    assert_eq!(
        harness
            .post_json(&format!("/sandbox/expire-history?user={ALICE}"), b"")
            .await
            .0,
        200
    );
    let (status, body) = harness
        .api(
            &token,
            &format!("me/history?startHistoryId={start_history}"),
        )
        .await;
    assert_eq!((status, reason(&body)), (404, "notFound"));
    assert_eq!(
        harness
            .api(&token, &format!("me/history?startHistoryId={current}"))
            .await
            .0,
        200
    );

    // Service-account JWT grant: claims checked, metadata scope restricts the token.
    let now = chrono::Utc::now().timestamp();
    let claims = |aud: &str, sub: &str, scope: &str| json!({"iss": "sa@p.iam.gserviceaccount.com", "aud": aud, "sub": sub, "scope": scope, "iat": now, "exp": now + 3600});
    let token_url = harness.server.token_url();
    let (status, answer) = harness
        .jwt_grant(claims(&token_url, ALICE, READONLY_SCOPE))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        harness
            .api(
                answer["access_token"].as_str().expect("token"),
                "me/profile"
            )
            .await
            .0,
        200
    );
    let (status, answer) = harness
        .jwt_grant(claims(
            "https://oauth2.googleapis.com/token",
            ALICE,
            READONLY_SCOPE,
        ))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, answer) = harness
        .jwt_grant(claims(&token_url, "stranger@example.com", READONLY_SCOPE))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("unauthorized_client"))
    );
    let (status, answer) = harness
        .jwt_grant(claims(
            &format!("{token_url}/"),
            ALICE,
            &format!("{READONLY_SCOPE} {METADATA_SCOPE}"),
        ))
        .await;
    assert_eq!(status, 200);
    let metadata_token = answer["access_token"].as_str().expect("token").to_string();
    let (status, body) = harness
        .api(&metadata_token, "me/messages?q=from%3Abob")
        .await;
    assert_eq!((status, reason(&body)), (403, "forbidden"));
    assert_eq!(
        harness
            .api(
                &metadata_token,
                &format!("me/messages/{first_id}?format=raw")
            )
            .await
            .0,
        403
    );
    assert_eq!(
        harness
            .api(
                &metadata_token,
                &format!("me/messages/{first_id}?format=metadata")
            )
            .await
            .0,
        200
    );

    // Consent with a login hint redirects with a code; the code grant returns a refresh token.
    let consent = format!(
        "/o/oauth2/auth?client_id=cid&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope={READONLY_SCOPE}&response_type=code&access_type=offline&state=xyz"
    );
    let (status, content_type, page) = harness
        .send("GET", &consent, None, b"")
        .await
        .expect("page");
    assert_eq!((status, content_type.starts_with("text/html")), (200, true));
    assert!(String::from_utf8_lossy(&page).contains("login_hint=alice%40example.com"));
    let request = Request::get(format!(
        "http://{}{consent}&login_hint={ALICE}",
        harness.server.addr
    ))
    .body(Full::new(Bytes::new()))
    .expect("request");
    let response = harness.client.request(request).await.expect("redirect");
    assert_eq!(response.status().as_u16(), 302);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let code: String =
        form_urlencoded::parse(location.split_once('?').expect("query").1.as_bytes())
            .find(|(key, _)| key == "code")
            .expect("code")
            .1
            .into_owned();
    let (status, answer) = harness
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", "cid"),
            ("client_secret", "secret"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
        ])
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["refresh_token"].is_string());

    // Revoke: the token endpoint answers invalid_grant and existing tokens 401.
    assert_eq!(
        harness
            .post_json(&format!("/sandbox/revoke?user={ALICE}"), b"")
            .await
            .0,
        200
    );
    let (status, answer) = harness.refresh_grant(&refresh).await;
    assert_eq!(
        answer,
        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
    );
    assert_eq!(status, 400);
    assert_eq!(harness.api(&token, "me/profile").await.0, 401);
    let (status, answer) = harness
        .jwt_grant(claims(&token_url, ALICE, READONLY_SCOPE))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Control routes: a fresh refresh token (re-consent) works again; stats add up.
    let (_, issued) = harness
        .post_json(
            &format!("/sandbox/refresh-token?user={ALICE}&client_id=cid"),
            b"",
        )
        .await;
    assert_eq!(
        harness
            .refresh_grant(issued["refresh_token"].as_str().expect("refresh"))
            .await
            .0,
        200
    );
    let (status, _, stats) = harness
        .send("GET", "/sandbox/stats", None, b"")
        .await
        .expect("stats");
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_slice(&stats).expect("stats json");
    assert_eq!(stats["users"][ALICE]["statuses"]["history.list 404"], 1);
    assert!(
        stats["users"][ALICE]["units"]["messages.get"]
            .as_u64()
            .expect("units")
            >= 20 * 8
    );
    assert!(stats["unauthenticated"].as_u64() >= Some(3));
    harness.server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn every_fault_kind_shows_up_at_the_client() {
    let harness = Harness::start(|_| {}).await;
    let token = harness.access_token().await;
    let profile = "/gmail/v1/users/me/profile";
    let expectations = [
        ("500", 500, "backendError"),
        ("429", 429, "rateLimitExceeded"),
        ("403", 403, "userRateLimitExceeded"),
    ];
    for (kind, status, expected_reason) in expectations {
        harness.set_faults(1.0, &[kind]).await;
        let (got, body) = harness.api(&token, "me/profile").await;
        assert_eq!((got, reason(&body)), (status, expected_reason), "{kind}");
    }
    harness.set_faults(1.0, &["503"]).await;
    let (status, content_type, body) = harness
        .send("GET", profile, Some(&token), b"")
        .await
        .expect("answer");
    assert_eq!(
        (status, content_type.as_str()),
        (503, "text/html; charset=UTF-8")
    );
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    // The token endpoint and control routes are never faulted.
    assert!(harness.access_token().await.len() > 10);

    // A dropped connection fails the request; a truncated one fails while reading the body of
    // a 200 whose head did arrive.
    for (kind, stage) in [("drop", "request:"), ("truncate", "body:")] {
        harness.set_faults(1.0, &[kind]).await;
        let answer = harness.send("GET", profile, Some(&token), b"").await;
        assert!(
            answer.as_ref().is_err_and(|error| error.starts_with(stage)),
            "{kind}: {answer:?}"
        );
    }

    harness.set_faults(1.0, &["slow"]).await;
    let started = Instant::now();
    assert_eq!(harness.api(&token, "me/profile").await.0, 200);
    assert!(started.elapsed() >= Duration::from_secs(3));

    harness.set_faults(1.0, &["404new"]).await;
    let new_id = harness
        .server
        .sandbox
        .deliver(
            ALICE,
            b"From: x@y.com\r\n\r\nhi".to_vec(),
            Some(vec!["INBOX".into()]),
        )
        .expect("deliver");
    let (status, body) = harness.api(&token, &format!("me/messages/{new_id}")).await;
    assert_eq!((status, reason(&body)), (404, "notFound"));
    assert_eq!(
        harness.api(&token, "me/profile").await.0,
        200,
        "only fresh messages.get is affected"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        harness
            .api(&token, &format!("me/messages/{new_id}"))
            .await
            .0,
        200
    );

    harness.server.sandbox.set_faults(FaultConfig::default());
    assert_eq!(harness.api(&token, "me/profile").await.0, 200);
    let stats = harness.server.sandbox.stats();
    let faults = &stats.users[ALICE].faults_injected;
    for kind in FaultKind::ALL
        .iter()
        .filter(|kind| **kind != FaultKind::NewMessageNotFound)
    {
        assert_eq!(
            faults.get(&format!("getProfile {}", kind.name())),
            Some(&1),
            "{kind:?}: {faults:?}"
        );
    }
    assert_eq!(faults.get("messages.get 404new"), Some(&1));
    // Faults consume no quota: only the slow profile, the two normal ones and one get were charged.
    assert_eq!(stats.users[ALICE].units.get("getProfile"), Some(&3));
}

#[tokio::test]
async fn quota_and_concurrency_limits_answer_429() {
    let harness = Harness::start(|config| {
        config.quota_units_per_minute = 45;
        config.max_concurrent_per_user = 1;
    })
    .await;
    let token = harness.access_token().await;
    let (_, list) = harness.api(&token, "me/messages").await; // 5 units
    let id = list["messages"][0]["id"].as_str().expect("id").to_string();
    assert_eq!(
        harness.api(&token, &format!("me/messages/{id}")).await.0,
        200
    ); // 25
    assert_eq!(
        harness.api(&token, &format!("me/messages/{id}")).await.0,
        200
    ); // 45
    let (status, body) = harness.api(&token, "me/profile").await;
    assert_eq!((status, reason(&body)), (429, "rateLimitExceeded"));
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("Quota exceeded for quota metric 'Queries'")
    );
    assert_eq!(
        harness.server.sandbox.stats().users[ALICE]
            .units
            .values()
            .sum::<u64>(),
        45,
        "rejections cost nothing"
    );

    let harness = Harness::start(|config| config.max_concurrent_per_user = 1).await;
    let token = harness.access_token().await;
    harness.set_faults(1.0, &["slow"]).await;
    let (first, second) = tokio::join!(harness.api(&token, "me/profile"), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        harness.api(&token, "me/labels").await
    });
    assert_eq!(first.0, 200);
    assert_eq!(
        (second.0, second.1["error"]["message"].as_str()),
        (429, Some("Too many concurrent requests for user"))
    );
}

/// `serve` itself refuses a listener on an address other than loopback, whoever built it: its
/// control routes hand out tokens without authentication.
#[tokio::test]
async fn serve_refuses_a_listener_that_is_not_on_loopback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sandbox = super::Sandbox::load(SandboxConfig {
        mailboxes_dir: dir.path().to_path_buf(),
        ..SandboxConfig::default()
    })
    .expect("an empty sandbox");
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let error = sandbox
        .serve(listener, std::future::pending())
        .await
        .expect_err("a listener on every address is refused");
    assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(error.to_string().contains("loopback only"), "{error}");
}
