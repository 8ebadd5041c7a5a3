//! The decision spec (`docs/spec/decisions.md`) as a table: every rule of the spec has at
//! least one named case, run through the real parser and the real decision code. The cases
//! are data, in `tests/fixtures/decisions/cases.toml` (its opening comment describes the
//! format): adding a case means adding a `[[case]]` there, not code here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use mailsync::config::Config;
use mailsync::parse::parse_message;
use mailsync::rules::{
    Action, ContactBook, ConversationContext, DecidedBy, Policy, RuleSet, Visibility,
    activity_level, decide,
};
use serde::Deserialize;

/// The whole data file. Every struct refuses unknown keys: a misspelt field must be an
/// error, not an expectation that is silently never checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    /// The mailsync.toml every case runs under.
    config: String,
    /// The rules file every case runs under, unless the case brings its own.
    rules: String,
    /// The addresses that belong to a contact, unless the case brings its own.
    contacts: Vec<String>,
    /// Addresses of contacts marked never-sync (`contacts set --no-sync`).
    never_sync: Vec<String>,
    case: Vec<Case>,
    /// Step 4 of the spec: an activity's level from its copies.
    level: Vec<LevelCase>,
}

/// An activity's copies, each `[visibility, decided_by]`, and the level the spec gives it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelCase {
    name: String,
    copies: Vec<(String, String)>,
    level: String,
}

/// One message in one mailbox, and what the spec says about it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// The user whose mailbox holds the message.
    mailbox: String,
    #[serde(default)]
    labels: Vec<String>,
    /// Header lines; a Date, a Message-ID and a body are added. Empty: no message at all.
    headers: String,
    /// A rules file of the case's own, instead of the file's.
    rules: Option<String>,
    /// Contact addresses of the case's own, instead of the file's.
    contacts: Option<Vec<String>>,
    /// Never-sync addresses of the case's own, instead of the file's.
    never_sync: Option<Vec<String>>,
    /// The mailbox owner's choice for the conversation (`activity set --conversation`).
    owner_choice: Option<String>,
    /// Labels label rules matched on the mailbox's other stored copies of the conversation.
    #[serde(default)]
    conversation_labels: Vec<String>,
    expected: Expected,
}

/// The decision a case must get. What is left out must be empty (or null): every field is
/// compared.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    decision: String,
    reason: String,
    visibility: Option<String>,
    /// Which level chose (owner, label, rule, default); none for a message no choice was
    /// made for.
    decided_by: Option<String>,
    /// The linked contacts, in message order.
    #[serde(default)]
    contacts: Vec<String>,
    /// (address, verdict) for every party, in message order: an array, not a table, because
    /// the order is part of what is checked.
    #[serde(default)]
    verdicts: Vec<(String, String)>,
    /// Names of the rules that made the decision, in order.
    #[serde(default)]
    rules: Vec<String>,
}

const CASES_FILE: &str = "tests/fixtures/decisions/cases.toml";

fn cases() -> Cases {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CASES_FILE);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{CASES_FILE}: {e}"));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{CASES_FILE}: {e}"))
}

fn policy(config: &str, rules: &str) -> Policy {
    let config = Config::from_toml(Path::new("/cfg/mailsync.toml"), config.to_string())
        .expect("test config is valid");
    let rules = RuleSet::from_files(
        vec![(PathBuf::from("/cfg/rules/test.toml"), rules.to_string())],
        &config,
    )
    .expect("test rules are valid");
    Policy::new(config, rules)
}

fn book(contacts: &[String], never_sync: &[String]) -> ContactBook {
    ContactBook {
        contacts: contacts.iter().cloned().collect(),
        never_sync: never_sync.iter().cloned().collect(),
        ..ContactBook::default()
    }
}

/// Decides `case` and returns one line per difference from its expectation, each naming the
/// case.
fn mismatches(case: &Case, policy: &Policy, contacts: &ContactBook) -> Vec<String> {
    let Some(user) = policy.config.user_by_address(&case.mailbox) else {
        return vec![format!(
            "{}: mailbox {} is not a user of the config",
            case.name, case.mailbox
        )];
    };
    let raw = if case.headers.is_empty() {
        Vec::new()
    } else {
        format!(
            "{}Date: Mon, 02 Sep 2024 09:15:00 +0000\nMessage-ID: <case@test>\n\nbody\n",
            case.headers
        )
        .into_bytes()
    };
    let parsed = parse_message(&raw);
    let mut contacts = contacts.clone();
    if case.owner_choice.is_some() || !case.conversation_labels.is_empty() {
        contacts.conversations.insert(
            "<case@test>".to_string(),
            ConversationContext {
                owner_choice: case.owner_choice.as_deref().map(|choice| {
                    Action::parse(choice)
                        .unwrap_or_else(|| panic!("{}: owner_choice {choice}", case.name))
                }),
                labels: case.conversation_labels.clone(),
            },
        );
    }
    let decision = decide(policy, user, &case.labels, parsed.as_ref(), &contacts);
    let want = &case.expected;
    let got_parties: Vec<(String, String)> = decision
        .parties
        .iter()
        .map(|p| (p.address.clone(), p.verdict.as_str().to_string()))
        .collect();
    let got_contacts = decision
        .approval()
        .map(|a| a.contacts().to_vec())
        .unwrap_or_default();
    let checks = [
        (
            "decision",
            decision.outcome().as_str().to_string(),
            want.decision.clone(),
        ),
        (
            "reason",
            decision.reason.as_str().to_string(),
            want.reason.clone(),
        ),
        (
            "visibility",
            format!("{:?}", decision.visibility().map(|v| v.as_str())),
            format!("{:?}", want.visibility.as_deref()),
        ),
        (
            "decided_by",
            format!("{:?}", decision.decided_by().map(|d| d.as_str())),
            format!("{:?}", want.decided_by.as_deref()),
        ),
        (
            "contacts",
            format!("{got_contacts:?}"),
            format!("{:?}", want.contacts),
        ),
        (
            "verdicts",
            format!("{got_parties:?}"),
            format!("{:?}", want.verdicts),
        ),
        (
            "rules",
            format!("{:?}", decision.rule_names()),
            format!("{:?}", want.rules),
        ),
    ];
    let mut failures = Vec::new();
    for (what, got, want) in checks {
        if got != want {
            failures.push(format!("{}: {what}: got {got}, want {want}", case.name));
        }
    }
    if decision.approval().is_some() != (want.reason == "synced") {
        failures.push(format!(
            "{}: an approval must exist exactly for synced decisions",
            case.name
        ));
    }
    failures
}

#[test]
fn every_case_of_the_spec_decides_as_written() {
    let cases = cases();
    let shared_policy = policy(&cases.config, &cases.rules);
    let shared_book = book(&cases.contacts, &cases.never_sync);
    let mut failures = Vec::new();
    for case in &cases.case {
        let own_policy = case
            .rules
            .as_ref()
            .map(|rules| policy(&cases.config, rules));
        let own_book = (case.contacts.is_some() || case.never_sync.is_some()).then(|| {
            book(
                case.contacts.as_ref().unwrap_or(&cases.contacts),
                case.never_sync.as_ref().unwrap_or(&cases.never_sync),
            )
        });
        failures.extend(mismatches(
            case,
            own_policy.as_ref().unwrap_or(&shared_policy),
            own_book.as_ref().unwrap_or(&shared_book),
        ));
    }
    assert!(
        failures.is_empty(),
        "{} mismatches in {CASES_FILE}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_level_case_of_step_four_holds() {
    let mut failures = Vec::new();
    for case in cases().level {
        let copies = case.copies.iter().map(|(visibility, decided_by)| {
            (
                Visibility::parse(visibility)
                    .unwrap_or_else(|| panic!("{}: visibility {visibility}", case.name)),
                DecidedBy::parse(decided_by)
                    .unwrap_or_else(|| panic!("{}: decided_by {decided_by}", case.name)),
            )
        });
        let got = activity_level(copies).map(Visibility::as_str);
        if got != Some(case.level.as_str()) {
            failures.push(format!("{}: got {got:?}, want {}", case.name, case.level));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn case_names_are_unique() {
    let mut names = HashSet::new();
    for case in cases().case {
        assert!(
            names.insert(case.name.clone()),
            "duplicate case name {}",
            case.name
        );
    }
}

/// A misspelt key in a case or its expectation is an error, not an expectation nobody checks.
#[test]
fn an_unknown_key_in_the_cases_is_an_error() {
    let case = |extra_case: &str, extra_expected: &str| {
        format!(
            "config = ''\nrules = ''\ncontacts = []\nnever_sync = []\nlevel = []\n\
             [[case]]\nname = \"n\"\nmailbox = \"m@abcorp.com\"\nheaders = \"\"\n{extra_case}\n\
             [case.expected]\ndecision = \"skipped\"\nreason = \"parse_error\"\n{extra_expected}\n"
        )
    };
    assert!(toml::from_str::<Cases>(&case("", "")).is_ok());
    for (extra_case, extra_expected) in [
        ("lables = [\"SPAM\"]", ""),
        ("", "visiblity = \"private\""),
        ("", "verdict = []"),
    ] {
        let error = toml::from_str::<Cases>(&case(extra_case, extra_expected))
            .err()
            .unwrap_or_else(|| panic!("{extra_case}{extra_expected} was accepted"));
        assert!(error.to_string().contains("unknown field"), "{error}");
    }
}
