//! The per-message pipeline shared by every entry point: raw bytes → parse → decide → store.

use sha2::{Digest, Sha256};

use crate::config::{Capture, User};
use crate::parse::{self, ParsedMessage};
use crate::rules::{self, DecidedBy, Decision, Direction, Policy};
use crate::source::{SourceMessage, TooLarge};
use crate::store::{MessageToStore, Record, Recorded, SourceRef, Store, StoreError};

/// What the pipeline did with one message.
#[derive(Debug, Clone)]
pub struct Processed {
    pub source_id: String,
    /// The Message-ID header as written, when the message was read.
    pub message_id: Option<String>,
    /// The conversation key (`ParsedMessage::conversation`), when the message was read.
    pub conversation: Option<String>,
    pub decision: Decision,
    /// What the store changed; `None` on a dry run or when nothing may be stored.
    pub recorded: Option<Recorded>,
    /// Best-effort notes from parsing (never message content).
    pub problems: Vec<String>,
    /// The list and auto-submission headers and calendar shape, when the message was read.
    pub automation: Option<parse::AutomationSignals>,
}

/// Whether the pipeline writes what it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Write,
    DryRun,
}

/// A message parsed and decided, not yet written.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub source: SourceRef,
    pub decision: Decision,
    pub parsed: Option<ParsedMessage>,
    /// The SHA-256 of the raw bytes, only for a message without a Message-ID: it is then the
    /// activity's key. Hashing every message cost a tenth of the pipeline's time.
    pub raw_sha256: Option<String>,
    pub company_direction: Direction,
    /// What the mailbox keeps of synced mail (`[[users]] capture`).
    pub capture: Capture,
}

impl Prepared {
    /// A decision made without the message's content (e.g. decided by search).
    pub fn without_message(source: SourceRef, decision: Decision) -> Self {
        Prepared {
            source,
            decision,
            parsed: None,
            raw_sha256: None,
            company_direction: Direction::Incoming,
            capture: Capture::Metadata,
        }
    }

    /// Whether this decision is written at all: a disabled user's mailbox leaves no trace.
    pub fn is_recorded(&self) -> bool {
        self.decision.reason != rules::Reason::SyncDisabled
    }

    pub fn record(&self) -> Record<'_> {
        Record {
            source: &self.source,
            decision: &self.decision,
            message: self.parsed.as_ref().map(|parsed| MessageToStore {
                parsed,
                raw_sha256: self.raw_sha256.as_deref(),
                company_direction: self.company_direction,
                capture: self.capture,
            }),
        }
    }

    pub fn into_processed(self, recorded: Option<Recorded>) -> Processed {
        let (message_id, conversation, problems, automation) = match self.parsed {
            Some(parsed) => (
                parsed.message_id.clone(),
                parsed.conversation().map(str::to_string),
                parsed.problems,
                Some(parsed.automation),
            ),
            None => (None, None, Vec::new(), None),
        };
        Processed {
            source_id: self.source.source_id,
            message_id,
            conversation,
            decision: self.decision,
            recorded,
            problems,
            automation,
        }
    }
}

/// Parses and decides one message for `user`'s mailbox, reading contacts from `store`.
/// Labels are looked at first, so an excluded or disabled message is never parsed.
pub fn prepare(
    policy: &Policy,
    store: &dyn Store,
    user: &User,
    source: &str,
    message: &SourceMessage,
) -> Result<Prepared, StoreError> {
    Ok(
        prepare_all(policy, store, user, source, std::slice::from_ref(message))?
            .pop()
            .expect("one message in, one prepared out"),
    )
}

/// Parses and decides a batch of messages for `user`'s mailbox, in order. The contacts of
/// every party in the batch are read in one store call: with a database across the network,
/// a round trip per message cost more than deciding it.
pub fn prepare_all(
    policy: &Policy,
    store: &dyn Store,
    user: &User,
    source: &str,
    messages: &[SourceMessage],
) -> Result<Vec<Prepared>, StoreError> {
    let read: Vec<Read<'_>> = messages
        .iter()
        .map(|message| Read::of(policy, user, source, message))
        .collect();
    let mut addresses: Vec<String> = read
        .iter()
        .filter_map(|read| match read {
            Read::Parsed {
                parsed: Ok(parsed), ..
            } => Some(rules::parties_of(user, parsed).1),
            _ => None,
        })
        .flatten()
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    // Deciding looks up only a message's own parties, so one book for the batch decides
    // each message as its own book would.
    let mut contact_book = if addresses.is_empty() {
        rules::ContactBook::default()
    } else {
        store.contact_book(&addresses)?
    };
    // A reply inherits what its mailbox said about the conversation before: the owner's
    // override and the labels label rules matched.
    let mut conversations: Vec<String> = read
        .iter()
        .filter_map(|read| match read {
            Read::Parsed {
                parsed: Ok(parsed), ..
            } => parsed.conversation().map(str::to_string),
            _ => None,
        })
        .collect();
    conversations.sort_unstable();
    conversations.dedup();
    let mut copy_choices = std::collections::HashMap::new();
    if !conversations.is_empty() {
        let source_ids: Vec<String> = messages
            .iter()
            .map(|message| message.source_id.clone())
            .collect();
        contact_book.conversations =
            store.conversation_contexts(&user.email, &conversations, source, &source_ids)?;
        // Messages decided before whose owner set them: deciding them again keeps that.
        copy_choices = store.owner_copy_choices(&user.email, source, &source_ids)?;
    }
    Ok(read
        .into_iter()
        .map(|read| read.decide(policy, user, &contact_book, &copy_choices))
        .collect())
}

/// A message read for deciding: decided by its labels alone, or parsed.
enum Read<'m> {
    DecidedByLabels(Prepared),
    Parsed {
        source: SourceRef,
        message: &'m SourceMessage,
        parsed: Result<ParsedMessage, parse::ParseError>,
    },
}

impl<'m> Read<'m> {
    /// Labels are looked at first, so an excluded or disabled message is never parsed.
    fn of(policy: &Policy, user: &User, source: &str, message: &'m SourceMessage) -> Read<'m> {
        let source = SourceRef {
            user_email: user.email.clone(),
            source: source.to_string(),
            source_id: message.source_id.clone(),
        };
        match rules::decide_before_fetch(user, &message.labels) {
            Some(decision) => Read::DecidedByLabels(Prepared::without_message(source, decision)),
            None => Read::Parsed {
                source,
                message,
                parsed: parse::parse_message_with(&message.raw, &policy.config.limits),
            },
        }
    }

    fn decide(
        self,
        policy: &Policy,
        user: &User,
        contact_book: &rules::ContactBook,
        copy_choices: &std::collections::HashMap<String, rules::Action>,
    ) -> Prepared {
        let (source, message, parsed) = match self {
            Read::DecidedByLabels(prepared) => return prepared,
            Read::Parsed {
                source,
                message,
                parsed,
            } => (source, message, parsed),
        };
        let decision = rules::decide_copy(
            policy,
            user,
            &message.labels,
            parsed.as_ref(),
            contact_book,
            copy_choices.get(&message.source_id).copied(),
        );
        let parsed = parsed.ok();
        let raw_sha256 = parsed
            .as_ref()
            .filter(|parsed| parsed.message_id.is_none())
            .map(|_| hex::encode(Sha256::digest(&message.raw)));
        Prepared {
            source,
            decision,
            company_direction: parsed.as_ref().map_or(Direction::Incoming, |parsed| {
                company_direction(policy, parsed)
            }),
            parsed,
            raw_sha256,
            capture: user.capture,
        }
    }
}

/// Runs one message through the pipeline for `user`'s mailbox. Only store failures are
/// errors; anything wrong with the message itself is part of the decision.
pub fn process(
    policy: &Policy,
    store: &dyn Store,
    user: &User,
    source: &str,
    message: &SourceMessage,
    mode: Mode,
) -> Result<Processed, StoreError> {
    let prepared = prepare(policy, store, user, source, message)?;
    record(store, prepared, mode)
}

/// Decides a message its source did not hand over because it is over `[limits]
/// max_message_bytes`, of which only the size and the labels are known: a `parse_error`, as
/// `parse` makes of any message over the limit, unless the labels decide it first.
pub fn process_too_large(
    policy: &Policy,
    store: &dyn Store,
    user: &User,
    source: &str,
    source_id: &str,
    message: &TooLarge,
    mode: Mode,
) -> Result<Processed, StoreError> {
    let decision = rules::decide(
        policy,
        user,
        &message.labels,
        Err(&message.parse_error()),
        &Default::default(),
    );
    let source = SourceRef {
        user_email: user.email.clone(),
        source: source.to_string(),
        source_id: source_id.to_string(),
    };
    record(store, Prepared::without_message(source, decision), mode)
}

fn record(store: &dyn Store, prepared: Prepared, mode: Mode) -> Result<Processed, StoreError> {
    let recorded = match mode {
        Mode::Write if prepared.is_recorded() => {
            Some(store.record_all(&[prepared.record()], None)?[0])
        }
        _ => None,
    };
    Ok(prepared.into_processed(recorded))
}

/// Outgoing when any configured user sent it, whichever mailbox it was found in, so that the
/// one activity a message becomes has one direction.
pub fn company_direction(policy: &Policy, message: &ParsedMessage) -> Direction {
    if message
        .from
        .iter()
        .any(|mailbox| policy.config.user_by_address(&mailbox.address).is_some())
    {
        Direction::Outgoing
    } else {
        Direction::Incoming
    }
}

/// The machine-readable decision of the spec: one JSON object per message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DecisionLine {
    pub user: String,
    pub source_id: String,
    pub message_id: Option<String>,
    pub decision: &'static str,
    pub reason: &'static str,
    pub visibility: Option<&'static str>,
    /// Which level chose the visibility (or the skip): `owner`, `label`, `rule` or
    /// `default`.
    pub decided_by: Option<&'static str>,
    pub conversation: Option<String>,
    pub contacts: Vec<String>,
    pub rules: Vec<String>,
    pub parties: Vec<PartyVerdict>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartyVerdict {
    pub address: String,
    pub verdict: &'static str,
}

impl DecisionLine {
    pub fn new(user: &User, processed: &Processed) -> Self {
        let decision = &processed.decision;
        DecisionLine {
            user: user.email.clone(),
            source_id: processed.source_id.clone(),
            message_id: processed.message_id.clone(),
            decision: decision.outcome().as_str(),
            reason: decision.reason.as_str(),
            visibility: decision.visibility().map(|v| v.as_str()),
            decided_by: decision.decided_by().map(DecidedBy::as_str),
            // Only a synced message's: a skipped one's Message-IDs say nothing anyone needs.
            conversation: decision.approval().and(processed.conversation.clone()),
            contacts: decision
                .approval()
                .map(|approval| approval.contacts().to_vec())
                .unwrap_or_default(),
            rules: decision.rule_names(),
            parties: decision
                .parties
                .iter()
                .map(|party| PartyVerdict {
                    address: party.address.clone(),
                    verdict: party.verdict.as_str(),
                })
                .collect(),
        }
    }
}
