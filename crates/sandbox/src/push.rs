//! Gmail push: each mailbox's watch (`users.watch` / `users.stop`), when it expires, and which
//! changes its label filter lets through to the topic. No I/O; what is published is built by
//! the HTTP layer and queued by [`super::pubsub`].

use std::collections::BTreeMap;

use serde::Serialize;

/// A watch lasts seven days; Google asks clients to renew it daily.
pub const WATCH_LIFETIME_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// How `label_ids` of a watch filter changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelFilter {
    /// Only changes to messages that carry one of the labels are published (Google's default).
    Include,
    /// Only changes to messages that carry none of the labels are published.
    Exclude,
}

impl LabelFilter {
    /// `include` or `exclude`, in any case, as `labelFilterBehavior` (or the older
    /// `labelFilterAction`) spells it.
    pub fn parse(text: &str) -> Option<LabelFilter> {
        match text.to_ascii_lowercase().as_str() {
            "include" => Some(LabelFilter::Include),
            "exclude" => Some(LabelFilter::Exclude),
            _ => None,
        }
    }
}

/// One mailbox's watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// Full topic name, `projects/P/topics/T`.
    pub topic: String,
    /// Empty: every change is published, whatever `filter` says.
    pub label_ids: Vec<String>,
    pub filter: LabelFilter,
    /// Milliseconds since the epoch; from then on nothing is published.
    pub expiration_ms: i64,
}

impl Watch {
    /// Whether a change to a message now carrying `labels` is published at `now_ms`. For a
    /// label change, `labels` also holds those the message just lost, so that a watch on
    /// INBOX hears of a message leaving the inbox.
    pub fn admits(&self, labels: &[String], now_ms: i64) -> bool {
        if now_ms >= self.expiration_ms {
            return false;
        }
        if self.label_ids.is_empty() {
            return true;
        }
        let carries_one = labels.iter().any(|label| self.label_ids.contains(label));
        match self.filter {
            LabelFilter::Include => carries_one,
            LabelFilter::Exclude => !carries_one,
        }
    }
}

/// A watch as `GET /sandbox/stats` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchStats {
    pub topic: String,
    /// Milliseconds since the epoch (a number here, unlike in Gmail's answer).
    pub expiration: i64,
}

/// The watches of all mailboxes, by mailbox address (lower case).
#[derive(Debug, Default)]
pub struct Watches {
    by_user: BTreeMap<String, Watch>,
}

impl Watches {
    /// Starts `user`'s watch, replacing any earlier one (and so its expiration).
    pub fn start(&mut self, user: &str, watch: Watch) {
        self.by_user.insert(user.to_string(), watch);
    }

    /// Ends `user`'s watch; nothing happens when there is none, as `users.stop` answers 204
    /// either way.
    pub fn stop(&mut self, user: &str) {
        self.by_user.remove(user);
    }

    /// Every watch expires at `now_ms`, so that tests can see a client renew. Returns how many
    /// were still live.
    pub fn expire_all(&mut self, now_ms: i64) -> usize {
        let mut expired = 0;
        for watch in self.by_user.values_mut() {
            if watch.expiration_ms > now_ms {
                watch.expiration_ms = now_ms;
                expired += 1;
            }
        }
        expired
    }

    /// The topic a change of `user`'s mailbox, to a message now carrying `labels` (see
    /// [`Watch::admits`]), is published to at `now_ms`, if the user has a live watch that
    /// admits it.
    pub fn topic_for_change(&self, user: &str, labels: &[String], now_ms: i64) -> Option<&str> {
        self.by_user
            .get(user)
            .filter(|watch| watch.admits(labels, now_ms))
            .map(|watch| watch.topic.as_str())
    }

    pub fn stats(&self) -> impl Iterator<Item = (&str, WatchStats)> {
        self.by_user.iter().map(|(user, watch)| {
            (
                user.as_str(),
                WatchStats {
                    topic: watch.topic.clone(),
                    expiration: watch.expiration_ms,
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(label_ids: &[&str], filter: LabelFilter) -> Watch {
        Watch {
            topic: "projects/p/topics/t".into(),
            label_ids: label_ids.iter().map(|label| label.to_string()).collect(),
            filter,
            expiration_ms: 1_000,
        }
    }

    fn labels(labels: &[&str]) -> Vec<String> {
        labels.iter().map(|label| label.to_string()).collect()
    }

    #[test]
    fn label_filters_and_expiry() {
        let cases = [
            (watch(&[], LabelFilter::Exclude), &["SPAM"][..], true),
            (
                watch(&["INBOX"], LabelFilter::Include),
                &["INBOX", "UNREAD"],
                true,
            ),
            (watch(&["INBOX"], LabelFilter::Include), &["SENT"], false),
            (
                watch(&["SPAM", "TRASH"], LabelFilter::Exclude),
                &["INBOX"],
                true,
            ),
            (
                watch(&["SPAM", "TRASH"], LabelFilter::Exclude),
                &["SPAM"],
                false,
            ),
            (watch(&["SPAM", "TRASH"], LabelFilter::Exclude), &[], true),
        ];
        for (watch, carried, admitted) in cases {
            assert_eq!(
                watch.admits(&labels(carried), 999),
                admitted,
                "{watch:?} {carried:?}"
            );
            assert!(!watch.admits(&labels(carried), 1_000), "expired");
        }
        assert_eq!(LabelFilter::parse("EXCLUDE"), Some(LabelFilter::Exclude));
        assert_eq!(LabelFilter::parse("both"), None);
    }

    #[test]
    fn start_replaces_stop_ends_and_expire_all_ends_publishing() {
        let mut watches = Watches::default();
        watches.start("u", watch(&[], LabelFilter::Include));
        let mut renewed = watch(&[], LabelFilter::Include);
        renewed.expiration_ms = 5_000;
        watches.start("u", renewed);
        assert_eq!(
            watches.topic_for_change("u", &[], 2_000),
            Some("projects/p/topics/t")
        );
        assert_eq!(watches.topic_for_change("other", &[], 2_000), None);
        assert_eq!(watches.expire_all(2_000), 1);
        assert_eq!(watches.expire_all(2_000), 0);
        assert_eq!(watches.topic_for_change("u", &[], 2_000), None);
        assert_eq!(
            watches.stats().next().map(|(_, stats)| stats.expiration),
            Some(2_000)
        );
        watches.stop("u");
        watches.stop("u");
        assert_eq!(watches.stats().count(), 0);
    }
}
