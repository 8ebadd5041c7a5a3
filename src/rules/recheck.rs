//! Retroactive rules: a stored source decided again against the current rules, from what
//! the store keeps of its parties. The spec: "an activity that a `skip` rule now matches is
//! removed; visibility is recomputed."
//!
//! The store does not keep the addresses of parties that are not linked contacts; it keeps
//! each party's domain and the SHA-256 of its address, which is enough to match a rule by
//! domain or by address, and not enough to list who was on a message.

use sha2::{Digest, Sha256};

use std::collections::HashSet;

use super::decide::{DecidedBy, PartyVerdict, Policy, Visibility, most_restrictive};
use super::{Action, Matcher, MessageFacts, NO_SYNC_RULE_NAME, PartyPattern, Rule};
use crate::address;
use crate::config::User;

/// A party as the store remembers it: `(domain, sha256 of the lower-cased address)`.
pub type PartyFingerprint = (String, String);

pub fn address_hash(address: &str) -> String {
    hex::encode(Sha256::digest(address::normalize(address).as_bytes()))
}

/// What the store keeps of a decision's parties.
pub fn party_fingerprints(parties: &[PartyVerdict]) -> Vec<PartyFingerprint> {
    parties
        .iter()
        .map(|party| {
            let domain = address::domain_of(&party.address).unwrap_or("").to_string();
            (domain, address_hash(&party.address))
        })
        .collect()
}

impl PartyPattern {
    /// Whether the pattern matches a remembered party.
    pub fn matches_fingerprint(&self, (domain, hash): &PartyFingerprint) -> bool {
        match self {
            PartyPattern::Address(address) => address_hash(address) == *hash,
            PartyPattern::Domain(rule_domain) => address::domain_is_within(domain, rule_domain),
        }
    }
}

impl Matcher {
    /// Whether the rule matches a remembered party of a message with these facts. A label
    /// rule matches no party, as in [`Matcher::matches`].
    pub fn matches_fingerprint(&self, party: &PartyFingerprint, facts: &MessageFacts) -> bool {
        !self.is_label_rule()
            && self.matches_message(facts)
            && self
                .party
                .as_ref()
                .is_none_or(|pattern| pattern.matches_fingerprint(party))
    }
}

/// What a stored source is decided again from: its parties as remembered, its linked contact
/// addresses (the parties that qualified), the message facts kept with it, and the choice
/// it carries (who made it, and the labels a label rule matched on it).
#[derive(Debug, Clone, Copy)]
pub struct StoredParties<'a> {
    pub parties: &'a [PartyFingerprint],
    pub contacts: &'a [String],
    pub facts: &'a MessageFacts,
    /// The labels label rules matched on the copy (lower-cased), as stored with it.
    pub labels: &'a [String],
    /// The owner's override, which no rule changes (only `activity set ... default`).
    pub owner_choice: Option<Visibility>,
}

/// Whose mailbox a stored source came from, as far as deciding it again needs.
#[derive(Debug, Clone, Copy)]
pub enum Mailbox<'a> {
    /// A user in the config: rules in scope for them, and their `emails_visible`, apply.
    User(&'a User),
    /// A user who has left the config (their mail stays until `purge`). Rules without a
    /// `users` scope apply as to anyone's mailbox, since colleagues may still see the mail; a
    /// scoped rule cannot name a user who is not configured. Visibility only narrows: an
    /// unscoped rule can make stored mail private, never visible, because what made it
    /// private (a rule scoped to the user, their `emails_visible`) left with them and can no
    /// longer be weighed.
    Departed {
        stored_visibility: Visibility,
        stored_decided_by: DecidedBy,
    },
}

impl Mailbox<'_> {
    fn has_in_scope(&self, rule: &Rule) -> bool {
        match self {
            Mailbox::User(user) => rule.in_scope_for(&user.email),
            Mailbox::Departed { .. } => rule.users.is_none(),
        }
    }

    /// Visibility when no rule chooses.
    fn default_visibility(&self) -> Visibility {
        match self {
            Mailbox::User(user) if user.emails_visible => Visibility::Visible,
            Mailbox::User(_) => Visibility::Private,
            Mailbox::Departed {
                stored_visibility, ..
            } => *stored_visibility,
        }
    }
}

/// The outcome for one stored source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// A skip rule now matches a party, or a label rule says skip: the source goes (and the
    /// activity with its last source).
    Blocked { rules: Vec<String> },
    /// The source stays, with this choice, made at this level, for these rules.
    Keep {
        visibility: Visibility,
        decided_by: DecidedBy,
        rules: Vec<String>,
    },
}

/// Decides a stored source of `mailbox` again, in the spec's order: a party's skip rule (or a
/// never-sync contact), then the copy's own choice (the owner's override, a label rule, the
/// address or domain rules, the user's default). `never_sync_hashes` are the address hashes
/// of contacts marked never-sync, which block like a skip rule.
///
/// The parties are those computed when the source was stored, minus the addresses the
/// mailbox's user had then; that holds for a departed user too, so nothing here needs their
/// addresses, and a departed user's mail is blocked by a party exactly as anyone's is.
pub fn recheck(
    policy: &Policy,
    mailbox: Mailbox<'_>,
    stored: StoredParties<'_>,
    never_sync_hashes: &HashSet<String>,
) -> Recheck {
    let StoredParties {
        parties,
        contacts,
        facts,
        labels,
        owner_choice,
    } = stored;
    let in_scope: Vec<&Rule> = policy
        .rules
        .rules
        .iter()
        .filter(|rule| mailbox.has_in_scope(rule))
        .collect();
    let names = |rules: &[&Rule]| -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for rule in rules {
            if !names.contains(&rule.name) {
                names.push(rule.name.clone());
            }
        }
        names
    };
    let blocking: Vec<&Rule> = in_scope
        .iter()
        .copied()
        .filter(|rule| rule.action == Action::Skip)
        .filter(|rule| {
            parties
                .iter()
                .any(|party| rule.matcher.matches_fingerprint(party, facts))
                || contacts
                    .iter()
                    .any(|contact| rule.matcher.matches(contact, facts))
        })
        .collect();
    let never_sync = parties
        .iter()
        .any(|(_, hash)| never_sync_hashes.contains(hash))
        || contacts
            .iter()
            .any(|contact| never_sync_hashes.contains(&address_hash(contact)));
    if !blocking.is_empty() || never_sync {
        let mut rules = names(&blocking);
        if never_sync {
            rules.push(NO_SYNC_RULE_NAME.to_string());
        }
        return Recheck::Blocked { rules };
    }
    if let Some(visibility) = owner_choice {
        return Recheck::Keep {
            visibility,
            decided_by: DecidedBy::Owner,
            rules: Vec::new(),
        };
    }
    let label_rules: Vec<&Rule> = in_scope
        .iter()
        .copied()
        .filter(|rule| {
            rule.matcher
                .matches_labels(labels.iter().map(String::as_str))
        })
        .collect();
    if let Some(choice) = most_restrictive(label_rules.iter().map(|rule| rule.action)) {
        let chosen: Vec<&Rule> = label_rules
            .iter()
            .copied()
            .filter(|rule| rule.action == choice)
            .collect();
        return match choice.visibility() {
            None => Recheck::Blocked {
                rules: names(&chosen),
            },
            Some(visibility) => Recheck::Keep {
                // A departed user's stored level only narrows, labels or not.
                visibility: match mailbox {
                    Mailbox::Departed {
                        stored_visibility, ..
                    } => visibility.max(stored_visibility),
                    Mailbox::User(_) => visibility,
                },
                decided_by: DecidedBy::Label,
                rules: names(&chosen),
            },
        };
    }
    let party_rules: Vec<&Rule> = in_scope
        .iter()
        .copied()
        .filter(|rule| rule.action != Action::Skip)
        .filter(|rule| {
            contacts
                .iter()
                .any(|contact| rule.matcher.matches(contact, facts))
        })
        .collect();
    let chosen =
        most_restrictive(party_rules.iter().map(|rule| rule.action)).and_then(Action::visibility);
    let (visibility, decided_by) = match (chosen, mailbox) {
        // A departed user's stored level only narrows.
        (
            Some(visibility),
            Mailbox::Departed {
                stored_visibility,
                stored_decided_by,
            },
        ) => {
            if visibility > stored_visibility {
                (visibility, DecidedBy::Rule)
            } else {
                (stored_visibility, stored_decided_by)
            }
        }
        (
            None,
            Mailbox::Departed {
                stored_decided_by, ..
            },
        ) => (mailbox.default_visibility(), stored_decided_by),
        (Some(visibility), Mailbox::User(_)) => (visibility, DecidedBy::Rule),
        (None, _) => (mailbox.default_visibility(), DecidedBy::Default),
    };
    Recheck::Keep {
        visibility,
        decided_by,
        rules: names(&party_rules),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_party_matches_rules_by_domain_and_by_address_without_its_address() {
        let party = (
            "mail.example.com".to_string(),
            address_hash("Jo@Mail.Example.com"),
        );
        let facts = MessageFacts::default();
        assert!(Matcher::domain("example.com").matches_fingerprint(&party, &facts));
        assert!(Matcher::address("jo@mail.example.com").matches_fingerprint(&party, &facts));
        assert!(!Matcher::address("other@mail.example.com").matches_fingerprint(&party, &facts));
        assert!(!Matcher::domain("example.org").matches_fingerprint(&party, &facts));
        assert!(!party.1.contains("jo"), "the address itself is not kept");
    }

    #[test]
    fn a_label_rule_matches_no_party() {
        let party = (
            "customer.com".to_string(),
            address_hash("alice@customer.com"),
        );
        let label = Matcher {
            party: None,
            automated: None,
            calendar: None,
            label: Some("crm/never".to_string()),
        };
        let facts = MessageFacts::default();
        assert!(!label.matches_fingerprint(&party, &facts));
        assert!(!label.matches("alice@customer.com", &facts));
        assert!(label.matches_labels(["INBOX", "CRM/Never"]));
        assert!(!label.matches_labels(["INBOX", "CRM/Never2"]));
    }

    #[test]
    fn message_conditions_need_known_facts() {
        let party = (
            "news.example".to_string(),
            address_hash("news@news.example"),
        );
        let automated = Matcher {
            party: None,
            automated: Some(true),
            calendar: None,
            label: None,
        };
        let known = MessageFacts {
            automated: Some(true),
            calendar_only: Some(false),
        };
        assert!(automated.matches_fingerprint(&party, &known));
        assert!(
            !automated.matches_fingerprint(&party, &MessageFacts::default()),
            "a source stored without facts is never matched by a message condition"
        );
        let person = MessageFacts {
            automated: Some(false),
            ..known
        };
        assert!(!automated.matches_fingerprint(&party, &person));
    }
}
