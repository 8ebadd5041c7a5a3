//! Rule files: `[[rule]]` tables with a name, a matcher, an action and an optional user scope.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::address;
use crate::config::Config;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::tomlfile::{KeyPath, KeyPathSegment, TomlFile};

/// The document around the rules: its other keys are unknown, and `rule` must be an array.
/// Each rule is deserialized on its own ([`TomlFile::deserialize_items`]), so every rule's
/// problems are reported, not only the first rule's.
#[derive(Debug, Deserialize)]
struct RawRulesFile {
    #[serde(default)]
    #[allow(dead_code)]
    rule: Vec<toml::Value>,
}

#[derive(Debug, Deserialize)]
struct RawRule {
    name: String,
    #[serde(rename = "match")]
    matcher: RawMatch,
    action: Action,
    users: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct RawMatch {
    address: Option<String>,
    domain: Option<String>,
    automated: Option<bool>,
    calendar: Option<bool>,
    label: Option<String>,
}

/// What a matching rule does to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The whole message is skipped (privacy first: one blocked party blocks the message).
    Skip,
    /// The message is synced and seen, in full, only by the users who took part in its
    /// conversation; everyone else does not see that it happened.
    Participants,
    /// The message is synced but only its metadata is shown to others.
    Private,
    /// The message is synced and its content shown to whoever may see its contacts.
    Visible,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Skip => "skip",
            Action::Participants => "participants",
            Action::Private => "private",
            Action::Visible => "visible",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        [
            Action::Skip,
            Action::Participants,
            Action::Private,
            Action::Visible,
        ]
        .into_iter()
        .find(|action| action.as_str() == text)
    }

    /// The level a non-skip action gives a copy.
    pub fn visibility(self) -> Option<super::Visibility> {
        match self {
            Action::Skip => None,
            Action::Participants => Some(super::Visibility::Participants),
            Action::Private => Some(super::Visibility::Private),
            Action::Visible => Some(super::Visibility::Visible),
        }
    }
}

/// Which party addresses a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartyPattern {
    /// One address, compared case-insensitively on the whole address.
    Address(String),
    /// A domain and all of its subdomains.
    Domain(String),
}

impl PartyPattern {
    pub fn matches(&self, party_address: &str) -> bool {
        match self {
            PartyPattern::Address(address) => address == party_address,
            PartyPattern::Domain(domain) => address::domain_of(party_address)
                .is_some_and(|party_domain| address::domain_is_within(party_domain, domain)),
        }
    }
}

/// What a rule can know about a message as a whole, besides its parties. `None` is "not
/// known": activities stored before these facts were kept, which message conditions never
/// match (a rule cannot remove or reveal what it cannot see).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageFacts {
    /// Bulk or machine-sent: `List-Id`, `List-Unsubscribe`, `Precedence: bulk|list|junk`, or
    /// `Auto-Submitted` other than `no`.
    pub automated: Option<bool>,
    /// Nothing but a calendar invitation or reply.
    pub calendar_only: Option<bool>,
}

impl MessageFacts {
    pub fn of(signals: &crate::parse::AutomationSignals) -> Self {
        MessageFacts {
            automated: Some(signals.is_automated()),
            calendar_only: Some(signals.calendar_only),
        }
    }
}

/// When a rule applies: a party pattern, message conditions, or both (all must hold). A rule
/// with only message conditions matches every party of a matching message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub party: Option<PartyPattern>,
    /// `Some(true)`: only automated mail; `Some(false)`: only mail a person wrote.
    pub automated: Option<bool>,
    /// `Some(true)`: only calendar-only messages; `Some(false)`: only the others.
    pub calendar: Option<bool>,
    /// A Gmail label name, lower-cased: the rule matches a copy carrying it (in its mailbox,
    /// on it or on another stored message of its conversation), whatever its parties.
    pub label: Option<String>,
}

impl Matcher {
    pub fn address(address: impl Into<String>) -> Self {
        Matcher {
            party: Some(PartyPattern::Address(address.into())),
            automated: None,
            calendar: None,
            label: None,
        }
    }

    pub fn domain(domain: impl Into<String>) -> Self {
        Matcher {
            party: Some(PartyPattern::Domain(domain.into())),
            automated: None,
            calendar: None,
            label: None,
        }
    }

    /// Whether the message conditions hold; unknown facts never satisfy a condition.
    pub fn matches_message(&self, facts: &MessageFacts) -> bool {
        let holds = |wanted: Option<bool>, fact: Option<bool>| {
            wanted.is_none_or(|wanted| fact == Some(wanted))
        };
        holds(self.automated, facts.automated) && holds(self.calendar, facts.calendar_only)
    }

    /// Whether this is a label rule, decided by a copy's labels instead of its parties.
    pub fn is_label_rule(&self) -> bool {
        self.label.is_some()
    }

    /// Whether a label rule matches a copy carrying `labels` (names, any case).
    pub fn matches_labels<'a>(&self, labels: impl IntoIterator<Item = &'a str>) -> bool {
        self.label.as_ref().is_some_and(|wanted| {
            labels
                .into_iter()
                .any(|label| label.trim().to_lowercase() == *wanted)
        })
    }

    /// Whether the rule matches `party_address` in a message with these facts. A label rule
    /// matches no party: labels are weighed apart ([`Matcher::matches_labels`]).
    pub fn matches(&self, party_address: &str, facts: &MessageFacts) -> bool {
        !self.is_label_rule()
            && self.matches_message(facts)
            && self
                .party
                .as_ref()
                .is_none_or(|pattern| pattern.matches(party_address))
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        match &self.party {
            Some(PartyPattern::Address(address)) => parts.push(format!("address {address}")),
            Some(PartyPattern::Domain(domain)) => parts.push(format!("domain {domain}")),
            None => {}
        }
        if let Some(label) = &self.label {
            parts.push(format!("label {label}"));
        }
        match self.automated {
            Some(true) => parts.push("automated mail".to_string()),
            Some(false) => parts.push("mail that is not automated".to_string()),
            None => {}
        }
        match self.calendar {
            Some(true) => parts.push("calendar-only mail".to_string()),
            Some(false) => parts.push("mail that is not calendar-only".to_string()),
            None => {}
        }
        f.write_str(&parts.join(" and "))
    }
}

/// The rule name a contact marked never-sync (`contacts set --no-sync`) decides under; rule
/// files may not use it.
pub const NO_SYNC_RULE_NAME: &str = "contact: never sync";

/// One validated rule and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub matcher: Matcher,
    pub action: Action,
    /// Primary addresses of the users whose mailboxes this rule applies to; `None` = all.
    pub users: Option<Vec<String>>,
    pub file: PathBuf,
    pub line: usize,
}

impl Rule {
    pub fn in_scope_for(&self, user_email: &str) -> bool {
        self.users
            .as_ref()
            .is_none_or(|users| users.iter().any(|user| user == user_email))
    }
}

/// Every rule from every `*.toml` file of the rules folder, in file-name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// Reads every `*.toml` file in `dir` (sorted by name). A missing folder is an error: a
    /// config that names one expects its rules to apply.
    pub fn load(dir: &Path, config: &Config) -> Result<RuleSet, Diagnostics> {
        let entries = std::fs::read_dir(dir).map_err(|error| {
            Diagnostic::new(dir, None, format!("cannot read rules folder: {error}"))
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && path.is_file())
            .collect();
        paths.sort();
        let mut files = Vec::new();
        let mut diagnostics = Diagnostics::default();
        for path in paths {
            match std::fs::read_to_string(&path) {
                Ok(text) => files.push((path, text)),
                Err(error) => diagnostics.push(Diagnostic::new(
                    &path,
                    None,
                    format!("cannot read rules file: {error}"),
                )),
            }
        }
        match RuleSet::from_files(files, config) {
            Ok(rules) => diagnostics.into_result(rules),
            Err(problems) => {
                diagnostics.extend(problems);
                Err(diagnostics)
            }
        }
    }

    /// Validates rule files already read into memory; pure, so tests and fuzzers can use it.
    pub fn from_files(
        files: Vec<(PathBuf, String)>,
        config: &Config,
    ) -> Result<RuleSet, Diagnostics> {
        let mut diagnostics = Diagnostics::default();
        let mut rules: Vec<Rule> = Vec::new();
        let mut first_definition: HashMap<String, (PathBuf, usize)> = HashMap::new();
        for (path, text) in files {
            let file = TomlFile::new(&path, text);
            let (raw, problems) = file.deserialize::<RawRulesFile>();
            diagnostics.extend(problems);
            if raw.is_none() {
                continue;
            }
            let (raw_rules, problems) = file.deserialize_items::<RawRule>("rule", &|parent| {
                use serde_aux::serde_introspection::serde_introspect;
                match parent.0.as_slice() {
                    [] => serde_introspect::<RawRule>(),
                    [KeyPathSegment::Key(key)] if key == "match" => serde_introspect::<RawMatch>(),
                    _ => &[],
                }
            });
            diagnostics.extend(problems);
            for (index, raw_rule) in raw_rules {
                let at = KeyPath::default().key("rule").index(index);
                let line = file.line_of(&at.clone().key("name")).unwrap_or(1);
                if let Some(rule) =
                    validate_rule(&file, &at, line, raw_rule, config, &mut diagnostics)
                {
                    if let Some((other_file, other_line)) = first_definition.get(&rule.name) {
                        diagnostics.push(Diagnostic::new(
                            &path,
                            Some(line),
                            format!(
                                "rule name `{}` is already used at {}:{}; rule names must be unique",
                                rule.name,
                                other_file.display(),
                                other_line
                            ),
                        ));
                        continue;
                    }
                    first_definition.insert(rule.name.clone(), (path.clone(), line));
                    rules.push(rule);
                }
            }
        }
        diagnostics.into_result(RuleSet { rules })
    }
}

fn validate_rule(
    file: &TomlFile,
    at: &KeyPath,
    line: usize,
    raw: RawRule,
    config: &Config,
    diagnostics: &mut Diagnostics,
) -> Option<Rule> {
    let problems_before = diagnostics.len();
    let name = raw.name.trim().to_string();
    if name.is_empty() {
        diagnostics.push(file.diagnostic(&at.clone().key("name"), "rule name is empty"));
    }
    let match_at = at.clone().key("match");
    let party = match (raw.matcher.address, raw.matcher.domain) {
        (Some(address), None) => {
            let address = address::normalize(&address);
            if let Err(problem) = address::validate(&address) {
                diagnostics.push(file.diagnostic(&match_at, format!("rule `{name}`: {problem}")));
            }
            Some(PartyPattern::Address(address))
        }
        (None, Some(domain)) => {
            let domain = address::normalize(domain.trim_start_matches('@'));
            if let Err(problem) = address::validate_domain(&domain) {
                diagnostics.push(file.diagnostic(&match_at, format!("rule `{name}`: {problem}")));
            }
            Some(PartyPattern::Domain(domain))
        }
        (Some(_), Some(_)) => {
            diagnostics.push(file.diagnostic(
                &match_at,
                format!("rule `{name}`: `match` takes `address` or `domain`, not both"),
            ));
            None
        }
        (None, None) => None,
    };
    let label = raw.matcher.label.map(|label| label.trim().to_lowercase());
    if let Some(label) = &label {
        if label.is_empty() {
            diagnostics
                .push(file.diagnostic(&match_at, format!("rule `{name}`: `label` is empty")));
        }
        if party.is_some() || raw.matcher.automated.is_some() || raw.matcher.calendar.is_some() {
            diagnostics.push(file.diagnostic(
                &match_at,
                format!(
                    "rule `{name}`: `label` stands alone in `match` (a label decides the whole conversation, whoever is on it)"
                ),
            ));
        }
    }
    let matcher = Matcher {
        party,
        automated: raw.matcher.automated,
        calendar: raw.matcher.calendar,
        label,
    };
    if matcher.party.is_none()
        && matcher.automated.is_none()
        && matcher.calendar.is_none()
        && matcher.label.is_none()
    {
        diagnostics.push(file.diagnostic(
            &match_at,
            format!(
                "rule `{name}`: `match` needs `address`, `domain`, `label`, `automated` or `calendar` (an empty match would match every message)"
            ),
        ));
    }
    if name == NO_SYNC_RULE_NAME {
        diagnostics.push(file.diagnostic(
            &at.clone().key("name"),
            format!("rule name `{name}` is reserved for contacts marked never-sync"),
        ));
    }
    let users = raw.users.map(|users| {
        users
            .iter()
            .enumerate()
            .filter_map(|(index, user)| match config.user_by_address(user) {
                Some(known) => Some(known.email.clone()),
                None => {
                    diagnostics.push(file.diagnostic(
                        &at.clone().key("users").index(index),
                        format!("rule `{name}`: `{user}` is not a user in the config"),
                    ));
                    None
                }
            })
            .collect()
    });
    if diagnostics.len() > problems_before {
        return None;
    }
    Some(Rule {
        name,
        matcher,
        action: raw.action,
        users,
        file: file.path.clone(),
        line,
    })
}
