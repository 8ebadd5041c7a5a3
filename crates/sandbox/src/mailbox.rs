//! The pure mailbox model: messages parsed from raw bytes, labels, thread ids, newest-first
//! listing with page tokens, and the history log with its retention floor. No I/O happens here,
//! so every Gmail behaviour the sync client depends on can be unit-tested directly.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use sha2::{Digest as _, Sha256};

use super::query::Query;

/// System labels, as `labels.list` reports them.
pub const SYSTEM_LABELS: [&str; 14] = [
    "INBOX",
    "SENT",
    "DRAFT",
    "SPAM",
    "TRASH",
    "CHAT",
    "IMPORTANT",
    "STARRED",
    "UNREAD",
    "CATEGORY_PERSONAL",
    "CATEGORY_SOCIAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
];

/// History types Gmail accepts in `historyTypes`. `messageDeleted` is accepted but never
/// recorded, because the sandbox has no operation that deletes a message.
pub const HISTORY_TYPES: [&str; 4] = [
    "messageAdded",
    "messageDeleted",
    "labelAdded",
    "labelRemoved",
];

/// Length of a snippet, in characters.
const SNIPPET_CHARS: usize = 100;

/// One message of a mailbox, with everything the API reports about it precomputed.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub thread_id: String,
    pub raw: Bytes,
    pub label_ids: Vec<String>,
    pub internal_date_ms: i64,
    pub history_id: u64,
    pub snippet: String,
    /// Decoded header fields in file order.
    pub headers: Vec<(String, String)>,
    /// Set for messages delivered while running, for the "just-added message 404s" fault.
    pub delivered_at: Option<Instant>,
}

impl Message {
    /// All values of the header `name` (case-insensitive), joined by ", ".
    pub fn header_values(&self, name: &str) -> String {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect();
        values.join(", ")
    }

    pub fn has_label(&self, label_id: &str) -> bool {
        self.label_ids.iter().any(|label| label == label_id)
    }

    /// Gmail's `sizeEstimate` is a 32-bit number; huge files saturate rather than wrap.
    pub fn size_estimate(&self) -> u32 {
        u32::try_from(self.raw.len()).unwrap_or(u32::MAX)
    }
}

/// What one history record says happened to its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryChange {
    MessageAdded,
    /// The label ids added.
    LabelsAdded(Vec<String>),
    /// The label ids removed.
    LabelsRemoved(Vec<String>),
}

impl HistoryChange {
    /// The `historyTypes` value that selects it (Gmail's filter names are singular, its
    /// record fields plural).
    pub fn history_type(&self) -> &'static str {
        match self {
            HistoryChange::MessageAdded => "messageAdded",
            HistoryChange::LabelsAdded(_) => "labelAdded",
            HistoryChange::LabelsRemoved(_) => "labelRemoved",
        }
    }

    /// The labels the change added or removed; none for a new message.
    pub fn changed_label_ids(&self) -> &[String] {
        match self {
            HistoryChange::MessageAdded => &[],
            HistoryChange::LabelsAdded(labels) | HistoryChange::LabelsRemoved(labels) => labels,
        }
    }
}

/// One history record: one change to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    pub id: u64,
    pub change: HistoryChange,
    pub message_id: String,
    pub thread_id: String,
    /// The message's labels once the change was made (a snapshot, so that a client replaying
    /// the records in order sees each state the message went through).
    pub label_ids: Vec<String>,
}

impl HistoryRecord {
    /// Whether `labelId` keeps the record: the message carries the label or the change
    /// concerns it, so that removing a label is seen by a client following that label.
    pub fn concerns_label(&self, label_id: &str) -> bool {
        self.label_ids
            .iter()
            .chain(self.change.changed_label_ids())
            .any(|label| label == label_id)
    }
}

/// What a label change applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelTarget<'a> {
    Message(&'a str),
    /// Every message of the thread, as a label applied to a conversation in Gmail's UI.
    Thread(&'a str),
}

/// One message a label change really changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedMessage {
    pub id: String,
    /// Its labels now, then those it lost: the labels a watch's filter looks at.
    pub touched_label_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserLabel {
    pub id: String,
    pub name: String,
}

/// A file to load: its name (for the stable id), its bytes and its mtime (fallback date).
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub raw: Vec<u8>,
    pub mtime_ms: i64,
}

/// What `messages.list` was asked for, already validated by the HTTP layer.
#[derive(Debug, Default)]
pub struct ListRequest<'a> {
    pub query: Option<&'a Query>,
    pub label_ids: Vec<String>,
    pub include_spam_trash: bool,
    pub max_results: usize,
    pub page_token: Option<&'a str>,
    pub now_ms: i64,
}

#[derive(Debug)]
pub struct ListPage<'a> {
    pub messages: Vec<&'a Message>,
    pub next_page_token: Option<String>,
    pub result_size_estimate: usize,
}

/// What `history.list` was asked for; `types` holds only names from [`HISTORY_TYPES`].
#[derive(Debug, Default)]
pub struct HistoryRequest<'a> {
    pub start_history_id: u64,
    pub types: Vec<String>,
    pub label_id: Option<&'a str>,
    pub max_results: usize,
    pub page_token: Option<&'a str>,
}

#[derive(Debug)]
pub struct HistoryPage<'a> {
    pub records: Vec<&'a HistoryRecord>,
    pub next_page_token: Option<String>,
    pub history_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxError {
    /// A page token this mailbox did not issue (or issued for another method).
    InvalidPageToken,
    /// `startHistoryId` is below the retention floor: the client must do a full sync.
    HistoryExpired,
    /// `labels.create` of a name a label already has (ignoring case).
    LabelNameTaken,
    /// `labels.create` of a blank name.
    InvalidLabelName,
}

/// One user's mailbox.
#[derive(Debug)]
pub struct Mailbox {
    /// The address the mailbox was loaded under; grants and control routes name it.
    pub email: String,
    /// What `users.getProfile` reports instead, once the Workspace "renamed" the user.
    renamed_to: Option<String>,
    messages: HashMap<String, Message>,
    /// Message ids, newest first (internalDate descending, ties by id descending).
    order: Vec<String>,
    history: Vec<HistoryRecord>,
    history_id: u64,
    /// `startHistoryId` below this answers 404.
    history_floor: u64,
    user_labels: Vec<UserLabel>,
    /// RFC Message-ID → Gmail thread id, for threading replies.
    threads_by_message_id: HashMap<String, String>,
    id_seed: u64,
    delivered_count: u64,
    rng: StdRng,
}

impl Mailbox {
    /// The mailbox's primary address as `users.getProfile` reports it.
    pub fn primary_address(&self) -> &str {
        self.renamed_to.as_deref().unwrap_or(&self.email)
    }

    /// A Workspace rename: Gmail goes on serving the mailbox to grants for the old address,
    /// but its profile now names the new one.
    pub fn rename(&mut self, new_primary_address: &str) {
        self.renamed_to = Some(new_primary_address.to_ascii_lowercase());
    }

    /// Builds a mailbox from its files. Ids depend only on (seed, user, file name), so they are
    /// stable across restarts; history ids are assigned oldest message first.
    pub fn new(email: &str, seed: u64, files: Vec<SourceFile>) -> Mailbox {
        let email = email.to_ascii_lowercase();
        let digest = Sha256::new()
            .chain_update(seed.to_le_bytes())
            .chain_update(email.as_bytes())
            .finalize();
        let mut rng_seed = [0u8; 8];
        rng_seed.copy_from_slice(&digest[..8]);
        let mut rng = StdRng::seed_from_u64(u64::from_le_bytes(rng_seed));
        let base = 10_000 + rng.random_range(0..90_000u64);
        let mut mailbox = Mailbox {
            email,
            messages: HashMap::new(),
            order: Vec::new(),
            history: Vec::new(),
            history_id: base,
            history_floor: base - 1,
            user_labels: Vec::new(),
            threads_by_message_id: HashMap::new(),
            id_seed: seed,
            delivered_count: 0,
            rng,
            renamed_to: None,
        };
        let mut parsed: Vec<(String, ParsedMessage, Vec<u8>)> = files
            .into_iter()
            .map(|file| {
                let parsed = ParsedMessage::parse(&file.raw, file.mtime_ms);
                (file.name, parsed, file.raw)
            })
            .collect();
        parsed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut with_ids: Vec<(String, ParsedMessage, Vec<u8>)> = parsed
            .into_iter()
            .map(|(name, parsed, raw)| (mailbox.unique_id(&format!("file:{name}")), parsed, raw))
            .collect();
        // Oldest first, so a reply's parent already has its thread id and history ids ascend
        // in internalDate order.
        with_ids.sort_by(|a, b| (a.1.date_ms, &a.0).cmp(&(b.1.date_ms, &b.0)));
        for (id, parsed, raw) in with_ids {
            let labels = match &parsed.gmail_labels {
                Some(names) => mailbox.resolve_label_names(names),
                None => mailbox.default_labels(&parsed),
            };
            mailbox.insert(id, parsed, raw, labels, None);
        }
        mailbox
    }

    /// Adds a message as Gmail would on receipt: internalDate is the receipt time `now_ms`.
    /// `labels` are label ids or Takeout names; `None` applies the same default as loading.
    pub fn deliver(
        &mut self,
        raw: Vec<u8>,
        labels: Option<Vec<String>>,
        now_ms: i64,
        now: Instant,
    ) -> String {
        self.delivered_count += 1;
        let id = self.unique_id(&format!("delivered:{}", self.delivered_count));
        let mut parsed = ParsedMessage::parse(&raw, now_ms);
        parsed.date_ms = now_ms;
        let labels = match labels {
            Some(names) => self.resolve_label_names(&names),
            None => self.default_labels(&parsed),
        };
        self.insert(id.clone(), parsed, raw, labels, Some(now));
        id
    }

    fn insert(
        &mut self,
        id: String,
        parsed: ParsedMessage,
        raw: Vec<u8>,
        label_ids: Vec<String>,
        delivered_at: Option<Instant>,
    ) {
        let thread_id = parsed
            .references
            .iter()
            .find_map(|reference| self.threads_by_message_id.get(reference).cloned())
            .unwrap_or_else(|| id.clone());
        if let Some(message_id) = &parsed.message_id {
            self.threads_by_message_id
                .entry(message_id.clone())
                .or_insert_with(|| thread_id.clone());
        }
        let history_id = self.record(HistoryChange::MessageAdded, &id, &thread_id, &label_ids);
        let message = Message {
            id: id.clone(),
            thread_id,
            raw: Bytes::from(raw),
            label_ids,
            internal_date_ms: parsed.date_ms,
            history_id,
            snippet: parsed.snippet,
            headers: parsed.headers,
            delivered_at,
        };
        let key = (message.internal_date_ms, message.id.clone());
        let position = self.order.partition_point(|other| {
            let other = &self.messages[other];
            (other.internal_date_ms, other.id.clone()) > key
        });
        self.order.insert(position, id.clone());
        self.messages.insert(id, message);
    }

    /// Appends a history record under the next history id (a random gap of 1 to 5, as Gmail's
    /// ids are not consecutive) and returns that id.
    fn record(
        &mut self,
        change: HistoryChange,
        message_id: &str,
        thread_id: &str,
        label_ids: &[String],
    ) -> u64 {
        self.history_id += self.rng.random_range(1..=5u64);
        self.history.push(HistoryRecord {
            id: self.history_id,
            change,
            message_id: message_id.to_string(),
            thread_id: thread_id.to_string(),
            label_ids: label_ids.to_vec(),
        });
        self.history_id
    }

    /// The ids of the messages `target` names, oldest first; `None` when it names nothing.
    pub fn target_messages(&self, target: LabelTarget<'_>) -> Option<Vec<String>> {
        let ids: Vec<String> = match target {
            LabelTarget::Message(id) => self
                .messages
                .get(id)
                .map(|m| m.id.clone())
                .into_iter()
                .collect(),
            LabelTarget::Thread(thread_id) => self
                .order
                .iter()
                .rev()
                .filter(|id| self.messages[*id].thread_id == thread_id)
                .cloned()
                .collect(),
        };
        (!ids.is_empty()).then_some(ids)
    }

    /// Gmail's `modify`: adds the label ids `add` and removes `remove` (both checked by the
    /// caller, and disjoint) on each message of `message_ids`. A message that really gains
    /// labels gets a `labelsAdded` record and one that really loses some a `labelsRemoved`
    /// record, both with its final labels; asking for what a message already is records
    /// nothing, as in Gmail. Returns the messages that changed.
    pub fn modify_labels(
        &mut self,
        message_ids: &[String],
        add: &[String],
        remove: &[String],
    ) -> Vec<ChangedMessage> {
        let mut changed = Vec::new();
        for id in message_ids {
            let Some(message) = self.messages.get(id) else {
                continue;
            };
            let mut added: Vec<String> = Vec::new();
            for label in add {
                if !message.has_label(label) && !added.contains(label) {
                    added.push(label.clone());
                }
            }
            let mut removed: Vec<String> = Vec::new();
            for label in remove {
                if message.has_label(label) && !removed.contains(label) {
                    removed.push(label.clone());
                }
            }
            if added.is_empty() && removed.is_empty() {
                continue;
            }
            let mut label_ids: Vec<String> = message
                .label_ids
                .iter()
                .filter(|label| !removed.contains(label))
                .cloned()
                .collect();
            label_ids.extend(added.iter().cloned());
            let thread_id = message.thread_id.clone();
            let mut touched_label_ids = label_ids.clone();
            touched_label_ids.extend(removed.iter().cloned());
            if !added.is_empty() {
                self.record(
                    HistoryChange::LabelsAdded(added),
                    id,
                    &thread_id,
                    &label_ids,
                );
            }
            if !removed.is_empty() {
                self.record(
                    HistoryChange::LabelsRemoved(removed),
                    id,
                    &thread_id,
                    &label_ids,
                );
            }
            // `messages.get` reports the id of the last record that touched the message.
            let history_id = self.history_id;
            if let Some(message) = self.messages.get_mut(id) {
                message.label_ids = label_ids;
                message.history_id = history_id;
            }
            changed.push(ChangedMessage {
                id: id.clone(),
                touched_label_ids,
            });
        }
        changed
    }

    /// `labels.create`: a new user label. Names are unique ignoring case, system labels'
    /// included, as in Gmail.
    pub fn create_label(&mut self, name: &str) -> Result<UserLabel, MailboxError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(MailboxError::InvalidLabelName);
        }
        if self.label_id_by_name(name).is_some() {
            return Err(MailboxError::LabelNameTaken);
        }
        let id = self.user_label_id(name);
        Ok(UserLabel {
            id,
            name: name.to_string(),
        })
    }

    /// The id of the label named `name`, ignoring case: a system label (whose name is its id)
    /// or a user label.
    pub fn label_id_by_name(&self, name: &str) -> Option<String> {
        let name = name.trim();
        if let Some(system) = SYSTEM_LABELS
            .iter()
            .find(|id| id.eq_ignore_ascii_case(name))
        {
            return Some(system.to_string());
        }
        self.user_labels
            .iter()
            .find(|label| label.name.to_lowercase() == name.to_lowercase())
            .map(|label| label.id.clone())
    }

    /// 16 lowercase hex digits from sha256(seed, user, key), re-hashed on the rare collision.
    fn unique_id(&self, key: &str) -> String {
        let mut attempt = 0u32;
        loop {
            let digest = Sha256::new()
                .chain_update(self.id_seed.to_le_bytes())
                .chain_update(self.email.as_bytes())
                .chain_update([0])
                .chain_update(key.as_bytes())
                .chain_update(attempt.to_le_bytes())
                .finalize();
            let id = hex::encode(&digest[..8]);
            if !self.messages.contains_key(&id) {
                return id;
            }
            attempt += 1;
        }
    }

    /// Without `X-Gmail-Labels`: SENT when the owner wrote it, else INBOX + UNREAD.
    fn default_labels(&self, parsed: &ParsedMessage) -> Vec<String> {
        if parsed
            .from_addresses
            .iter()
            .any(|address| address == &self.email)
        {
            vec!["SENT".to_string()]
        } else {
            vec!["INBOX".to_string(), "UNREAD".to_string()]
        }
    }

    /// Maps label ids or Takeout label names to label ids, creating user labels on first use.
    fn resolve_label_names(&mut self, names: &[String]) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for name in names {
            let name = name.trim();
            let id = if SYSTEM_LABELS.contains(&name)
                || self.user_labels.iter().any(|label| label.id == name)
            {
                Some(name.to_string())
            } else {
                match takeout_label(name) {
                    TakeoutLabel::System(id) => Some(id),
                    TakeoutLabel::Ignored => None,
                    TakeoutLabel::User => Some(self.user_label_id(name)),
                }
            };
            if let Some(id) = id.filter(|id| !ids.contains(id)) {
                ids.push(id);
            }
        }
        ids
    }

    fn user_label_id(&mut self, name: &str) -> String {
        if let Some(label) = self.user_labels.iter().find(|label| label.name == name) {
            return label.id.clone();
        }
        let id = format!("Label_{}", self.user_labels.len() + 1);
        self.user_labels.push(UserLabel {
            id: id.clone(),
            name: name.to_string(),
        });
        id
    }

    pub fn user_labels(&self) -> &[UserLabel] {
        &self.user_labels
    }

    /// Whether `label_id` names a system label or one of this mailbox's user labels.
    pub fn is_label_id(&self, label_id: &str) -> bool {
        SYSTEM_LABELS.contains(&label_id)
            || self.user_labels.iter().any(|label| label.id == label_id)
    }

    /// Resolves a label as written in a `label:` search term. Gmail writes spaces and `/` of a
    /// label name as `-` in searches, and ignores case, so both forms are accepted.
    pub fn label_id_for_search(&self, name: &str) -> Option<String> {
        let wanted = search_label_form(name);
        if let Some(system) = SYSTEM_LABELS
            .iter()
            .find(|id| search_label_form(id) == wanted)
        {
            return Some(system.to_string());
        }
        self.user_labels
            .iter()
            .find(|label| search_label_form(&label.name) == wanted)
            .map(|label| label.id.clone())
    }

    pub fn get(&self, id: &str) -> Option<&Message> {
        self.messages.get(id)
    }

    pub fn messages_total(&self) -> usize {
        self.messages.len()
    }

    pub fn threads_total(&self) -> usize {
        self.messages
            .values()
            .map(|message| message.thread_id.as_str())
            .collect::<HashSet<_>>()
            .len()
    }

    pub fn history_id(&self) -> u64 {
        self.history_id
    }

    /// Every `startHistoryId` below the current history id now answers 404.
    pub fn expire_history(&mut self) {
        self.history_floor = self.history_id;
    }

    /// `messages.list`: newest first, filtered, paged by a cursor (the last message returned),
    /// so messages delivered between pages neither repeat nor shift the next page.
    pub fn list(&self, request: &ListRequest<'_>) -> Result<ListPage<'_>, MailboxError> {
        let cursor = match request.page_token {
            Some(token) => Some(decode_list_token(token).ok_or(MailboxError::InvalidPageToken)?),
            None => None,
        };
        let spam_trash_wanted = request.include_spam_trash
            || request
                .label_ids
                .iter()
                .any(|label| label == "SPAM" || label == "TRASH")
            || request.query.is_some_and(Query::asks_for_spam_or_trash);
        let matching: Vec<&Message> = self
            .order
            .iter()
            .map(|id| &self.messages[id])
            .filter(|message| {
                spam_trash_wanted || !(message.has_label("SPAM") || message.has_label("TRASH"))
            })
            .filter(|message| {
                request
                    .label_ids
                    .iter()
                    .all(|label| message.has_label(label))
            })
            .filter(|message| {
                request
                    .query
                    .is_none_or(|query| query.matches(message, self, request.now_ms))
            })
            .collect();
        let start = match &cursor {
            None => 0,
            Some((date, id)) => matching.partition_point(|message| {
                (message.internal_date_ms, message.id.as_str()) >= (*date, id.as_str())
            }),
        };
        let page: Vec<&Message> = matching
            .iter()
            .skip(start)
            .take(request.max_results)
            .copied()
            .collect();
        let next_page_token = match page.last() {
            Some(last) if start + page.len() < matching.len() => Some(encode_list_token(last)),
            _ => None,
        };
        Ok(ListPage {
            messages: page,
            next_page_token,
            result_size_estimate: matching.len(),
        })
    }

    /// `history.list`: records after `startHistoryId`, ascending. A full page always carries a
    /// `nextPageToken`, even when nothing follows, as real Gmail sometimes does.
    pub fn history(&self, request: &HistoryRequest<'_>) -> Result<HistoryPage<'_>, MailboxError> {
        let after_token = match request.page_token {
            Some(token) => Some(decode_history_token(token).ok_or(MailboxError::InvalidPageToken)?),
            None => None,
        };
        if request.start_history_id < self.history_floor {
            return Err(MailboxError::HistoryExpired);
        }
        let after = after_token.unwrap_or(0).max(request.start_history_id);
        let records: Vec<&HistoryRecord> = self
            .history
            .iter()
            .filter(|record| record.id > after)
            .filter(|record| {
                request.types.is_empty()
                    || request
                        .types
                        .iter()
                        .any(|kind| kind == record.change.history_type())
            })
            .filter(|record| {
                request
                    .label_id
                    .is_none_or(|label| record.concerns_label(label))
            })
            .take(request.max_results)
            .collect();
        let next_page_token = match records.last() {
            Some(last) if records.len() == request.max_results => {
                Some(encode_history_token(last.id))
            }
            _ => None,
        };
        Ok(HistoryPage {
            records,
            next_page_token,
            history_id: self.history_id,
        })
    }
}

fn search_label_form(name: &str) -> String {
    name.trim().to_lowercase().replace([' ', '/', '_'], "-")
}

fn encode_list_token(last: &Message) -> String {
    URL_SAFE_NO_PAD.encode(format!("list:{}:{}", last.internal_date_ms, last.id))
}

fn decode_list_token(token: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?).ok()?;
    let (date, id) = text.strip_prefix("list:")?.split_once(':')?;
    Some((date.parse().ok()?, id.to_string()))
}

fn encode_history_token(last_id: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("history:{last_id}"))
}

fn decode_history_token(token: &str) -> Option<u64> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?).ok()?;
    text.strip_prefix("history:")?.parse().ok()
}

#[derive(Debug, PartialEq, Eq)]
enum TakeoutLabel {
    System(String),
    Ignored,
    User,
}

/// Google Takeout writes label names, not ids, into `X-Gmail-Labels`.
fn takeout_label(name: &str) -> TakeoutLabel {
    let system = match name.to_ascii_lowercase().as_str() {
        "inbox" => "INBOX",
        "sent" => "SENT",
        "spam" => "SPAM",
        "trash" => "TRASH",
        "draft" | "drafts" => "DRAFT",
        "chat" => "CHAT",
        "important" => "IMPORTANT",
        "starred" => "STARRED",
        "unread" => "UNREAD",
        // Takeout's "Opened" is the absence of UNREAD and "Archived" the absence of INBOX.
        "opened" | "archived" | "" => return TakeoutLabel::Ignored,
        lower => match lower.strip_prefix("category ") {
            Some(category) => {
                return TakeoutLabel::System(format!(
                    "CATEGORY_{}",
                    category.trim().to_uppercase().replace(' ', "_")
                ));
            }
            None => return TakeoutLabel::User,
        },
    };
    TakeoutLabel::System(system.to_string())
}

/// Splits `X-Gmail-Labels` on commas outside double quotes.
fn split_label_header(value: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for character in value.chars() {
        match character {
            '"' => quoted = !quoted,
            ',' if !quoted => names.push(std::mem::take(&mut current)),
            _ => current.push(character),
        }
    }
    names.push(current);
    names
        .into_iter()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// What the model needs from a message's bytes. Parsing never fails: a message whose headers
/// cannot be read still exists in Gmail, it just has fewer searchable fields.
#[derive(Debug, Default)]
struct ParsedMessage {
    headers: Vec<(String, String)>,
    date_ms: i64,
    snippet: String,
    message_id: Option<String>,
    /// In-Reply-To then References, in that order of preference.
    references: Vec<String>,
    gmail_labels: Option<Vec<String>>,
    from_addresses: Vec<String>,
}

impl ParsedMessage {
    fn parse(raw: &[u8], fallback_date_ms: i64) -> ParsedMessage {
        let headers: Vec<(String, String)> = match mailparse::parse_headers(raw) {
            Ok((headers, _)) => headers
                .iter()
                .map(|header| (header.get_key(), header.get_value()))
                .collect(),
            Err(_) => Vec::new(),
        };
        let first = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let date_ms = first("Date")
            .and_then(|value| mailparse::dateparse(value).ok())
            .and_then(|seconds| seconds.checked_mul(1000))
            .unwrap_or(fallback_date_ms);
        let message_ids = |value: Option<&str>| -> Vec<String> {
            value
                .map(|value| {
                    value
                        .split_whitespace()
                        .map(|id| id.trim_matches(['<', '>', ',']).to_string())
                        .filter(|id| !id.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut references = message_ids(first("In-Reply-To"));
        references.extend(message_ids(first("References")).into_iter().rev());
        let from_addresses = match first("From").map(mailparse::addrparse) {
            Some(Ok(list)) => list
                .iter()
                .flat_map(|address| match address {
                    mailparse::MailAddr::Single(single) => vec![single.addr.to_ascii_lowercase()],
                    mailparse::MailAddr::Group(group) => group
                        .addrs
                        .iter()
                        .map(|single| single.addr.to_ascii_lowercase())
                        .collect(),
                })
                .collect(),
            _ => Vec::new(),
        };
        ParsedMessage {
            date_ms,
            snippet: snippet(raw),
            message_id: message_ids(first("Message-ID")).into_iter().next(),
            references,
            gmail_labels: first("X-Gmail-Labels").map(split_label_header),
            from_addresses,
            headers,
        }
    }
}

/// First characters of the text body, whitespace collapsed; HTML tags dropped when there is no
/// plain-text part. Best effort: a body that cannot be decoded gives an empty snippet.
fn snippet(raw: &[u8]) -> String {
    fn find_text(part: &mailparse::ParsedMail<'_>, mime: &str) -> Option<String> {
        if part.subparts.is_empty() {
            return (part.ctype.mimetype.eq_ignore_ascii_case(mime))
                .then(|| part.get_body().ok())
                .flatten();
        }
        part.subparts.iter().find_map(|sub| find_text(sub, mime))
    }
    let Ok(mail) = mailparse::parse_mail(raw) else {
        return String::new();
    };
    let text = match find_text(&mail, "text/plain") {
        Some(text) => text,
        None => {
            let html = find_text(&mail, "text/html").unwrap_or_default();
            let mut text = String::new();
            let mut in_tag = false;
            for character in html.chars() {
                match character {
                    '<' => in_tag = true,
                    '>' => {
                        in_tag = false;
                        text.push(' ');
                    }
                    _ if !in_tag => text.push(character),
                    _ => {}
                }
            }
            text
        }
    };
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(SNIPPET_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> SourceFile {
        SourceFile {
            name: name.to_string(),
            raw: text.as_bytes().to_vec(),
            mtime_ms: 1_000,
        }
    }

    fn sample() -> Mailbox {
        Mailbox::new(
            "Me@Example.com",
            7,
            vec![
                file(
                    "a.eml",
                    "From: x@other.com\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <a@x>\r\n\r\nHello   there\r\n",
                ),
                file(
                    "b.eml",
                    "From: me@example.com\r\nDate: Tue, 02 Jan 2024 10:00:00 +0000\r\nIn-Reply-To: <a@x>\r\n\r\nreply\r\n",
                ),
                file(
                    "c.eml",
                    "From: y@other.com\r\nX-Gmail-Labels: Spam,Opened\r\nDate: Wed, 03 Jan 2024 10:00:00 +0000\r\n\r\nbuy\r\n",
                ),
                file(
                    "d.eml",
                    "From: z@other.com\r\nX-Gmail-Labels: Inbox,Category Personal,\"Work, Projects\",Unread\r\n\r\nno date\r\n",
                ),
            ],
        )
    }

    fn ids(page: &ListPage<'_>) -> Vec<String> {
        page.messages
            .iter()
            .map(|message| message.id.clone())
            .collect()
    }

    #[test]
    fn ids_are_stable_sixteen_hex_and_depend_on_seed() {
        let first = sample();
        let again = sample();
        let mut ids: Vec<&String> = first.order.iter().collect();
        ids.sort();
        let mut ids_again: Vec<&String> = again.order.iter().collect();
        ids_again.sort();
        assert_eq!(ids, ids_again);
        assert!(ids.iter().all(|id| {
            id.len() == 16
                && id
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        }));
        let other_seed = Mailbox::new(
            "me@example.com",
            8,
            vec![file("a.eml", "From: a@b\r\n\r\nx")],
        );
        assert!(!ids.contains(&&other_seed.order[0]));
    }

    #[test]
    fn labels_follow_takeout_names_and_defaults() {
        let mailbox = sample();
        let by_body = |body: &str| {
            mailbox
                .messages
                .values()
                .find(|m| m.snippet == body)
                .expect("message")
                .clone()
        };
        assert_eq!(by_body("Hello there").label_ids, ["INBOX", "UNREAD"]);
        assert_eq!(by_body("reply").label_ids, ["SENT"]);
        assert_eq!(by_body("buy").label_ids, ["SPAM"]);
        assert_eq!(
            by_body("no date").label_ids,
            ["INBOX", "CATEGORY_PERSONAL", "Label_1", "UNREAD"]
        );
        assert_eq!(
            mailbox.user_labels(),
            [UserLabel {
                id: "Label_1".into(),
                name: "Work, Projects".into()
            }]
        );
        assert_eq!(
            mailbox.label_id_for_search("work,-projects").as_deref(),
            Some("Label_1")
        );
        assert_eq!(
            mailbox.label_id_for_search("category_personal").as_deref(),
            Some("CATEGORY_PERSONAL")
        );
        assert_eq!(
            takeout_label("Category Promotions"),
            TakeoutLabel::System("CATEGORY_PROMOTIONS".into())
        );
        assert_eq!(
            takeout_label("Drafts"),
            TakeoutLabel::System("DRAFT".into())
        );
    }

    #[test]
    fn replies_join_the_thread_of_a_known_message() {
        let mailbox = sample();
        let parent = mailbox
            .messages
            .values()
            .find(|m| m.snippet == "Hello there")
            .expect("parent");
        let reply = mailbox
            .messages
            .values()
            .find(|m| m.snippet == "reply")
            .expect("reply");
        assert_eq!(reply.thread_id, parent.id);
        assert_eq!(mailbox.threads_total(), 3);
    }

    #[test]
    fn listing_is_newest_first_paged_and_skips_spam() {
        let mailbox = sample();
        let mut token: Option<String> = None;
        let mut seen = Vec::new();
        loop {
            let request = ListRequest {
                max_results: 1,
                page_token: token.as_deref(),
                ..ListRequest::default()
            };
            let page = mailbox.list(&request).expect("page");
            assert_eq!(page.result_size_estimate, 3);
            seen.extend(ids(&page));
            token = page.next_page_token;
            if token.is_none() {
                break;
            }
        }
        let dates: Vec<i64> = seen
            .iter()
            .map(|id| mailbox.messages[id].internal_date_ms)
            .collect();
        assert_eq!(dates.len(), 3);
        assert!(dates.windows(2).all(|pair| pair[0] >= pair[1]), "{dates:?}");
        let all = mailbox
            .list(&ListRequest {
                max_results: 10,
                include_spam_trash: true,
                ..ListRequest::default()
            })
            .expect("all");
        assert_eq!(all.messages.len(), 4);
        assert!(all.next_page_token.is_none());
        let bad = ListRequest {
            max_results: 10,
            page_token: Some("not a token"),
            ..ListRequest::default()
        };
        assert_eq!(
            mailbox.list(&bad).err(),
            Some(MailboxError::InvalidPageToken)
        );
    }

    #[test]
    fn history_ids_increase_with_gaps_and_respect_the_floor() {
        let mut mailbox = sample();
        let start = mailbox.history_floor + 1;
        assert!(start > 10_000);
        let ids: Vec<u64> = mailbox.history.iter().map(|record| record.id).collect();
        assert_eq!(ids.len(), 4);
        assert!(
            ids.windows(2)
                .all(|pair| (1..=5).contains(&(pair[1] - pair[0])))
        );
        // Assigned in internalDate order: the undated message (mtime 1 s) comes first.
        assert_eq!(
            mailbox.messages[&mailbox.history[0].message_id].snippet,
            "no date"
        );
        let before = mailbox.history_id();
        let id = mailbox.deliver(
            b"From: q@r.com\r\n\r\nnew".to_vec(),
            None,
            2_000_000_000_000,
            Instant::now(),
        );
        assert!(mailbox.history_id() > before);
        assert_eq!(
            mailbox
                .list(&ListRequest {
                    max_results: 1,
                    ..ListRequest::default()
                })
                .expect("list")
                .messages[0]
                .id,
            id
        );
        let page = mailbox
            .history(&HistoryRequest {
                start_history_id: before,
                max_results: 100,
                ..HistoryRequest::default()
            })
            .expect("history");
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].message_id, id);
        assert_eq!(page.history_id, mailbox.history_id());
        let from_floor = HistoryRequest {
            start_history_id: mailbox.history_floor,
            max_results: 2,
            ..HistoryRequest::default()
        };
        assert_eq!(
            mailbox.history(&from_floor).expect("floor").records.len(),
            2
        );
        let too_old = HistoryRequest {
            start_history_id: mailbox.history_floor - 1,
            max_results: 2,
            ..HistoryRequest::default()
        };
        assert_eq!(
            mailbox.history(&too_old).err(),
            Some(MailboxError::HistoryExpired)
        );
        mailbox.expire_history();
        let stale = HistoryRequest {
            start_history_id: before,
            max_results: 100,
            ..HistoryRequest::default()
        };
        assert_eq!(
            mailbox.history(&stale).err(),
            Some(MailboxError::HistoryExpired)
        );
        let current = HistoryRequest {
            start_history_id: mailbox.history_id(),
            max_results: 100,
            ..HistoryRequest::default()
        };
        assert!(
            mailbox
                .history(&current)
                .expect("current")
                .records
                .is_empty()
        );
    }

    #[test]
    fn a_full_last_history_page_still_carries_a_token_to_an_empty_page() {
        let mailbox = sample();
        let start = mailbox.history_floor;
        let page = mailbox
            .history(&HistoryRequest {
                start_history_id: start,
                max_results: 4,
                ..HistoryRequest::default()
            })
            .expect("page");
        let token = page.next_page_token.expect("token at a full page");
        let next = HistoryRequest {
            start_history_id: start,
            max_results: 4,
            page_token: Some(&token),
            ..HistoryRequest::default()
        };
        let next = mailbox.history(&next).expect("next");
        assert!(next.records.is_empty() && next.next_page_token.is_none());
        let filtered = HistoryRequest {
            start_history_id: start,
            max_results: 10,
            label_id: Some("SPAM"),
            ..HistoryRequest::default()
        };
        assert_eq!(
            mailbox.history(&filtered).expect("filtered").records.len(),
            1
        );
    }

    #[test]
    fn label_changes_record_one_entry_per_message_and_kind_and_nothing_when_already_so() {
        let mut mailbox = sample();
        let parent = mailbox
            .messages
            .values()
            .find(|m| m.snippet == "Hello there")
            .expect("parent")
            .id
            .clone();
        let reply = mailbox
            .messages
            .values()
            .find(|m| m.snippet == "reply")
            .expect("reply")
            .id
            .clone();
        assert_eq!(
            mailbox.target_messages(LabelTarget::Thread(&parent)),
            Some(vec![parent.clone(), reply.clone()]),
            "the whole thread, oldest first"
        );
        assert_eq!(
            mailbox.target_messages(LabelTarget::Message(&reply)),
            Some(vec![reply.clone()])
        );
        assert_eq!(mailbox.target_messages(LabelTarget::Thread(&reply)), None);
        assert_eq!(
            mailbox.target_messages(LabelTarget::Message("0000000000000000")),
            None
        );

        let crm = mailbox.create_label("CRM/Private").expect("created");
        assert_eq!(crm.id, "Label_2");
        for taken in ["crm/private", " CRM/PRIVATE ", "inbox", "work, projects"] {
            assert_eq!(
                mailbox.create_label(taken),
                Err(MailboxError::LabelNameTaken),
                "{taken}"
            );
        }
        assert_eq!(
            mailbox.create_label("  "),
            Err(MailboxError::InvalidLabelName)
        );
        assert_eq!(
            mailbox.label_id_by_name("Unread").as_deref(),
            Some("UNREAD")
        );
        assert_eq!(
            mailbox.label_id_by_name("crm/PRIVATE"),
            Some(crm.id.clone())
        );

        let before = mailbox.history_id();
        let thread = mailbox
            .target_messages(LabelTarget::Thread(&parent))
            .expect("thread");
        let changed = mailbox.modify_labels(
            &thread,
            std::slice::from_ref(&crm.id),
            &["UNREAD".to_string()],
        );
        // The parent gains the label and loses UNREAD; the reply, never unread, only gains.
        assert_eq!(
            changed,
            [
                ChangedMessage {
                    id: parent.clone(),
                    touched_label_ids: vec!["INBOX".into(), crm.id.clone(), "UNREAD".into()],
                },
                ChangedMessage {
                    id: reply.clone(),
                    touched_label_ids: vec!["SENT".into(), crm.id.clone()],
                },
            ]
        );
        let new: Vec<&HistoryRecord> = mailbox.history.iter().filter(|r| r.id > before).collect();
        let summary: Vec<(&str, &str, Vec<String>, &[String])> = new
            .iter()
            .map(|record| {
                (
                    record.message_id.as_str(),
                    record.change.history_type(),
                    record.label_ids.clone(),
                    record.change.changed_label_ids(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    parent.as_str(),
                    "labelAdded",
                    vec!["INBOX".to_string(), crm.id.clone()],
                    &[crm.id.clone()][..]
                ),
                (
                    parent.as_str(),
                    "labelRemoved",
                    vec!["INBOX".to_string(), crm.id.clone()],
                    &["UNREAD".to_string()][..]
                ),
                (
                    reply.as_str(),
                    "labelAdded",
                    vec!["SENT".to_string(), crm.id.clone()],
                    &[crm.id.clone()][..]
                ),
            ]
        );
        assert!(
            new.windows(2)
                .all(|pair| (1..=5).contains(&(pair[1].id - pair[0].id)))
        );
        assert!(new.iter().all(|record| record.thread_id == parent));
        assert_eq!(
            mailbox.messages[&parent].label_ids,
            ["INBOX", crm.id.as_str()]
        );
        assert_eq!(mailbox.messages[&parent].history_id, new[1].id);
        assert_eq!(mailbox.messages[&reply].history_id, mailbox.history_id());

        // Asking for what the messages already are records nothing.
        let now = mailbox.history_id();
        assert!(
            mailbox
                .modify_labels(
                    &thread,
                    std::slice::from_ref(&crm.id),
                    &["UNREAD".to_string()]
                )
                .is_empty()
        );
        assert_eq!(mailbox.history_id(), now);

        let query = |types: &[&str], label_id: Option<&'static str>| {
            mailbox
                .history(&HistoryRequest {
                    start_history_id: before,
                    types: types.iter().map(|kind| kind.to_string()).collect(),
                    label_id,
                    max_results: 100,
                    ..HistoryRequest::default()
                })
                .expect("history")
                .records
                .iter()
                .map(|record| record.change.history_type())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            query(&[], None),
            ["labelAdded", "labelRemoved", "labelAdded"]
        );
        assert_eq!(query(&["labelAdded"], None), ["labelAdded", "labelAdded"]);
        assert_eq!(query(&["labelRemoved"], None), ["labelRemoved"]);
        assert!(query(&["messageAdded", "messageDeleted"], None).is_empty());
        // UNREAD is gone from the message, yet its removal concerns it.
        assert_eq!(query(&[], Some("UNREAD")), ["labelRemoved"]);
        assert_eq!(query(&["labelAdded"], Some("SENT")), ["labelAdded"]);
    }

    #[test]
    fn garbage_bytes_still_make_a_message() {
        let mailbox = Mailbox::new(
            "me@x.com",
            1,
            vec![SourceFile {
                name: "bin".into(),
                raw: vec![0xff, 0xfe, 0, b'\n', 0x80],
                mtime_ms: 5,
            }],
        );
        let message = mailbox.messages.values().next().expect("message");
        assert_eq!(message.internal_date_ms, 5);
        assert_eq!(message.label_ids, ["INBOX", "UNREAD"]);
    }
}
