//! Fault injection (Gmail API requests, and push notifications with their Pub/Sub pulls), the
//! per-user quota (sliding 60 s window plus a concurrency cap), and the request statistics that
//! tests read back to check what a client really spent.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;

use super::config::SandboxError;
use super::pubsub::{PubSubStats, PublishFate};
use super::push::WatchStats;

const QUOTA_WINDOW: Duration = Duration::from_secs(60);

/// Random faults for Gmail API requests. With probability `rate` one of `kinds`, picked
/// uniformly, replaces the normal answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Probability per Gmail API request, 0.0..=1.0 (clamped).
    pub rate: f64,
    pub kinds: Vec<FaultKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// 500 with a JSON `backendError` body.
    ServerError500Json,
    /// 503 with an HTML body, as Google's front end sends: a client must not assume JSON.
    Unavailable503Html,
    /// 429 `rateLimitExceeded`.
    TooManyRequests429,
    /// 403 `userRateLimitExceeded`.
    RateLimit403,
    /// The connection is closed without an answer.
    DropConnection,
    /// Sleeps 3 s, then answers normally.
    SlowResponse,
    /// 200 whose Content-Length promises more bytes than are sent before the connection closes.
    TruncatedBody,
    /// `messages.get` of a message delivered less than 2 s ago answers 404, as Gmail briefly
    /// does for a message announced by history but not yet readable; other requests are normal.
    NewMessageNotFound,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::ServerError500Json,
        FaultKind::Unavailable503Html,
        FaultKind::TooManyRequests429,
        FaultKind::RateLimit403,
        FaultKind::DropConnection,
        FaultKind::SlowResponse,
        FaultKind::TruncatedBody,
        FaultKind::NewMessageNotFound,
    ];

    /// The name used by `FromStr`, the control route and the statistics.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::ServerError500Json => "500",
            FaultKind::Unavailable503Html => "503",
            FaultKind::TooManyRequests429 => "429",
            FaultKind::RateLimit403 => "403",
            FaultKind::DropConnection => "drop",
            FaultKind::SlowResponse => "slow",
            FaultKind::TruncatedBody => "truncate",
            FaultKind::NewMessageNotFound => "404new",
        }
    }
}

impl FromStr for FaultKind {
    type Err = SandboxError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        FaultKind::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| SandboxError::InvalidFaultKind(text.to_string()))
    }
}

/// Decides, per request, whether to inject a fault. Seeded so that a run can be reproduced.
#[derive(Debug)]
pub struct FaultInjector {
    config: FaultConfig,
    rng: StdRng,
}

impl FaultInjector {
    pub fn new(config: FaultConfig, seed: u64) -> FaultInjector {
        FaultInjector {
            config,
            rng: StdRng::seed_from_u64(seed ^ 0xfa17),
        }
    }

    pub fn set(&mut self, config: FaultConfig) {
        self.config = config;
    }

    pub fn pick(&mut self) -> Option<FaultKind> {
        let rate = probability(self.config.rate);
        if self.config.kinds.is_empty() || !self.rng.random_bool(rate) {
            return None;
        }
        Some(self.config.kinds[self.rng.random_range(0..self.config.kinds.len())])
    }
}

/// Faults of Gmail push and Cloud Pub/Sub, as `POST /sandbox/push` sets them. Notifications
/// are not reliable at Google either: they can be late, repeated or (rarely) lost.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PushFaultConfig {
    /// Probability (0 to 1) that a notification is silently not published.
    pub drop_rate: f64,
    /// Probability (0 to 1) that a notification is queued twice, with the same `messageId`,
    /// as Pub/Sub's at-least-once delivery sometimes does.
    pub duplicate_rate: f64,
    /// A published notification can be pulled only this many milliseconds later.
    pub delay_ms: u64,
    /// While set, `:pull`, `:acknowledge` and `:modifyAckDeadline` answer this error.
    pub pull_failure: Option<PullFailure>,
    /// While set, `users.watch` answers 403, as when Gmail's publisher account may not publish
    /// to the topic.
    pub watch_forbidden: bool,
}

/// An error every Pub/Sub subscription call answers while the fault is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u16")]
pub enum PullFailure {
    /// 403 `PERMISSION_DENIED`: the subscriber role was taken away.
    PermissionDenied403,
    /// 404 `NOT_FOUND`: the subscription was deleted.
    NotFound404,
    /// 503 `UNAVAILABLE`: a transient outage.
    Unavailable503,
}

impl PullFailure {
    pub fn status(self) -> u16 {
        match self {
            PullFailure::PermissionDenied403 => 403,
            PullFailure::NotFound404 => 404,
            PullFailure::Unavailable503 => 503,
        }
    }

    /// 403, 404 or 503.
    pub fn from_status(status: u16) -> Option<PullFailure> {
        match status {
            403 => Some(PullFailure::PermissionDenied403),
            404 => Some(PullFailure::NotFound404),
            503 => Some(PullFailure::Unavailable503),
            _ => None,
        }
    }
}

impl From<PullFailure> for u16 {
    fn from(failure: PullFailure) -> u16 {
        failure.status()
    }
}

/// A change to [`PushFaultConfig`]: `None` leaves a setting as it is. `pull_failure` is
/// `Some(None)` to clear the failure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushFaultUpdate {
    pub drop_rate: Option<f64>,
    pub duplicate_rate: Option<f64>,
    pub delay_ms: Option<u64>,
    pub pull_failure: Option<Option<PullFailure>>,
    pub watch_forbidden: Option<bool>,
}

impl PushFaultConfig {
    pub fn apply(&mut self, update: &PushFaultUpdate) {
        if let Some(rate) = update.drop_rate {
            self.drop_rate = rate;
        }
        if let Some(rate) = update.duplicate_rate {
            self.duplicate_rate = rate;
        }
        if let Some(delay) = update.delay_ms {
            self.delay_ms = delay;
        }
        if let Some(failure) = update.pull_failure {
            self.pull_failure = failure;
        }
        if let Some(forbidden) = update.watch_forbidden {
            self.watch_forbidden = forbidden;
        }
    }
}

/// Decides the fate of each notification. Seeded so that a run can be reproduced, and with
/// its own generator so that push faults do not shift which Gmail requests fail.
#[derive(Debug)]
pub struct PushFaultInjector {
    config: PushFaultConfig,
    rng: StdRng,
}

impl PushFaultInjector {
    pub fn new(config: PushFaultConfig, seed: u64) -> PushFaultInjector {
        PushFaultInjector {
            config,
            rng: StdRng::seed_from_u64(seed ^ 0x9054),
        }
    }

    pub fn config(&self) -> &PushFaultConfig {
        &self.config
    }

    pub fn set(&mut self, config: PushFaultConfig) {
        self.config = config;
    }

    /// Whether the next notification is dropped, duplicated and how long it is held back.
    /// Both draws happen every time, so one rate does not change what the other decides.
    pub fn decide(&mut self) -> PublishFate {
        let dropped = self.rng.random_bool(probability(self.config.drop_rate));
        let duplicated = self
            .rng
            .random_bool(probability(self.config.duplicate_rate));
        PublishFate {
            dropped,
            duplicated: duplicated && !dropped,
            delay: Duration::from_millis(self.config.delay_ms),
        }
    }
}

/// A rate as a probability `random_bool` accepts: NaN is 0, anything else clamped to 0..=1.
fn probability(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The sliding-minute budget would be exceeded; `retry_after_secs` is sent only sometimes,
    /// because Google does not reliably send `Retry-After` either.
    QuotaExceeded {
        retry_after_secs: Option<u64>,
    },
    TooManyConcurrent,
}

#[derive(Debug, Default)]
struct UserLimits {
    /// Units charged, oldest first.
    window: VecDeque<(Instant, u32)>,
    in_flight: u32,
}

/// Per-user quota and concurrency bookkeeping, plus statistics. Time is passed in, so the
/// window logic is tested without sleeping.
#[derive(Debug)]
pub struct Limiter {
    quota_units_per_minute: u32,
    max_concurrent_per_user: u32,
    users: HashMap<String, UserLimits>,
    rng: StdRng,
    pub stats: Stats,
}

impl Limiter {
    pub fn new(quota_units_per_minute: u32, max_concurrent_per_user: u32, seed: u64) -> Limiter {
        Limiter {
            quota_units_per_minute,
            max_concurrent_per_user,
            users: HashMap::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x9007a),
            stats: Stats::default(),
        }
    }

    /// Takes a concurrency slot; the caller must call [`Limiter::leave`] when the request ends.
    pub fn enter(&mut self, user: &str) -> Result<(), Rejection> {
        let limits = self.users.entry(user.to_string()).or_default();
        if limits.in_flight >= self.max_concurrent_per_user {
            return Err(Rejection::TooManyConcurrent);
        }
        limits.in_flight += 1;
        Ok(())
    }

    pub fn leave(&mut self, user: &str) {
        if let Some(limits) = self.users.get_mut(user) {
            limits.in_flight = limits.in_flight.saturating_sub(1);
        }
    }

    /// Charges `cost` units at `now` unless that would exceed the window's budget; a rejected
    /// request consumes nothing.
    pub fn charge(
        &mut self,
        user: &str,
        method: &str,
        cost: u32,
        now: Instant,
    ) -> Result<(), Rejection> {
        let limits = self.users.entry(user.to_string()).or_default();
        while limits
            .window
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= QUOTA_WINDOW)
        {
            limits.window.pop_front();
        }
        let used: u64 = limits
            .window
            .iter()
            .map(|(_, units)| u64::from(*units))
            .sum();
        let limit = u64::from(self.quota_units_per_minute);
        if used + u64::from(cost) > limit {
            // When enough old charges leave the window for this request to fit.
            let mut freed = 0u64;
            let mut wait = QUOTA_WINDOW;
            for (at, units) in &limits.window {
                freed += u64::from(*units);
                if used - freed + u64::from(cost) <= limit {
                    wait = QUOTA_WINDOW.saturating_sub(now.duration_since(*at));
                    break;
                }
            }
            let retry_after_secs = self.rng.random_bool(0.5).then(|| wait.as_secs() + 1);
            return Err(Rejection::QuotaExceeded { retry_after_secs });
        }
        limits.window.push_back((now, cost));
        *self
            .stats
            .user(user)
            .units
            .entry(method.to_string())
            .or_default() += u64::from(cost);
        Ok(())
    }
}

/// What the sandbox has seen, for tests and `GET /sandbox/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Per mailbox address.
    pub users: BTreeMap<String, UserStats>,
    /// `"<grant_type> <status>"` → count, for the token endpoint.
    pub token_requests: BTreeMap<String, u64>,
    /// Gmail API requests answered 401 (no user is known for those).
    pub unauthenticated: u64,
    /// Push notifications and what became of them on the Pub/Sub side.
    pub pubsub: PubSubStats,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserStats {
    /// Method (`messages.get`, ...) → authenticated requests, admitted or not.
    pub requests: BTreeMap<String, u64>,
    /// Method → quota units charged.
    pub units: BTreeMap<String, u64>,
    /// `"<method> <status>"` → answers sent (a dropped connection sends none).
    pub statuses: BTreeMap<String, u64>,
    /// `"<method> <fault>"` → faults injected.
    pub faults_injected: BTreeMap<String, u64>,
    /// The mailbox's push watch (`users.watch`), also once expired; `None` (JSON `null`)
    /// when there is none or it was stopped.
    pub watch: Option<WatchStats>,
}

impl Stats {
    pub fn user(&mut self, user: &str) -> &mut UserStats {
        self.users.entry(user.to_string()).or_default()
    }

    /// Adds one to the counter `key` of the map that `counter` picks in `user`'s statistics.
    pub fn bump(
        &mut self,
        user: &str,
        counter: fn(&mut UserStats) -> &mut BTreeMap<String, u64>,
        key: String,
    ) {
        *counter(self.user(user)).entry(key).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_round_trip() {
        for kind in FaultKind::ALL {
            assert_eq!(kind.name().parse::<FaultKind>().expect("parses"), kind);
        }
        assert!("teapot".parse::<FaultKind>().is_err());
    }

    #[test]
    fn fault_rate_zero_and_one() {
        let mut never = FaultInjector::new(
            FaultConfig {
                rate: 0.0,
                kinds: vec![FaultKind::DropConnection],
            },
            1,
        );
        let mut always = FaultInjector::new(
            FaultConfig {
                rate: 1.0,
                kinds: vec![FaultKind::SlowResponse],
            },
            1,
        );
        let mut nan = FaultInjector::new(
            FaultConfig {
                rate: f64::NAN,
                kinds: vec![FaultKind::SlowResponse],
            },
            1,
        );
        for _ in 0..100 {
            assert_eq!(never.pick(), None);
            assert_eq!(always.pick(), Some(FaultKind::SlowResponse));
            assert_eq!(nan.pick(), None);
        }
    }

    #[test]
    fn quota_is_a_sliding_minute_and_rejections_cost_nothing() {
        let mut limiter = Limiter::new(50, 10, 1);
        let start = Instant::now();
        assert!(limiter.charge("u", "messages.get", 20, start).is_ok());
        assert!(
            limiter
                .charge("u", "messages.get", 20, start + Duration::from_secs(30))
                .is_ok()
        );
        let rejected = limiter.charge("u", "messages.get", 20, start + Duration::from_secs(40));
        let Err(Rejection::QuotaExceeded { retry_after_secs }) = rejected else {
            panic!("expected quota rejection")
        };
        assert!(
            retry_after_secs.is_none_or(|secs| (20..=21).contains(&secs)),
            "{retry_after_secs:?}"
        );
        assert!(
            limiter
                .charge("u", "messages.list", 5, start + Duration::from_secs(41))
                .is_ok()
        );
        assert!(
            limiter
                .charge("other", "messages.get", 20, start + Duration::from_secs(41))
                .is_ok()
        );
        assert!(
            limiter
                .charge("u", "messages.get", 20, start + Duration::from_secs(60))
                .is_ok()
        );
        assert_eq!(limiter.stats.users["u"].units["messages.get"], 60);
    }

    #[test]
    fn concurrency_cap_counts_requests_in_flight() {
        let mut limiter = Limiter::new(100, 2, 1);
        assert!(limiter.enter("u").is_ok());
        assert!(limiter.enter("u").is_ok());
        assert_eq!(limiter.enter("u"), Err(Rejection::TooManyConcurrent));
        limiter.leave("u");
        assert!(limiter.enter("u").is_ok());
    }
}
