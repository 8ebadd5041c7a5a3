//! Label changes on the wire: `messages.modify`, `threads.modify` and `labels.create`, and the
//! message reference Gmail nests in history records and modify answers. Auth, quota and
//! faults have been applied by the caller, as for every Gmail method.

use serde_json::{Value, json};

use super::super::mailbox::{LabelTarget, UserLabel};
use super::super::oauth::AccessGrant;
use super::super::server::{Shared, lock};
use super::{ApiError, invalid_argument, mailbox_error, not_found};

/// The body of `messages.modify` and `threads.modify`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ModifyRequest {
    #[serde(default)]
    add_label_ids: Vec<String>,
    #[serde(default)]
    remove_label_ids: Vec<String>,
}

/// The fields of a `labels.create` body. Only `name` matters to the sandbox; the display
/// settings a client may send are accepted and ignored, anything else is refused as Google
/// refuses unknown fields.
const LABEL_FIELDS: [&str; 5] = [
    "name",
    "type",
    "messageListVisibility",
    "labelListVisibility",
    "color",
];

fn invalid_json(error: impl std::fmt::Display) -> ApiError {
    invalid_argument(format!("Invalid JSON payload received. {error}"))
}

/// `{"id","threadId","labelIds"}`, `labelIds` left out when empty as Gmail leaves out every
/// empty field.
pub(super) fn message_ref(id: &str, thread_id: &str, label_ids: &[String]) -> Value {
    let mut value = json!({"id": id, "threadId": thread_id});
    if !label_ids.is_empty() {
        value["labelIds"] = label_ids.into();
    }
    value
}

/// A user label as `labels.list` and `labels.create` report it.
pub(super) fn user_label_json(label: &UserLabel) -> Value {
    json!({"id": label.id, "name": label.name, "type": "user", "messageListVisibility": "show", "labelListVisibility": "labelShow"})
}

/// `POST users/{u}/messages/{id}/modify` and `POST users/{u}/threads/{id}/modify`: the
/// message, or the thread with its messages, as they are afterwards. A watched mailbox is
/// notified when something changed.
pub(super) fn modify(
    shared: &Shared,
    grant: &AccessGrant,
    target: LabelTarget<'_>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let request: ModifyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ModifyRequest::default()
    } else {
        serde_json::from_slice(body).map_err(invalid_json)?
    };
    let (add, remove) = (request.add_label_ids, request.remove_label_ids);
    if add.is_empty() && remove.is_empty() {
        return Err(invalid_argument("No label add or removes specified"));
    }
    let (answer, email_address, history_id, touched) = {
        let mut mailboxes = lock(&shared.mailboxes);
        let mailbox = mailboxes.get_mut(&grant.user).ok_or_else(not_found)?;
        if let Some(unknown) = add
            .iter()
            .chain(&remove)
            .find(|label| !mailbox.is_label_id(label))
        {
            return Err(invalid_argument(format!("Invalid label: {unknown}")));
        }
        if let Some(both) = add.iter().find(|label| remove.contains(label)) {
            return Err(invalid_argument(format!(
                "Label {both} cannot be both added and removed"
            )));
        }
        let message_ids = mailbox.target_messages(target).ok_or_else(not_found)?;
        let changed = mailbox.modify_labels(&message_ids, &add, &remove);
        let messages: Vec<Value> = message_ids
            .iter()
            .filter_map(|id| mailbox.get(id))
            .map(|message| message_ref(&message.id, &message.thread_id, &message.label_ids))
            .collect();
        let answer = match target {
            LabelTarget::Message(_) => messages.into_iter().next().ok_or_else(not_found)?,
            LabelTarget::Thread(thread_id) => json!({"id": thread_id, "messages": messages}),
        };
        let touched: Vec<Vec<String>> = changed
            .into_iter()
            .map(|message| message.touched_label_ids)
            .collect();
        (
            answer,
            mailbox.primary_address().to_string(),
            mailbox.history_id(),
            touched,
        )
    };
    if !touched.is_empty() {
        shared.publish_change(&grant.user, &email_address, history_id, &touched);
    }
    Ok(answer)
}

/// `POST users/{u}/labels`: a new user label. A name taken by any label, ignoring case,
/// answers 409 `alreadyExists`.
pub(super) fn create(shared: &Shared, grant: &AccessGrant, body: &[u8]) -> Result<Value, ApiError> {
    let fields = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice(body).map_err(invalid_json)? {
            Value::Object(fields) => fields,
            _ => return Err(invalid_json("The body must be a JSON object.")),
        }
    };
    if let Some(unknown) = fields
        .keys()
        .find(|key| !LABEL_FIELDS.contains(&key.as_str()))
    {
        return Err(invalid_json(format!(
            "Unknown name \"{unknown}\": Cannot find field."
        )));
    }
    // A missing or non-string name is as unusable as a blank one.
    let name = fields.get("name").and_then(Value::as_str).unwrap_or("");
    let mut mailboxes = lock(&shared.mailboxes);
    let mailbox = mailboxes.get_mut(&grant.user).ok_or_else(not_found)?;
    let label = mailbox.create_label(name).map_err(mailbox_error)?;
    Ok(user_label_json(&label))
}
