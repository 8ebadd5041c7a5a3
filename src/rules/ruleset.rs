//! Rule files: `[[rule]]` tables with a name, a matcher, an action and an optional user scope.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::address;
use crate::config::Config;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::tomlfile::{KeyPath, TomlFile};

#[derive(Debug, Deserialize)]
struct RawRulesFile {
    #[serde(default)]
    rule: Vec<RawRule>,
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
}

/// What a matching rule does to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The whole message is skipped (privacy first: one blocked party blocks the message).
    Skip,
    /// The message is synced but only its metadata is shown to others.
    Private,
    /// The message is synced and its content shown to whoever may see its contacts.
    Visible,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Skip => "skip",
            Action::Private => "private",
            Action::Visible => "visible",
        }
    }
}

/// Which party addresses a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// One address, compared case-insensitively on the whole address.
    Address(String),
    /// A domain and all of its subdomains.
    Domain(String),
}

impl Matcher {
    pub fn matches(&self, party_address: &str) -> bool {
        match self {
            Matcher::Address(address) => address == party_address,
            Matcher::Domain(domain) => address::domain_of(party_address)
                .is_some_and(|party_domain| address::domain_is_within(party_domain, domain)),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matcher::Address(address) => write!(f, "address {address}"),
            Matcher::Domain(domain) => write!(f, "domain {domain}"),
        }
    }
}

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
            let Some(raw) = raw else { continue };
            for (index, raw_rule) in raw.rule.into_iter().enumerate() {
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
    let matcher = match (raw.matcher.address, raw.matcher.domain) {
        (Some(address), None) => {
            let address = address::normalize(&address);
            if let Err(problem) = address::validate(&address) {
                diagnostics.push(file.diagnostic(&match_at, format!("rule `{name}`: {problem}")));
            }
            Some(Matcher::Address(address))
        }
        (None, Some(domain)) => {
            let domain = address::normalize(domain.trim_start_matches('@'));
            if let Err(problem) = address::validate_domain(&domain) {
                diagnostics.push(file.diagnostic(&match_at, format!("rule `{name}`: {problem}")));
            }
            Some(Matcher::Domain(domain))
        }
        _ => {
            diagnostics.push(file.diagnostic(
                &match_at,
                format!("rule `{name}`: `match` needs exactly one of `address` or `domain`"),
            ));
            None
        }
    };
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
        matcher: matcher?,
        action: raw.action,
        users,
        file: file.path.clone(),
        line,
    })
}
