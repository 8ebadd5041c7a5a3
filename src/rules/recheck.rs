//! Retroactive rules: a stored source decided again against the current rules, from what
//! the store keeps of its parties. The spec: "an activity that a `skip` rule now matches is
//! removed; visibility is recomputed."
//!
//! The store does not keep the addresses of parties that are not linked contacts; it keeps
//! each party's domain and the SHA-256 of its address, which is enough to match a rule by
//! domain or by address, and not enough to list who was on a message.

use sha2::{Digest, Sha256};

use super::decide::{PartyVerdict, Policy, Visibility};
use super::{Action, Matcher, Rule};
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

impl Matcher {
    /// Whether the rule matches a remembered party.
    pub fn matches_fingerprint(&self, (domain, hash): &PartyFingerprint) -> bool {
        match self {
            Matcher::Address(address) => address_hash(address) == *hash,
            Matcher::Domain(rule_domain) => address::domain_is_within(domain, rule_domain),
        }
    }
}

/// The outcome for one stored source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// A skip rule now matches a party: the source goes (and the activity with its last source).
    Blocked { rules: Vec<String> },
    /// The source stays, with this visibility, for these rules.
    Keep {
        visibility: Visibility,
        rules: Vec<String>,
    },
}

/// Decides a stored source of `user`'s mailbox again. `contacts` are the activity's linked
/// contact addresses (the parties that qualified).
pub fn recheck(
    policy: &Policy,
    user: &User,
    parties: &[PartyFingerprint],
    contacts: &[String],
) -> Recheck {
    let in_scope: Vec<&Rule> = policy
        .rules
        .rules
        .iter()
        .filter(|rule| rule.in_scope_for(&user.email))
        .collect();
    let names = |rules: Vec<&Rule>| -> Vec<String> {
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
                .any(|party| rule.matcher.matches_fingerprint(party))
                || contacts.iter().any(|contact| rule.matcher.matches(contact))
        })
        .collect();
    if !blocking.is_empty() {
        return Recheck::Blocked {
            rules: names(blocking),
        };
    }
    let visibility_rules: Vec<&Rule> = in_scope
        .iter()
        .copied()
        .filter(|rule| rule.action != Action::Skip)
        .filter(|rule| contacts.iter().any(|contact| rule.matcher.matches(contact)))
        .collect();
    let visibility = if visibility_rules
        .iter()
        .any(|rule| rule.action == Action::Private)
    {
        Visibility::Private
    } else if visibility_rules
        .iter()
        .any(|rule| rule.action == Action::Visible)
        || user.emails_visible
    {
        Visibility::Visible
    } else {
        Visibility::Private
    };
    Recheck::Keep {
        visibility,
        rules: names(visibility_rules),
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
        assert!(Matcher::Domain("example.com".into()).matches_fingerprint(&party));
        assert!(Matcher::Address("jo@mail.example.com".into()).matches_fingerprint(&party));
        assert!(!Matcher::Address("other@mail.example.com".into()).matches_fingerprint(&party));
        assert!(!Matcher::Domain("example.org".into()).matches_fingerprint(&party));
        assert!(!party.1.contains("jo"), "the address itself is not kept");
    }
}
