//! The Cloud Pub/Sub model behind Gmail push: topics, pull subscriptions with their queues,
//! ack ids and ack deadlines. No I/O, and time is passed in, so redelivery is tested without
//! sleeping. What the messages say (Gmail's notification) is the HTTP layer's business.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;

use super::config::PubSubConfig;

/// Google accepts ack deadlines up to ten minutes.
pub const MAX_ACK_DEADLINE_SECS: u64 = 600;

/// One published message. Duplicates and redeliveries share it, and so its `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// A decimal number, unique in this sandbox, as Google's message ids are.
    pub id: String,
    pub data: Vec<u8>,
    /// When it was published, in milliseconds since the epoch.
    pub publish_time_ms: i64,
}

/// A message handed out by a pull, with the ack id that acknowledges this delivery of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub ack_id: String,
    pub message: Arc<Message>,
    /// 1 on the first delivery of this copy, then 2, 3, ...
    pub delivery_attempt: u32,
}

/// What push faults decided for one message, see [`super::faults::PushFaultInjector`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishFate {
    /// Not published at all.
    pub dropped: bool,
    /// Queued twice on every subscription, with the same message id.
    pub duplicated: bool,
    /// Pullable only after this.
    pub delay: Duration,
}

/// A subscription call for a subscription that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownSubscription;

/// Counters for `GET /sandbox/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PubSubStats {
    /// Messages published to a topic (each once, however many subscriptions or copies).
    pub published: u64,
    /// Notifications the drop fault kept from being published.
    pub dropped: u64,
    /// Messages the duplicate fault queued a second time.
    pub duplicated: u64,
    /// Messages handed out by pulls, redeliveries included.
    pub pulled: u64,
    /// Of `pulled`, those handed out again after an ack deadline passed or was set to 0.
    pub redelivered: u64,
    /// Deliveries acknowledged.
    pub acked: u64,
    /// Queued on some subscription and not acknowledged yet (held-back ones included).
    pub pending: u64,
    /// `:pull` requests received, whatever they were answered.
    pub pull_requests: u64,
}

#[derive(Debug)]
struct Entry {
    message: Arc<Message>,
    /// When a pull may hand it out (again): the publish time plus any delay, then the end of
    /// each ack deadline.
    available_at: Instant,
    /// The ack id of the latest delivery; a new delivery replaces it.
    ack_id: Option<String>,
    deliveries: u32,
}

#[derive(Debug)]
struct Subscription {
    topic: String,
    /// Queued copies by sequence number: pulls hand them out in publish order.
    entries: BTreeMap<u64, Entry>,
    /// Ack id of each entry's latest delivery → its sequence number.
    by_ack_id: HashMap<String, u64>,
}

/// Every topic and subscription of the sandbox.
#[derive(Debug)]
pub struct PubSub {
    topics: BTreeSet<String>,
    subscriptions: BTreeMap<String, Subscription>,
    ack_deadline: Duration,
    next_message_id: u64,
    next_sequence: u64,
    /// Makes ack ids of different runs (and seeds) differ, so none can be guessed from another.
    ack_salt: u64,
    stats: PubSubStats,
}

impl PubSub {
    /// `config` has been validated; a subscription naming an unknown topic gets nothing.
    pub fn new(config: &PubSubConfig, seed: u64) -> PubSub {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x9b5);
        let subscriptions = config
            .subscriptions
            .iter()
            .map(|subscription| {
                (
                    subscription.name.clone(),
                    Subscription {
                        topic: subscription.topic.clone(),
                        entries: BTreeMap::new(),
                        by_ack_id: HashMap::new(),
                    },
                )
            })
            .collect();
        PubSub {
            topics: config.topics.iter().cloned().collect(),
            subscriptions,
            ack_deadline: Duration::from_secs(config.ack_deadline_secs),
            // Sixteen digits, like the ids Google hands out.
            next_message_id: 1_000_000_000_000_000 + rng.random_range(0..1_000_000_000_000u64),
            next_sequence: 0,
            ack_salt: rng.random(),
            stats: PubSubStats::default(),
        }
    }

    pub fn has_topic(&self, topic: &str) -> bool {
        self.topics.contains(topic)
    }

    /// The topic `subscription` is attached to.
    pub fn subscription_topic(&self, subscription: &str) -> Option<&str> {
        self.subscriptions
            .get(subscription)
            .map(|subscription| subscription.topic.as_str())
    }

    pub fn ack_deadline(&self) -> Duration {
        self.ack_deadline
    }

    /// Publishes `data` to `topic`: one copy (two when duplicated) on every subscription
    /// attached to it. Returns the message id, or `None` when the fate dropped it or the topic
    /// does not exist.
    pub fn publish(
        &mut self,
        topic: &str,
        data: Vec<u8>,
        publish_time_ms: i64,
        fate: PublishFate,
        now: Instant,
    ) -> Option<String> {
        if !self.topics.contains(topic) {
            return None;
        }
        if fate.dropped {
            self.stats.dropped += 1;
            return None;
        }
        let message = Arc::new(Message {
            id: self.next_message_id.to_string(),
            data,
            publish_time_ms,
        });
        self.next_message_id += 1;
        self.stats.published += 1;
        if fate.duplicated {
            self.stats.duplicated += 1;
        }
        let copies = if fate.duplicated { 2 } else { 1 };
        let available_at = now + fate.delay;
        for subscription in self
            .subscriptions
            .values_mut()
            .filter(|subscription| subscription.topic == topic)
        {
            for _ in 0..copies {
                subscription.entries.insert(
                    self.next_sequence,
                    Entry {
                        message: Arc::clone(&message),
                        available_at,
                        ack_id: None,
                        deliveries: 0,
                    },
                );
                self.next_sequence += 1;
            }
        }
        Some(message.id.clone())
    }

    /// Counts one `:pull` request (a long poll may look at the queue several times).
    pub fn record_pull_request(&mut self) {
        self.stats.pull_requests += 1;
    }

    /// Hands out up to `max_messages` messages that are ready at `now`, oldest first. Each
    /// gets a new ack id and is held back for the ack deadline: unacknowledged by then, it is
    /// delivered again, and the ack id of this delivery no longer counts.
    pub fn pull(
        &mut self,
        subscription: &str,
        max_messages: usize,
        now: Instant,
    ) -> Result<Vec<Received>, UnknownSubscription> {
        let queue = self
            .subscriptions
            .get_mut(subscription)
            .ok_or(UnknownSubscription)?;
        let mut received = Vec::new();
        for (sequence, entry) in queue.entries.iter_mut() {
            if received.len() >= max_messages {
                break;
            }
            if entry.available_at > now {
                continue;
            }
            if let Some(old) = entry.ack_id.take() {
                queue.by_ack_id.remove(&old);
            }
            let ack_id = format!("{:016x}{:012x}", self.ack_salt, self.next_sequence);
            self.next_sequence += 1;
            queue.by_ack_id.insert(ack_id.clone(), *sequence);
            entry.ack_id = Some(ack_id.clone());
            entry.deliveries += 1;
            entry.available_at = now + self.ack_deadline;
            self.stats.pulled += 1;
            if entry.deliveries > 1 {
                self.stats.redelivered += 1;
            }
            received.push(Received {
                ack_id,
                message: Arc::clone(&entry.message),
                delivery_attempt: entry.deliveries,
            });
        }
        Ok(received)
    }

    /// Acknowledges the deliveries `ack_ids` name; ids that are unknown, of another
    /// subscription, already acknowledged or replaced by a redelivery are ignored, as Google
    /// does. Returns how many messages were acknowledged.
    pub fn acknowledge(
        &mut self,
        subscription: &str,
        ack_ids: &[String],
    ) -> Result<usize, UnknownSubscription> {
        let queue = self
            .subscriptions
            .get_mut(subscription)
            .ok_or(UnknownSubscription)?;
        let mut acknowledged = 0;
        for ack_id in ack_ids {
            if let Some(sequence) = queue.by_ack_id.remove(ack_id) {
                queue.entries.remove(&sequence);
                acknowledged += 1;
            }
        }
        self.stats.acked += acknowledged as u64;
        Ok(acknowledged)
    }

    /// Moves the deadline of the deliveries `ack_ids` name to `now + deadline`; zero makes
    /// them available to the next pull at once. Unknown ids are ignored. Returns how many
    /// deliveries were changed.
    pub fn modify_ack_deadline(
        &mut self,
        subscription: &str,
        ack_ids: &[String],
        deadline: Duration,
        now: Instant,
    ) -> Result<usize, UnknownSubscription> {
        let queue = self
            .subscriptions
            .get_mut(subscription)
            .ok_or(UnknownSubscription)?;
        let mut changed = 0;
        for ack_id in ack_ids {
            let entry = queue
                .by_ack_id
                .get(ack_id)
                .and_then(|sequence| queue.entries.get_mut(sequence));
            if let Some(entry) = entry {
                entry.available_at = now + deadline;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// When the earliest message of `subscription` that is not ready yet becomes ready, so
    /// that a waiting pull knows when to look again.
    pub fn next_ready_at(&self, subscription: &str) -> Option<Instant> {
        self.subscriptions
            .get(subscription)?
            .entries
            .values()
            .map(|entry| entry.available_at)
            .min()
    }

    pub fn stats(&self) -> PubSubStats {
        let pending = self
            .subscriptions
            .values()
            .map(|subscription| subscription.entries.len() as u64)
            .sum();
        PubSubStats {
            pending,
            ..self.stats.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SubscriptionConfig;

    const TOPIC: &str = "projects/p/topics/t";
    const FIRST: &str = "projects/p/subscriptions/a";
    const SECOND: &str = "projects/p/subscriptions/b";

    fn pubsub() -> PubSub {
        PubSub::new(
            &PubSubConfig {
                topics: vec![TOPIC.into(), "projects/p/topics/quiet".into()],
                subscriptions: vec![
                    SubscriptionConfig {
                        name: FIRST.into(),
                        topic: TOPIC.into(),
                    },
                    SubscriptionConfig {
                        name: SECOND.into(),
                        topic: TOPIC.into(),
                    },
                ],
                ack_deadline_secs: 10,
                pull_wait_ms: 0,
            },
            7,
        )
    }

    fn publish(pubsub: &mut PubSub, data: &str, fate: PublishFate, now: Instant) -> Option<String> {
        pubsub.publish(TOPIC, data.as_bytes().to_vec(), 1_000, fate, now)
    }

    fn ids(received: &[Received]) -> Vec<String> {
        received
            .iter()
            .map(|received| received.message.id.clone())
            .collect()
    }

    #[test]
    fn every_subscription_of_the_topic_gets_a_copy_in_publish_order() {
        let mut pubsub = pubsub();
        let now = Instant::now();
        let first = publish(&mut pubsub, "1", PublishFate::default(), now).expect("id");
        let second = publish(&mut pubsub, "2", PublishFate::default(), now).expect("id");
        assert!(first.parse::<u64>().is_ok() && first != second);
        assert_eq!(
            ids(&pubsub.pull(FIRST, 10, now).expect("pull")),
            [first.clone(), second]
        );
        assert_eq!(ids(&pubsub.pull(SECOND, 1, now).expect("pull")), [first]);
        assert!(
            pubsub
                .publish(
                    "projects/p/topics/quiet",
                    vec![],
                    0,
                    PublishFate::default(),
                    now
                )
                .is_some(),
            "a topic without subscriptions takes messages and keeps none"
        );
        assert_eq!(
            pubsub.publish(
                "projects/p/topics/none",
                vec![],
                0,
                PublishFate::default(),
                now
            ),
            None
        );
        assert_eq!(
            pubsub.pull("projects/p/subscriptions/none", 1, now),
            Err(UnknownSubscription)
        );
        let stats = pubsub.stats();
        assert_eq!((stats.published, stats.pulled, stats.pending), (3, 3, 4));
    }

    #[test]
    fn an_unacknowledged_message_comes_back_after_the_deadline_with_a_new_ack_id() {
        let mut pubsub = pubsub();
        let now = Instant::now();
        publish(&mut pubsub, "1", PublishFate::default(), now);
        let first = pubsub.pull(FIRST, 10, now).expect("pull");
        assert_eq!(first[0].delivery_attempt, 1);
        assert!(
            pubsub
                .pull(FIRST, 10, now + Duration::from_secs(9))
                .expect("pull")
                .is_empty()
        );
        assert_eq!(
            pubsub.next_ready_at(FIRST),
            Some(now + Duration::from_secs(10))
        );
        let later = now + Duration::from_secs(10);
        let again = pubsub.pull(FIRST, 10, later).expect("pull");
        assert_eq!(ids(&again), ids(&first));
        assert_eq!(again[0].delivery_attempt, 2);
        assert_ne!(again[0].ack_id, first[0].ack_id);
        assert_eq!(
            pubsub
                .acknowledge(FIRST, &[first[0].ack_id.clone()])
                .expect("ack"),
            0,
            "the old ack id no longer counts"
        );
        assert_eq!(
            pubsub
                .acknowledge(FIRST, &[again[0].ack_id.clone(), "bogus".into()])
                .expect("ack"),
            1
        );
        assert!(
            pubsub
                .pull(FIRST, 10, later + Duration::from_secs(60))
                .expect("pull")
                .is_empty()
        );
        let stats = pubsub.stats();
        assert_eq!(
            (stats.pulled, stats.redelivered, stats.acked, stats.pending),
            (2, 1, 1, 1),
            "the second subscription still holds its copy"
        );
    }

    #[test]
    fn a_zero_ack_deadline_returns_the_message_at_once_and_a_longer_one_holds_it() {
        let mut pubsub = pubsub();
        let now = Instant::now();
        publish(&mut pubsub, "1", PublishFate::default(), now);
        let first = pubsub.pull(FIRST, 1, now).expect("pull");
        let ack_ids = vec![first[0].ack_id.clone()];
        assert_eq!(
            pubsub
                .modify_ack_deadline(FIRST, &ack_ids, Duration::from_secs(60), now)
                .expect("modify"),
            1
        );
        assert!(
            pubsub
                .pull(FIRST, 1, now + Duration::from_secs(30))
                .expect("pull")
                .is_empty()
        );
        pubsub
            .modify_ack_deadline(FIRST, &ack_ids, Duration::ZERO, now)
            .expect("modify");
        let again = pubsub.pull(FIRST, 1, now).expect("pull");
        assert_eq!(ids(&again), ids(&first));
        assert_eq!(
            pubsub
                .modify_ack_deadline(FIRST, &ack_ids, Duration::ZERO, now)
                .expect("modify"),
            0
        );
    }

    #[test]
    fn faults_drop_duplicate_and_delay() {
        let mut pubsub = pubsub();
        let now = Instant::now();
        let dropped = PublishFate {
            dropped: true,
            ..PublishFate::default()
        };
        assert_eq!(publish(&mut pubsub, "1", dropped, now), None);
        let duplicated = PublishFate {
            duplicated: true,
            ..PublishFate::default()
        };
        let id = publish(&mut pubsub, "2", duplicated, now).expect("id");
        assert_eq!(
            ids(&pubsub.pull(FIRST, 10, now).expect("pull")),
            [id.clone(), id]
        );
        let delayed = PublishFate {
            delay: Duration::from_millis(500),
            ..PublishFate::default()
        };
        let id = publish(&mut pubsub, "3", delayed, now).expect("id");
        assert!(pubsub.pull(FIRST, 10, now).expect("pull").is_empty());
        assert_eq!(
            pubsub.next_ready_at(FIRST),
            Some(now + Duration::from_millis(500))
        );
        assert_eq!(
            ids(&pubsub
                .pull(FIRST, 10, now + Duration::from_millis(500))
                .expect("pull")),
            [id]
        );
        let stats = pubsub.stats();
        assert_eq!(
            (
                stats.published,
                stats.dropped,
                stats.duplicated,
                stats.pending
            ),
            (2, 1, 1, 6)
        );
    }
}
