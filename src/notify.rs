//! Email to ops (and, if configured, to the affected user) when a user's sync needs a person:
//! the grant was revoked, or polls keep failing. An ingestion daemon that silently stops
//! syncing a user is worse than none, so these go out at once, but at most one per user and
//! kind per `notify_interval_secs` (remembered in the store, so a restart does not re-send).
//!
//! A notification never carries mail content: it names the user, what is wrong and what to do.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{NotifyConfig, SmtpSecurity};

/// Something a person must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// The user's authorization is gone; their sync has stopped.
    NeedsReauth { user: String, error: String },
    /// The user's polls have failed this many times in a row.
    RepeatedFailures {
        user: String,
        failures: u32,
        error: String,
    },
    /// Pulling push notifications fails: every mailbox is polled at `poll_interval_secs`
    /// until it works again.
    PushFailing { subscription: String, error: String },
}

impl Alert {
    /// Stable name, for rate limiting and for the store.
    pub fn kind(&self) -> &'static str {
        match self {
            Alert::NeedsReauth { .. } => "needs_reauth",
            Alert::RepeatedFailures { .. } => "repeated_failures",
            Alert::PushFailing { .. } => "push_failing",
        }
    }

    /// The user the alert is about; `None` for one about the whole daemon.
    pub fn user(&self) -> Option<&str> {
        match self {
            Alert::NeedsReauth { user, .. } | Alert::RepeatedFailures { user, .. } => Some(user),
            Alert::PushFailing { .. } => None,
        }
    }

    /// What alerts of one kind are rate-limited by: the user, or the subscription.
    pub fn key(&self) -> &str {
        match self {
            Alert::PushFailing { subscription, .. } => subscription,
            _ => self.user().unwrap_or_default(),
        }
    }

    fn subject(&self) -> String {
        match self {
            Alert::NeedsReauth { user, .. } => {
                format!("mailsync: {user} needs re-authorization; their email sync has stopped")
            }
            Alert::RepeatedFailures { user, failures, .. } => {
                format!("mailsync: email sync for {user} has failed {failures} times in a row")
            }
            Alert::PushFailing { .. } => {
                "mailsync: push notifications fail; every mailbox is polled instead".to_string()
            }
        }
    }

    fn body(&self) -> String {
        match self {
            Alert::NeedsReauth { user, error } => format!(
                "mailsync can no longer read the Gmail of {user}, so none of their email reaches the CRM.\n\n\
                 Error: {error}\n\n\
                 What to do:\n\
                 - per-user OAuth: run `mailsync auth login --user {user}` and have {user} allow access;\n\
                 - Workspace domain-wide delegation: check that the service account is still authorised for the gmail.readonly scope;\n\
                 then reload the daemon (`systemctl reload mailsync`). `mailsync status` shows every user's state.\n"
            ),
            Alert::RepeatedFailures {
                user,
                failures,
                error,
            } => format!(
                "The last {failures} polls of {user}'s Gmail failed; mailsync keeps retrying, but their email is not reaching the CRM.\n\n\
                 Last error: {error}\n\n\
                 `mailsync status` shows every user's state; the daemon's log (journalctl -u mailsync) has the details.\n"
            ),
            Alert::PushFailing {
                subscription,
                error,
            } => format!(
                "mailsync cannot pull Gmail's push notifications from {subscription}, so new mail reaches the CRM only at each poll ([gmail] poll_interval_secs) instead of within seconds. Nothing is lost; mailsync goes back to push by itself when pulling works again.\n\n\
                 Error: {error}\n\n\
                 What to check: that the subscription exists, that the service account has the Pub/Sub Subscriber role on it, and that this machine reaches pubsub.googleapis.com. `mailsync status` shows how each mailbox is reached.\n"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("bad notification address: {0}")]
    Address(String),
    #[error("SMTP password file: {0}")]
    PasswordFile(#[from] crate::secret_file::SecretFileError),
    #[error("the SMTP password file {0} is not UTF-8")]
    PasswordNotUtf8(std::path::PathBuf),
    #[error("cannot build the notification: {0}")]
    Message(String),
    #[error("SMTP relay {host}:{port} failed: {error}")]
    Smtp {
        host: String,
        port: u16,
        error: String,
    },
}

/// Sends alerts through the configured relay.
pub struct Notifier {
    config: NotifyConfig,
}

impl Notifier {
    pub fn new(config: NotifyConfig) -> Self {
        Notifier { config }
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, NotifyError> {
        let config = &self.config;
        let smtp_error = |error: lettre::transport::smtp::Error| NotifyError::Smtp {
            host: config.smtp_host.clone(),
            port: config.smtp_port,
            error: error.to_string(),
        };
        let builder = match config.smtp_security {
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.smtp_host)
                    .map_err(smtp_error)?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.smtp_host)
                .map_err(smtp_error)?,
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
            }
        };
        let mut builder = builder
            .port(config.smtp_port)
            .timeout(Some(Duration::from_secs(30)));
        if let (Some(username), Some(password_file)) =
            (&config.smtp_username, &config.smtp_password_file)
        {
            let password = String::from_utf8(crate::secret_file::read(password_file)?)
                .map_err(|_| NotifyError::PasswordNotUtf8(password_file.clone()))?;
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.trim().to_string(),
            ));
        }
        Ok(builder.build())
    }

    /// Who hears about `alert`: ops, and the user when configured.
    pub fn recipients(&self, alert: &Alert) -> Vec<String> {
        let mut recipients = self.config.ops.clone();
        if let Some(user) = alert.user().filter(|_| self.config.notify_user)
            && !recipients.iter().any(|recipient| recipient == user)
        {
            recipients.push(user.to_string());
        }
        recipients
    }

    /// Sends `alert` now (rate limiting is the caller's, through the store).
    pub async fn send(&self, alert: &Alert) -> Result<(), NotifyError> {
        self.send_mail(&self.recipients(alert), &alert.subject(), alert.body())
            .await
    }

    /// `mailsync notify test`: one harmless email to the ops recipients.
    pub async fn send_test(&self) -> Result<(), NotifyError> {
        let recipients = if self.config.ops.is_empty() {
            return Err(NotifyError::Address(
                "no ops recipients configured".to_string(),
            ));
        } else {
            self.config.ops.clone()
        };
        self.send_mail(
            &recipients,
            "mailsync: test notification",
            "This is a test notification from mailsync. Alerts about users whose email sync needs attention will look like this and come from the same address.\n".to_string(),
        )
        .await
    }

    async fn send_mail(
        &self,
        recipients: &[String],
        subject: &str,
        body: String,
    ) -> Result<(), NotifyError> {
        let from: Mailbox = self
            .config
            .from
            .parse()
            .map_err(|error| NotifyError::Address(format!("from: {error}")))?;
        let mut message = Message::builder()
            .from(from)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for recipient in recipients {
            let to: Mailbox = recipient
                .parse()
                .map_err(|error| NotifyError::Address(format!("{recipient}: {error}")))?;
            message = message.to(to);
        }
        let message = message
            .body(body)
            .map_err(|error| NotifyError::Message(error.to_string()))?;
        self.transport()?
            .send(message)
            .await
            .map_err(|error| NotifyError::Smtp {
                host: self.config.smtp_host.clone(),
                port: self.config.smtp_port,
                error: error.to_string(),
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_say_what_and_what_to_do_without_mail_content() {
        let alert = Alert::NeedsReauth {
            user: "dave@abcorp.com".into(),
            error: "authorization for dave@abcorp.com is revoked (invalid_grant)".into(),
        };
        assert_eq!(alert.kind(), "needs_reauth");
        assert!(alert.subject().contains("dave@abcorp.com"));
        assert!(
            alert
                .body()
                .contains("mailsync auth login --user dave@abcorp.com")
        );
        let failures = Alert::RepeatedFailures {
            user: "dave@abcorp.com".into(),
            failures: 3,
            error: "gmail backend error (503)".into(),
        };
        assert!(failures.subject().contains("3 times"));
    }
}
