//! The operator's TOML config: parsed strictly, validated completely, then immutable.
//!
//! `RawConfig` mirrors the file and rejects unknown keys; `Config` is the validated form and is
//! all the rest of the program ever sees. Relative paths are resolved against the config file's
//! folder, so a config and its rules can travel together.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::address;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::freemail::FreemailDomains;
use crate::tomlfile::{KeyPath, TomlFile};

/// Where the config lives when neither `--config` nor `MAILSYNC_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mailsync/mailsync.toml";

#[derive(Debug, Deserialize)]
struct RawConfig {
    company: RawCompany,
    store: RawStore,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    gmail: RawGmail,
    #[serde(default)]
    daemon: RawDaemon,
    notify: Option<RawNotify>,
    metrics: Option<RawMetrics>,
    #[serde(default)]
    limits: crate::parse::Limits,
    retention: Option<RawRetention>,
    #[serde(default)]
    users: Vec<RawUser>,
}

/// The keys of the config's table at `parent`, for "did you mean" on an unknown key.
fn known_keys(parent: &crate::tomlfile::KeyPath) -> &'static [&'static str] {
    use crate::tomlfile::KeyPathSegment;
    use serde_aux::serde_introspection::serde_introspect;
    let keys: Vec<&str> = parent
        .0
        .iter()
        .filter_map(|segment| match segment {
            KeyPathSegment::Key(key) => Some(key.as_str()),
            KeyPathSegment::Index(_) => None,
        })
        .collect();
    match keys.as_slice() {
        [] => serde_introspect::<RawConfig>(),
        ["company"] => serde_introspect::<RawCompany>(),
        ["store"] => serde_introspect::<RawStore>(),
        ["rules"] => serde_introspect::<RawRules>(),
        ["gmail"] => serde_introspect::<RawGmail>(),
        ["gmail", "push"] => serde_introspect::<RawPush>(),
        ["gmail", "quota"] => serde_introspect::<RawQuota>(),
        ["daemon"] => serde_introspect::<RawDaemon>(),
        ["notify"] => serde_introspect::<RawNotify>(),
        ["metrics"] => serde_introspect::<RawMetrics>(),
        ["limits"] => serde_introspect::<crate::parse::Limits>(),
        ["retention"] => serde_introspect::<RawRetention>(),
        ["users"] => serde_introspect::<RawUser>(),
        _ => &[],
    }
}

#[derive(Debug, Deserialize)]
struct RawRetention {
    body_days: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct RawCompany {
    domains: Vec<String>,
    #[serde(default)]
    admins_see_private_emails: bool,
    /// Every mailbox's capture unless its user says otherwise.
    #[serde(default)]
    capture: Capture,
}

#[derive(Debug, Deserialize)]
struct RawStore {
    path: Option<PathBuf>,
    url: Option<String>,
    password_file: Option<PathBuf>,
    attachments_dir: Option<PathBuf>,
    #[serde(default = "default_max_attachment_bytes")]
    max_attachment_bytes: u64,
}

/// 25 MiB: Gmail's own limit for a message's attachments.
fn default_max_attachment_bytes() -> u64 {
    25 * 1024 * 1024
}

#[derive(Debug, Deserialize, Default)]
struct RawRules {
    dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawGmail {
    api_base_url: String,
    service_account_key: Option<PathBuf>,
    client_secret: Option<PathBuf>,
    initial_sync_days: u32,
    poll_interval_secs: u64,
    list_page_size: u32,
    request_timeout_secs: u64,
    max_concurrent_requests_per_user: u32,
    max_attempts: u32,
    backoff_max_secs: u64,
    verify_interval_secs: u64,
    backfill_days: u32,
    candidate_search: bool,
    quota: RawQuota,
    push: Option<RawPush>,
}

/// `[gmail.push]`: Gmail's `users.watch` notifications, pulled from a Pub/Sub subscription.
#[derive(Debug, Deserialize)]
struct RawPush {
    topic: String,
    subscription: String,
    #[serde(default = "default_pubsub_base_url")]
    pubsub_base_url: String,
    #[serde(default = "default_safety_poll_secs")]
    safety_poll_secs: u64,
    service_account_key: Option<PathBuf>,
}

fn default_pubsub_base_url() -> String {
    "https://pubsub.googleapis.com/".to_string()
}

/// Pub/Sub delivers at least once, and a notification can still be lost: a poll every 15
/// minutes bounds how late such a message can be.
fn default_safety_poll_secs() -> u64 {
    900
}

impl Default for RawGmail {
    fn default() -> Self {
        RawGmail {
            api_base_url: default_api_base_url(),
            service_account_key: None,
            client_secret: None,
            initial_sync_days: 30,
            poll_interval_secs: 60,
            list_page_size: 500,
            request_timeout_secs: 30,
            // Gmail caps a user at about 10 requests in flight; staying well below leaves
            // room for the CRM's own use of the same mailbox.
            max_concurrent_requests_per_user: 5,
            max_attempts: 8,
            backoff_max_secs: 32,
            verify_interval_secs: 86_400,
            backfill_days: 365,
            candidate_search: true,
            quota: RawQuota::default(),
            push: None,
        }
    }
}

fn default_api_base_url() -> String {
    "https://gmail.googleapis.com/".to_string()
}

/// Gmail's per-user quota and what each method costs, in quota units (the 2026 figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RawQuota {
    pub units_per_minute: u32,
    pub get_profile: u32,
    pub labels_list: u32,
    pub history_list: u32,
    pub messages_list: u32,
    pub messages_get: u32,
    pub watch: u32,
    pub stop: u32,
}

impl Default for RawQuota {
    fn default() -> Self {
        RawQuota {
            units_per_minute: 6000,
            get_profile: 1,
            labels_list: 1,
            history_list: 2,
            messages_list: 5,
            messages_get: 20,
            watch: 100,
            stop: 50,
        }
    }
}

/// Gmail quota settings as validated.
pub type QuotaConfig = RawQuota;

impl RawQuota {
    /// The most any one request costs (at least 1): the bucket must hold at least this much.
    pub fn largest_cost(&self) -> u32 {
        [
            self.get_profile,
            self.labels_list,
            self.history_list,
            self.messages_list,
            self.messages_get,
            self.watch,
            self.stop,
        ]
        .into_iter()
        .max()
        .unwrap_or(1)
        .max(1)
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawDaemon {
    max_concurrent_users: u32,
    shutdown_timeout_secs: u64,
    lease_secs: u64,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            // Each mailbox has its own Gmail quota, so syncing more of them at once is what
            // makes a company's first sync take as long as one mailbox's; a mailbox waiting for
            // its quota holds a slot but costs no CPU. Memory is the bound: about 25 messages
            // in flight per syncing mailbox.
            max_concurrent_users: 50,
            shutdown_timeout_secs: 9,
            lease_secs: 30,
        }
    }
}

/// How the SMTP relay is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on localhost or in tests.
    None,
}

#[derive(Debug, Deserialize)]
struct RawNotify {
    smtp_host: String,
    #[serde(default = "default_smtp_port")]
    smtp_port: u16,
    #[serde(default)]
    smtp_security: SmtpSecurity,
    smtp_username: Option<String>,
    smtp_password_file: Option<PathBuf>,
    from: String,
    #[serde(default)]
    ops: Vec<String>,
    #[serde(default)]
    notify_user: bool,
    #[serde(default = "default_failure_threshold")]
    failure_threshold: u32,
    #[serde(default = "default_notify_interval_secs")]
    notify_interval_secs: u64,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_failure_threshold() -> u32 {
    3
}

fn default_notify_interval_secs() -> u64 {
    3600
}

#[derive(Debug, Deserialize)]
struct RawMetrics {
    listen: std::net::SocketAddr,
    #[serde(default)]
    hash_users: bool,
}

/// Email notifications to ops (and optionally the affected user) when a user's sync needs
/// attention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_security: SmtpSecurity,
    pub smtp_username: Option<String>,
    /// Read when sending; never kept in the config or logged.
    pub smtp_password_file: Option<PathBuf>,
    pub from: String,
    pub ops: Vec<String>,
    pub notify_user: bool,
    /// Consecutive failed polls before a user's failure is reported.
    pub failure_threshold: u32,
    /// At most one email per user and kind in this many seconds.
    pub notify_interval_secs: u64,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub listen: std::net::SocketAddr,
    /// Label users by a hash of their address (for scrapes that leave the company).
    pub hash_users: bool,
}

/// How mailsync reaches Gmail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailConfig {
    /// Ends with `/`.
    pub api_base_url: String,
    /// Workspace domain-wide delegation: the service account's JSON key.
    pub service_account_key: Option<PathBuf>,
    /// Per-user OAuth: the installed-app client secret JSON.
    pub client_secret: Option<PathBuf>,
    pub initial_sync_days: u32,
    pub poll_interval_secs: u64,
    pub list_page_size: u32,
    pub request_timeout_secs: u64,
    pub max_concurrent_requests_per_user: u32,
    pub max_attempts: u32,
    pub backoff_max_secs: u64,
    /// How often the daemon reconciles a mailbox's listing with the decision log; 0 = never.
    pub verify_interval_secs: u64,
    /// How far back a new contact's earlier mail is searched for; 0 = no backfill.
    pub backfill_days: u32,
    /// Whether a full sync fetches only the messages a contact-address search lists (and
    /// decides the rest without fetching) when that costs less quota than fetching everything.
    pub candidate_search: bool,
    pub quota: QuotaConfig,
    /// `[gmail.push]`; `None` polls every `poll_interval_secs`.
    pub push: Option<PushConfig>,
}

/// Push (`[gmail.push]`): Gmail publishes a notification to `topic` whenever a watched
/// mailbox changes, and mailsync pulls them from `subscription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// `projects/P/topics/T`, given to `users.watch`.
    pub topic: String,
    /// `projects/P/subscriptions/S`, pulled with the service account's own token.
    pub subscription: String,
    /// Ends with `/`.
    pub pubsub_base_url: String,
    /// How often each mailbox is polled anyway while push works.
    pub safety_poll_secs: u64,
    /// The key pulling uses: `[gmail.push] service_account_key`, else `[gmail]`'s (with
    /// per-user OAuth there is none, and this section must name one).
    pub service_account_key: PathBuf,
}

/// How the daemon runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Mailboxes polled at the same time.
    pub max_concurrent_users: u32,
    /// How long SIGTERM waits for in-flight work before exiting anyway.
    pub shutdown_timeout_secs: u64,
    /// With several instances on one PostgreSQL store: how long a mailbox lease lasts
    /// without renewal, so how long a dead instance's mailboxes wait before another syncs
    /// them. Renewed several times per lease.
    pub lease_secs: u64,
}

#[derive(Debug, Deserialize)]
struct RawUser {
    email: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    role: Role,
    /// Off unless an operator turns it on: listing a user makes their addresses internal, but
    /// reading their mail is a separate, explicit decision.
    #[serde(default)]
    sync: bool,
    /// Private unless an operator says otherwise: colleagues see that an email happened, not
    /// what it said.
    #[serde(default)]
    emails_visible: bool,
    /// `[company] capture` unless given.
    capture: Option<Capture>,
}

/// What is kept of a mailbox's synced mail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Capture {
    /// Subject, body and attachments too.
    #[default]
    Full,
    /// Only date, direction, parties, conversation and contact links: subjects, bodies and
    /// attachments are never stored or indexed.
    Metadata,
}

impl Capture {
    pub fn as_str(self) -> &'static str {
        match self {
            Capture::Full => "full",
            Capture::Metadata => "metadata",
        }
    }
}

/// What a user may see beyond their own mail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    #[default]
    User,
}

/// A CRM user whose mailbox mailsync may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Primary address, lower-cased; the user's identity everywhere in the store.
    pub email: String,
    /// Other addresses of the same person, lower-cased.
    pub aliases: Vec<String>,
    pub role: Role,
    pub sync: bool,
    pub emails_visible: bool,
    /// What is kept of this mailbox's synced mail.
    pub capture: Capture,
}

impl User {
    /// The primary address followed by the aliases.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.email.as_str()).chain(self.aliases.iter().map(String::as_str))
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Which backend holds the CRM store, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `[store] path`: one SQLite file, one daemon.
    Sqlite { path: PathBuf },
    /// `[store] url`: a PostgreSQL database. The URL holds no password: it comes from
    /// `password_file`, or from libpq's `PGPASSWORD` and passfile.
    Postgres {
        url: String,
        password_file: Option<PathBuf>,
    },
}

impl std::fmt::Display for StoreLocation {
    /// For logs and messages: the path, or the URL (which never holds a password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite { path } => write!(f, "{}", path.display()),
            StoreLocation::Postgres { url, .. } => f.write_str(url),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, for messages and for reload.
    pub source_path: PathBuf,
    pub company_domains: Vec<String>,
    pub admins_see_private_emails: bool,
    /// Where the CRM store is (`[store] path` or `[store] url`).
    pub store: StoreLocation,
    /// Where attachment content is kept, content-addressed (`[store] attachments_dir`);
    /// `None` keeps metadata only.
    pub attachments_dir: Option<PathBuf>,
    /// Larger attachments keep metadata only (`[store] max_attachment_bytes`).
    pub max_attachment_bytes: u64,
    /// Subjects, bodies and attachment content of messages older than this many days are
    /// erased (`[retention] body_days`); `None` keeps them.
    pub retention_body_days: Option<u32>,
    pub rules_dir: Option<PathBuf>,
    pub gmail: GmailConfig,
    pub daemon: DaemonConfig,
    pub notify: Option<NotifyConfig>,
    pub metrics: Option<MetricsConfig>,
    /// Bounds on what one message may cost to parse (`[limits]`).
    pub limits: crate::parse::Limits,
    pub users: Vec<User>,
    pub freemail: FreemailDomains,
    user_by_address: HashMap<String, usize>,
}

impl Config {
    /// The user owning `address` (primary or alias), compared case-insensitively.
    pub fn user_by_address(&self, address: &str) -> Option<&User> {
        self.user_by_address
            .get(&address::normalize(address))
            .map(|&index| &self.users[index])
    }

    /// Loads and validates the config at `path`, reporting every problem found.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            Diagnostic::new(path, None, format!("cannot read config file: {error}"))
        })?;
        Config::from_toml(path, text)
    }

    /// Validates config text as if it had been read from `path`.
    pub fn from_toml(path: &Path, text: String) -> Result<Config, Diagnostics> {
        let file = TomlFile::new(path, text);
        let (raw, mut diagnostics) = file.deserialize_suggesting::<RawConfig>(&known_keys);
        let Some(raw) = raw else {
            return Err(diagnostics);
        };
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let rules_dir = raw.rules.dir.as_ref().map(|dir| base_dir.join(dir));
        let freemail = match &rules_dir {
            Some(dir) => {
                let (freemail, problems) = FreemailDomains::load_with_additions(dir);
                diagnostics.extend(problems);
                freemail
            }
            None => FreemailDomains::builtin(),
        };
        let config = validate(&file, raw, base_dir, rules_dir, freemail, &mut diagnostics);
        diagnostics.into_result(config)
    }
}

fn validate(
    file: &TomlFile,
    raw: RawConfig,
    base_dir: &Path,
    rules_dir: Option<PathBuf>,
    freemail: FreemailDomains,
    diagnostics: &mut Diagnostics,
) -> Config {
    let mut company_domains = Vec::new();
    for (index, domain) in raw.company.domains.iter().enumerate() {
        let at = KeyPath::default()
            .key("company")
            .key("domains")
            .index(index);
        let domain = address::normalize(domain);
        if let Err(problem) = address::validate_domain(&domain) {
            diagnostics.push(file.diagnostic(&at, format!("company domain: {problem}")));
        } else if freemail.contains(&domain) {
            diagnostics.push(file.diagnostic(
                &at,
                format!(
                    "company domain `{domain}` is a free-mail domain: listing it would make \
                     every {domain} address internal and never synced; remove it"
                ),
            ));
        } else if company_domains.contains(&domain) {
            diagnostics
                .push(file.diagnostic(&at, format!("company domain `{domain}` is listed twice")));
        } else {
            company_domains.push(domain);
        }
    }

    let gmail = validate_gmail(file, raw.gmail, base_dir, diagnostics);
    let notify = raw
        .notify
        .map(|notify| validate_notify(file, notify, base_dir, diagnostics));
    let mut limits = raw.limits;
    let minimums = [
        ("max_message_bytes", limits.max_message_bytes, 64 * 1024),
        ("max_header_bytes", limits.max_header_bytes, 4 * 1024),
        ("max_recipients", limits.max_recipients, 1),
        ("max_mime_depth", limits.max_mime_depth, 1),
        ("max_mime_parts", limits.max_mime_parts, 1),
        ("max_body_text_bytes", limits.max_body_text_bytes, 1024),
        ("max_html_bytes", limits.max_html_bytes, 1024),
    ];
    for (key, value, minimum) in minimums {
        if value < minimum {
            let at = KeyPath::default().key("limits").key(key);
            diagnostics.push(file.diagnostic(
                &at,
                format!("`{key}` must be at least {minimum}: smaller would reject ordinary mail"),
            ));
        }
    }
    if raw.store.max_attachment_bytes == 0 {
        let at = KeyPath::default().key("store").key("max_attachment_bytes");
        diagnostics.push(file.diagnostic(
            &at,
            "`max_attachment_bytes` must be at least 1 (leave out `attachments_dir` to keep no content)",
        ));
    }
    let store = validate_store_location(&raw.store, file, base_dir, diagnostics);
    let attachments_dir = raw.store.attachments_dir.map(|dir| base_dir.join(dir));
    if attachments_dir.is_some() {
        // The parser keeps the decoded bytes of attachments the store will keep, and no
        // others.
        limits.keep_attachment_bytes =
            usize::try_from(raw.store.max_attachment_bytes).unwrap_or(usize::MAX);
    }
    let retention_body_days = raw.retention.and_then(|retention| {
        let days = retention.body_days?;
        match u32::try_from(days) {
            Ok(days) if days >= 1 => Some(days),
            _ => {
                let at = KeyPath::default().key("retention").key("body_days");
                diagnostics.push(file.diagnostic(
                    &at,
                    format!("`body_days` must be a whole number of days, at least 1 (not {days}); leave it out to keep content forever"),
                ));
                None
            }
        }
    });
    let metrics = raw.metrics.map(|metrics| MetricsConfig {
        listen: metrics.listen,
        hash_users: metrics.hash_users,
    });
    let daemon = DaemonConfig {
        max_concurrent_users: raw.daemon.max_concurrent_users,
        shutdown_timeout_secs: raw.daemon.shutdown_timeout_secs,
        lease_secs: raw.daemon.lease_secs,
    };
    if daemon.max_concurrent_users == 0 {
        let at = KeyPath::default().key("daemon").key("max_concurrent_users");
        diagnostics.push(file.diagnostic(&at, "must be at least 1"));
    }
    if !(3..=3600).contains(&daemon.lease_secs) {
        let at = KeyPath::default().key("daemon").key("lease_secs");
        diagnostics.push(file.diagnostic(
            &at,
            "must be between 3 and 3600 seconds (renewed every third of it)",
        ));
    }

    let mut users = Vec::new();
    let mut user_by_address = HashMap::new();
    for (index, raw_user) in raw.users.into_iter().enumerate() {
        let at = KeyPath::default().key("users").index(index);
        let email = address::normalize(&raw_user.email);
        let mut addresses = vec![(email.clone(), at.clone().key("email"))];
        for (alias_index, alias) in raw_user.aliases.iter().enumerate() {
            let alias_at = at.clone().key("aliases").index(alias_index);
            addresses.push((address::normalize(alias), alias_at));
        }
        let mut valid = true;
        for (user_address, address_at) in &addresses {
            if let Err(problem) = address::validate(user_address) {
                diagnostics.push(file.diagnostic(address_at, format!("user address: {problem}")));
                valid = false;
            } else if let Some(&owner) = user_by_address.get(user_address) {
                let owner: &User = &users[owner];
                diagnostics.push(file.diagnostic(
                    address_at,
                    format!(
                        "`{user_address}` is already an address of user `{}`: each address \
                         belongs to one user",
                        owner.email
                    ),
                ));
                valid = false;
            }
        }
        if !valid {
            continue;
        }
        let position = users.len();
        for (user_address, _) in &addresses {
            user_by_address.insert(user_address.clone(), position);
        }
        users.push(User {
            email,
            aliases: addresses.into_iter().skip(1).map(|(a, _)| a).collect(),
            role: raw_user.role,
            sync: raw_user.sync,
            emails_visible: raw_user.emails_visible,
            capture: raw_user.capture.unwrap_or(raw.company.capture),
        });
    }

    Config {
        source_path: file.path.clone(),
        company_domains,
        admins_see_private_emails: raw.company.admins_see_private_emails,
        store,
        attachments_dir,
        max_attachment_bytes: raw.store.max_attachment_bytes,
        retention_body_days,
        rules_dir,
        gmail,
        daemon,
        notify,
        metrics,
        limits,
        users,
        freemail,
        user_by_address,
    }
}

/// `[store]`: exactly one of `path` and `url`; a URL that PostgreSQL's client accepts, with
/// no password in it; `password_file` only with a URL, and private.
fn validate_store_location(
    raw: &RawStore,
    file: &TomlFile,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> StoreLocation {
    let at = |key: &str| KeyPath::default().key("store").key(key);
    let fallback = || StoreLocation::Sqlite {
        path: base_dir.join(raw.path.clone().unwrap_or_default()),
    };
    match (&raw.path, &raw.url) {
        (Some(_), Some(_)) => {
            diagnostics.push(file.diagnostic(
                &at("url"),
                "set `path` (SQLite) or `url` (PostgreSQL), not both",
            ));
            fallback()
        }
        (None, None) => {
            diagnostics.push(file.diagnostic(
                &KeyPath::default().key("store"),
                "set `path = \"crm.sqlite3\"` (SQLite) or `url = \"postgresql://USER@HOST:PORT/DB\"` (PostgreSQL)",
            ));
            fallback()
        }
        (Some(path), None) => {
            if raw.password_file.is_some() {
                diagnostics.push(file.diagnostic(
                    &at("password_file"),
                    "`password_file` is for a PostgreSQL `url`; a SQLite store has no password",
                ));
            }
            StoreLocation::Sqlite {
                path: base_dir.join(path),
            }
        }
        (None, Some(url)) => {
            match url.parse::<postgres::Config>() {
                Err(error) => diagnostics.push(file.diagnostic(
                    &at("url"),
                    format!("not a PostgreSQL URL ({error}); write `postgresql://USER@HOST:PORT/DB`"),
                )),
                Ok(parsed) if parsed.get_password().is_some() => diagnostics.push(file.diagnostic(
                    &at("url"),
                    "the URL holds a password: keep it out of the config, in `password_file` (chmod 600) or libpq's PGPASSWORD or passfile",
                )),
                Ok(_) => {}
            }
            let password_file = raw.password_file.as_ref().map(|path| base_dir.join(path));
            if let Some(path) = &password_file
                && let Err(problem) = crate::secret_file::check(path)
            {
                diagnostics.push(file.diagnostic(&at("password_file"), problem.to_string()));
            }
            StoreLocation::Postgres {
                url: url.clone(),
                password_file,
            }
        }
    }
}

fn validate_notify(
    file: &TomlFile,
    raw: RawNotify,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> NotifyConfig {
    let at = |key: &str| KeyPath::default().key("notify").key(key);
    if raw.smtp_host.trim().is_empty() {
        diagnostics.push(file.diagnostic(&at("smtp_host"), "`smtp_host` is empty"));
    }
    if raw.from.parse::<lettre::message::Mailbox>().is_err() {
        diagnostics.push(file.diagnostic(
            &at("from"),
            format!(
                "`{}` is not a mailbox (e.g. \"mailsync <mailsync@abcorp.com>\")",
                raw.from
            ),
        ));
    }
    let mut ops = Vec::new();
    for (index, recipient) in raw.ops.iter().enumerate() {
        let recipient = address::normalize(recipient);
        match address::validate(&recipient) {
            Ok(()) => ops.push(recipient),
            Err(problem) => diagnostics.push(
                file.diagnostic(&at("ops").index(index), format!("ops recipient: {problem}")),
            ),
        }
    }
    if raw.ops.is_empty() && !raw.notify_user {
        diagnostics.push(file.diagnostic(
            &at("ops"),
            "nobody would be notified: list `ops` recipients or set `notify_user = true`",
        ));
    }
    if raw.failure_threshold == 0 {
        diagnostics.push(file.diagnostic(
            &at("failure_threshold"),
            "`failure_threshold` must be at least 1",
        ));
    }
    if raw.smtp_security == SmtpSecurity::None && !is_loopback_url(&raw.smtp_host) {
        diagnostics.push(file.diagnostic(
            &at("smtp_security"),
            format!("`smtp_security = \"none\"` sends notifications and credentials unencrypted; it is only allowed for a relay on this machine, not `{}`", raw.smtp_host),
        ));
    }
    if let Some(password_file) = &raw.smtp_password_file {
        let path = base_dir.join(password_file);
        if let Err(problem) = crate::secret_file::check(&path) {
            diagnostics.push(file.diagnostic(&at("smtp_password_file"), problem.to_string()));
        }
    }
    if raw.smtp_username.is_some() != raw.smtp_password_file.is_some() {
        diagnostics.push(file.diagnostic(
            &at("smtp_username"),
            "set both `smtp_username` and `smtp_password_file`, or neither",
        ));
    }
    NotifyConfig {
        smtp_host: raw.smtp_host,
        smtp_port: raw.smtp_port,
        smtp_security: raw.smtp_security,
        smtp_username: raw.smtp_username,
        smtp_password_file: raw.smtp_password_file.map(|path| base_dir.join(path)),
        from: raw.from,
        ops,
        notify_user: raw.notify_user,
        failure_threshold: raw.failure_threshold,
        notify_interval_secs: raw.notify_interval_secs,
    }
}

fn validate_gmail(
    file: &TomlFile,
    raw: RawGmail,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> GmailConfig {
    let at = |key: &str| KeyPath::default().key("gmail").key(key);
    let api_base_url = validate_base_url(&raw.api_base_url).unwrap_or_else(|problem| {
        diagnostics.push(file.diagnostic(&at("api_base_url"), problem));
        default_api_base_url()
    });
    let positive = [
        ("initial_sync_days", u64::from(raw.initial_sync_days)),
        ("poll_interval_secs", raw.poll_interval_secs),
        ("request_timeout_secs", raw.request_timeout_secs),
        (
            "max_concurrent_requests_per_user",
            u64::from(raw.max_concurrent_requests_per_user),
        ),
        ("max_attempts", u64::from(raw.max_attempts)),
        ("backoff_max_secs", raw.backoff_max_secs),
    ];
    for (key, value) in positive {
        if value == 0 {
            diagnostics.push(file.diagnostic(&at(key), format!("`{key}` must be at least 1")));
        }
    }
    if !(1..=500).contains(&raw.list_page_size) {
        diagnostics.push(file.diagnostic(
            &at("list_page_size"),
            "`list_page_size` must be between 1 and 500 (Gmail's maximum)",
        ));
    }
    let service_account_key = raw.service_account_key.map(|path| base_dir.join(path));
    let push = raw.push.and_then(|push| {
        validate_push(
            file,
            push,
            service_account_key.as_deref(),
            base_dir,
            diagnostics,
        )
    });
    let quota = raw.quota;
    let largest_cost = quota.largest_cost();
    if quota.units_per_minute < largest_cost {
        diagnostics.push(file.diagnostic(
            &at("quota"),
            format!("`quota.units_per_minute` ({}) must be at least the largest method cost ({largest_cost})", quota.units_per_minute),
        ));
    }
    GmailConfig {
        api_base_url,
        service_account_key,
        client_secret: raw.client_secret.map(|path| base_dir.join(path)),
        initial_sync_days: raw.initial_sync_days,
        poll_interval_secs: raw.poll_interval_secs,
        list_page_size: raw.list_page_size,
        request_timeout_secs: raw.request_timeout_secs,
        max_concurrent_requests_per_user: raw.max_concurrent_requests_per_user,
        max_attempts: raw.max_attempts,
        backoff_max_secs: raw.backoff_max_secs,
        verify_interval_secs: raw.verify_interval_secs,
        backfill_days: raw.backfill_days,
        candidate_search: raw.candidate_search,
        quota,
        push,
    }
}

/// `projects/{project}/{kind}/{name}` with no empty part and nothing else.
fn is_resource_name(name: &str, kind: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 4
        && parts[0] == "projects"
        && parts[2] == kind
        && [parts[1], parts[3]]
            .iter()
            .all(|part| !part.is_empty() && !part.contains(char::is_whitespace))
}

fn validate_push(
    file: &TomlFile,
    raw: RawPush,
    gmail_key: Option<&Path>,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<PushConfig> {
    let at = |key: &str| KeyPath::default().key("gmail").key("push").key(key);
    let before = diagnostics.len();
    if !is_resource_name(&raw.topic, "topics") {
        diagnostics.push(file.diagnostic(
            &at("topic"),
            format!(
                "`{}` is not a Pub/Sub topic name: write projects/PROJECT/topics/TOPIC",
                raw.topic
            ),
        ));
    }
    if !is_resource_name(&raw.subscription, "subscriptions") {
        diagnostics.push(file.diagnostic(
            &at("subscription"),
            format!(
                "`{}` is not a Pub/Sub subscription name: write projects/PROJECT/subscriptions/SUBSCRIPTION",
                raw.subscription
            ),
        ));
    }
    let pubsub_base_url = validate_base_url(&raw.pubsub_base_url).unwrap_or_else(|problem| {
        diagnostics.push(file.diagnostic(&at("pubsub_base_url"), problem));
        default_pubsub_base_url()
    });
    if raw.safety_poll_secs == 0 {
        diagnostics.push(file.diagnostic(
            &at("safety_poll_secs"),
            "`safety_poll_secs` must be at least 1: notifications can be lost, and only this poll finds their mail",
        ));
    }
    let service_account_key = match (raw.service_account_key, gmail_key) {
        (Some(path), _) => Some(base_dir.join(path)),
        (None, Some(path)) => Some(path.to_path_buf()),
        (None, None) => {
            diagnostics.push(file.diagnostic(
                &KeyPath::default().key("gmail").key("push"),
                "with per-user OAuth ([gmail] client_secret), [gmail.push] needs `service_account_key`: the key of a service account with the Pub/Sub Subscriber role on the subscription",
            ));
            None
        }
    };
    (diagnostics.len() == before).then(|| PushConfig {
        topic: raw.topic,
        subscription: raw.subscription,
        pubsub_base_url,
        safety_poll_secs: raw.safety_poll_secs,
        service_account_key: service_account_key.expect("checked above"),
    })
}

/// True when an http(s) URL names this machine (127.0.0.0/8, ::1 or localhost): the only
/// place plain http is acceptable, for the test server and the demo.
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or("")
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Gmail's client joins paths onto the base URL, so it must be http(s) and end with `/`; a
/// missing slash is added rather than rejected because its meaning is unambiguous.
fn validate_base_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            format!("`{url}` must start with https:// (or http:// for a local test server)")
        })?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(format!("`{url}` has no host"));
    }
    if url.starts_with("http://") && !is_loopback_url(url) {
        return Err(format!(
            "`{url}` is plain http to a host that is not this machine: mail and tokens would cross the network unencrypted; use https://"
        ));
    }
    if url.ends_with('/') {
        Ok(url.to_string())
    } else {
        Ok(format!("{url}/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Vec<String>> {
        Config::from_toml(Path::new("/etc/mailsync/mailsync.toml"), text.to_string())
            .map_err(|d| d.0.iter().map(|d| d.to_string()).collect())
    }

    const MINIMAL: &str =
        "[company]\ndomains = [\"abcorp.com\"]\n[store]\npath = \"crm.sqlite3\"\n";

    #[test]
    fn minimal_config_gets_private_defaults() {
        let config = load(&format!(
            "{MINIMAL}[[users]]\nemail = \"Michelle@ABCorp.com\"\n"
        ))
        .unwrap();
        let user = &config.users[0];
        assert_eq!(user.email, "michelle@abcorp.com");
        assert!(!user.sync, "sync must be opted into");
        assert!(!user.emails_visible, "emails are private unless configured");
        assert_eq!(user.role, Role::User);
        assert_eq!(
            config.store,
            StoreLocation::Sqlite {
                path: PathBuf::from("/etc/mailsync/crm.sqlite3")
            }
        );
        assert_eq!(config.gmail.api_base_url, "https://gmail.googleapis.com/");
        assert_eq!(config.gmail.quota.messages_get, 20);
        assert!(config.user_by_address("MICHELLE@abcorp.com").is_some());
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "[company]\n\
                    domains = [\"abcorp.com\", \"gmail.com\"]\n\
                    [store]\n\
                    path = \"x.sqlite3\"\n\
                    [gmail]\n\
                    api_base_url = \"ftp://x\"\n\
                    [[users]]\n\
                    email = \"michelle@abcorp.com\"\n\
                    colour = \"blue\"\n\
                    [[users]]\n\
                    email = \"not-an-address\"\n\
                    [[users]]\n\
                    email = \"dave@abcorp.com\"\n\
                    aliases = [\"MICHELLE@abcorp.com\"]\n";
        let problems = load(text).unwrap_err();
        let lines: Vec<&str> = problems
            .iter()
            .map(|p| p.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                "/etc/mailsync/mailsync.toml:2",
                "/etc/mailsync/mailsync.toml:6",
                "/etc/mailsync/mailsync.toml:9",
                "/etc/mailsync/mailsync.toml:11",
                "/etc/mailsync/mailsync.toml:14",
            ],
            "{problems:#?}"
        );
        assert!(problems[0].contains("free-mail"));
        assert!(problems[2].contains("unknown key `users[0].colour`"));
        assert!(problems[4].contains("already an address of user `michelle@abcorp.com`"));
    }

    /// A misspelt key gets the key of its own table it most likely means, wherever it is.
    #[test]
    fn a_misspelt_key_gets_a_suggestion_from_its_own_table() {
        let cases = [
            (
                "[metrics]\nlisten = \"127.0.0.1:9464\"\nhash_user = true\n",
                "did you mean `hash_users`?",
            ),
            (
                "[[users]]\nemail = \"x@abcorp.com\"\nemails_visble = true\n",
                "did you mean `emails_visible`?",
            ),
            (
                "[gmail]\npoll_interval_sec = 5\n",
                "did you mean `poll_interval_secs`?",
            ),
            (
                "[daemon]\nmax_concurrent_user = 3\n",
                "did you mean `max_concurrent_users`?",
            ),
        ];
        for (text, suggestion) in cases {
            let problems = load(&format!("{MINIMAL}{text}")).unwrap_err();
            assert!(
                problems.iter().any(|problem| problem.contains(suggestion)),
                "{text}: {problems:#?}"
            );
        }
        let problems = load(&format!("{MINIMAL}[gmail]\nzebra = 1\n")).unwrap_err();
        assert!(!problems[0].contains("did you mean"), "{problems:#?}");
    }

    /// `[gmail.push]` as data: each text, and what comes of it (the push settings, or the
    /// problems with their lines).
    #[test]
    fn push_settings_are_checked_and_default_sensibly() {
        let key = "[gmail]\nservice_account_key = \"sa.json\"\n";
        let secret = "[gmail]\nclient_secret = \"secret.json\"\n";
        let push = "[gmail.push]\ntopic = \"projects/p/topics/t\"\nsubscription = \"projects/p/subscriptions/s\"\n";
        let config = load(&format!("{MINIMAL}{key}{push}")).unwrap();
        let settings = config.gmail.push.expect("push on");
        assert_eq!(settings.safety_poll_secs, 900);
        assert_eq!(settings.pubsub_base_url, "https://pubsub.googleapis.com/");
        assert_eq!(
            settings.service_account_key,
            PathBuf::from("/etc/mailsync/sa.json"),
            "[gmail]'s key"
        );
        assert_eq!(
            load(&format!("{MINIMAL}{key}")).unwrap().gmail.push,
            None,
            "no section, no push"
        );
        let own_key = format!("{MINIMAL}{secret}{push}service_account_key = \"pubsub.json\"\n");
        assert_eq!(
            load(&own_key)
                .unwrap()
                .gmail
                .push
                .unwrap()
                .service_account_key,
            PathBuf::from("/etc/mailsync/pubsub.json")
        );
        let cases: &[(&str, &[(usize, &str)])] = &[
            (
                &format!("{secret}{push}"),
                &[(7, "needs `service_account_key`")],
            ),
            (
                &format!(
                    "{key}[gmail.push]\ntopic = \"gmail-topic\"\nsubscription = \"projects/p/topics/t\"\nsafety_poll_secs = 0\npubsub_base_url = \"http://pubsub.example.com\"\n"
                ),
                &[
                    (8, "not a Pub/Sub topic name"),
                    (9, "not a Pub/Sub subscription name"),
                    (10, "`safety_poll_secs` must be at least 1"),
                    (11, "plain http"),
                ],
            ),
            (
                &format!("{key}{push}poll_secs = 5\n"),
                &[(10, "unknown key `gmail.push.poll_secs`")],
            ),
            (
                &format!("{key}[gmail.push]\ntopic = \"projects/p/topics/t\"\n"),
                &[(7, "missing field `subscription`")],
            ),
        ];
        for (text, expected) in cases {
            let problems = load(&format!("{MINIMAL}{text}")).unwrap_err();
            assert_eq!(problems.len(), expected.len(), "{problems:#?}");
            for (problem, (line, words)) in problems.iter().zip(expected.iter()) {
                assert!(
                    problem.starts_with(&format!("/etc/mailsync/mailsync.toml:{line}:"))
                        && problem.contains(words),
                    "expected line {line} saying {words:?}, got {problem}"
                );
            }
        }
    }

    #[test]
    fn bad_role_names_the_line() {
        let problems = load(&format!(
            "{MINIMAL}[[users]]\nemail = \"a@abcorp.com\"\nrole = \"root\"\n"
        ))
        .unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("/etc/mailsync/mailsync.toml:7:"),
            "{problems:?}"
        );
    }

    #[test]
    fn limits_are_read_checked_and_default_sensibly() {
        let config = load(MINIMAL).unwrap();
        assert_eq!(config.limits, crate::parse::Limits::default());
        let config = load(&format!(
            "{MINIMAL}[limits]\nmax_message_bytes = 1048576\nmax_recipients = 500\n"
        ))
        .unwrap();
        assert_eq!(config.limits.max_message_bytes, 1_048_576);
        assert_eq!(config.limits.max_recipients, 500);
        assert_eq!(
            config.limits.max_mime_depth,
            crate::parse::Limits::default().max_mime_depth
        );
        let problems = load(&format!("{MINIMAL}[limits]\nmax_message_bytes = 10\n")).unwrap_err();
        assert!(
            problems[0].contains(":6: `max_message_bytes` must be at least"),
            "{problems:?}"
        );
        let problems = load(&format!("{MINIMAL}[limits]\nmax_bytes = 10\n")).unwrap_err();
        assert!(
            problems[0].contains(":6:") && problems[0].contains("max_bytes"),
            "{problems:?}"
        );
    }

    /// `[store]` as written → the location, or the problem reported (with its line).
    #[test]
    fn the_store_is_one_sqlite_path_or_one_postgresql_url_without_a_password() {
        let company = "[company]\ndomains = [\"abcorp.com\"]\n[store]\n";
        let ok: &[(&str, StoreLocation)] = &[
            (
                "path = \"crm.sqlite3\"",
                StoreLocation::Sqlite {
                    path: PathBuf::from("/etc/mailsync/crm.sqlite3"),
                },
            ),
            (
                "url = \"postgresql://mailsync@db.internal:5432/crm?sslmode=require\"",
                StoreLocation::Postgres {
                    url: "postgresql://mailsync@db.internal:5432/crm?sslmode=require".to_string(),
                    password_file: None,
                },
            ),
        ];
        for (store, location) in ok {
            let config = load(&format!("{company}{store}\n")).unwrap();
            assert_eq!(&config.store, location, "{store}");
        }
        let refused: &[(&str, &str)] = &[
            (
                "url = \"postgresql://u:hunter2@db/crm\"",
                "holds a password",
            ),
            (
                "path = \"a.sqlite3\"\nurl = \"postgresql://u@db/crm\"",
                "not both",
            ),
            ("attachments_dir = \"files\"", "set `path"),
            (
                "url = \"postgresql://u@db/crm?sslmode=sometimes\"",
                "not a PostgreSQL URL",
            ),
            (
                "path = \"a.sqlite3\"\npassword_file = \"pw\"",
                "a SQLite store has no password",
            ),
            (
                "url = \"postgresql://u@db/crm\"\npassword_file = \"/nonexistent/pw\"",
                "cannot read /nonexistent/pw",
            ),
        ];
        for (store, said) in refused {
            let problems = load(&format!("{company}{store}\n")).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains(said) && p.contains("mailsync.toml:")),
                "{store}: {problems:?}"
            );
            assert!(
                !problems.iter().any(|p| p.contains("hunter2")),
                "the password is not repeated: {problems:?}"
            );
        }
    }

    #[test]
    fn retention_and_attachment_settings_are_checked() {
        let config = load(MINIMAL).unwrap();
        assert_eq!(
            config.retention_body_days, None,
            "content is kept unless asked"
        );
        assert_eq!(config.attachments_dir, None);
        assert_eq!(config.limits.keep_attachment_bytes, 0);
        let config = load(
            "[company]\ndomains = [\"abcorp.com\"]\n[store]\npath = \"crm.sqlite3\"\n\
             attachments_dir = \"files\"\nmax_attachment_bytes = 1000\n[retention]\nbody_days = 90\n",
        )
        .unwrap();
        assert_eq!(config.retention_body_days, Some(90));
        assert_eq!(
            config.attachments_dir.as_deref(),
            Some(Path::new("/etc/mailsync/files"))
        );
        assert_eq!(config.limits.keep_attachment_bytes, 1000);
        for (days, line) in [("0", ":6:"), ("-3", ":6:")] {
            let problems =
                load(&format!("{MINIMAL}[retention]\nbody_days = {days}\n")).unwrap_err();
            assert!(
                problems[0].contains(line) && problems[0].contains("at least 1"),
                "{problems:?}"
            );
        }
        // How much attachment content the parser keeps follows `[store]`; it is no key.
        let problems =
            load(&format!("{MINIMAL}[limits]\nkeep_attachment_bytes = 5\n")).unwrap_err();
        assert!(
            problems[0].contains("keep_attachment_bytes"),
            "{problems:?}"
        );
        let problems = load(&format!("{MINIMAL}[retention]\nbody_dayz = 3\n")).unwrap_err();
        assert!(
            problems[0].contains(":6:") && problems[0].contains("body_dayz"),
            "{problems:?}"
        );
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        for url in [
            "http://127.0.0.1:8089/",
            "http://localhost:1/",
            "http://[::1]:80/",
            "https://gmail.googleapis.com/",
        ] {
            assert!(validate_base_url(url).is_ok(), "{url}");
        }
        for url in [
            "http://gmail.googleapis.com/",
            "http://10.0.0.1/",
            "http://127.0.0.1.evil.example/",
        ] {
            assert!(validate_base_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn base_url_gets_its_trailing_slash() {
        assert_eq!(
            validate_base_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/"
        );
        assert!(validate_base_url("http:///x").is_err());
    }
}
