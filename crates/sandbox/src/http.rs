//! HTTP routing and wire formats: the Gmail REST routes (auth, delegation, faults, quota, JSON
//! shapes), the OAuth token and consent endpoints, and the `/sandbox/` control routes. Gmail
//! push (`watch`, `stop`, the notification) is in `watch`, label changes (`messages.modify`,
//! `threads.modify`, `labels.create`) in `labels`, the Pub/Sub REST routes in `pubsub`.

mod labels;
mod pubsub;
mod watch;

pub(super) use watch::notification_data;

use std::collections::{BTreeMap, HashMap};
use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::config::SandboxError;
use super::faults::{FaultConfig, FaultKind, PullFailure, PushFaultUpdate, Rejection, UserStats};
use super::mailbox::{
    HISTORY_TYPES, HistoryChange, HistoryRequest, LabelTarget, ListRequest, MailboxError, Message,
    SYSTEM_LABELS,
};
use super::oauth::{AccessGrant, ConsentAnswer};
use super::query::Query;
use super::server::{Shared, lock};

pub(super) type BodyError = Box<dyn std::error::Error + Send + Sync>;
pub(super) type Body = BoxBody<Bytes, BodyError>;

const JSON: &str = "application/json; charset=UTF-8";
const MAX_FORM_BYTES: usize = 64 * 1024;
const MAX_DELIVERY_BYTES: usize = 64 * 1024 * 1024;
const SLOW_RESPONSE: Duration = Duration::from_secs(3);
const NEW_MESSAGE_HIDDEN: Duration = Duration::from_secs(2);
const UNAVAILABLE_HTML: &str = "<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error 503 (Service Unavailable)!!1</title><p><b>503.</b> <ins>That’s an error.</ins><p>The service is currently unavailable. <ins>That’s all we know.</ins></html>\n";
const AUTH_MESSAGE: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
const QUOTA_MESSAGE: &str = "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'gmail.googleapis.com' for consumer 'project_number:000000000000'.";

/// Returned to hyper to close a connection without answering (the "drop" fault).
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
pub(super) struct DroppedByFault;

/// A Gmail error, rendered as Google's nested JSON error body.
#[derive(Debug)]
struct ApiError {
    status: u16,
    reason: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
}

fn api_error(status: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        reason,
        message: message.into(),
        retry_after_secs: None,
    }
}

fn invalid_argument(message: impl Into<String>) -> ApiError {
    api_error(400, "invalidArgument", message)
}

fn not_found() -> ApiError {
    api_error(404, "notFound", "Requested entity was not found.")
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GmailMethod {
    Profile,
    LabelsList,
    HistoryList,
    MessagesList,
    MessagesGet(String),
    /// `users.watch`, with its JSON body.
    Watch(Bytes),
    Stop,
    /// The message id and the JSON body.
    MessagesModify(String, Bytes),
    /// The thread id and the JSON body.
    ThreadsModify(String, Bytes),
    LabelsCreate(Bytes),
}

impl GmailMethod {
    fn name(&self) -> &'static str {
        match self {
            GmailMethod::Profile => "getProfile",
            GmailMethod::LabelsList => "labels.list",
            GmailMethod::HistoryList => "history.list",
            GmailMethod::MessagesList => "messages.list",
            GmailMethod::MessagesGet(_) => "messages.get",
            GmailMethod::Watch(_) => "watch",
            GmailMethod::Stop => "stop",
            GmailMethod::MessagesModify(..) => "messages.modify",
            GmailMethod::ThreadsModify(..) => "threads.modify",
            GmailMethod::LabelsCreate(_) => "labels.create",
        }
    }
}

/// Query parameters in order, repeated keys kept (`labelIds=A&labelIds=B`).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>) -> Params {
        Params(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    }

    /// `maxResults`: default 100, at most 500 (larger is capped, as Gmail does), at least 1.
    fn max_results(&self) -> Result<usize, ApiError> {
        match self.get("maxResults") {
            None => Ok(100),
            Some(text) => text
                .parse::<u32>()
                .map(|max| (max as usize).clamp(1, 500))
                .map_err(|_| invalid_argument(format!("Invalid value for maxResults: {text}"))),
        }
    }

    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(invalid_argument(format!(
                "Invalid value for {name}: {other}"
            ))),
        }
    }
}

/// The hyper service: one request in, one response out, or an error that closes the connection.
pub(super) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    local: Option<SocketAddr>,
) -> Result<Response<Body>, DroppedByFault> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let params = Params::parse(request.uri().query());
    let segments: Vec<String> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let response = match (&method, segments.as_slice()) {
        (&Method::GET, ["gmail", "v1", "users", user_id, rest @ ..]) => {
            let gmail_method = match rest {
                ["profile"] => Some(GmailMethod::Profile),
                ["labels"] => Some(GmailMethod::LabelsList),
                ["history"] => Some(GmailMethod::HistoryList),
                ["messages"] => Some(GmailMethod::MessagesList),
                ["messages", id] => Some(GmailMethod::MessagesGet(id.to_string())),
                _ => None,
            };
            match gmail_method {
                Some(gmail_method) => {
                    gmail(&shared, request.headers(), user_id, gmail_method, &params).await?
                }
                None => error_response(&api_error(404, "notFound", "Not Found")),
            }
        }
        (&Method::POST, ["gmail", "v1", "users", user_id, rest @ ..]) => {
            let (head, body) = request.into_parts();
            let gmail_method = match rest {
                ["watch"] => read_body(body, MAX_FORM_BYTES)
                    .await
                    .map(GmailMethod::Watch),
                ["stop"] => Ok(GmailMethod::Stop),
                ["labels"] => read_body(body, MAX_FORM_BYTES)
                    .await
                    .map(GmailMethod::LabelsCreate),
                ["messages", id, "modify"] => read_body(body, MAX_FORM_BYTES)
                    .await
                    .map(|body| GmailMethod::MessagesModify(id.to_string(), body)),
                ["threads", id, "modify"] => read_body(body, MAX_FORM_BYTES)
                    .await
                    .map(|body| GmailMethod::ThreadsModify(id.to_string(), body)),
                _ => Err(error_response(&api_error(404, "notFound", "Not Found"))),
            };
            match gmail_method {
                Ok(gmail_method) => {
                    gmail(&shared, &head.headers, user_id, gmail_method, &params).await?
                }
                Err(response) => response,
            }
        }
        (_, ["v1", rest @ ..]) => pubsub::route(&shared, &method, rest, request).await,
        (&Method::POST, ["token"]) => token(&shared, request, local).await,
        (&Method::GET, ["o", "oauth2", "auth"] | ["o", "oauth2", "v2", "auth"]) => {
            consent(&shared, &params)
        }
        (_, ["sandbox", action]) => control(&shared, &method, action, &params, request).await,
        _ => error_response(&api_error(404, "notFound", "Not Found")),
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), "sandbox request");
    Ok(response)
}

/// Releases a concurrency slot when the request ends, also when hyper drops it half-way.
struct InFlight {
    shared: Arc<Shared>,
    user: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.shared.limiter).leave(&self.user);
    }
}

/// The grant behind the request's `Authorization: Bearer` token, if it is a live one.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Option<AccessGrant> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        })?;
    lock(&shared.oauth).authenticate(&bearer, Instant::now())
}

/// A Gmail API request: auth, delegation, concurrency, faults, quota, then the method itself.
async fn gmail(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    user_id: &str,
    method: GmailMethod,
    params: &Params,
) -> Result<Response<Body>, DroppedByFault> {
    let Some(grant) = authenticate(shared, headers) else {
        lock(&shared.limiter).stats.unauthenticated += 1;
        return Ok(error_response(&api_error(401, "authError", AUTH_MESSAGE)));
    };
    if grant.service_account {
        // The service account's own token (for Pub/Sub) opens no mailbox: refused like a token
        // for another mailbox, and counted for nobody.
        return Ok(error_response(&api_error(
            403,
            "forbidden",
            format!("Delegation denied for {}", grant.user),
        )));
    }
    let name = method.name();
    let user = grant.user.clone();
    let bump = |counter: fn(&mut UserStats) -> &mut BTreeMap<String, u64>, key: String| {
        lock(&shared.limiter).stats.bump(&user, counter, key);
    };
    bump(|stats| &mut stats.requests, name.to_string());
    let record = |status: &str| bump(|stats| &mut stats.statuses, format!("{name} {status}"));
    let respond = |result: Result<Value, ApiError>| {
        let response = match result {
            // `users.stop` answers 204 with no body.
            Ok(Value::Null) => plain_response(204, JSON, Bytes::new()),
            Ok(value) => json_response(200, &value),
            Err(error) => error_response(&error),
        };
        record(response.status().as_str());
        response
    };
    if user_id != "me" && !user_id.eq_ignore_ascii_case(&user) {
        return Ok(respond(Err(api_error(
            403,
            "forbidden",
            format!("Delegation denied for {user}"),
        ))));
    }
    if lock(&shared.limiter).enter(&user).is_err() {
        return Ok(respond(Err(api_error(
            429,
            "rateLimitExceeded",
            "Too many concurrent requests for user",
        ))));
    }
    let _in_flight = InFlight {
        shared: Arc::clone(shared),
        user: user.clone(),
    };

    // 404new only applies to messages.get of a message delivered moments ago; for any other
    // request the pick means "no fault".
    let fault = lock(&shared.faults)
        .pick()
        .filter(|kind| match (kind, &method) {
            (FaultKind::NewMessageNotFound, GmailMethod::MessagesGet(id)) => {
                lock(&shared.mailboxes)
                    .get(&user)
                    .and_then(|mailbox| mailbox.get(id)?.delivered_at)
                    .is_some_and(|at| at.elapsed() < NEW_MESSAGE_HIDDEN)
            }
            (FaultKind::NewMessageNotFound, _) => false,
            _ => true,
        });
    if let Some(kind) = fault {
        bump(
            |stats| &mut stats.faults_injected,
            format!("{name} {}", kind.name()),
        );
    }
    let canned = match fault {
        Some(FaultKind::ServerError500Json) => api_error(500, "backendError", "Backend Error"),
        Some(FaultKind::TooManyRequests429) => api_error(
            429,
            "rateLimitExceeded",
            "Resource has been exhausted (e.g. check quota).",
        ),
        Some(FaultKind::RateLimit403) => {
            api_error(403, "userRateLimitExceeded", "User-rate limit exceeded.")
        }
        Some(FaultKind::NewMessageNotFound) => not_found(),
        Some(FaultKind::Unavailable503Html) => {
            record("503");
            return Ok(plain_response(
                503,
                "text/html; charset=UTF-8",
                UNAVAILABLE_HTML,
            ));
        }
        Some(FaultKind::DropConnection) => return Err(DroppedByFault),
        Some(FaultKind::TruncatedBody) => {
            record("200");
            let full = match answer(shared, &grant, &method, params) {
                Ok(value) => pretty(&value),
                Err(error) => pretty(&error_json(&error)),
            };
            return Ok(truncated_response(full));
        }
        Some(FaultKind::SlowResponse) | None => {
            if fault.is_some() {
                tokio::time::sleep(SLOW_RESPONSE).await;
            }
            return Ok(respond(charge_and_answer(shared, &grant, &method, params)));
        }
    };
    Ok(respond(Err(canned)))
}

/// Charges the method's cost (a rejection costs nothing) and answers it.
fn charge_and_answer(
    shared: &Shared,
    grant: &AccessGrant,
    method: &GmailMethod,
    params: &Params,
) -> Result<Value, ApiError> {
    let costs = &shared.config.costs;
    let cost = match method {
        GmailMethod::Profile => costs.get_profile,
        GmailMethod::LabelsList => costs.labels_list,
        GmailMethod::HistoryList => costs.history_list,
        GmailMethod::MessagesList => costs.messages_list,
        GmailMethod::MessagesGet(_) => costs.messages_get,
        GmailMethod::Watch(_) => costs.watch,
        GmailMethod::Stop => costs.stop,
        GmailMethod::MessagesModify(..) => costs.messages_modify,
        GmailMethod::ThreadsModify(..) => costs.threads_modify,
        GmailMethod::LabelsCreate(_) => costs.labels_create,
    };
    let charged = lock(&shared.limiter).charge(&grant.user, method.name(), cost, Instant::now());
    if let Err(rejection) = charged {
        let mut error = api_error(429, "rateLimitExceeded", QUOTA_MESSAGE);
        if let Rejection::QuotaExceeded { retry_after_secs } = rejection {
            error.retry_after_secs = retry_after_secs;
        }
        return Err(error);
    }
    answer(shared, grant, method, params)
}

/// The method's JSON answer (`Value::Null` for an empty one). Pure with respect to quota and
/// faults.
fn answer(
    shared: &Shared,
    grant: &AccessGrant,
    method: &GmailMethod,
    params: &Params,
) -> Result<Value, ApiError> {
    match params.get("alt") {
        None | Some("json") => {}
        Some(other) => return Err(invalid_argument(format!("Invalid value for alt: {other}"))),
    }
    let mailboxes = lock(&shared.mailboxes);
    let mailbox = mailboxes.get(&grant.user).ok_or_else(not_found)?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    match method {
        GmailMethod::Profile => Ok(json!({
            "emailAddress": mailbox.primary_address(),
            "messagesTotal": mailbox.messages_total(),
            "threadsTotal": mailbox.threads_total(),
            "historyId": mailbox.history_id().to_string(),
        })),
        GmailMethod::LabelsList => {
            let mut labels: Vec<Value> = SYSTEM_LABELS
                .iter()
                .map(|id| json!({"id": id, "name": id, "type": "system"}))
                .collect();
            labels.extend(mailbox.user_labels().iter().map(labels::user_label_json));
            Ok(json!({ "labels": labels }))
        }
        GmailMethod::MessagesList => {
            let label_ids = params.all("labelIds");
            if let Some(unknown) = label_ids.iter().find(|label| !mailbox.is_label_id(label)) {
                return Err(invalid_argument(format!("Invalid label: {unknown}")));
            }
            let query = match params.get("q").filter(|q| !q.trim().is_empty()) {
                Some(_) if grant.metadata_only => {
                    return Err(api_error(
                        403,
                        "forbidden",
                        "Metadata scope does not support 'q' parameter",
                    ));
                }
                Some(q) => Some(Query::parse(q)),
                None => None,
            };
            let request = ListRequest {
                query: query.as_ref(),
                label_ids,
                include_spam_trash: params.flag("includeSpamTrash")?,
                max_results: params.max_results()?,
                page_token: params.get("pageToken").filter(|token| !token.is_empty()),
                now_ms,
            };
            let page = mailbox.list(&request).map_err(mailbox_error)?;
            let mut body = serde_json::Map::new();
            if !page.messages.is_empty() {
                body.insert(
                    "messages".into(),
                    page.messages
                        .iter()
                        .map(|message| json!({"id": message.id, "threadId": message.thread_id}))
                        .collect(),
                );
            }
            if let Some(token) = page.next_page_token {
                body.insert("nextPageToken".into(), token.into());
            }
            body.insert(
                "resultSizeEstimate".into(),
                page.result_size_estimate.into(),
            );
            Ok(Value::Object(body))
        }
        GmailMethod::MessagesGet(id) => {
            // Rendering (base64, MIME parsing) happens after the lock is released.
            let message = mailbox.get(id).ok_or_else(not_found)?.clone();
            drop(mailboxes);
            let format = params.get("format").unwrap_or("full").to_ascii_lowercase();
            if grant.metadata_only && (format == "raw" || format == "full") {
                return Err(api_error(
                    403,
                    "forbidden",
                    format!(
                        "Metadata scope doesn't allow format {}",
                        format.to_uppercase()
                    ),
                ));
            }
            message_json(&message, &format, &params.all("metadataHeaders"))
        }
        GmailMethod::Watch(body) => {
            drop(mailboxes);
            watch::start(shared, grant, body)
        }
        GmailMethod::Stop => {
            drop(mailboxes);
            watch::stop(shared, grant)
        }
        // The methods that change the mailbox take its lock again, to write.
        GmailMethod::MessagesModify(id, body) => {
            drop(mailboxes);
            labels::modify(shared, grant, LabelTarget::Message(id), body)
        }
        GmailMethod::ThreadsModify(id, body) => {
            drop(mailboxes);
            labels::modify(shared, grant, LabelTarget::Thread(id), body)
        }
        GmailMethod::LabelsCreate(body) => {
            drop(mailboxes);
            labels::create(shared, grant, body)
        }
        GmailMethod::HistoryList => {
            let start = params
                .get("startHistoryId")
                .ok_or_else(|| invalid_argument("Missing required parameter: startHistoryId"))?;
            let start_history_id = start
                .parse::<u64>()
                .map_err(|_| invalid_argument(format!("Invalid startHistoryId: {start}")))?;
            let types = params.all("historyTypes");
            if let Some(unknown) = types
                .iter()
                .find(|kind| !HISTORY_TYPES.contains(&kind.as_str()))
            {
                return Err(invalid_argument(format!(
                    "Invalid value for historyTypes: {unknown}"
                )));
            }
            let label_id = params.get("labelId").filter(|label| !label.is_empty());
            if let Some(label) = label_id.filter(|label| !mailbox.is_label_id(label)) {
                return Err(invalid_argument(format!("Invalid label: {label}")));
            }
            let request = HistoryRequest {
                start_history_id,
                types,
                label_id,
                max_results: params.max_results()?,
                page_token: params.get("pageToken").filter(|token| !token.is_empty()),
            };
            let page = mailbox.history(&request).map_err(mailbox_error)?;
            let mut body = serde_json::Map::new();
            if !page.records.is_empty() {
                let records: Vec<Value> = page
                    .records
                    .iter()
                    .map(|record| {
                        let message = labels::message_ref(
                            &record.message_id,
                            &record.thread_id,
                            &record.label_ids,
                        );
                        let (field, change) = match &record.change {
                            HistoryChange::MessageAdded => {
                                ("messagesAdded", json!({ "message": message }))
                            }
                            HistoryChange::LabelsAdded(changed) => (
                                "labelsAdded",
                                json!({"message": message, "labelIds": changed}),
                            ),
                            HistoryChange::LabelsRemoved(changed) => (
                                "labelsRemoved",
                                json!({"message": message, "labelIds": changed}),
                            ),
                        };
                        json!({
                            "id": record.id.to_string(),
                            "messages": [{"id": record.message_id, "threadId": record.thread_id}],
                            field: [change],
                        })
                    })
                    .collect();
                body.insert("history".into(), records.into());
            }
            if let Some(token) = page.next_page_token {
                body.insert("nextPageToken".into(), token.into());
            }
            body.insert("historyId".into(), page.history_id.to_string().into());
            Ok(Value::Object(body))
        }
    }
}

fn mailbox_error(error: MailboxError) -> ApiError {
    match error {
        MailboxError::InvalidPageToken => invalid_argument("Invalid pageToken"),
        MailboxError::HistoryExpired => not_found(),
        MailboxError::LabelNameTaken => {
            api_error(409, "alreadyExists", "Label name exists or conflicts")
        }
        MailboxError::InvalidLabelName => invalid_argument("Invalid label name"),
    }
}

/// `messages.get` in one of Gmail's four formats.
fn message_json(
    message: &Message,
    format: &str,
    metadata_headers: &[String],
) -> Result<Value, ApiError> {
    let mut body = serde_json::Map::new();
    body.insert("id".into(), message.id.clone().into());
    body.insert("threadId".into(), message.thread_id.clone().into());
    if !message.label_ids.is_empty() {
        body.insert("labelIds".into(), message.label_ids.clone().into());
    }
    if !message.snippet.is_empty() {
        body.insert("snippet".into(), message.snippet.clone().into());
    }
    body.insert("historyId".into(), message.history_id.to_string().into());
    body.insert(
        "internalDate".into(),
        message.internal_date_ms.to_string().into(),
    );
    body.insert("sizeEstimate".into(), message.size_estimate().into());
    match format {
        "minimal" => {}
        // Padded base64url: the one place Gmail pads, and what google-gmail1 expects.
        "raw" => {
            body.insert("raw".into(), URL_SAFE.encode(&message.raw).into());
        }
        "metadata" => {
            let headers: Vec<Value> = message
                .headers
                .iter()
                .filter(|(name, _)| {
                    metadata_headers.is_empty()
                        || metadata_headers
                            .iter()
                            .any(|wanted| wanted.eq_ignore_ascii_case(name))
                })
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            body.insert("payload".into(), json!({ "headers": headers }));
        }
        "full" => {
            let payload = match mailparse::parse_mail(&message.raw) {
                Ok(mail) => part_json(&mail, String::new()),
                Err(_) => {
                    json!({"partId": "", "mimeType": "text/plain", "filename": "", "headers": [], "body": {"size": 0}})
                }
            };
            body.insert("payload".into(), payload);
        }
        other => {
            return Err(invalid_argument(format!(
                "Invalid value for format: {other}"
            )));
        }
    }
    Ok(Value::Object(body))
}

/// One MIME part as Gmail's `MessagePart`. Body data is unpadded base64url like real Gmail;
/// attachments are inlined as `data` because the sandbox has no `attachments.get`.
fn part_json(part: &mailparse::ParsedMail<'_>, part_id: String) -> Value {
    let headers: Vec<Value> = part
        .headers
        .iter()
        .map(|header| json!({"name": header.get_key(), "value": header.get_value()}))
        .collect();
    let filename = part
        .get_content_disposition()
        .params
        .get("filename")
        .or_else(|| part.ctype.params.get("name"))
        .cloned()
        .unwrap_or_default();
    let mut value = json!({"partId": part_id, "mimeType": part.ctype.mimetype, "filename": filename, "headers": headers});
    if part.subparts.is_empty() {
        let data = part.get_body_raw().unwrap_or_default();
        value["body"] = json!({"size": data.len(), "data": URL_SAFE_NO_PAD.encode(&data)});
    } else {
        value["body"] = json!({"size": 0});
        let prefix = if part_id.is_empty() {
            String::new()
        } else {
            format!("{part_id}.")
        };
        let parts: Vec<Value> = part
            .subparts
            .iter()
            .enumerate()
            .map(|(index, sub)| part_json(sub, format!("{prefix}{index}")))
            .collect();
        value["parts"] = parts.into();
    }
    value
}

/// `POST /token`, answering Google's flat OAuth JSON.
async fn token(
    shared: &Shared,
    request: Request<Incoming>,
    local: Option<SocketAddr>,
) -> Response<Body> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let body = match read_body(request.into_body(), MAX_FORM_BYTES).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let mut token_urls: Vec<String> = host
        .iter()
        .map(|host| format!("http://{host}/token"))
        .collect();
    if let Some(local) = local {
        token_urls.push(format!("http://{local}/token"));
        token_urls.push(format!("http://localhost:{}/token", local.port()));
    }
    let result = lock(&shared.oauth).token(
        &form,
        &token_urls,
        Instant::now(),
        chrono::Utc::now().timestamp(),
    );
    let (status, value) = match result {
        Ok(answer) => (200, serde_json::to_value(answer)),
        Err(error) => (error.status, serde_json::to_value(&error)),
    };
    let grant = form.get("grant_type").map_or("none", String::as_str);
    *lock(&shared.limiter)
        .stats
        .token_requests
        .entry(format!("{grant} {status}"))
        .or_default() += 1;
    let mut response = json_response(status, &value.unwrap_or_default());
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
    );
    response
}

fn consent(shared: &Shared, params: &Params) -> Response<Body> {
    match lock(&shared.oauth).consent(&params.0) {
        ConsentAnswer::Redirect(location) => match HeaderValue::from_str(&location) {
            Ok(location) => {
                let mut response = plain_response(302, "text/html; charset=UTF-8", "");
                response.headers_mut().insert(header::LOCATION, location);
                response
            }
            Err(_) => plain_response(
                400,
                "text/html; charset=UTF-8",
                "Error 400: invalid redirect_uri",
            ),
        },
        ConsentAnswer::Page { status, html } => {
            plain_response(status, "text/html; charset=UTF-8", html)
        }
    }
}

/// The unauthenticated `/sandbox/` routes, for tests on loopback only.
async fn control(
    shared: &Arc<Shared>,
    method: &Method,
    action: &str,
    params: &Params,
    request: Request<Incoming>,
) -> Response<Body> {
    let sandbox = super::server::Sandbox {
        shared: Arc::clone(shared),
    };
    let user = params.get("user").unwrap_or("").to_ascii_lowercase();
    let known_user = lock(&shared.mailboxes).contains_key(&user);
    let failure = |status: u16, text: &str| json_response(status, &json!({ "error": text }));
    match (method, action) {
        (&Method::GET, "stats") => json_response(
            200,
            &serde_json::to_value(sandbox.stats()).unwrap_or_default(),
        ),
        (&Method::POST, "faults") => {
            let body = match read_body(request.into_body(), MAX_FORM_BYTES).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            match parse_fault_config(&body) {
                Ok(faults) => {
                    sandbox.set_faults(faults);
                    json_response(200, &json!({"ok": true}))
                }
                Err(text) => failure(400, &text),
            }
        }
        (&Method::GET, "push") => json_response(
            200,
            &serde_json::to_value(sandbox.push_faults()).unwrap_or_default(),
        ),
        (&Method::POST, "push") => {
            let body = match read_body(request.into_body(), MAX_FORM_BYTES).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            match parse_push_fault_update(&body) {
                Ok(update) => json_response(
                    200,
                    &serde_json::to_value(sandbox.update_push_faults(&update)).unwrap_or_default(),
                ),
                Err(text) => failure(400, &text),
            }
        }
        (&Method::POST, "expire-watches") => {
            let expired = sandbox.expire_watches();
            json_response(200, &json!({"ok": true, "expired": expired}))
        }
        (&Method::POST, _) if !known_user => failure(404, "unknown sandbox user"),
        (&Method::POST, "deliver") => {
            let raw = match read_body(request.into_body(), MAX_DELIVERY_BYTES).await {
                Ok(body) => body.to_vec(),
                Err(response) => return response,
            };
            let labels = params
                .get("labels")
                .filter(|labels| !labels.is_empty())
                .map(|labels| labels.split(',').map(str::to_string).collect());
            match sandbox.deliver_message(&user, raw, labels) {
                Ok(delivered) => json_response(
                    200,
                    &json!({ "id": delivered.id, "threadId": delivered.thread_id }),
                ),
                Err(error) => failure(404, &error.to_string()),
            }
        }
        (&Method::POST, "label") => {
            let target = match (
                params.get("thread").filter(|id| !id.is_empty()),
                params.get("message").filter(|id| !id.is_empty()),
            ) {
                (Some(thread), None) => LabelTarget::Thread(thread),
                (None, Some(message)) => LabelTarget::Message(message),
                _ => return failure(400, "label needs thread=THREAD_ID or message=MESSAGE_ID"),
            };
            let names = |key: &str| -> Vec<String> {
                params
                    .all(key)
                    .iter()
                    .flat_map(|names| names.split(','))
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(str::to_string)
                    .collect()
            };
            let (add, remove) = (names("add"), names("remove"));
            if add.is_empty() && remove.is_empty() {
                return failure(400, "label needs add=NAME or remove=NAME (comma-separated)");
            }
            match sandbox.change_labels(&user, target, &add, &remove) {
                Ok(changed) => json_response(
                    200,
                    &json!({"ok": true, "historyId": changed.history_id.to_string(), "changed": changed.changed}),
                ),
                Err(
                    error @ (SandboxError::UnknownUser(_)
                    | SandboxError::UnknownMessage(_)
                    | SandboxError::UnknownThread(_)),
                ) => failure(404, &error.to_string()),
                Err(error) => failure(400, &error.to_string()),
            }
        }
        (&Method::POST, "rename") => match params.get("address") {
            Some(address) if !address.is_empty() => {
                sandbox.rename(&user, address);
                json_response(200, &json!({"ok": true}))
            }
            _ => failure(400, "rename needs address=NEW_PRIMARY_ADDRESS"),
        },
        (&Method::POST, "revoke") => {
            sandbox.revoke(&user);
            json_response(200, &json!({"ok": true}))
        }
        (&Method::POST, "expire-history") => {
            sandbox.expire_history(&user);
            json_response(
                200,
                &json!({"ok": true, "historyId": sandbox.history_id(&user).unwrap_or(0).to_string()}),
            )
        }
        (&Method::POST, "refresh-token") => {
            let client_id = params.get("client_id").unwrap_or("");
            json_response(
                200,
                &json!({ "refresh_token": sandbox.issue_refresh_token(&user, client_id) }),
            )
        }
        _ => failure(404, "unknown sandbox control route"),
    }
}

/// `{"rate":0.2,"kinds":["429","500"]}`.
fn parse_fault_config(body: &[u8]) -> Result<FaultConfig, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        rate: f64,
        #[serde(default)]
        kinds: Vec<String>,
    }
    let raw: Raw =
        serde_json::from_slice(body).map_err(|error| format!("invalid fault config: {error}"))?;
    if !(0.0..=1.0).contains(&raw.rate) {
        return Err("rate must be between 0.0 and 1.0".to_string());
    }
    let kinds = raw
        .kinds
        .iter()
        .map(|kind| kind.parse::<FaultKind>().map_err(|error| error.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FaultConfig {
        rate: raw.rate,
        kinds,
    })
}

/// `{"drop_rate":0.5,"duplicate_rate":0,"delay_ms":200,"pull_failure":503,"watch_forbidden":false}`,
/// every field optional (an empty body changes nothing); `"pull_failure":null` clears it.
fn parse_push_fault_update(body: &[u8]) -> Result<PushFaultUpdate, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(PushFaultUpdate::default());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|error| format!("invalid push faults: {error}"))?;
    let Value::Object(fields) = value else {
        return Err("push faults must be a JSON object".to_string());
    };
    let rate = |name: &str, value: &Value| match value.as_f64() {
        Some(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{name} must be a number between 0.0 and 1.0")),
    };
    let mut update = PushFaultUpdate::default();
    for (name, value) in &fields {
        match name.as_str() {
            "drop_rate" => update.drop_rate = Some(rate(name, value)?),
            "duplicate_rate" => update.duplicate_rate = Some(rate(name, value)?),
            "delay_ms" => {
                update.delay_ms = Some(
                    value
                        .as_u64()
                        .ok_or("delay_ms must be a whole number of milliseconds")?,
                )
            }
            "pull_failure" => {
                update.pull_failure = Some(match value {
                    Value::Null => None,
                    _ => Some(
                        value
                            .as_u64()
                            .and_then(|status| u16::try_from(status).ok())
                            .and_then(PullFailure::from_status)
                            .ok_or("pull_failure must be null, 403, 404 or 503")?,
                    ),
                })
            }
            "watch_forbidden" => {
                update.watch_forbidden = Some(
                    value
                        .as_bool()
                        .ok_or("watch_forbidden must be true or false")?,
                )
            }
            other => return Err(format!("unknown push fault {other:?}")),
        }
    }
    Ok(update)
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, Response<Body>> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(json_response(
            413,
            &json!({"error": "request body too large or unreadable"}),
        )),
    }
}

fn error_json(error: &ApiError) -> Value {
    let status = match error.status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    json!({"error": {
        "code": error.status,
        "message": error.message,
        "errors": [{"message": error.message, "domain": "global", "reason": error.reason}],
        "status": status,
    }})
}

fn error_response(error: &ApiError) -> Response<Body> {
    let mut response = json_response(error.status, &error_json(error));
    if let Some(seconds) = error.retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Google pretty-prints JSON unless asked not to; clients must cope with either.
fn pretty(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

fn json_response(status: u16, value: &Value) -> Response<Body> {
    plain_response(status, JSON, pretty(value))
}

fn plain_response(
    status: u16,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A 200 that announces `full.len()` bytes, sends half, then fails, so hyper closes the
/// connection and the client sees an incomplete message.
fn truncated_response(full: Vec<u8>) -> Response<Body> {
    let announced = full.len() + 1;
    let sent = Bytes::from(full).slice(..announced / 2);
    let mut response = Response::new(BodyExt::boxed(TruncatedBody {
        chunk: Some(sent),
        pause: Box::pin(tokio::time::sleep(Duration::from_millis(100))),
    }));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(announced));
    response
}

/// Sends its chunk, waits a moment so hyper flushes the head and the chunk to the socket, then
/// fails, which makes hyper close the connection short of the announced length.
struct TruncatedBody {
    chunk: Option<Bytes>,
    pause: Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for TruncatedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(chunk) = self.chunk.take() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match self.pause.as_mut().poll(context) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Some(Err("body truncated by fault injection".into()))),
        }
    }
}

/// Decodes `%XX` in a path segment (an address may arrive as `a%40b.com`); `+` stays `+`.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_keeps_plus_and_survives_garbage() {
        assert_eq!(percent_decode("a%40b.com"), "a@b.com");
        assert_eq!(percent_decode("a+b%4"), "a+b%4");
        assert_eq!(percent_decode("%zz%e9"), "%zz\u{fffd}");
    }

    #[test]
    fn fault_config_bodies() {
        let config =
            parse_fault_config(br#"{"rate":0.2,"kinds":["429","500","drop"]}"#).expect("valid");
        assert_eq!(
            config.kinds,
            [
                FaultKind::TooManyRequests429,
                FaultKind::ServerError500Json,
                FaultKind::DropConnection
            ]
        );
        assert!(parse_fault_config(br#"{"rate":2,"kinds":[]}"#).is_err());
        assert!(parse_fault_config(br#"{"rate":0.5,"kinds":["boom"]}"#).is_err());
        assert!(parse_fault_config(b"not json").is_err());
    }

    #[test]
    fn push_fault_bodies() {
        assert_eq!(parse_push_fault_update(b""), Ok(PushFaultUpdate::default()));
        assert_eq!(
            parse_push_fault_update(
                br#"{"drop_rate":0.5,"duplicate_rate":1,"delay_ms":200,"pull_failure":503,"watch_forbidden":true}"#
            ),
            Ok(PushFaultUpdate {
                drop_rate: Some(0.5),
                duplicate_rate: Some(1.0),
                delay_ms: Some(200),
                pull_failure: Some(Some(PullFailure::Unavailable503)),
                watch_forbidden: Some(true),
            })
        );
        assert_eq!(
            parse_push_fault_update(br#"{"pull_failure":null}"#)
                .expect("clears")
                .pull_failure,
            Some(None)
        );
        for bad in [
            &br#"{"drop_rate":2}"#[..],
            br#"{"pull_failure":500}"#,
            br#"{"delay_ms":-1}"#,
            br#"{"watch_forbidden":"yes"}"#,
            br#"{"typo":1}"#,
            b"[]",
            b"nope",
        ] {
            assert!(
                parse_push_fault_update(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn error_bodies_have_googles_shape() {
        let value = error_json(&api_error(401, "authError", AUTH_MESSAGE));
        assert_eq!(value["error"]["code"], 401);
        assert_eq!(value["error"]["status"], "UNAUTHENTICATED");
        assert_eq!(value["error"]["errors"][0]["reason"], "authError");
        assert_eq!(value["error"]["errors"][0]["domain"], "global");
    }
}
