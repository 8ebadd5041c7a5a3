//! Invariants that must hold for any mail and any rules, checked with generated input:
//! a skip rule never adds a synced message, a private rule never makes anything visible, and
//! replaying a mailbox twice leaves the store exactly as once.

use crate::common;

use std::collections::HashSet;

use mailsync::parse::parse_message;
use mailsync::rules::{ContactBook, Decision, decide};
use mailsync::source::SourceMessage;
use mailsync::store::{NewContact, SqliteStore, Store};
use mailsync::sync::{self, Mode};
use proptest::prelude::*;

const CONFIG: &str = r#"
[company]
domains = ["abcorp.com"]
[store]
path = "unused.sqlite3"
[[users]]
email = "michelle@abcorp.com"
sync = true
emails_visible = true
[[users]]
email = "dave@abcorp.com"
sync = true
emails_visible = false
"#;

/// Addresses the generated mail is made of: users, colleagues, contacts and strangers.
const ADDRESSES: &[&str] = &[
    "michelle@abcorp.com",
    "dave@abcorp.com",
    "it@eu.abcorp.com",
    "alice@customer.com",
    "carol@customer.com",
    "bob@bigclient.io",
    "jan@bookkeeper.nl",
    "friend@gmail.com",
    "stranger@vendor.example",
    "noreply@alerts.bank.example",
];

const CONTACTS: &[&str] = &[
    "alice@customer.com",
    "carol@customer.com",
    "bob@bigclient.io",
    "jan@bookkeeper.nl",
    "friend@gmail.com",
];

/// Matchers the generated rules are made of.
const MATCHERS: &[&str] = &[
    "{ domain = \"customer.com\" }",
    "{ address = \"bob@bigclient.io\" }",
    "{ domain = \"bookkeeper.nl\" }",
    "{ domain = \"gmail.com\" }",
    "{ domain = \"vendor.example\" }",
    "{ address = \"alice@customer.com\" }",
    "{ domain = \"abcorp.com\" }",
    "{ automated = true }",
    "{ domain = \"customer.com\", automated = true }",
    "{ automated = false }",
];

#[derive(Debug, Clone)]
struct GeneratedRule {
    matcher: usize,
    action: &'static str,
    scoped_to_dave: bool,
}

fn rules_text(rules: &[GeneratedRule]) -> String {
    rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            format!(
                "[[rule]]\nname = \"r{index}\"\nmatch = {}\naction = \"{}\"\n{}\n",
                MATCHERS[rule.matcher],
                rule.action,
                if rule.scoped_to_dave {
                    "users = [\"dave@abcorp.com\"]"
                } else {
                    ""
                }
            )
        })
        .collect()
}

fn rule_strategy(actions: &'static [&'static str]) -> impl Strategy<Value = GeneratedRule> {
    (
        0..MATCHERS.len(),
        prop::sample::select(actions),
        any::<bool>(),
    )
        .prop_map(|(matcher, action, scoped_to_dave)| GeneratedRule {
            matcher,
            action,
            scoped_to_dave,
        })
}

#[derive(Debug, Clone)]
struct GeneratedMessage {
    from: usize,
    to: Vec<usize>,
    cc: Vec<usize>,
    bcc: Vec<usize>,
    with_message_id: bool,
    /// Carries a `List-Id`, so `automated` matchers apply.
    automated: bool,
}

fn message_strategy() -> impl Strategy<Value = GeneratedMessage> {
    let address = 0..ADDRESSES.len();
    (
        address.clone(),
        prop::collection::vec(address.clone(), 0..4),
        prop::collection::vec(address.clone(), 0..3),
        prop::collection::vec(address, 0..2),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(from, to, cc, bcc, with_message_id, automated)| GeneratedMessage {
                from,
                to,
                cc,
                bcc,
                with_message_id,
                automated,
            },
        )
}

fn raw(message: &GeneratedMessage, index: usize) -> String {
    let list = |indexes: &[usize]| {
        indexes
            .iter()
            .map(|&i| ADDRESSES[i])
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!("From: {}\n", ADDRESSES[message.from]);
    for (name, indexes) in [
        ("To", &message.to),
        ("Cc", &message.cc),
        ("Bcc", &message.bcc),
    ] {
        if !indexes.is_empty() {
            text.push_str(&format!("{name}: {}\n", list(indexes)));
        }
    }
    if message.with_message_id {
        text.push_str(&format!("Message-ID: <m{index}@test>\n"));
    }
    if message.automated {
        text.push_str("List-Id: <updates.list.example>\n");
    }
    text.push_str(&format!(
        "Subject: message {index}\nDate: Mon, 02 Sep 2024 09:15:00 +0000\n\nbody {index}\n"
    ));
    text
}

fn decide_all(rules: &[GeneratedRule], user: &str, messages: &[GeneratedMessage]) -> Vec<Decision> {
    let policy = common::policy(CONFIG, &rules_text(rules));
    let user = policy.config.user_by_address(user).unwrap();
    let contacts: ContactBook = CONTACTS
        .iter()
        .map(|c| c.to_string())
        .collect::<HashSet<String>>()
        .into();
    messages
        .iter()
        .enumerate()
        .map(|(index, message)| {
            let bytes = raw(message, index).into_bytes();
            decide(
                &policy,
                user,
                &[],
                parse_message(&bytes).as_ref(),
                &contacts,
            )
        })
        .collect()
}

fn user_strategy() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["michelle@abcorp.com", "dave@abcorp.com"][..])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn adding_a_skip_rule_never_adds_a_synced_message(
        rules in prop::collection::vec(rule_strategy(&["skip", "private", "visible"]), 0..5),
        extra in rule_strategy(&["skip"]),
        user in user_strategy(),
        messages in prop::collection::vec(message_strategy(), 1..12),
    ) {
        let before = decide_all(&rules, user, &messages);
        let mut more = rules.clone();
        more.push(extra);
        let after = decide_all(&more, user, &messages);
        for (index, (b, a)) in before.iter().zip(&after).enumerate() {
            prop_assert!(
                a.approval().is_none() || b.approval().is_some(),
                "message {index} became synced after adding a skip rule: {b:?} -> {a:?}"
            );
        }
    }

    #[test]
    fn adding_a_private_rule_never_makes_anything_visible(
        rules in prop::collection::vec(rule_strategy(&["skip", "private", "visible"]), 0..5),
        extra in rule_strategy(&["private"]),
        user in user_strategy(),
        messages in prop::collection::vec(message_strategy(), 1..12),
    ) {
        let before = decide_all(&rules, user, &messages);
        let mut more = rules.clone();
        more.push(extra);
        let after = decide_all(&more, user, &messages);
        for (index, (b, a)) in before.iter().zip(&after).enumerate() {
            let made_visible = a.visibility().is_some_and(|v| v.as_str() == "visible")
                && b.visibility().is_none_or(|v| v.as_str() == "private");
            prop_assert!(!made_visible, "message {index} became visible after adding a private rule");
            prop_assert_eq!(a.approval().is_some(), b.approval().is_some(), "a private rule changes visibility only");
        }
    }
}

proptest! {
    // Each case writes a real SQLite file twice; fewer cases keep the suite fast.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn replaying_a_mailbox_twice_leaves_the_store_unchanged(
        rules in prop::collection::vec(rule_strategy(&["skip", "private", "visible"]), 0..4),
        messages in prop::collection::vec(message_strategy(), 1..15),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.sqlite3");
        let mut store = SqliteStore::open(&path).unwrap();
        for contact in CONTACTS {
            store.add_contact(&NewContact { name: None, emails: vec![contact.to_string()], visible_to: None, no_sync: None }).unwrap();
        }
        let policy = common::policy(CONFIG, &rules_text(&rules));
        let replay = |store: &mut SqliteStore| {
            for user in ["michelle@abcorp.com", "dave@abcorp.com"] {
                let user = policy.config.user_by_address(user).unwrap();
                for (index, message) in messages.iter().enumerate() {
                    let source_message = SourceMessage {
                        source_id: format!("{index}.eml"),
                        raw: raw(message, index).into_bytes(),
                        labels: vec![],
                    };
                    sync::process(&policy, store, user, "dir:/mailbox", &source_message, Mode::Write).unwrap();
                }
            }
        };
        replay(&mut store);
        let once = common::dump_store(&path);
        replay(&mut store);
        prop_assert_eq!(common::dump_store(&path), once);
    }
}
