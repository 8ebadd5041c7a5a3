//! The decision spec (`shared/spec/decisions.md`) as a table: every rule of the spec has at
//! least one named case here, run through the real parser and the real decision code.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use mailsync::config::Config;
use mailsync::parse::parse_message;
use mailsync::rules::{ContactBook, Policy, RuleSet, decide};

const CONFIG: &str = r#"
[company]
domains = ["abcorp.com"]
[store]
path = "unused.sqlite3"
[[users]]
email = "michelle@abcorp.com"
aliases = ["m@abcorp.com", "michelle@abcorp-labs.io"]
role = "admin"
sync = true
emails_visible = true
[[users]]
email = "dave@abcorp.com"
sync = true
[[users]]
email = "olga@abcorp.com"
sync = false
[[users]]
email = "sam.contractor@gmail.com"
sync = true
emails_visible = true
[[users]]
email = "ceo@abcorp.com"
sync = true
emails_visible = true
"#;

const RULES: &str = r#"
[[rule]]
name = "doctor"
match = { address = "dr.jones@clinic.example" }
action = "skip"

[[rule]]
name = "bank"
match = { domain = "bank.example" }
action = "skip"

[[rule]]
name = "ceo skips lawyers"
match = { domain = "lawyers.example" }
action = "skip"
users = ["ceo@abcorp.com"]

[[rule]]
name = "bookkeeper private"
match = { domain = "bookkeeper.nl" }
action = "private"

[[rule]]
name = "customers visible"
match = { domain = "customer.com" }
action = "visible"

[[rule]]
name = "vip visible"
match = { address = "vip@bigclient.io" }
action = "visible"

[[rule]]
name = "ceo hr private"
match = { domain = "hr-partner.example" }
action = "private"
users = ["ceo@abcorp.com"]

[[rule]]
name = "skip an internal domain"
match = { domain = "blocked-internal.abcorp.com" }
action = "skip"

[[rule]]
name = "dave skips automated mail"
match = { automated = true }
action = "skip"
users = ["dave@abcorp.com"]

[[rule]]
name = "vendor news skipped"
match = { domain = "vendor-news.example", automated = true }
action = "skip"

[[rule]]
name = "invitations private"
match = { calendar = true }
action = "private"
"#;

/// Every contact address in the store for these cases.
const CONTACTS: &[&str] = &[
    "alice@customer.com",
    "bob@bigclient.io",
    "vip@bigclient.io",
    "jan@bookkeeper.nl",
    "dr.jones@clinic.example",
    "teller@bank.example",
    "friend@gmail.com",
    "counsel@lawyers.example",
    "hr@hr-partner.example",
    "carol@customer.com",
    "quiet@bigclient.io",
    "news@vendor-news.example",
    "sales@vendor-news.example",
];

/// Contacts marked never-sync (`contacts set --no-sync`).
const NEVER_SYNC: &[&str] = &["quiet@bigclient.io"];

fn policy() -> Policy {
    let config = Config::from_toml(Path::new("/cfg/mailsync.toml"), CONFIG.to_string())
        .expect("test config is valid");
    let rules = RuleSet::from_files(
        vec![(PathBuf::from("/cfg/rules/test.toml"), RULES.to_string())],
        &config,
    )
    .expect("test rules are valid");
    Policy::new(config, rules)
}

struct Case {
    name: &'static str,
    user: &'static str,
    labels: &'static [&'static str],
    /// Header lines; a body is added.
    headers: &'static str,
    reason: &'static str,
    visibility: Option<&'static str>,
    contacts: &'static [&'static str],
    parties: &'static [(&'static str, &'static str)],
    rules: &'static [&'static str],
}

const INCOMING_FROM_ALICE: &str =
    "From: Alice <alice@customer.com>\nTo: michelle@abcorp.com\nSubject: hi\n";

const CASES: &[Case] = &[
    // Decision 1: sync off.
    Case {
        name: "sync off skips everything",
        user: "olga@abcorp.com",
        labels: &[],
        headers: "From: alice@customer.com\nTo: olga@abcorp.com\n",
        reason: "sync_disabled",
        visibility: None,
        contacts: &[],
        parties: &[],
        rules: &[],
    },
    // Decision 2: labels.
    Case {
        name: "gmail DRAFT label",
        user: "michelle@abcorp.com",
        labels: &["DRAFT"],
        headers: INCOMING_FROM_ALICE,
        reason: "excluded_label",
        visibility: None,
        contacts: &[],
        parties: &[],
        rules: &[],
    },
    Case {
        name: "gmail SPAM label",
        user: "michelle@abcorp.com",
        labels: &["INBOX", "SPAM"],
        headers: INCOMING_FROM_ALICE,
        reason: "excluded_label",
        visibility: None,
        contacts: &[],
        parties: &[],
        rules: &[],
    },
    Case {
        name: "gmail TRASH label",
        user: "michelle@abcorp.com",
        labels: &["TRASH"],
        headers: INCOMING_FROM_ALICE,
        reason: "excluded_label",
        visibility: None,
        contacts: &[],
        parties: &[],
        rules: &[],
    },
    Case {
        name: "gmail CHAT label",
        user: "michelle@abcorp.com",
        labels: &["CHAT"],
        headers: INCOMING_FROM_ALICE,
        reason: "excluded_label",
        visibility: None,
        contacts: &[],
        parties: &[],
        rules: &[],
    },
    Case {
        name: "takeout Drafts label",
        user: "michelle@abcorp.com",
        labels: &["Opened", "Drafts"],
        headers: INCOMING_FROM_ALICE,
        reason: "excluded_label",
        visibility: None,
        contacts: &[],
        parties: &[],
        rules: &[],
    },
    Case {
        name: "takeout Draft label",
        user: "michelle@abcorp.com",
        labels: &["Draft"],
        headers: INCOMING_FROM_ALICE,
        reason: "excluded_label",
        visibility: None,
        contacts: &[],
        parties: &[],
        rules: &[],
    },
    Case {
        name: "takeout Spam label",
        user: "michelle@abcorp.com",
        labels: &["Spam"],
        headers: INCOMING_FROM_ALICE,
        reason: "excluded_label",
        visibility: None,
        contacts: &[],
        parties: &[],
        rules: &[],
    },
    Case {
        name: "takeout Trash label",
        user: "michelle@abcorp.com",
        labels: &["Trash"],
        headers: INCOMING_FROM_ALICE,
        reason: "excluded_label",
        visibility: None,
        contacts: &[],
        parties: &[],
        rules: &[],
    },
    Case {
        name: "takeout Chat label",
        user: "michelle@abcorp.com",
        labels: &["Chat"],
        headers: INCOMING_FROM_ALICE,
        reason: "excluded_label",
        visibility: None,
        contacts: &[],
        parties: &[],
        rules: &[],
    },
    Case {
        name: "ordinary labels do not exclude",
        user: "michelle@abcorp.com",
        labels: &["INBOX", "IMPORTANT", "Category Updates"],
        headers: INCOMING_FROM_ALICE,
        reason: "synced",
        visibility: Some("visible"),
        contacts: &["alice@customer.com"],
        parties: &[("alice@customer.com", "qualifies")],
        rules: &["customers visible"],
    },
    Case {
        name: "sync off wins over labels",
        user: "olga@abcorp.com",
        labels: &["SPAM"],
        headers: INCOMING_FROM_ALICE,
        reason: "sync_disabled",
        visibility: None,
        contacts: &[],
        parties: &[],
        rules: &[],
    },
    // Decision 3: unreadable headers.
    Case {
        name: "not a message at all",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "",
        reason: "parse_error",
        visibility: None,
        contacts: &[],
        parties: &[],
        rules: &[],
    },
    // Decision 4: any blocked party blocks the whole message.
    Case {
        name: "skip rule by address blocks despite a qualifying party",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: alice@customer.com\nTo: michelle@abcorp.com\nCc: Dr. Jones <DR.JONES@clinic.example>\n",
        reason: "blocked_by_rule",
        visibility: None,
        contacts: &[],
        parties: &[
            ("alice@customer.com", "qualifies"),
            ("dr.jones@clinic.example", "blocked"),
        ],
        rules: &["doctor"],
    },
    Case {
        name: "skip rule by domain matches subdomains",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: noreply@alerts.bank.example\nTo: dave@abcorp.com\n",
        reason: "blocked_by_rule",
        visibility: None,
        contacts: &[],
        parties: &[("noreply@alerts.bank.example", "blocked")],
        rules: &["bank"],
    },
    Case {
        name: "skip rule does not match a lookalike domain",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: x@notbank.example\nTo: dave@abcorp.com\n",
        reason: "no_qualifying_party",
        visibility: None,
        contacts: &[],
        parties: &[("x@notbank.example", "not_a_contact")],
        rules: &[],
    },
    Case {
        name: "scoped skip rule applies in scope",
        user: "ceo@abcorp.com",
        labels: &[],
        headers: "From: counsel@lawyers.example\nTo: ceo@abcorp.com\n",
        reason: "blocked_by_rule",
        visibility: None,
        contacts: &[],
        parties: &[("counsel@lawyers.example", "blocked")],
        rules: &["ceo skips lawyers"],
    },
    Case {
        name: "scoped skip rule ignored out of scope",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: counsel@lawyers.example\nTo: dave@abcorp.com\n",
        reason: "synced",
        visibility: Some("private"),
        contacts: &["counsel@lawyers.example"],
        parties: &[("counsel@lawyers.example", "qualifies")],
        rules: &[],
    },
    Case {
        name: "blocked comes before shared_domain",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: alice@customer.com\nTo: michelle@abcorp.com, ops@blocked-internal.abcorp.com\n",
        reason: "blocked_by_rule",
        visibility: None,
        contacts: &[],
        parties: &[
            ("alice@customer.com", "qualifies"),
            ("ops@blocked-internal.abcorp.com", "blocked"),
        ],
        rules: &["skip an internal domain"],
    },
    // Decision 5 and the verdicts.
    Case {
        name: "colleague is_user, including another user's alias",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: Michelle <m@abcorp.com>\nTo: dave@abcorp.com\nCc: olga@abcorp.com\n",
        reason: "no_qualifying_party",
        visibility: None,
        contacts: &[],
        parties: &[("m@abcorp.com", "is_user"), ("olga@abcorp.com", "is_user")],
        rules: &[],
    },
    Case {
        name: "company domain and its subdomains are shared",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: paul@eu.abcorp.com\nTo: dave@abcorp.com, it@abcorp.com\n",
        reason: "no_qualifying_party",
        visibility: None,
        contacts: &[],
        parties: &[
            ("paul@eu.abcorp.com", "shared_domain"),
            ("it@abcorp.com", "shared_domain"),
        ],
        rules: &[],
    },
    Case {
        name: "a user's own non-free-mail domain is shared",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: lab@abcorp-labs.io\nTo: dave@abcorp.com\n",
        reason: "no_qualifying_party",
        visibility: None,
        contacts: &[],
        parties: &[("lab@abcorp-labs.io", "shared_domain")],
        rules: &[],
    },
    Case {
        name: "a user on free-mail does not make free-mail internal",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: friend@gmail.com\nTo: dave@abcorp.com\nCc: sam.contractor@gmail.com\n",
        reason: "synced",
        visibility: Some("private"),
        contacts: &["friend@gmail.com"],
        parties: &[
            ("friend@gmail.com", "qualifies"),
            ("sam.contractor@gmail.com", "is_user"),
        ],
        rules: &[],
    },
    Case {
        name: "stranger is not a contact",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: sales@vendor.example\nTo: michelle@abcorp.com\n",
        reason: "no_qualifying_party",
        visibility: None,
        contacts: &[],
        parties: &[("sales@vendor.example", "not_a_contact")],
        rules: &[],
    },
    Case {
        name: "no folding of plus tags or dots",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: alice+news@customer.com\nTo: michelle@abcorp.com\nCc: a.lice@customer.com\n",
        reason: "no_qualifying_party",
        visibility: None,
        contacts: &[],
        parties: &[
            ("alice+news@customer.com", "not_a_contact"),
            ("a.lice@customer.com", "not_a_contact"),
        ],
        rules: &[],
    },
    Case {
        name: "addresses compare case-insensitively",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: ALICE@Customer.COM\nTo: Michelle@ABCORP.com\n",
        reason: "synced",
        visibility: Some("visible"),
        contacts: &["alice@customer.com"],
        parties: &[("alice@customer.com", "qualifies")],
        rules: &["customers visible"],
    },
    // Parties.
    Case {
        name: "incoming bcc is not a party",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: sales@vendor.example\nTo: dave@abcorp.com\nBcc: bob@bigclient.io\n",
        reason: "no_qualifying_party",
        visibility: None,
        contacts: &[],
        parties: &[("sales@vendor.example", "not_a_contact")],
        rules: &[],
    },
    Case {
        name: "outgoing bcc is a party",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: Dave <dave@abcorp.com>\nTo: it@abcorp.com\nBcc: bob@bigclient.io\n",
        reason: "synced",
        visibility: Some("private"),
        contacts: &["bob@bigclient.io"],
        parties: &[
            ("it@abcorp.com", "shared_domain"),
            ("bob@bigclient.io", "qualifies"),
        ],
        rules: &[],
    },
    Case {
        name: "sent from an alias is outgoing and aliases are not parties",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: m@abcorp.com\nTo: alice@customer.com\nCc: michelle@abcorp-labs.io\nBcc: carol@customer.com\n",
        reason: "synced",
        visibility: Some("visible"),
        contacts: &["alice@customer.com", "carol@customer.com"],
        parties: &[
            ("alice@customer.com", "qualifies"),
            ("carol@customer.com", "qualifies"),
        ],
        rules: &["customers visible"],
    },
    Case {
        name: "reply-to sender and delivered-to are not parties",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: sales@vendor.example\nReply-To: alice@customer.com\nSender: bob@bigclient.io\nDelivered-To: jan@bookkeeper.nl\nTo: dave@abcorp.com\n",
        reason: "no_qualifying_party",
        visibility: None,
        contacts: &[],
        parties: &[("sales@vendor.example", "not_a_contact")],
        rules: &[],
    },
    Case {
        name: "group members are parties, group names are not",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: sales@vendor.example\nTo: Customers: alice@customer.com, \"Doe, Bob\" <bob@bigclient.io>;, dave@abcorp.com\n",
        reason: "synced",
        visibility: Some("visible"),
        contacts: &["alice@customer.com", "bob@bigclient.io"],
        parties: &[
            ("sales@vendor.example", "not_a_contact"),
            ("alice@customer.com", "qualifies"),
            ("bob@bigclient.io", "qualifies"),
        ],
        rules: &["customers visible"],
    },
    Case {
        name: "encoded display names do not hide addresses",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: =?UTF-8?B?SmFuIELDtmtob3VkZXI=?= <jan@bookkeeper.nl>\nTo: dave@abcorp.com\n",
        reason: "synced",
        visibility: Some("private"),
        contacts: &["jan@bookkeeper.nl"],
        parties: &[("jan@bookkeeper.nl", "qualifies")],
        rules: &["bookkeeper private"],
    },
    Case {
        name: "a party appearing twice is listed once",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: alice@customer.com\nTo: dave@abcorp.com, Alice@customer.com\nCc: alice@customer.com\n",
        reason: "synced",
        visibility: Some("visible"),
        contacts: &["alice@customer.com"],
        parties: &[("alice@customer.com", "qualifies")],
        rules: &["customers visible"],
    },
    // Visibility.
    Case {
        name: "no rule: user's emails_visible true",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: bob@bigclient.io\nTo: michelle@abcorp.com\n",
        reason: "synced",
        visibility: Some("visible"),
        contacts: &["bob@bigclient.io"],
        parties: &[("bob@bigclient.io", "qualifies")],
        rules: &[],
    },
    Case {
        name: "no rule: user's emails_visible false",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: bob@bigclient.io\nTo: dave@abcorp.com\n",
        reason: "synced",
        visibility: Some("private"),
        contacts: &["bob@bigclient.io"],
        parties: &[("bob@bigclient.io", "qualifies")],
        rules: &[],
    },
    Case {
        name: "visible rule overrides a private user setting",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: vip@bigclient.io\nTo: dave@abcorp.com\n",
        reason: "synced",
        visibility: Some("visible"),
        contacts: &["vip@bigclient.io"],
        parties: &[("vip@bigclient.io", "qualifies")],
        rules: &["vip visible"],
    },
    Case {
        name: "private rule overrides a visible user setting",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: jan@bookkeeper.nl\nTo: michelle@abcorp.com\n",
        reason: "synced",
        visibility: Some("private"),
        contacts: &["jan@bookkeeper.nl"],
        parties: &[("jan@bookkeeper.nl", "qualifies")],
        rules: &["bookkeeper private"],
    },
    Case {
        name: "private wins over visible",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: alice@customer.com\nTo: michelle@abcorp.com\nCc: jan@bookkeeper.nl\n",
        reason: "synced",
        visibility: Some("private"),
        contacts: &["alice@customer.com", "jan@bookkeeper.nl"],
        parties: &[
            ("alice@customer.com", "qualifies"),
            ("jan@bookkeeper.nl", "qualifies"),
        ],
        rules: &["customers visible", "bookkeeper private"],
    },
    Case {
        name: "visibility rules only count on qualifying parties",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: bob@bigclient.io\nTo: dave@abcorp.com\nCc: nobody@customer.com\n",
        reason: "synced",
        visibility: Some("private"),
        contacts: &["bob@bigclient.io"],
        parties: &[
            ("bob@bigclient.io", "qualifies"),
            ("nobody@customer.com", "not_a_contact"),
        ],
        rules: &[],
    },
    Case {
        name: "scoped private rule in scope",
        user: "ceo@abcorp.com",
        labels: &[],
        headers: "From: hr@hr-partner.example\nTo: ceo@abcorp.com\n",
        reason: "synced",
        visibility: Some("private"),
        contacts: &["hr@hr-partner.example"],
        parties: &[("hr@hr-partner.example", "qualifies")],
        rules: &["ceo hr private"],
    },
    // Automated mail and message conditions (issue 4, item 5).
    Case {
        name: "automated: List-Id mail is skipped where a rule says so",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: bob@bigclient.io\nTo: dave@abcorp.com\nList-Id: <updates.bigclient.io>\n",
        reason: "blocked_by_rule",
        visibility: None,
        contacts: &[],
        parties: &[("bob@bigclient.io", "blocked")],
        rules: &["dave skips automated mail"],
    },
    Case {
        name: "automated: the same mail outside the rule's scope is synced",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: bob@bigclient.io\nTo: michelle@abcorp.com\nList-Id: <updates.bigclient.io>\n",
        reason: "synced",
        visibility: Some("visible"),
        contacts: &["bob@bigclient.io"],
        parties: &[("bob@bigclient.io", "qualifies")],
        rules: &[],
    },
    Case {
        name: "automated: a message rule blocks every party, the whole message",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: bob@bigclient.io\nTo: dave@abcorp.com\nCc: alice@customer.com\nPrecedence: bulk\n",
        reason: "blocked_by_rule",
        visibility: None,
        contacts: &[],
        parties: &[
            ("bob@bigclient.io", "blocked"),
            ("alice@customer.com", "blocked"),
        ],
        rules: &["dave skips automated mail"],
    },
    Case {
        name: "automated: Auto-Submitted other than no",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: bob@bigclient.io\nTo: dave@abcorp.com\nAuto-Submitted: auto-replied\n",
        reason: "blocked_by_rule",
        visibility: None,
        contacts: &[],
        parties: &[("bob@bigclient.io", "blocked")],
        rules: &["dave skips automated mail"],
    },
    Case {
        name: "automated: List-Unsubscribe alone",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: bob@bigclient.io\nTo: dave@abcorp.com\nList-Unsubscribe: <mailto:u@bigclient.io>\n",
        reason: "blocked_by_rule",
        visibility: None,
        contacts: &[],
        parties: &[("bob@bigclient.io", "blocked")],
        rules: &["dave skips automated mail"],
    },
    Case {
        name: "automated: Auto-Submitted: no and Precedence: normal are a person's mail",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: bob@bigclient.io\nTo: dave@abcorp.com\nAuto-Submitted: no\nPrecedence: normal\n",
        reason: "synced",
        visibility: Some("private"),
        contacts: &["bob@bigclient.io"],
        parties: &[("bob@bigclient.io", "qualifies")],
        rules: &[],
    },
    Case {
        name: "automated: domain and condition must both hold (newsletter)",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: news@vendor-news.example\nTo: michelle@abcorp.com\nList-Id: <news.vendor-news.example>\n",
        reason: "blocked_by_rule",
        visibility: None,
        contacts: &[],
        parties: &[("news@vendor-news.example", "blocked")],
        rules: &["vendor news skipped"],
    },
    Case {
        name: "automated: domain and condition must both hold (a person at that domain)",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: sales@vendor-news.example\nTo: michelle@abcorp.com\n",
        reason: "synced",
        visibility: Some("visible"),
        contacts: &["sales@vendor-news.example"],
        parties: &[("sales@vendor-news.example", "qualifies")],
        rules: &[],
    },
    Case {
        name: "calendar-only invitation matched by a calendar rule",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: bob@bigclient.io\nTo: michelle@abcorp.com\nContent-Type: text/calendar; method=REQUEST\n",
        reason: "synced",
        visibility: Some("private"),
        contacts: &["bob@bigclient.io"],
        parties: &[("bob@bigclient.io", "qualifies")],
        rules: &["invitations private"],
    },
    // "Never sync this contact" (issue 4, item 6): a skip rule for the contact's addresses.
    Case {
        name: "never-sync contact blocks the message",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: quiet@bigclient.io\nTo: michelle@abcorp.com\n",
        reason: "blocked_by_rule",
        visibility: None,
        contacts: &[],
        parties: &[("quiet@bigclient.io", "blocked")],
        rules: &["contact: never sync"],
    },
    Case {
        name: "never-sync contact blocks the whole message, other contacts too",
        user: "dave@abcorp.com",
        labels: &[],
        headers: "From: bob@bigclient.io\nTo: dave@abcorp.com\nCc: quiet@bigclient.io\n",
        reason: "blocked_by_rule",
        visibility: None,
        contacts: &[],
        parties: &[
            ("bob@bigclient.io", "qualifies"),
            ("quiet@bigclient.io", "blocked"),
        ],
        rules: &["contact: never sync"],
    },
    Case {
        name: "scoped private rule out of scope",
        user: "michelle@abcorp.com",
        labels: &[],
        headers: "From: hr@hr-partner.example\nTo: michelle@abcorp.com\n",
        reason: "synced",
        visibility: Some("visible"),
        contacts: &["hr@hr-partner.example"],
        parties: &[("hr@hr-partner.example", "qualifies")],
        rules: &[],
    },
];

#[test]
fn every_case_of_the_spec_decides_as_written() {
    let policy = policy();
    let contacts = ContactBook {
        contacts: CONTACTS.iter().map(|c| c.to_string()).collect(),
        never_sync: NEVER_SYNC.iter().map(|c| c.to_string()).collect(),
    };
    let mut failures = Vec::new();
    for case in CASES {
        let user = policy
            .config
            .user_by_address(case.user)
            .expect("case user is configured");
        let raw = if case.headers.is_empty() {
            Vec::new()
        } else {
            format!(
                "{}Date: Mon, 02 Sep 2024 09:15:00 +0000\nMessage-ID: <case@test>\n\nbody\n",
                case.headers
            )
            .into_bytes()
        };
        let labels: Vec<String> = case.labels.iter().map(|l| l.to_string()).collect();
        let parsed = parse_message(&raw);
        let decision = decide(&policy, user, &labels, parsed.as_ref(), &contacts);
        let got_parties: Vec<(String, String)> = decision
            .parties
            .iter()
            .map(|p| (p.address.clone(), p.verdict.as_str().to_string()))
            .collect();
        let want_parties: Vec<(String, String)> = case
            .parties
            .iter()
            .map(|(a, v)| (a.to_string(), v.to_string()))
            .collect();
        let got_contacts = decision
            .approval()
            .map(|a| a.contacts().to_vec())
            .unwrap_or_default();
        let checks = [
            (
                "reason",
                decision.reason.as_str().to_string(),
                case.reason.to_string(),
            ),
            (
                "visibility",
                format!("{:?}", decision.visibility().map(|v| v.as_str())),
                format!("{:?}", case.visibility),
            ),
            (
                "contacts",
                format!("{got_contacts:?}"),
                format!("{:?}", case.contacts),
            ),
            (
                "parties",
                format!("{got_parties:?}"),
                format!("{want_parties:?}"),
            ),
            (
                "rules",
                format!("{:?}", decision.rule_names()),
                format!("{:?}", case.rules),
            ),
        ];
        for (what, got, want) in checks {
            if got != want {
                failures.push(format!("{}: {what}: got {got}, want {want}", case.name));
            }
        }
        if decision.approval().is_some() != (case.reason == "synced") {
            failures.push(format!(
                "{}: an approval must exist exactly for synced decisions",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn case_names_are_unique() {
    let mut names = HashSet::new();
    for case in CASES {
        assert!(names.insert(case.name), "duplicate case name {}", case.name);
    }
}
