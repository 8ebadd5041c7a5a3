//! What gets synced, and how visible it is: the decision spec (`docs/spec/decisions.md`)
//! as code.
//!
//! Everything here is pure: rule files are read by the caller (or by [`RuleSet::load`], the one
//! function that touches the file system), and [`decide`] takes every fact it needs as an
//! argument. A decision always carries the rules that made it, the way ripgrep's ignore
//! decisions carry their glob, so `mailsync explain` can say *why*.

mod decide;
mod recheck;
mod ruleset;

pub use decide::{
    Approval, ContactBook, ConversationContext, DecidedBy, Decision, Direction, Outcome,
    PartyVerdict, Policy, Reason, RuleMatch, Verdict, Visibility, activity_level, decide,
    decide_before_fetch, decide_by_search, decide_copy, excluded_label, parties_of,
    rule_label_names, rule_labels, skip_label_rules,
};
pub use recheck::{
    Mailbox, PartyFingerprint, Recheck, StoredParties, address_hash, party_fingerprints, recheck,
};
pub use ruleset::{Action, Matcher, MessageFacts, NO_SYNC_RULE_NAME, PartyPattern, Rule, RuleSet};
