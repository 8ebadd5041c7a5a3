//! Gmail's push notifications, pulled from a Cloud Pub/Sub subscription through
//! google-pubsub1 (REST), with the service account's own token (no subject: the account
//! itself, with the Pub/Sub Subscriber role).
//!
//! A notification is base64 JSON `{"emailAddress", "historyId"}`: which mailbox changed. Its
//! history id is a hint, never a cursor; the mailbox's sync reads history from its own.

use std::sync::Arc;
use std::time::Duration;

use google_pubsub1::Pubsub;
use google_pubsub1::api::{AcknowledgeRequest, PullRequest, Scope};
use yup_oauth2::ServiceAccountKey;
use yup_oauth2::authenticator::Authenticator;

use super::http::{ApiClient, Connector, OAuthClient};
use crate::config::PushConfig;

/// Notifications asked for per pull; Pub/Sub hands out at most this many at once.
const PULL_BATCH: i32 = 100;

/// How long a pull may take: Pub/Sub holds a pull open while nothing is waiting, and
/// answers well within this when it works.
const PULL_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a pull or an acknowledgement failed, sorted by whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    /// 403: the service account may not read the subscription.
    #[error(
        "Pub/Sub refused the pull ({status}): give the service account the Pub/Sub Subscriber role on the subscription"
    )]
    Forbidden { status: u16 },
    /// 404: there is no such subscription.
    #[error(
        "Pub/Sub has no subscription by that name (404): create it on the topic, or fix [gmail.push] subscription"
    )]
    NoSubscription,
    #[error("Pub/Sub answered {status}")]
    Status { status: u16 },
    #[error("cannot reach Pub/Sub: {0}")]
    Connection(String),
    #[error("Pub/Sub did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot get a Pub/Sub access token: {0}")]
    Token(String),
}

/// One pulled message: its acknowledgement id, and the mailbox it names when it is a
/// readable Gmail notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub ack_id: String,
    pub notification: Result<Notification, MalformedNotification>,
}

/// A mailbox changed: `history_id` is where Gmail's history stood (a hint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub email_address: String,
    pub history_id: Option<u64>,
}

/// A message on the subscription that is not a Gmail notification. What it held is never
/// shown: it could be anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a message on the subscription is not a Gmail notification")]
pub struct MalformedNotification;

impl Notification {
    /// Reads `message.data` (already base64-decoded by the client).
    pub fn decode(data: &[u8]) -> Result<Notification, MalformedNotification> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire {
            email_address: String,
            #[serde(default)]
            history_id: Option<serde_json::Value>,
        }
        let wire: Wire = serde_json::from_slice(data).map_err(|_| MalformedNotification)?;
        // Gmail writes a number; a string is read as well.
        let history_id = match wire.history_id {
            Some(serde_json::Value::Number(number)) => number.as_u64(),
            Some(serde_json::Value::String(text)) => text.parse().ok(),
            _ => None,
        };
        if !wire.email_address.contains('@') {
            return Err(MalformedNotification);
        }
        Ok(Notification {
            email_address: crate::address::normalize(&wire.email_address),
            history_id,
        })
    }
}

/// Pulls and acknowledges on one subscription.
pub struct PubSubClient {
    hub: Pubsub<Connector>,
    subscription: String,
}

impl PubSubClient {
    /// A client for `config`'s subscription with `key`'s own token. Parses the key; sends
    /// nothing.
    pub async fn new(
        config: &PushConfig,
        key: Arc<ServiceAccountKey>,
        api_http: ApiClient,
        oauth_http: OAuthClient,
    ) -> Result<PubSubClient, PubSubError> {
        let authenticator: Authenticator<Connector> =
            yup_oauth2::ServiceAccountAuthenticator::with_client(
                (*key).clone(),
                yup_oauth2::CustomHyperClientBuilder::from(oauth_http),
            )
            .build()
            .await
            .map_err(|error| PubSubError::Token(error.to_string()))?;
        let mut hub = Pubsub::new(api_http, authenticator);
        hub.base_url(config.pubsub_base_url.clone());
        hub.root_url(config.pubsub_base_url.clone());
        Ok(PubSubClient {
            hub,
            subscription: config.subscription.clone(),
        })
    }

    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The notifications waiting (none when Pub/Sub had nothing within its wait).
    pub async fn pull(&self) -> Result<Vec<Pulled>, PubSubError> {
        let request = PullRequest {
            max_messages: Some(PULL_BATCH),
            ..Default::default()
        };
        let call = self
            .hub
            .projects()
            .subscriptions_pull(request, &self.subscription)
            .add_scope(Scope::Full)
            .doit();
        let (_, answer) = tokio::time::timeout(PULL_TIMEOUT, call)
            .await
            .map_err(|_| PubSubError::Timeout(PULL_TIMEOUT))?
            .map_err(classify)?;
        Ok(answer
            .received_messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|received| {
                let ack_id = received.ack_id?;
                let data = received
                    .message
                    .and_then(|message| message.data)
                    .unwrap_or_default();
                Some(Pulled {
                    ack_id,
                    notification: Notification::decode(&data),
                })
            })
            .collect())
    }

    /// Tells Pub/Sub these are handled, so they are not delivered again.
    pub async fn acknowledge(&self, ack_ids: Vec<String>) -> Result<(), PubSubError> {
        if ack_ids.is_empty() {
            return Ok(());
        }
        let call = self
            .hub
            .projects()
            .subscriptions_acknowledge(
                AcknowledgeRequest {
                    ack_ids: Some(ack_ids),
                },
                &self.subscription,
            )
            .add_scope(Scope::Full)
            .doit();
        tokio::time::timeout(PULL_TIMEOUT, call)
            .await
            .map_err(|_| PubSubError::Timeout(PULL_TIMEOUT))?
            .map_err(classify)?;
        Ok(())
    }
}

fn classify(error: google_pubsub1::Error) -> PubSubError {
    use google_pubsub1::Error;
    let status = |status: u16| match status {
        401 | 403 => PubSubError::Forbidden { status },
        404 => PubSubError::NoSubscription,
        status => PubSubError::Status { status },
    };
    match error {
        Error::Failure(response) => status(response.status().as_u16()),
        Error::BadRequest(body) => status(
            body["error"]["code"]
                .as_u64()
                .and_then(|code| u16::try_from(code).ok())
                .unwrap_or(400),
        ),
        Error::HttpError(error) => PubSubError::Connection(error.to_string()),
        Error::Io(error) => PubSubError::Connection(error.to_string()),
        Error::MissingToken(error) => PubSubError::Token(error.to_string()),
        other => PubSubError::Connection(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gmail writes the history id as a number; duplicates and reorderings are harmless
    /// because it is only a hint; anything else on the subscription is refused whole.
    #[test]
    fn notifications_are_read_as_gmail_writes_them() {
        /// The data, and the mailbox and history id read from it (`None`: refused).
        type Case = (&'static str, Option<(&'static str, Option<u64>)>);
        let cases: &[Case] = &[
            (
                r#"{"emailAddress":"Dave@ABCorp.com","historyId":9876}"#,
                Some(("dave@abcorp.com", Some(9876))),
            ),
            (
                r#"{"emailAddress":"dave@abcorp.com","historyId":"12"}"#,
                Some(("dave@abcorp.com", Some(12))),
            ),
            (
                r#"{"emailAddress":"dave@abcorp.com"}"#,
                Some(("dave@abcorp.com", None)),
            ),
            (r#"{"historyId":1}"#, None),
            (r#"{"emailAddress":"not an address","historyId":1}"#, None),
            ("not json", None),
            ("", None),
        ];
        for (data, expected) in cases {
            let decoded = Notification::decode(data.as_bytes()).ok();
            let expected = expected.map(|(email, history_id)| Notification {
                email_address: email.to_string(),
                history_id,
            });
            assert_eq!(decoded, expected, "{data}");
        }
    }
}
