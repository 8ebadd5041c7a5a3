//! The Cloud Pub/Sub REST v1 routes a pull subscriber uses, under `/v1/`: `:pull` (held open
//! until a message is ready or the pull wait ends), `:acknowledge`, `:modifyAckDeadline`, and
//! `GET` of a subscription, with Pub/Sub's gRPC-style error bodies
//! (`{"error":{"code","message","status"}}`). They take the service account's own token with
//! the `pubsub` scope. Gmail's quota and faults do not apply here; push faults do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response};
use serde_json::{Map, Value, json};

use super::super::config::resource_name;
use super::super::faults::PullFailure;
use super::super::oauth::{CLOUD_PLATFORM_SCOPE, PUBSUB_SCOPE};
use super::super::pubsub::{MAX_ACK_DEADLINE_SECS, Received, UnknownSubscription};
use super::super::server::{Shared, lock};
use super::{AUTH_MESSAGE, Body, MAX_FORM_BYTES, authenticate, json_response, read_body};

/// Google caps a pull at 1,000 messages.
const MAX_PULL_MESSAGES: usize = 1000;
/// Google keeps unacknowledged messages for seven days by default.
const RETENTION: &str = "604800s";

/// A subscription call, routed: `POST .../subscriptions/S:verb` or `GET .../subscriptions/S`.
pub(super) async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    segments: &[&str],
    request: Request<Incoming>,
) -> Response<Body> {
    let ["projects", project, "subscriptions", last] = segments else {
        return error(404, "Requested entity was not found.");
    };
    let (short_name, verb) = match last.rsplit_once(':') {
        Some((short_name, verb)) => (short_name, Some(verb)),
        None => (*last, None),
    };
    let subscription = format!("projects/{project}/subscriptions/{short_name}");
    if resource_name(&subscription, "subscriptions").is_none() {
        return error(404, "Requested entity was not found.");
    }
    let call = match (method, verb) {
        (&Method::POST, Some("pull")) => Call::Pull,
        (&Method::POST, Some("acknowledge")) => Call::Acknowledge,
        (&Method::POST, Some("modifyAckDeadline")) => Call::ModifyAckDeadline,
        (&Method::GET, None) => Call::Get,
        _ => return error(404, "Requested entity was not found."),
    };
    if call == Call::Pull {
        lock(&shared.pubsub).record_pull_request();
    }
    if let Some(refusal) = subscriber_refusal(shared, request.headers()) {
        return refusal;
    }
    if call != Call::Get
        && let Some(failure) = lock(&shared.push_faults).config().pull_failure
    {
        return failure_response(failure, short_name);
    }
    let topic = lock(&shared.pubsub)
        .subscription_topic(&subscription)
        .map(str::to_string);
    let Some(topic) = topic else {
        return not_found(short_name);
    };
    let body = match read_body(request.into_body(), MAX_FORM_BYTES).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let result = match call {
        Call::Get => Ok(json!({
            "name": subscription,
            "topic": topic,
            "pushConfig": {},
            "ackDeadlineSeconds": lock(&shared.pubsub).ack_deadline().as_secs(),
            "messageRetentionDuration": RETENTION,
            "state": "ACTIVE",
        })),
        Call::Pull => pull(shared, &subscription, &body).await,
        Call::Acknowledge => acknowledge(shared, &subscription, &body),
        Call::ModifyAckDeadline => modify_ack_deadline(shared, &subscription, &body),
    };
    match result {
        Ok(value) => json_response(200, &value),
        Err(PubSubError::InvalidArgument(message)) => error(400, &message),
        Err(PubSubError::UnknownSubscription) => not_found(short_name),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Pull,
    Acknowledge,
    ModifyAckDeadline,
    Get,
}

enum PubSubError {
    InvalidArgument(String),
    UnknownSubscription,
}

impl From<UnknownSubscription> for PubSubError {
    fn from(_: UnknownSubscription) -> Self {
        PubSubError::UnknownSubscription
    }
}

/// The answer to a request without a token of the service account itself with the `pubsub`
/// (or `cloud-platform`) scope; `None` for a subscriber's token.
fn subscriber_refusal(shared: &Shared, headers: &HeaderMap) -> Option<Response<Body>> {
    let Some(grant) = authenticate(shared, headers) else {
        return Some(error(401, AUTH_MESSAGE));
    };
    if !(grant.has_scope(PUBSUB_SCOPE) || grant.has_scope(CLOUD_PLATFORM_SCOPE)) {
        return Some(error(
            403,
            "Request had insufficient authentication scopes.",
        ));
    }
    if !grant.service_account {
        // A mailbox owner's token: the user has no subscriber role on the subscription.
        return Some(error(403, "User not authorized to perform this action."));
    }
    None
}

/// `:pull {"maxMessages":N}`. When nothing is ready it waits, up to the configured pull wait,
/// for a publication, a held-back message or an expiring ack deadline, and answers `{}` if
/// none comes. `returnImmediately: true` answers at once, as the deprecated field asks.
async fn pull(shared: &Shared, subscription: &str, body: &[u8]) -> Result<Value, PubSubError> {
    let fields = parse_object(body, &["maxMessages", "returnImmediately"])?;
    let max_messages = match integer(&fields, "maxMessages")? {
        Some(max) if max > 0 => usize::try_from(max)
            .unwrap_or(MAX_PULL_MESSAGES)
            .min(MAX_PULL_MESSAGES),
        _ => {
            return Err(PubSubError::InvalidArgument(
                "max_messages must be greater than 0.".to_string(),
            ));
        }
    };
    let return_immediately = match fields.get("returnImmediately") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(invalid_value("returnImmediately")),
    };
    let deadline = Instant::now() + Duration::from_millis(shared.config.pubsub.pull_wait_ms);
    loop {
        // Registered before looking, so a publication between the look and the wait still
        // wakes this pull.
        let notified = shared.pubsub_ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = Instant::now();
        let (received, next_ready_at) = {
            let mut pubsub = lock(&shared.pubsub);
            let received = pubsub.pull(subscription, max_messages, now)?;
            (received, pubsub.next_ready_at(subscription))
        };
        if !received.is_empty() || return_immediately || now >= deadline {
            return Ok(received_json(&received));
        }
        let wake_at = next_ready_at.map_or(deadline, |ready| ready.min(deadline));
        tokio::select! {
            () = notified.as_mut() => {}
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake_at)) => {}
        }
    }
}

/// `:acknowledge {"ackIds":[...]}`. Ids that no longer count are ignored, as Google does.
fn acknowledge(shared: &Shared, subscription: &str, body: &[u8]) -> Result<Value, PubSubError> {
    let fields = parse_object(body, &["ackIds"])?;
    let ack_ids = ack_ids(&fields)?;
    lock(&shared.pubsub).acknowledge(subscription, &ack_ids)?;
    Ok(json!({}))
}

/// `:modifyAckDeadline {"ackIds":[...],"ackDeadlineSeconds":N}`; 0 hands the messages out
/// again at the next pull.
fn modify_ack_deadline(
    shared: &Shared,
    subscription: &str,
    body: &[u8],
) -> Result<Value, PubSubError> {
    let fields = parse_object(body, &["ackIds", "ackDeadlineSeconds"])?;
    let ack_ids = ack_ids(&fields)?;
    let seconds = integer(&fields, "ackDeadlineSeconds")?.unwrap_or(0);
    let seconds = u64::try_from(seconds)
        .ok()
        .filter(|seconds| *seconds <= MAX_ACK_DEADLINE_SECS)
        .ok_or_else(|| {
            PubSubError::InvalidArgument(format!("Invalid ack deadline given: {seconds}"))
        })?;
    lock(&shared.pubsub).modify_ack_deadline(
        subscription,
        &ack_ids,
        Duration::from_secs(seconds),
        Instant::now(),
    )?;
    if seconds == 0 {
        shared.pubsub_ready.notify_waiters();
    }
    Ok(json!({}))
}

/// `{"receivedMessages":[...]}`, or `{}` when there is nothing, as Google answers.
fn received_json(received: &[Received]) -> Value {
    if received.is_empty() {
        return json!({});
    }
    let messages: Vec<Value> = received
        .iter()
        .map(|received| {
            let publish_time =
                chrono::DateTime::from_timestamp_millis(received.message.publish_time_ms)
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            json!({
                "ackId": received.ack_id,
                "message": {
                    "data": STANDARD.encode(&received.message.data),
                    "messageId": received.message.id,
                    "publishTime": publish_time,
                },
            })
        })
        .collect();
    json!({ "receivedMessages": messages })
}

/// The request body as a JSON object with only `allowed` fields; an empty body is `{}`.
fn parse_object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, PubSubError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        PubSubError::InvalidArgument(format!("Invalid JSON payload received. {error}"))
    })?;
    let Value::Object(fields) = value else {
        return Err(PubSubError::InvalidArgument(
            "Invalid JSON payload received. Expected an object.".to_string(),
        ));
    };
    if let Some(unknown) = fields.keys().find(|name| !allowed.contains(&name.as_str())) {
        return Err(PubSubError::InvalidArgument(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
        )));
    }
    Ok(fields)
}

/// An integer field, as a JSON number or (proto3 JSON allows it) a numeric string.
fn integer(fields: &Map<String, Value>, name: &str) -> Result<Option<i64>, PubSubError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number.as_i64().map(Some).ok_or_else(|| invalid_value(name)),
        Some(Value::String(text)) => text.parse().map(Some).map_err(|_| invalid_value(name)),
        Some(_) => Err(invalid_value(name)),
    }
}

/// `ackIds`: a non-empty list of strings.
fn ack_ids(fields: &Map<String, Value>) -> Result<Vec<String>, PubSubError> {
    let ack_ids: Vec<String> = match fields.get("ackIds") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid_value("ackIds"))?,
        Some(_) => return Err(invalid_value("ackIds")),
    };
    if ack_ids.is_empty() {
        return Err(PubSubError::InvalidArgument(
            "No ack ids specified.".to_string(),
        ));
    }
    Ok(ack_ids)
}

fn invalid_value(name: &str) -> PubSubError {
    PubSubError::InvalidArgument(format!(
        "Invalid JSON payload received. Invalid value at '{name}'."
    ))
}

fn not_found(short_name: &str) -> Response<Body> {
    error(404, &format!("Resource not found (resource={short_name})."))
}

/// What every subscription call answers while the `pull_failure` push fault is set.
fn failure_response(failure: PullFailure, short_name: &str) -> Response<Body> {
    match failure {
        PullFailure::PermissionDenied403 => {
            error(403, "User not authorized to perform this action.")
        }
        PullFailure::NotFound404 => not_found(short_name),
        PullFailure::Unavailable503 => error(503, "The service is currently unavailable."),
    }
}

/// Pub/Sub's error body: gRPC-style, with `status` and no `errors` list.
fn error(code: u16, message: &str) -> Response<Body> {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    json_response(
        code,
        &json!({"error": {"code": code, "message": message, "status": status}}),
    )
}
