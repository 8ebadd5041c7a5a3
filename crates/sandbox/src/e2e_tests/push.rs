//! Gmail push end to end: `users.watch` and `users.stop` over the Gmail routes, notifications
//! pulled, acknowledged and redelivered over the Pub/Sub REST routes with the service
//! account's own token, each push fault, and one run through the real `google-pubsub1` client
//! with a `yup-oauth2` service-account authenticator, as the daemon pulls.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{ALICE, Harness, reason};
use crate::{
    DEFAULT_SUBSCRIPTION, DEFAULT_TOPIC, PUBSUB_SCOPE, PushFaultUpdate, READONLY_SCOPE,
    SandboxConfig,
};

const SERVICE_ACCOUNT: &str = "push@sandbox-test.iam.gserviceaccount.com";
const NEW_MAIL: &[u8] = b"From: dan@customer.com\r\nSubject: New\r\n\r\nnew\r\n";

/// Short deadlines, so redelivery and empty pulls take a second, not ten.
fn quick(config: &mut SandboxConfig) {
    config.pubsub.ack_deadline_secs = 1;
    config.pubsub.pull_wait_ms = 300;
}

impl Harness {
    /// The service account's own token (a JWT grant without `sub`) for `scope`.
    async fn service_account_token(&self, scope: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let (status, answer) = self
            .jwt_grant(json!({"iss": SERVICE_ACCOUNT, "aud": self.server.token_url(), "scope": scope, "iat": now, "exp": now + 3600}))
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// `POST /gmail/v1/users/me/{method}`; the status and the raw body.
    async fn gmail_post(&self, token: &str, method: &str, body: &Value) -> (u16, Vec<u8>) {
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let (status, _, answer) = self
            .send(
                "POST",
                &format!("/gmail/v1/users/me/{method}?alt=json"),
                Some(token),
                &body,
            )
            .await
            .expect("answer");
        (status, answer.to_vec())
    }

    async fn watch(&self, token: &str, body: Value) -> (u16, Value) {
        let (status, answer) = self.gmail_post(token, "watch", &body).await;
        (status, serde_json::from_slice(&answer).expect("json"))
    }

    /// `POST /v1/{subscription}:{verb}` with a JSON body.
    async fn pubsub_call(
        &self,
        token: Option<&str>,
        subscription: &str,
        verb: &str,
        body: Value,
    ) -> (u16, Value) {
        let (status, content_type, answer) = self
            .send(
                "POST",
                &format!("/v1/{subscription}:{verb}"),
                token,
                body.to_string().as_bytes(),
            )
            .await
            .expect("answer");
        assert_eq!(content_type, "application/json; charset=UTF-8");
        (status, serde_json::from_slice(&answer).expect("json"))
    }

    /// Pulls up to ten messages from the default subscription; the received messages.
    async fn pull(&self, token: &str) -> Vec<Value> {
        let (status, answer) = self
            .pubsub_call(
                Some(token),
                DEFAULT_SUBSCRIPTION,
                "pull",
                json!({"maxMessages": 10}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        match answer.get("receivedMessages") {
            None => {
                assert_eq!(answer, json!({}), "an empty pull is an empty object");
                Vec::new()
            }
            Some(received) => received.as_array().expect("array").clone(),
        }
    }

    async fn acknowledge(&self, token: &str, ack_ids: &[&str]) {
        let (status, answer) = self
            .pubsub_call(
                Some(token),
                DEFAULT_SUBSCRIPTION,
                "acknowledge",
                json!({ "ackIds": ack_ids }),
            )
            .await;
        assert_eq!((status, answer), (200, json!({})));
    }

    async fn deliver_to_alice(&self, labels: &str) {
        let (status, answer) = self
            .post_json(
                &format!("/sandbox/deliver?user={ALICE}&labels={labels}"),
                NEW_MAIL,
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    async fn push_faults(&self, body: Value) -> Value {
        let (status, answer) = self
            .post_json("/sandbox/push", body.to_string().as_bytes())
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    async fn stats_json(&self) -> Value {
        serde_json::to_value(self.server.sandbox.stats()).expect("stats")
    }
}

/// The notification a received message carries.
fn notification(received: &Value) -> Value {
    let data = received["message"]["data"].as_str().expect("data");
    serde_json::from_slice(&STANDARD.decode(data).expect("standard base64")).expect("json")
}

fn ack_id(received: &Value) -> &str {
    received["ackId"].as_str().expect("ackId")
}

fn message_id(received: &Value) -> &str {
    received["message"]["messageId"]
        .as_str()
        .expect("messageId")
}

#[tokio::test]
async fn watch_deliver_pull_acknowledge_redeliver_and_stop() {
    let harness = Harness::start(quick).await;
    let gmail = harness.access_token().await;
    let subscriber = harness.service_account_token(PUBSUB_SCOPE).await;

    // Watch: the current history id as a string, an expiration seven days ahead in epoch ms.
    let (status, answer) = harness
        .watch(
            &gmail,
            json!({"topicName": DEFAULT_TOPIC, "labelIds": ["SPAM", "TRASH"], "labelFilterBehavior": "exclude"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let current = harness.server.sandbox.history_id(ALICE).expect("alice");
    assert_eq!(answer["historyId"], json!(current.to_string()));
    let expiration: i64 = answer["expiration"]
        .as_str()
        .expect("string expiration")
        .parse()
        .expect("ms");
    let week_ahead = chrono::Utc::now().timestamp_millis() + 7 * 86_400_000;
    assert!((week_ahead - expiration).abs() < 60_000, "{expiration}");
    let stats = harness.stats_json().await;
    let alice = &stats["users"][ALICE];
    assert_eq!(
        (
            &alice["requests"]["watch"],
            &alice["units"]["watch"],
            &alice["statuses"]["watch 200"]
        ),
        (&json!(1), &json!(100), &json!(1))
    );
    assert_eq!(
        alice["watch"],
        json!({"topic": DEFAULT_TOPIC, "expiration": expiration})
    );

    // A delivery publishes one notification: the address and the new history id (a number).
    assert!(harness.pull(&subscriber).await.is_empty());
    harness.deliver_to_alice("").await;
    let received = harness.pull(&subscriber).await;
    assert_eq!(received.len(), 1, "{received:?}");
    let new_history_id = harness.server.sandbox.history_id(ALICE).expect("alice");
    assert!(new_history_id > current);
    assert_eq!(
        notification(&received[0]),
        json!({"emailAddress": ALICE, "historyId": new_history_id})
    );
    let first_id = message_id(&received[0]).to_string();
    assert!(first_id.chars().all(|c| c.is_ascii_digit()), "{first_id}");
    let published = received[0]["message"]["publishTime"]
        .as_str()
        .expect("publishTime");
    assert!(
        chrono::DateTime::parse_from_rfc3339(published).is_ok() && published.ends_with('Z'),
        "{published}"
    );
    assert!(received[0]["message"].get("attributes").is_none());

    // Not acknowledged within the 1 s deadline: delivered again, with a new ack id.
    let first_ack = ack_id(&received[0]).to_string();
    assert!(
        harness.pull(&subscriber).await.is_empty(),
        "held while the deadline runs"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = harness.pull(&subscriber).await;
    assert_eq!(again.len(), 1);
    assert_eq!(message_id(&again[0]), first_id);
    assert_ne!(ack_id(&again[0]), first_ack);
    harness.acknowledge(&subscriber, &[&first_ack]).await;
    assert_eq!(
        harness.stats_json().await["pubsub"]["pending"],
        1,
        "the replaced ack id acknowledges nothing"
    );
    harness.acknowledge(&subscriber, &[ack_id(&again[0])]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        harness.pull(&subscriber).await.is_empty(),
        "acknowledged: never again"
    );

    // modifyAckDeadline 0 hands the message out again at once.
    harness.deliver_to_alice("").await;
    let received = harness.pull(&subscriber).await;
    let (status, answer) = harness
        .pubsub_call(
            Some(&subscriber),
            DEFAULT_SUBSCRIPTION,
            "modifyAckDeadline",
            json!({"ackIds": [ack_id(&received[0])], "ackDeadlineSeconds": 0}),
        )
        .await;
    assert_eq!((status, answer), (200, json!({})));
    // Well within the 1 s deadline: only the zero deadline can bring it back now.
    let again = harness.pull(&subscriber).await;
    assert_eq!(message_id(&again[0]), message_id(&received[0]));
    harness.acknowledge(&subscriber, &[ack_id(&again[0])]).await;

    // The label filter excludes spam: a delivery into SPAM publishes nothing.
    let before = harness.stats_json().await["pubsub"]["published"].clone();
    harness.deliver_to_alice("SPAM").await;
    assert!(harness.pull(&subscriber).await.is_empty());
    assert_eq!(harness.stats_json().await["pubsub"]["published"], before);

    // Stop: 204 without a body, 50 units, no watch, no more notifications.
    let (status, body) = harness.gmail_post(&gmail, "stop", &Value::Null).await;
    assert_eq!((status, body.len()), (204, 0));
    assert_eq!(
        harness.gmail_post(&gmail, "stop", &Value::Null).await.0,
        204,
        "stopping without a watch is fine"
    );
    harness.deliver_to_alice("").await;
    assert!(harness.pull(&subscriber).await.is_empty());
    let stats = harness.stats_json().await;
    let alice = &stats["users"][ALICE];
    assert_eq!(
        (
            &alice["statuses"]["stop 204"],
            &alice["units"]["stop"],
            &alice["watch"]
        ),
        (&json!(2), &json!(100), &Value::Null)
    );

    // Expired watches publish nothing until the client watches again.
    assert_eq!(
        harness
            .watch(&gmail, json!({"topicName": DEFAULT_TOPIC}))
            .await
            .0,
        200
    );
    let (status, answer) = harness.post_json("/sandbox/expire-watches", b"").await;
    assert_eq!((status, answer), (200, json!({"ok": true, "expired": 1})));
    harness.deliver_to_alice("").await;
    assert!(harness.pull(&subscriber).await.is_empty());
    let stats = harness.stats_json().await;
    assert!(
        stats["users"][ALICE]["watch"]["expiration"]
            .as_i64()
            .expect("expiration")
            <= chrono::Utc::now().timestamp_millis()
    );
    assert_eq!(
        harness
            .watch(&gmail, json!({"topicName": DEFAULT_TOPIC}))
            .await
            .0,
        200
    );
    harness.deliver_to_alice("").await;
    assert_eq!(harness.pull(&subscriber).await.len(), 1, "renewed");
    assert_eq!(harness.server.sandbox.expire_watches(), 1);

    let pubsub = &harness.stats_json().await["pubsub"];
    assert_eq!(
        (
            &pubsub["published"],
            &pubsub["pulled"],
            &pubsub["redelivered"],
            &pubsub["acked"],
            &pubsub["pending"]
        ),
        (&json!(3), &json!(5), &json!(2), &json!(2), &json!(1))
    );
    assert!(pubsub["pull_requests"].as_u64() >= Some(10));
    harness.server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn tokens_names_and_bodies_are_checked_as_google_does() {
    // A long pull wait, so that an answer in less time shows returnImmediately was honoured.
    let harness = Harness::start(|config| {
        config.pubsub.ack_deadline_secs = 1;
        config.pubsub.pull_wait_ms = 5_000;
    })
    .await;
    let gmail = harness.access_token().await;
    let subscriber = harness.service_account_token(PUBSUB_SCOPE).await;

    // Pub/Sub wants the service account's own token with the pubsub scope.
    let (status, answer) = harness
        .pubsub_call(
            None,
            DEFAULT_SUBSCRIPTION,
            "pull",
            json!({"maxMessages": 1}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(answer["error"]["code"], 401);
    assert!(
        answer["error"].get("errors").is_none(),
        "gRPC-style: {answer}"
    );
    let gmail_only = harness.service_account_token(READONLY_SCOPE).await;
    for token in [&gmail, &gmail_only] {
        let (status, answer) = harness
            .pubsub_call(
                Some(token),
                DEFAULT_SUBSCRIPTION,
                "pull",
                json!({"maxMessages": 1}),
            )
            .await;
        assert_eq!(
            (status, answer["error"]["status"].as_str()),
            (403, Some("PERMISSION_DENIED"))
        );
    }
    // ... and Gmail refuses it: it is nobody's mailbox.
    let (status, body) = harness.api(&subscriber, "me/profile").await;
    assert_eq!((status, reason(&body)), (403, "forbidden"));
    assert!(
        harness.stats_json().await["users"]
            .get(SERVICE_ACCOUNT)
            .is_none()
    );

    let (status, answer) = harness
        .pubsub_call(
            Some(&subscriber),
            "projects/sandbox/subscriptions/nope",
            "pull",
            json!({"maxMessages": 1}),
        )
        .await;
    assert_eq!(
        (status, answer),
        (
            404,
            json!({"error": {"code": 404, "message": "Resource not found (resource=nope).", "status": "NOT_FOUND"}})
        )
    );
    for (verb, body) in [
        ("pull", json!({"maxMessages": 0})),
        ("pull", json!({"maxMessages": 1, "bogus": true})),
        ("acknowledge", json!({"ackIds": []})),
        (
            "modifyAckDeadline",
            json!({"ackIds": ["x"], "ackDeadlineSeconds": 601}),
        ),
    ] {
        let (status, answer) = harness
            .pubsub_call(Some(&subscriber), DEFAULT_SUBSCRIPTION, verb, body.clone())
            .await;
        assert_eq!(
            (status, answer["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{verb} {body}"
        );
    }
    let (status, answer) = harness
        .pubsub_call(
            Some(&subscriber),
            DEFAULT_SUBSCRIPTION,
            "acknowledge",
            json!({"ackIds": ["never-issued"]}),
        )
        .await;
    assert_eq!(
        (status, answer),
        (200, json!({})),
        "unknown ack ids are ignored"
    );
    let (status, _, answer) = harness
        .send(
            "GET",
            &format!("/v1/{DEFAULT_SUBSCRIPTION}"),
            Some(&subscriber),
            b"",
        )
        .await
        .expect("answer");
    let answer: Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(
        (status, &answer["topic"], &answer["ackDeadlineSeconds"]),
        (200, &json!(DEFAULT_TOPIC), &json!(1))
    );
    let started = Instant::now();
    let (status, answer) = harness
        .pubsub_call(
            Some(&subscriber),
            DEFAULT_SUBSCRIPTION,
            "pull",
            json!({"maxMessages": "5", "returnImmediately": true}),
        )
        .await;
    assert_eq!((status, answer), (200, json!({})));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "returnImmediately"
    );

    // Watch: the topic must have Google's form and exist; labels must exist.
    let cases = [
        (
            json!({"topicName": "projects/sandbox/topics/nope"}),
            404,
            "notFound",
        ),
        (json!({"topicName": "gmail"}), 400, "invalidArgument"),
        (json!({}), 400, "invalidArgument"),
        (
            json!({"topicName": DEFAULT_TOPIC, "labelIds": ["NO_SUCH_LABEL"]}),
            400,
            "invalidArgument",
        ),
        (
            json!({"topicName": DEFAULT_TOPIC, "labelFilterBehavior": "sometimes"}),
            400,
            "invalidArgument",
        ),
    ];
    for (body, expected_status, expected_reason) in cases {
        let (status, answer) = harness.watch(&gmail, body.clone()).await;
        assert_eq!(
            (status, reason(&answer)),
            (expected_status, expected_reason),
            "{body}"
        );
    }
    let (_, answer) = harness
        .watch(&gmail, json!({"topicName": "projects/sandbox/topics/nope"}))
        .await;
    assert_eq!(
        answer["error"]["message"],
        "Resource not found (resource=nope)."
    );
    let (status, _) = harness
        .watch(
            &gmail,
            json!({"topicName": DEFAULT_TOPIC, "labelIds": ["INBOX"], "labelFilterAction": "include"}),
        )
        .await;
    assert_eq!(status, 200, "the older labelFilterAction is accepted");
    let faults = harness.push_faults(json!({"watch_forbidden": true})).await;
    assert_eq!(faults["watch_forbidden"], true);
    let (status, answer) = harness
        .watch(&gmail, json!({"topicName": DEFAULT_TOPIC}))
        .await;
    assert_eq!((status, reason(&answer)), (403, "forbidden"));
    let stats = harness.stats_json().await;
    assert_eq!(
        (
            &stats["users"][ALICE]["statuses"]["watch 403"],
            &stats["users"][ALICE]["units"]["watch"]
        ),
        (&json!(1), &json!(100 * 8)),
        "watch is charged even when Gmail refuses the topic"
    );
}

#[tokio::test]
async fn push_faults_drop_duplicate_delay_and_fail_pulls() {
    let harness = Harness::start(quick).await;
    let gmail = harness.access_token().await;
    let subscriber = harness.service_account_token(PUBSUB_SCOPE).await;
    assert_eq!(
        harness
            .watch(&gmail, json!({"topicName": DEFAULT_TOPIC}))
            .await
            .0,
        200
    );

    let faults = harness.push_faults(json!({"drop_rate": 1.0})).await;
    assert_eq!(
        faults,
        json!({"drop_rate": 1.0, "duplicate_rate": 0.0, "delay_ms": 0, "pull_failure": null, "watch_forbidden": false})
    );
    harness.deliver_to_alice("").await;
    assert!(harness.pull(&subscriber).await.is_empty());
    let pubsub = &harness.stats_json().await["pubsub"];
    assert_eq!(
        (&pubsub["published"], &pubsub["dropped"]),
        (&json!(0), &json!(1))
    );

    harness
        .push_faults(json!({"drop_rate": 0, "duplicate_rate": 1.0}))
        .await;
    harness.deliver_to_alice("").await;
    let received = harness.pull(&subscriber).await;
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(message_id(&received[0]), message_id(&received[1]));
    assert_ne!(ack_id(&received[0]), ack_id(&received[1]));
    harness
        .acknowledge(&subscriber, &[ack_id(&received[0]), ack_id(&received[1])])
        .await;
    let pubsub = &harness.stats_json().await["pubsub"];
    assert_eq!(
        (
            &pubsub["published"],
            &pubsub["duplicated"],
            &pubsub["acked"],
            &pubsub["pending"]
        ),
        (&json!(1), &json!(1), &json!(2), &json!(0))
    );

    // Delayed: not there at once, there after the delay; a waiting pull gets it.
    let faults = harness
        .push_faults(json!({"duplicate_rate": 0, "delay_ms": 600}))
        .await;
    assert_eq!(
        (&faults["drop_rate"], &faults["delay_ms"]),
        (&json!(0.0), &json!(600))
    );
    harness.deliver_to_alice("").await;
    let started = Instant::now();
    let (_, answer) = harness
        .pubsub_call(
            Some(&subscriber),
            DEFAULT_SUBSCRIPTION,
            "pull",
            json!({"maxMessages": 1, "returnImmediately": true}),
        )
        .await;
    assert_eq!(answer, json!({}));
    let mut received = harness.pull(&subscriber).await;
    while received.is_empty() {
        received = harness.pull(&subscriber).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(550));
    harness
        .acknowledge(&subscriber, &[ack_id(&received[0])])
        .await;

    // Failing pulls: every subscription call answers the status until cleared.
    harness
        .push_faults(json!({"delay_ms": 0, "pull_failure": 503}))
        .await;
    for (verb, body) in [
        ("pull", json!({"maxMessages": 1})),
        ("acknowledge", json!({"ackIds": ["a"]})),
        (
            "modifyAckDeadline",
            json!({"ackIds": ["a"], "ackDeadlineSeconds": 5}),
        ),
    ] {
        let (status, answer) = harness
            .pubsub_call(Some(&subscriber), DEFAULT_SUBSCRIPTION, verb, body)
            .await;
        assert_eq!(
            (status, answer["error"]["status"].as_str()),
            (503, Some("UNAVAILABLE")),
            "{verb}"
        );
    }
    for (failure, status, expected) in [(403, 403, "PERMISSION_DENIED"), (404, 404, "NOT_FOUND")] {
        harness
            .push_faults(json!({ "pull_failure": failure }))
            .await;
        let (got, answer) = harness
            .pubsub_call(
                Some(&subscriber),
                DEFAULT_SUBSCRIPTION,
                "pull",
                json!({"maxMessages": 1}),
            )
            .await;
        assert_eq!(
            (got, answer["error"]["status"].as_str()),
            (status, Some(expected))
        );
    }
    harness.deliver_to_alice("").await;
    let faults = harness.push_faults(json!({"pull_failure": null})).await;
    assert_eq!(faults["pull_failure"], Value::Null);
    assert_eq!(
        harness.pull(&subscriber).await.len(),
        1,
        "published while pulls failed, pulled once they work"
    );
    let (status, answer) = harness
        .post_json("/sandbox/push", br#"{"drop_rate": 3}"#)
        .await;
    assert_eq!(status, 400, "{answer}");

    // The Sandbox method mirrors the route.
    let faults = harness.server.sandbox.update_push_faults(&PushFaultUpdate {
        delay_ms: Some(5),
        ..PushFaultUpdate::default()
    });
    assert_eq!((faults.delay_ms, faults.drop_rate), (5, 0.0));
    assert_eq!(harness.server.sandbox.push_faults(), faults);
}

#[tokio::test]
async fn a_waiting_pull_answers_as_soon_as_a_notification_arrives() {
    let harness = Harness::start(|config| config.pubsub.pull_wait_ms = 5_000).await;
    let gmail = harness.access_token().await;
    let subscriber = harness.service_account_token(PUBSUB_SCOPE).await;
    assert_eq!(
        harness
            .watch(&gmail, json!({"topicName": DEFAULT_TOPIC}))
            .await
            .0,
        200
    );
    let started = Instant::now();
    let (received, ()) = tokio::join!(harness.pull(&subscriber), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        harness
            .server
            .sandbox
            .deliver(ALICE, NEW_MAIL.to_vec(), None)
            .expect("deliver");
    });
    assert_eq!(received.len(), 1);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test]
async fn google_pubsub1_pulls_and_acknowledges_with_the_service_accounts_own_token() {
    use google_pubsub1::api::{AcknowledgeRequest, PullRequest, Scope};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    let harness = Harness::start(quick).await;
    let gmail = harness.access_token().await;
    assert_eq!(
        harness
            .watch(&gmail, json!({"topicName": DEFAULT_TOPIC}))
            .await
            .0,
        200
    );

    let key = yup_oauth2::parse_service_account_key(
        crate::throwaway_service_account_key(&harness.server.token_url(), SERVICE_ACCOUNT)
            .expect("a key")
            .to_string(),
    )
    .expect("key");
    let oauth_http = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let authenticator = yup_oauth2::ServiceAccountAuthenticator::with_client(
        key,
        yup_oauth2::CustomHyperClientBuilder::from(oauth_http),
    )
    .build()
    .await
    .expect("authenticator");
    let mut hub = google_pubsub1::Pubsub::new(
        Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        authenticator,
    );
    hub.base_url(harness.server.base_url());
    hub.root_url(harness.server.base_url());

    harness.deliver_to_alice("").await;
    let pull = |max: i32| PullRequest {
        max_messages: Some(max),
        return_immediately: None,
    };
    let (_, answer) = hub
        .projects()
        .subscriptions_pull(pull(10), DEFAULT_SUBSCRIPTION)
        .add_scope(Scope::Full)
        .doit()
        .await
        .expect("pull");
    let received = answer.received_messages.expect("a message");
    assert_eq!(received.len(), 1);
    let message = received[0].message.clone().expect("message");
    let data: Value = serde_json::from_slice(&message.data.expect("data")).expect("json");
    assert_eq!(
        data,
        json!({"emailAddress": ALICE, "historyId": harness.server.sandbox.history_id(ALICE).expect("alice")})
    );
    assert!(message.publish_time.is_some() && message.message_id.is_some());
    hub.projects()
        .subscriptions_acknowledge(
            AcknowledgeRequest {
                ack_ids: Some(vec![received[0].ack_id.clone().expect("ackId")]),
            },
            DEFAULT_SUBSCRIPTION,
        )
        .add_scope(Scope::Full)
        .doit()
        .await
        .expect("acknowledge");
    let (_, answer) = hub
        .projects()
        .subscriptions_pull(pull(10), DEFAULT_SUBSCRIPTION)
        .add_scope(Scope::Full)
        .doit()
        .await
        .expect("an empty pull");
    assert!(answer.received_messages.is_none());
    let stats = harness.server.sandbox.stats();
    assert_eq!((stats.pubsub.acked, stats.pubsub.pending), (1, 0));
    assert_eq!(
        stats
            .token_requests
            .get("urn:ietf:params:oauth:grant-type:jwt-bearer 200"),
        Some(&1),
        "one token, reused"
    );

    // An unknown subscription is an error the client can read.
    let error = hub
        .projects()
        .subscriptions_pull(pull(1), "projects/sandbox/subscriptions/nope")
        .add_scope(Scope::Full)
        .doit()
        .await
        .expect_err("404");
    let google_pubsub1::Error::BadRequest(body) = error else {
        panic!("expected the JSON error body, got {error:?}")
    };
    assert_eq!(body["error"]["status"], "NOT_FOUND");
}

#[tokio::test]
async fn a_label_change_notifies_a_watched_mailbox_through_its_filter_and_faults() {
    let harness = Harness::start(quick).await;
    let gmail = harness.access_token().await;
    let subscriber = harness.service_account_token(PUBSUB_SCOPE).await;
    let (_, listed) = harness
        .api(&gmail, "me/messages?q=from%3Abob%40customer.com")
        .await;
    let first = listed["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (_, spam) = harness.api(&gmail, "me/messages?q=in%3Aspam").await;
    let spam = spam["messages"][0]["id"].as_str().expect("id").to_string();
    let (status, answer) = harness
        .watch(
            &gmail,
            json!({"topicName": DEFAULT_TOPIC, "labelIds": ["INBOX"]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let shared = &harness;
    let label = |query: String| async move {
        let (status, answer) = shared
            .post_json(&format!("/sandbox/label?user={ALICE}&{query}"), b"")
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    };

    // Labelling FIRST's thread (FIRST is in the inbox, its reply is not) changes two messages
    // and publishes one notification with the history id after both.
    let changed = label(format!("thread={first}&add=CRM%2FPrivate")).await;
    assert_eq!(changed["changed"], 2);
    let received = harness.pull(&subscriber).await;
    assert_eq!(received.len(), 1, "{received:?}");
    let now = harness.server.sandbox.history_id(ALICE).expect("alice");
    assert_eq!(changed["historyId"], json!(now.to_string()));
    assert_eq!(
        notification(&received[0]),
        json!({"emailAddress": ALICE, "historyId": now})
    );
    harness
        .acknowledge(&subscriber, &[ack_id(&received[0])])
        .await;

    // The filter admits only changes to inbox messages: labelling spam publishes nothing, a
    // change that changes nothing neither; taking a message out of the inbox does publish.
    assert_eq!(
        label(format!("message={spam}&add=CRM%2FPrivate")).await["changed"],
        1
    );
    assert_eq!(
        label(format!("thread={first}&add=CRM%2FPrivate")).await["changed"],
        0
    );
    assert!(harness.pull(&subscriber).await.is_empty());
    assert_eq!(harness.stats_json().await["pubsub"]["published"], 1);
    label(format!("message={first}&remove=INBOX")).await;
    let received = harness.pull(&subscriber).await;
    assert_eq!(
        received.len(),
        1,
        "archiving is a change to an inbox message"
    );
    harness
        .acknowledge(&subscriber, &[ack_id(&received[0])])
        .await;

    // messages.modify through the API notifies the same way.
    let (status, body) = harness
        .gmail_post(
            &gmail,
            &format!("messages/{first}/modify"),
            &json!({"addLabelIds": ["INBOX"]}),
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let received = harness.pull(&subscriber).await;
    assert_eq!(
        received.iter().map(notification).collect::<Vec<_>>(),
        [
            json!({"emailAddress": ALICE, "historyId": harness.server.sandbox.history_id(ALICE).expect("alice")})
        ]
    );
    harness
        .acknowledge(&subscriber, &[ack_id(&received[0])])
        .await;

    // Push faults apply: with every notification dropped, a label change is lost too.
    harness.push_faults(json!({"drop_rate": 1.0})).await;
    label(format!("message={first}&add=STARRED")).await;
    assert!(harness.pull(&subscriber).await.is_empty());
    let pubsub = &harness.stats_json().await["pubsub"];
    assert_eq!(
        (&pubsub["published"], &pubsub["dropped"]),
        (&json!(3), &json!(1))
    );
    harness.server.shutdown().await.expect("clean shutdown");
}
