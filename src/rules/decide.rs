//! The decision for one message in one user's mailbox, exactly as the spec orders it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::address;
use crate::config::{Config, User};
use crate::parse::{ParseError, ParsedMessage};
use crate::rules::{Action, MessageFacts, NO_SYNC_RULE_NAME, RuleSet};

/// Everything a decision depends on besides the message and the contact list: the validated
/// config and rules, with the internal domains worked out once.
#[derive(Debug, Clone)]
pub struct Policy {
    pub config: Config,
    pub rules: RuleSet,
    /// Company domains plus the domains of users' addresses that are not free-mail.
    internal_domains: Vec<String>,
}

impl Policy {
    /// Loads the config at `config_path` and its rules folder, collecting the problems of
    /// both: the one loading path for start-up, reload and every command.
    pub fn load(config_path: &std::path::Path) -> Result<Policy, crate::diagnostic::Diagnostics> {
        let config = Config::load(config_path)?;
        let rules = match &config.rules_dir {
            Some(dir) => RuleSet::load(dir, &config)?,
            None => RuleSet::default(),
        };
        Ok(Policy::new(config, rules))
    }

    pub fn new(config: Config, rules: RuleSet) -> Self {
        let mut internal_domains = config.company_domains.clone();
        for user in &config.users {
            for user_address in user.addresses() {
                if let Some(domain) = address::domain_of(user_address)
                    && !config.freemail.contains(domain)
                    && !internal_domains.iter().any(|known| known == domain)
                {
                    internal_domains.push(domain.to_string());
                }
            }
        }
        Policy {
            config,
            rules,
            internal_domains,
        }
    }

    /// The company or user domain that makes `domain` internal, if any.
    pub fn internal_domain_covering(&self, domain: &str) -> Option<&str> {
        self.internal_domains
            .iter()
            .find(|internal| address::domain_is_within(domain, internal))
            .map(String::as_str)
    }
}

/// Whether the message was sent from the mailbox owner's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Incoming,
    Outgoing,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

/// One party's verdict, in the spec's order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Blocked,
    IsUser,
    SharedDomain,
    NotAContact,
    Qualifies,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Blocked => "blocked",
            Verdict::IsUser => "is_user",
            Verdict::SharedDomain => "shared_domain",
            Verdict::NotAContact => "not_a_contact",
            Verdict::Qualifies => "qualifies",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartyVerdict {
    pub address: String,
    pub verdict: Verdict,
}

/// Why a message was or was not synced; the first that applies, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    SyncDisabled,
    ExcludedLabel,
    ParseError,
    BlockedByRule,
    SkippedByOwner,
    NoQualifyingParty,
    Synced,
}

impl Reason {
    /// Every reason, in the spec's order.
    pub const ALL: [Reason; 7] = [
        Reason::SyncDisabled,
        Reason::ExcludedLabel,
        Reason::ParseError,
        Reason::BlockedByRule,
        Reason::SkippedByOwner,
        Reason::NoQualifyingParty,
        Reason::Synced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SyncDisabled => "sync_disabled",
            Reason::ExcludedLabel => "excluded_label",
            Reason::ParseError => "parse_error",
            Reason::BlockedByRule => "blocked_by_rule",
            Reason::SkippedByOwner => "skipped_by_owner",
            Reason::NoQualifyingParty => "no_qualifying_party",
            Reason::Synced => "synced",
        }
    }

    pub fn outcome(self) -> Outcome {
        if self == Reason::Synced {
            Outcome::Synced
        } else {
            Outcome::Skipped
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Synced,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Synced => "synced",
            Outcome::Skipped => "skipped",
        }
    }
}

/// How far a copy, or an activity, is shown; in order, least restrictive first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Whoever may see the activity sees its content.
    Visible,
    /// Metadata only for anyone but its owners (and admins, if the account allows).
    Private,
    /// Seen at all, in full, only by the users who took part in its conversation.
    Participants,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Visible => "visible",
            Visibility::Private => "private",
            Visibility::Participants => "participants",
        }
    }

    pub fn parse(text: &str) -> Option<Visibility> {
        match text {
            "visible" => Some(Visibility::Visible),
            "private" => Some(Visibility::Private),
            "participants" => Some(Visibility::Participants),
            _ => None,
        }
    }
}

/// Which level of the spec chose a copy's visibility (step 2 of "The level of a synced
/// message"): the owner's override, a label rule, an address or domain rule, or the user's
/// default. Owner and label choices are explicit: they outrank the others across copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecidedBy {
    Owner,
    Label,
    Rule,
    Default,
}

impl DecidedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Owner => "owner",
            DecidedBy::Label => "label",
            DecidedBy::Rule => "rule",
            DecidedBy::Default => "default",
        }
    }

    pub fn parse(text: &str) -> Option<DecidedBy> {
        match text {
            "owner" => Some(DecidedBy::Owner),
            "label" => Some(DecidedBy::Label),
            "rule" => Some(DecidedBy::Rule),
            "default" => Some(DecidedBy::Default),
            _ => None,
        }
    }

    pub fn is_explicit(self) -> bool {
        matches!(self, DecidedBy::Owner | DecidedBy::Label)
    }
}

/// Step 4: an activity's level from its copies' choices. Any explicit choice (owner or
/// label): the most restrictive explicit one; otherwise the least restrictive ("visible if
/// any source is visible"). `None` for an activity without copies.
pub fn activity_level(
    copies: impl IntoIterator<Item = (Visibility, DecidedBy)>,
) -> Option<Visibility> {
    let mut explicit: Option<Visibility> = None;
    let mut implicit: Option<Visibility> = None;
    for (visibility, decided_by) in copies {
        if decided_by.is_explicit() {
            explicit = explicit.max(Some(visibility));
        } else {
            implicit = Some(implicit.map_or(visibility, |known| known.min(visibility)));
        }
    }
    explicit.or(implicit)
}

/// A rule that took part in a decision, with the party it matched and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub name: String,
    pub action: Action,
    /// The party it matched; for a label rule, the first qualifying party.
    pub party: String,
    /// For a label rule, the label it matched.
    pub label: Option<String>,
    pub file: PathBuf,
    pub line: usize,
}

/// Permission to write a message to the store. Only [`decide`] can make one (its fields are
/// private to this module), so nothing reaches the store without a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    contacts: Vec<String>,
    visibility: Visibility,
    decided_by: DecidedBy,
}

impl Approval {
    /// The qualifying parties' addresses, lower-cased, in message order.
    pub fn contacts(&self) -> &[String] {
        &self.contacts
    }

    pub fn visibility(&self) -> Visibility {
        self.visibility
    }

    pub fn decided_by(&self) -> DecidedBy {
        self.decided_by
    }
}

/// The decision for one message in one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub reason: Reason,
    /// Relative to the mailbox owner; `None` when the message was not read.
    pub direction: Option<Direction>,
    pub parties: Vec<PartyVerdict>,
    /// The rules that made the decision: skip rules for a blocked message, visibility rules
    /// for a synced one.
    pub rules: Vec<RuleMatch>,
    /// What exactly applied (the label, the parse problem), never message content.
    pub detail: Option<String>,
    /// The copy's own labels that a label rule matched (lower-cased), kept with its decision
    /// (and its source, when synced) so that later replies, and rules applied again, weigh
    /// them; also when a label skipped the copy.
    pub labels: Vec<String>,
    approval: Option<Approval>,
}

impl Decision {
    fn skipped(reason: Reason, detail: Option<String>) -> Self {
        Decision {
            reason,
            direction: None,
            parties: Vec::new(),
            rules: Vec::new(),
            detail,
            labels: Vec::new(),
            approval: None,
        }
    }

    pub fn outcome(&self) -> Outcome {
        self.reason.outcome()
    }

    /// The permission to store this message, present exactly when it was synced.
    pub fn approval(&self) -> Option<&Approval> {
        self.approval.as_ref()
    }

    pub fn visibility(&self) -> Option<Visibility> {
        self.approval.as_ref().map(Approval::visibility)
    }

    /// Which level chose: for a synced copy, and for a copy skipped by a label or an
    /// override.
    pub fn decided_by(&self) -> Option<DecidedBy> {
        match (&self.approval, self.reason) {
            (Some(approval), _) => Some(approval.decided_by),
            (None, Reason::SkippedByOwner) => Some(DecidedBy::Owner),
            (None, Reason::BlockedByRule) if self.rules.iter().any(|rule| rule.label.is_some()) => {
                Some(DecidedBy::Label)
            }
            _ => None,
        }
    }

    /// Names of the rules that made the decision, each once, in the order they applied.
    pub fn rule_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for rule in &self.rules {
            if !names.contains(&rule.name) {
                names.push(rule.name.clone());
            }
        }
        names
    }
}

/// Gmail label ids (DRAFT, SPAM, TRASH, CHAT) and Takeout label names (Drafts/Draft, Spam,
/// Trash, Chat) that keep a message out, compared case-insensitively.
const EXCLUDED_LABELS: [&str; 5] = ["draft", "drafts", "spam", "trash", "chat"];

/// The first label that excludes a message, if any.
pub fn excluded_label(labels: &[String]) -> Option<&str> {
    labels.iter().map(|label| label.trim()).find(|label| {
        EXCLUDED_LABELS
            .iter()
            .any(|excluded| label.eq_ignore_ascii_case(excluded))
    })
}

/// The decisions that need nothing but the user and the message's labels. The Gmail path calls
/// this before fetching, so that a disabled user's or a spam message's content is never
/// downloaded; [`decide`] calls it first so the order of the spec holds in one place.
pub fn decide_before_fetch(user: &User, labels: &[String]) -> Option<Decision> {
    if !user.sync {
        return Some(Decision::skipped(Reason::SyncDisabled, None));
    }
    excluded_label(labels)
        .map(|label| Decision::skipped(Reason::ExcludedLabel, Some(format!("label {label}"))))
}

/// The decision for a message a search over the contact addresses did not list, so no party
/// can qualify, made without reading it: `no_qualifying_party`, with `detail` saying so (or
/// `sync_disabled` for a disabled user, whose mailbox is never searched anyway).
pub fn decide_by_search(user: &User, detail: &str) -> Decision {
    if !user.sync {
        return Decision::skipped(Reason::SyncDisabled, None);
    }
    Decision::skipped(Reason::NoQualifyingParty, Some(detail.to_string()))
}

/// The message direction and its parties for `user`: From, To, Cc, and Bcc only when
/// outgoing, minus the user's own addresses, each once in message order.
pub fn parties_of(user: &User, message: &ParsedMessage) -> (Direction, Vec<String>) {
    let is_own = |candidate: &str| user.addresses().any(|own| own == candidate);
    let direction = if message.from.iter().any(|mailbox| is_own(&mailbox.address)) {
        Direction::Outgoing
    } else {
        Direction::Incoming
    };
    let bcc: &[crate::parse::Mailbox] = if direction == Direction::Outgoing {
        &message.bcc
    } else {
        &[]
    };
    let mut seen = HashSet::new();
    let parties = message
        .from
        .iter()
        .chain(&message.to)
        .chain(&message.cc)
        .chain(bcc)
        .map(|mailbox| address::normalize(&mailbox.address))
        .filter(|candidate| !is_own(candidate))
        .filter(|candidate| seen.insert(candidate.clone()))
        .collect();
    (direction, parties)
}

/// What the CRM store says about a message's party addresses (lower-cased). It must hold at
/// least every party address that belongs to a contact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactBook {
    /// Addresses that belong to a contact.
    pub contacts: HashSet<String>,
    /// Addresses of contacts marked never-sync (`contacts set --no-sync`): they act as a `skip`
    /// rule for every mailbox.
    pub never_sync: HashSet<String>,
    /// What the store holds of the conversations of the messages being decided, in the
    /// mailbox deciding them, by conversation key: a later reply inherits the owner's
    /// override and the labels of the conversation.
    pub conversations: HashMap<String, ConversationContext>,
}

/// What one mailbox has said about one conversation before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationContext {
    /// The owner's override for the whole conversation (`activity set --conversation`).
    pub owner_choice: Option<Action>,
    /// Labels that label rules matched on the mailbox's stored copies (lower-cased).
    pub labels: Vec<String>,
}

impl ConversationContext {
    /// Adds labels another stored copy carries, each once.
    pub fn add_labels(&mut self, labels: Vec<String>) {
        for label in labels {
            if !self.labels.contains(&label) {
                self.labels.push(label);
            }
        }
    }
}

impl From<HashSet<String>> for ContactBook {
    fn from(contacts: HashSet<String>) -> Self {
        ContactBook {
            contacts,
            ..ContactBook::default()
        }
    }
}

/// The labels of a copy in `user`'s mailbox that a label rule in scope matches, lower-cased,
/// sorted, each once: what is kept with the copy. Other labels are not stored.
pub fn rule_labels(policy: &Policy, user: &User, labels: &[String]) -> Vec<String> {
    let mut matched: Vec<String> = labels
        .iter()
        .map(|label| label.trim().to_lowercase())
        .filter(|label| {
            policy
                .rules
                .rules
                .iter()
                .filter(|rule| rule.in_scope_for(&user.email))
                .any(|rule| rule.matcher.matches_labels([label.as_str()]))
        })
        .collect();
    matched.sort_unstable();
    matched.dedup();
    matched
}

/// The label names the label rules in scope for `user` match (lower-cased, sorted, each
/// once): the labels worth reading from that mailbox.
pub fn rule_label_names(policy: &Policy, user: &User) -> Vec<String> {
    let mut names: Vec<String> = policy
        .rules
        .rules
        .iter()
        .filter(|rule| rule.in_scope_for(&user.email))
        .filter_map(|rule| rule.matcher.label.clone())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The names of the label rules in scope for `user` whose action is skip and which match one
/// of `labels`.
pub fn skip_label_rules(policy: &Policy, user: &User, labels: &[String]) -> Vec<String> {
    policy
        .rules
        .rules
        .iter()
        .filter(|rule| rule.in_scope_for(&user.email) && rule.action == Action::Skip)
        .filter(|rule| {
            rule.matcher
                .matches_labels(labels.iter().map(String::as_str))
        })
        .map(|rule| rule.name.clone())
        .collect()
}

/// The most restrictive of several choices: skip, then participants, private, visible.
pub(super) fn most_restrictive(actions: impl IntoIterator<Item = Action>) -> Option<Action> {
    actions
        .into_iter()
        .max_by_key(|action| action.visibility().map_or(u8::MAX, |level| level as u8))
}

/// Decides one message in `user`'s mailbox against the contacts the store knows.
pub fn decide(
    policy: &Policy,
    user: &User,
    labels: &[String],
    message: Result<&ParsedMessage, &ParseError>,
    book: &ContactBook,
) -> Decision {
    decide_copy(policy, user, labels, message, book, None)
}

/// [`decide`] for a copy its owner has already set (`activity set` on this activity): the
/// owner's choice for this copy comes before the conversation's.
pub fn decide_copy(
    policy: &Policy,
    user: &User,
    labels: &[String],
    message: Result<&ParsedMessage, &ParseError>,
    book: &ContactBook,
    owner_choice: Option<Action>,
) -> Decision {
    if let Some(decision) = decide_before_fetch(user, labels) {
        return decision;
    }
    let message = match message {
        Ok(message) => message,
        Err(error) => return Decision::skipped(Reason::ParseError, Some(error.to_string())),
    };
    let (direction, party_addresses) = parties_of(user, message);
    let facts = MessageFacts::of(&message.automation);
    let rules_in_scope: Vec<_> = policy
        .rules
        .rules
        .iter()
        .filter(|rule| rule.in_scope_for(&user.email))
        .collect();
    let matching = |party: &str, wanted: &dyn Fn(Action) -> bool| -> Vec<RuleMatch> {
        rules_in_scope
            .iter()
            .filter(|rule| wanted(rule.action) && rule.matcher.matches(party, &facts))
            .map(|rule| RuleMatch {
                name: rule.name.clone(),
                action: rule.action,
                party: party.to_string(),
                label: None,
                file: rule.file.clone(),
                line: rule.line,
            })
            .collect()
    };

    let mut parties = Vec::with_capacity(party_addresses.len());
    let mut skip_matches = Vec::new();
    for party in party_addresses {
        let mut blocking = matching(&party, &|action| action == Action::Skip);
        if book.never_sync.contains(&party) {
            blocking.push(RuleMatch {
                name: NO_SYNC_RULE_NAME.to_string(),
                action: Action::Skip,
                party: party.clone(),
                label: None,
                file: PathBuf::new(),
                line: 0,
            });
        }
        let verdict = if !blocking.is_empty() {
            skip_matches.extend(blocking);
            Verdict::Blocked
        } else if policy.config.user_by_address(&party).is_some() {
            Verdict::IsUser
        } else if address::domain_of(&party)
            .is_some_and(|domain| policy.internal_domain_covering(domain).is_some())
        {
            Verdict::SharedDomain
        } else if !book.contacts.contains(&party) {
            Verdict::NotAContact
        } else {
            Verdict::Qualifies
        };
        parties.push(PartyVerdict {
            address: party,
            verdict,
        });
    }

    let mut decision = Decision {
        reason: Reason::NoQualifyingParty,
        direction: Some(direction),
        parties,
        rules: Vec::new(),
        detail: None,
        labels: Vec::new(),
        approval: None,
    };
    if !skip_matches.is_empty() {
        decision.reason = Reason::BlockedByRule;
        decision.rules = skip_matches;
        return decision;
    }
    let contacts: Vec<String> = decision
        .parties
        .iter()
        .filter(|party| party.verdict == Verdict::Qualifies)
        .map(|party| party.address.clone())
        .collect();
    if contacts.is_empty() {
        return decision;
    }
    // Step 2: the copy's own choice, from the first level that has one.
    let context = message
        .conversation()
        .and_then(|conversation| book.conversations.get(conversation));
    let copy_labels: Vec<&str> = labels
        .iter()
        .map(String::as_str)
        .chain(
            context
                .iter()
                .flat_map(|known| known.labels.iter().map(String::as_str)),
        )
        .collect();
    let label_matches: Vec<RuleMatch> = rules_in_scope
        .iter()
        .filter(|rule| rule.matcher.matches_labels(copy_labels.iter().copied()))
        .map(|rule| RuleMatch {
            name: rule.name.clone(),
            action: rule.action,
            party: contacts[0].clone(),
            label: rule.matcher.label.clone(),
            file: rule.file.clone(),
            line: rule.line,
        })
        .collect();
    let party_matches: Vec<RuleMatch> = contacts
        .iter()
        .flat_map(|contact| matching(contact, &|action| action != Action::Skip))
        .collect();
    let (choice, decided_by) = match owner_choice.or(context.and_then(|known| known.owner_choice)) {
        Some(choice) => (choice, DecidedBy::Owner),
        None => match most_restrictive(label_matches.iter().map(|m| m.action)) {
            Some(choice) => (choice, DecidedBy::Label),
            None => match most_restrictive(party_matches.iter().map(|m| m.action)) {
                Some(choice) => (choice, DecidedBy::Rule),
                None if user.emails_visible => (Action::Visible, DecidedBy::Default),
                None => (Action::Private, DecidedBy::Default),
            },
        },
    };
    // Only the copy's own labels are kept with it: what it inherits is read again from its
    // conversation, so that a label taken off the conversation stops counting everywhere.
    decision.labels = rule_labels(policy, user, labels);
    decision.rules = label_matches;
    decision.rules.extend(party_matches);
    // Step 3: a copy whose own choice is skip is not kept.
    let Some(visibility) = choice.visibility() else {
        decision.reason = match decided_by {
            DecidedBy::Owner => Reason::SkippedByOwner,
            _ => Reason::BlockedByRule,
        };
        decision.rules.retain(|m| m.action == Action::Skip);
        return decision;
    };
    decision.reason = Reason::Synced;
    decision.approval = Some(Approval {
        contacts,
        visibility,
        decided_by,
    });
    decision
}
