//! Label changes end to end: the `/sandbox/label` control route and `messages.modify`,
//! `threads.modify` and `labels.create` over the Gmail routes, and the `labelsAdded` /
//! `labelsRemoved` records `history.list` then serves. Push for label changes is in `push`.

use serde_json::{Value, json};

use super::{ALICE, Harness, reason};

const NEW_MAIL: &[u8] = b"From: erin@customer.com\r\nSubject: Lead\r\n\r\nA new lead\r\n";
/// A reply to `FIRST`: it joins FIRST's thread.
const REPLY_TO_FIRST: &[u8] = b"From: bob@customer.com\r\nSubject: Re: First\r\nIn-Reply-To: <m1@customer.com>\r\n\r\nAgain\r\n";

impl Harness {
    /// `POST /gmail/v1/users/me/{path}` with a JSON body; the status and the JSON answer.
    async fn api_post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let (status, _, answer) = self
            .send(
                "POST",
                &format!("/gmail/v1/users/me/{path}"),
                Some(token),
                body.to_string().as_bytes(),
            )
            .await
            .expect("answer");
        (status, serde_json::from_slice(&answer).expect("json"))
    }

    /// `POST /sandbox/label?user=alice&{query}`.
    async fn label(&self, query: &str) -> (u16, Value) {
        self.post_json(&format!("/sandbox/label?user={ALICE}&{query}"), b"")
            .await
    }

    /// `history.list` from `start` with extra query parameters; the records.
    async fn history_records(&self, token: &str, start: u64, extra: &str) -> Vec<Value> {
        let (status, page) = self
            .api(token, &format!("me/history?startHistoryId={start}{extra}"))
            .await;
        assert_eq!(status, 200, "{page}");
        page.get("history")
            .map(|records| records.as_array().expect("array").clone())
            .unwrap_or_default()
    }

    /// The id of the first message `q` finds.
    async fn find(&self, token: &str, q: &str) -> String {
        let (_, page) = self.api(token, &format!("me/messages?q={q}")).await;
        page["messages"][0]["id"].as_str().expect("id").to_string()
    }

    async fn label_id(&self, token: &str, name: &str) -> String {
        let (_, labels) = self.api(token, "me/labels").await;
        labels["labels"]
            .as_array()
            .expect("labels")
            .iter()
            .find(|label| label["name"] == name)
            .and_then(|label| label["id"].as_str())
            .unwrap_or_else(|| panic!("no label {name} in {labels}"))
            .to_string()
    }
}

fn history_id(value: &Value) -> u64 {
    value["historyId"]
        .as_str()
        .expect("string historyId")
        .parse()
        .expect("number")
}

/// `(kind, message.id, message.labelIds, labelIds)` of each record, the kind being the one
/// change field a record carries besides `id` and `messages`.
fn summary(records: &[Value]) -> Vec<(String, String, Value, Value)> {
    records
        .iter()
        .map(|record| {
            let fields = record.as_object().expect("record");
            let kinds: Vec<&String> = fields
                .keys()
                .filter(|key| *key != "id" && *key != "messages")
                .collect();
            assert_eq!(kinds.len(), 1, "{record}");
            let change = &record[kinds[0].as_str()];
            assert_eq!(change.as_array().map(Vec::len), Some(1), "{record}");
            let message = &change[0]["message"];
            assert_eq!(
                record["messages"],
                json!([{"id": message["id"], "threadId": message["threadId"]}])
            );
            (
                kinds[0].clone(),
                message["id"].as_str().expect("id").to_string(),
                message["labelIds"].clone(),
                change[0]["labelIds"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn control_route_label_changes_show_in_history_as_gmail_records_them() {
    let harness = Harness::start(|_| {}).await;
    let token = harness.access_token().await;
    let first = harness.find(&token, "from%3Abob%40customer.com").await;

    // Deliver answers the thread: a new conversation is its own thread, a reply joins one.
    let (status, delivered) = harness
        .post_json(&format!("/sandbox/deliver?user={ALICE}"), NEW_MAIL)
        .await;
    assert_eq!(status, 200, "{delivered}");
    let id = delivered["id"].as_str().expect("id").to_string();
    assert_eq!(delivered["threadId"].as_str(), Some(id.as_str()));
    let (_, reply) = harness
        .post_json(&format!("/sandbox/deliver?user={ALICE}"), REPLY_TO_FIRST)
        .await;
    assert_eq!(reply["threadId"].as_str(), Some(first.as_str()));
    assert_ne!(reply["id"], reply["threadId"]);
    let after_delivery = harness.server.sandbox.history_id(ALICE).expect("alice");

    // Add a label that does not exist yet (it is created), then remove it from the message.
    let (status, added) = harness
        .label(&format!("thread={id}&add=CRM%2FPrivate"))
        .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!((&added["ok"], &added["changed"]), (&json!(true), &json!(1)));
    assert!(history_id(&added) > after_delivery);
    let crm = harness.label_id(&token, "CRM/Private").await;
    assert!(crm.starts_with("Label_"), "{crm}");
    let (status, removed) = harness
        .label(&format!("message={id}&remove=crm/private"))
        .await;
    assert_eq!((status, &removed["changed"]), (200, &json!(1)), "{removed}");
    assert!(history_id(&removed) > history_id(&added));

    let records = harness.history_records(&token, after_delivery, "").await;
    assert_eq!(
        summary(&records),
        [
            (
                "labelsAdded".to_string(),
                id.clone(),
                json!(["INBOX", "UNREAD", crm]),
                json!([crm])
            ),
            (
                "labelsRemoved".to_string(),
                id.clone(),
                json!(["INBOX", "UNREAD"]),
                json!([crm])
            ),
        ]
    );
    assert_eq!(records[1]["id"], removed["historyId"]);

    // historyTypes picks kinds; no types means all of them; labelId follows the label even
    // into the record that took it away.
    let kinds = |records: Vec<Value>| -> Vec<String> {
        summary(&records)
            .into_iter()
            .map(|(kind, ..)| kind)
            .collect()
    };
    assert_eq!(
        kinds(
            harness
                .history_records(&token, after_delivery, "&historyTypes=labelRemoved")
                .await
        ),
        ["labelsRemoved"]
    );
    assert_eq!(
        kinds(
            harness
                .history_records(
                    &token,
                    after_delivery,
                    "&historyTypes=labelAdded&historyTypes=labelRemoved"
                )
                .await
        ),
        ["labelsAdded", "labelsRemoved"]
    );
    assert!(
        harness
            .history_records(&token, after_delivery, "&historyTypes=messageAdded")
            .await
            .is_empty()
    );
    assert_eq!(
        kinds(
            harness
                .history_records(&token, after_delivery, &format!("&labelId={crm}"))
                .await
        ),
        ["labelsAdded", "labelsRemoved"]
    );

    // A change that changes nothing records nothing.
    for query in [
        format!("message={id}&remove=CRM/Private"),
        format!("thread={id}&add=inbox,Unread"),
    ] {
        let (status, noop) = harness.label(&query).await;
        assert_eq!(
            (status, &noop["changed"], history_id(&noop)),
            (200, &json!(0), history_id(&removed)),
            "{query}"
        );
    }
    assert_eq!(
        harness
            .history_records(&token, history_id(&removed), "")
            .await
            .len(),
        0
    );

    // A thread change reaches every message of the conversation, one record each.
    let (_, starred) = harness
        .label(&format!("thread={first}&add=STARRED&remove=UNREAD"))
        .await;
    assert_eq!(
        starred["changed"], 3,
        "FIRST, REPLY and the delivered reply"
    );
    let records = harness
        .history_records(&token, history_id(&removed), "")
        .await;
    let summary = summary(&records);
    assert_eq!(
        summary
            .iter()
            .filter(|(kind, ..)| kind == "labelsAdded")
            .count(),
        3
    );
    // FIRST and the delivered reply were unread; the reply alice sent was not.
    assert_eq!(
        summary
            .iter()
            .filter(|(kind, _, _, changed)| kind == "labelsRemoved" && changed == &json!(["UNREAD"]))
            .count(),
        2
    );
    let (_, message) = harness
        .api(&token, &format!("me/messages/{first}?format=minimal"))
        .await;
    assert_eq!(message["labelIds"], json!(["INBOX", "STARRED"]));

    // Mistakes are refused and change nothing.
    let current = harness.server.sandbox.history_id(ALICE);
    for (query, status) in [
        (format!("thread={id}&remove=NoSuchLabel"), 400),
        (format!("thread={id}&add=STARRED&remove=starred"), 400),
        (format!("thread={id}"), 400),
        (format!("thread={id}&message={id}&add=STARRED"), 400),
        ("thread=0123456789abcdef&add=STARRED".to_string(), 404),
        ("message=0123456789abcdef&add=STARRED".to_string(), 404),
    ] {
        let (got, answer) = harness.label(&query).await;
        assert_eq!(got, status, "{query}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (status, _) = harness
        .post_json("/sandbox/label?user=nobody@example.com&thread=x&add=A", b"")
        .await;
    assert_eq!(status, 404);
    assert_eq!(harness.server.sandbox.history_id(ALICE), current);

    // Expiring history still cuts label records off like any other.
    harness
        .post_json(&format!("/sandbox/expire-history?user={ALICE}"), b"")
        .await;
    let (status, body) = harness
        .api(
            &token,
            &format!("me/history?startHistoryId={after_delivery}"),
        )
        .await;
    assert_eq!((status, reason(&body)), (404, "notFound"));
    harness.server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn messages_and_threads_modify_and_labels_create_through_the_api() {
    let harness = Harness::start(|_| {}).await;
    let token = harness.access_token().await;
    let first = harness.find(&token, "from%3Abob%40customer.com").await;
    let reply = harness.find(&token, "from%3Ame").await;
    let start = harness.server.sandbox.history_id(ALICE).expect("alice");

    // labels.create, then the same name in another case is taken, as is a system label's.
    let (status, label) = harness
        .api_post(
            &token,
            "labels",
            &json!({"name": "CRM/Private", "labelListVisibility": "labelShow"}),
        )
        .await;
    assert_eq!(status, 200, "{label}");
    let crm = label["id"].as_str().expect("id").to_string();
    assert_eq!(
        (
            label["name"].as_str(),
            label["type"].as_str(),
            crm.starts_with("Label_")
        ),
        (Some("CRM/Private"), Some("user"), true)
    );
    assert_eq!(harness.label_id(&token, "CRM/Private").await, crm);
    for name in ["crm/private", "Inbox"] {
        let (status, body) = harness
            .api_post(&token, "labels", &json!({ "name": name }))
            .await;
        assert_eq!(
            (status, reason(&body), body["error"]["status"].as_str()),
            (409, "alreadyExists", Some("ALREADY_EXISTS")),
            "{name}"
        );
    }
    for body in [
        json!({}),
        json!({"name": " "}),
        json!({"name": "X", "colour": 1}),
    ] {
        let (status, answer) = harness.api_post(&token, "labels", &body).await;
        assert_eq!(
            (status, reason(&answer)),
            (400, "invalidArgument"),
            "{body}"
        );
    }

    // threads.modify changes every message of the thread and answers them all.
    let (status, thread) = harness
        .api_post(
            &token,
            &format!("threads/{first}/modify"),
            &json!({"addLabelIds": [crm], "removeLabelIds": ["UNREAD"]}),
        )
        .await;
    assert_eq!(status, 200, "{thread}");
    assert_eq!(
        thread,
        json!({"id": first, "messages": [
            {"id": first, "threadId": first, "labelIds": ["INBOX", crm]},
            {"id": reply, "threadId": first, "labelIds": ["SENT", crm]},
        ]})
    );
    let records = harness.history_records(&token, start, "").await;
    assert_eq!(
        summary(&records),
        [
            (
                "labelsAdded".to_string(),
                first.clone(),
                json!(["INBOX", crm]),
                json!([crm])
            ),
            (
                "labelsRemoved".to_string(),
                first.clone(),
                json!(["INBOX", crm]),
                json!(["UNREAD"])
            ),
            (
                "labelsAdded".to_string(),
                reply.clone(),
                json!(["SENT", crm]),
                json!([crm])
            ),
        ]
    );

    // messages.modify changes that one message only.
    let (status, message) = harness
        .api_post(
            &token,
            &format!("messages/{reply}/modify"),
            &json!({"removeLabelIds": [crm]}),
        )
        .await;
    assert_eq!(
        (status, message),
        (
            200,
            json!({"id": reply, "threadId": first, "labelIds": ["SENT"]})
        )
    );
    let (_, got) = harness
        .api(&token, &format!("me/messages/{reply}?format=minimal"))
        .await;
    assert_eq!(got["labelIds"], json!(["SENT"]));
    assert_eq!(
        history_id(&got),
        harness.server.sandbox.history_id(ALICE).expect("alice"),
        "the message's historyId is its last change"
    );
    let (_, got) = harness
        .api(&token, &format!("me/messages/{first}?format=minimal"))
        .await;
    assert_eq!(got["labelIds"], json!(["INBOX", crm]));

    // Unknown labels are 400, unknown messages and threads 404, and nothing changes.
    let before = harness.server.sandbox.history_id(ALICE);
    let (status, body) = harness
        .api_post(
            &token,
            &format!("messages/{first}/modify"),
            &json!({"addLabelIds": ["STARRED", "Label_99"]}),
        )
        .await;
    assert_eq!(
        (status, reason(&body), body["error"]["message"].as_str()),
        (400, "invalidArgument", Some("Invalid label: Label_99"))
    );
    for (path, body, status) in [
        (format!("messages/{first}/modify"), json!({}), 400),
        (
            format!("messages/{first}/modify"),
            json!({"addLabelIds": ["STARRED"], "removeLabelIds": ["STARRED"]}),
            400,
        ),
        (
            "messages/0123456789abcdef/modify".to_string(),
            json!({"addLabelIds": ["STARRED"]}),
            404,
        ),
        (
            format!("threads/{reply}/modify"),
            json!({"addLabelIds": ["STARRED"]}),
            404,
        ),
    ] {
        let (got, answer) = harness.api_post(&token, &path, &body).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
    }
    assert_eq!(harness.server.sandbox.history_id(ALICE), before);

    // The new methods are counted and charged like the others (5, 10 and 5 units).
    let stats = serde_json::to_value(harness.server.sandbox.stats()).expect("stats");
    let alice = &stats["users"][ALICE];
    assert_eq!(
        (
            &alice["requests"]["threads.modify"],
            &alice["units"]["threads.modify"],
            &alice["statuses"]["threads.modify 200"],
            &alice["statuses"]["threads.modify 404"],
        ),
        (&json!(2), &json!(20), &json!(1), &json!(1))
    );
    assert_eq!(alice["requests"]["messages.modify"], 5);
    assert_eq!(alice["units"]["messages.modify"], 25);
    assert_eq!(alice["statuses"]["messages.modify 400"], 3);
    assert_eq!(
        (
            &alice["units"]["labels.create"],
            &alice["statuses"]["labels.create 409"]
        ),
        (&json!(30), &json!(2))
    );
    harness.server.shutdown().await.expect("clean shutdown");
}
