//! Gmail push on the wire: the `users.watch` body and answer, `users.stop`, and the data of
//! the Pub/Sub message a watched mailbox's change publishes. Auth, quota and faults have been
//! applied by the caller, as for every Gmail method.

use serde_json::{Value, json};

use super::super::config::resource_name;
use super::super::oauth::AccessGrant;
use super::super::push::{LabelFilter, WATCH_LIFETIME_MS, Watch};
use super::super::server::{Shared, lock};
use super::{ApiError, api_error, invalid_argument, not_found};

const TOPIC_FORM: &str = "Invalid topicName does not match projects/SOME-PROJECT/topics/SOME-TOPIC";

/// The body of `users.watch`. `labelFilterAction` is the older name of `labelFilterBehavior`;
/// Google still accepts both.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WatchRequest {
    topic_name: Option<String>,
    label_ids: Option<Vec<String>>,
    label_filter_behavior: Option<String>,
    label_filter_action: Option<String>,
}

/// `POST users/{u}/watch`: checks the topic (it must exist, and Gmail must be allowed to
/// publish to it), then starts or replaces the mailbox's watch for seven days.
pub(super) fn start(shared: &Shared, grant: &AccessGrant, body: &[u8]) -> Result<Value, ApiError> {
    let request: WatchRequest = if body.iter().all(u8::is_ascii_whitespace) {
        WatchRequest::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|error| invalid_argument(format!("Invalid JSON payload received. {error}")))?
    };
    let topic = request.topic_name.unwrap_or_default();
    let short_name = resource_name(&topic, "topics").ok_or_else(|| invalid_argument(TOPIC_FORM))?;
    let filter = match request
        .label_filter_behavior
        .as_deref()
        .or(request.label_filter_action.as_deref())
    {
        None => LabelFilter::Include,
        Some(text) => LabelFilter::parse(text).ok_or_else(|| {
            invalid_argument(format!(
                "Invalid value at 'label_filter_behavior', \"{text}\""
            ))
        })?,
    };
    if !lock(&shared.pubsub).has_topic(&topic) {
        return Err(api_error(
            404,
            "notFound",
            format!("Resource not found (resource={short_name})."),
        ));
    }
    if lock(&shared.push_faults).config().watch_forbidden {
        return Err(api_error(
            403,
            "forbidden",
            format!(
                "Error sending test message to Cloud PubSub {topic} : User not authorized to perform this action."
            ),
        ));
    }
    let label_ids = request.label_ids.unwrap_or_default();
    let history_id = {
        let mailboxes = lock(&shared.mailboxes);
        let mailbox = mailboxes.get(&grant.user).ok_or_else(not_found)?;
        if let Some(unknown) = label_ids.iter().find(|label| !mailbox.is_label_id(label)) {
            return Err(invalid_argument(format!("Invalid label: {unknown}")));
        }
        mailbox.history_id()
    };
    let expiration_ms = chrono::Utc::now().timestamp_millis() + WATCH_LIFETIME_MS;
    lock(&shared.watches).start(
        &grant.user,
        Watch {
            topic,
            label_ids,
            filter,
            expiration_ms,
        },
    );
    Ok(json!({
        "historyId": history_id.to_string(),
        "expiration": expiration_ms.to_string(),
    }))
}

/// `POST users/{u}/stop`: 204 whether or not a watch existed.
pub(super) fn stop(shared: &Shared, grant: &AccessGrant) -> Result<Value, ApiError> {
    lock(&shared.watches).stop(&grant.user);
    Ok(Value::Null)
}

/// The `data` of a push notification: `{"emailAddress":"u@x","historyId":N}` with the history
/// id as a JSON number (unlike everywhere else in Gmail). Pub/Sub's REST answer carries it
/// base64-encoded.
pub(crate) fn notification_data(email_address: &str, history_id: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"emailAddress": email_address, "historyId": history_id}))
        .expect("a JSON object of a string and a number serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_data_has_a_numeric_history_id() {
        let data = notification_data("me@x.com", 12345);
        let value: Value = serde_json::from_slice(&data).expect("json");
        assert_eq!(
            value,
            json!({"emailAddress": "me@x.com", "historyId": 12345})
        );
    }
}
