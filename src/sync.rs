//! The per-message pipeline shared by `replay`, `explain` and (later) the daemon:
//! raw bytes → parse → decide → store.

use sha2::{Digest, Sha256};

use crate::config::User;
use crate::parse::{self, ParsedMessage};
use crate::rules::{self, Decision, Direction, Policy};
use crate::source::SourceMessage;
use crate::store::{MessageToStore, Recorded, SourceRef, Store, StoreError};

/// What the pipeline did with one message.
#[derive(Debug, Clone)]
pub struct Processed {
    pub source_id: String,
    /// The Message-ID header as written, when the message was read.
    pub message_id: Option<String>,
    pub decision: Decision,
    /// What the store changed; `None` on a dry run or when nothing may be stored.
    pub recorded: Option<Recorded>,
    /// Best-effort notes from parsing (never message content).
    pub problems: Vec<String>,
}

/// Whether the pipeline writes what it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Write,
    DryRun,
}

/// Runs one message through the pipeline for `user`'s mailbox. Only store failures are
/// errors; anything wrong with the message itself is part of the decision.
pub fn process(
    policy: &Policy,
    store: &mut dyn Store,
    user: &User,
    source: &str,
    message: &SourceMessage,
    mode: Mode,
) -> Result<Processed, StoreError> {
    let source_ref = SourceRef {
        user_email: user.email.clone(),
        source: source.to_string(),
        source_id: message.source_id.clone(),
    };
    let mut processed = Processed {
        source_id: message.source_id.clone(),
        message_id: None,
        decision: match rules::decide_before_fetch(user, &message.labels) {
            Some(decision) => decision,
            None => return process_content(policy, store, user, source_ref, message, mode),
        },
        recorded: None,
        problems: Vec::new(),
    };
    // A disabled user's mailbox leaves no trace at all; an excluded label leaves a decision.
    if mode == Mode::Write && processed.decision.reason != rules::Reason::SyncDisabled {
        processed.recorded = Some(store.record(&source_ref, &processed.decision, None)?);
    }
    Ok(processed)
}

fn process_content(
    policy: &Policy,
    store: &mut dyn Store,
    user: &User,
    source_ref: SourceRef,
    message: &SourceMessage,
    mode: Mode,
) -> Result<Processed, StoreError> {
    let parsed = parse::parse_message(&message.raw);
    let known_contacts = match &parsed {
        Ok(parsed) => store.known_contacts(&rules::parties_of(user, parsed).1)?,
        Err(_) => Default::default(),
    };
    let decision = rules::decide(
        policy,
        user,
        &message.labels,
        parsed.as_ref(),
        &known_contacts,
    );
    let recorded = match mode {
        Mode::DryRun => None,
        Mode::Write => {
            let raw_sha256 = hex::encode(Sha256::digest(&message.raw));
            let to_store = parsed.as_ref().ok().map(|parsed| MessageToStore {
                parsed,
                raw_sha256: &raw_sha256,
                company_direction: company_direction(policy, parsed),
            });
            Some(store.record(&source_ref, &decision, to_store)?)
        }
    };
    let (message_id, problems) = match parsed {
        Ok(parsed) => (parsed.message_id, parsed.problems),
        Err(_) => (None, Vec::new()),
    };
    Ok(Processed {
        source_id: source_ref.source_id,
        message_id,
        decision,
        recorded,
        problems,
    })
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
pub struct DecisionRecord {
    pub user: String,
    pub source_id: String,
    pub message_id: Option<String>,
    pub decision: &'static str,
    pub reason: &'static str,
    pub visibility: Option<&'static str>,
    pub contacts: Vec<String>,
    pub rules: Vec<String>,
    pub parties: Vec<PartyRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartyRecord {
    pub address: String,
    pub verdict: &'static str,
}

impl DecisionRecord {
    pub fn new(user: &User, processed: &Processed) -> Self {
        let decision = &processed.decision;
        DecisionRecord {
            user: user.email.clone(),
            source_id: processed.source_id.clone(),
            message_id: processed.message_id.clone(),
            decision: decision.outcome().as_str(),
            reason: decision.reason.as_str(),
            visibility: decision.visibility().map(|v| v.as_str()),
            contacts: decision
                .approval()
                .map(|approval| approval.contacts().to_vec())
                .unwrap_or_default(),
            rules: decision.rule_names(),
            parties: decision
                .parties
                .iter()
                .map(|party| PartyRecord {
                    address: party.address.clone(),
                    verdict: party.verdict.as_str(),
                })
                .collect(),
        }
    }
}
