//! Raw mail → `parse::parse_message` → `rules::decide`, for every user of a fixed policy, and
//! `parse::gmail_labels` on the same bytes.
//!
//! Besides "never panics, never hangs", three properties of the decision spec are checked on
//! every input:
//! - a decision holds an `Approval` exactly when its reason is `synced`;
//! - a synced decision's contacts are parties whose verdict is `qualifies`;
//! - no party is one of the mailbox owner's own addresses.
//!
//! The policy mirrors the demo (`examples/demo`), so that the seeds' addresses hit users,
//! internal domains, contacts and rules of every action.
//!
//! Note: `parse_message` and `gmail_labels` turn a panic into an error with `catch_unwind`;
//! under libFuzzer every panic aborts first (its panic hook), so a panic a dependency hides from
//! the daemon is still reported here.

#![no_main]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mailsync::config::Config;
use mailsync::rules::{ContactBook, Policy, Reason, RuleSet, Verdict, decide};

const CONFIG: &str = r#"
[company]
domains = ["abcorp.com"]

[store]
path = "crm.sqlite3"

[[users]]
email = "michelle@abcorp.com"
# A free-mail alias stays out of the internal domains; a non-free-mail one makes its domain
# internal.
aliases = ["m@abcorp.com", "michelle.abcorp@gmail.com"]
role = "admin"
sync = true
emails_visible = true

[[users]]
email = "dave@abcorp.com"
sync = true

[[users]]
email = "ceo@abcorp.com"
aliases = ["ceo@abcorp-holding.example"]
sync = true
emails_visible = true

[[users]]
email = "olga@abcorp.com"
sync = false
"#;

const RULES: &str = r#"
[[rule]]
name = "never the doctor"
match = { address = "dr.jones@clinic.example" }
action = "skip"

[[rule]]
name = "dave skips the vendor"
match = { domain = "unknown-vendor.org" }
action = "skip"
users = ["dave@abcorp.com"]

[[rule]]
name = "bookkeeper private"
match = { domain = "bookkeeper.nl" }
action = "private"
users = ["ceo@abcorp.com"]

[[rule]]
name = "carol private"
match = { address = "carol@customer.com" }
action = "private"

[[rule]]
name = "customers visible"
match = { domain = "customer.com" }
action = "visible"

[[rule]]
name = "bigclient visible for michelle"
match = { address = "bob@bigclient.io" }
action = "visible"
users = ["m@abcorp.com"]
"#;

/// Lower-cased, as `decide` expects. Includes a colleague and an alias of a user, which must
/// never qualify whatever the contact list says.
const CONTACTS: &[&str] = &[
    "alice@customer.com",
    "alice.c@customer.com",
    "carol@customer.com",
    "sales@eu.customer.com",
    "bob@bigclient.io",
    "jan@bookkeeper.nl",
    "dr.jones@clinic.example",
    "frank.freelancer@gmail.com",
    "john@elsewhere.example",
    "dave@abcorp.com",
    "michelle.abcorp@gmail.com",
];

struct Fixture {
    policy: Policy,
    contacts: ContactBook,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let config = Config::from_toml(Path::new("/fuzz/mailsync.toml"), CONFIG.to_string())
        .unwrap_or_else(|problems| panic!("the fuzz config is invalid:\n{problems}"));
    let rules = RuleSet::from_files(
        vec![(PathBuf::from("/fuzz/rules.toml"), RULES.to_string())],
        &config,
    )
    .unwrap_or_else(|problems| panic!("the fuzz rules are invalid:\n{problems}"));
    assert_eq!(rules.rules.len(), 6, "every fuzz rule loads");
    Fixture {
        policy: Policy::new(config, rules),
        contacts: CONTACTS
            .iter()
            .map(|c| c.to_string())
            .collect::<HashSet<String>>()
            .into(),
    }
});

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    let policy = &fixture.policy;
    let labels = mailsync::parse::gmail_labels(data);
    let parsed = mailsync::parse::parse_message(data);

    // The message's own labels first; then none, so that a message labelled Spam still
    // exercises the party and rule logic.
    let label_sets: [&[String]; 2] = [&labels, &[]];
    for user in &policy.config.users {
        for labels in label_sets {
            let decision = decide(
                policy,
                user,
                labels,
                parsed.as_ref(),
                &fixture.contacts,
            );

            assert_eq!(
                decision.approval().is_some(),
                decision.reason == Reason::Synced,
                "an approval exists exactly when the message is synced: {decision:?}"
            );

            if let Some(approval) = decision.approval() {
                for contact in approval.contacts() {
                    assert!(
                        decision.parties.iter().any(|party| &party.address == contact
                            && party.verdict == Verdict::Qualifies),
                        "synced contact {contact:?} is not a qualifying party: {decision:?}"
                    );
                }
            }

            for party in &decision.parties {
                let owner = policy.config.user_by_address(&party.address);
                assert!(
                    owner.is_none_or(|owner| owner.email != user.email),
                    "party {:?} is an address of the mailbox owner {:?}: {decision:?}",
                    party.address,
                    user.email
                );
            }
        }
    }
});
