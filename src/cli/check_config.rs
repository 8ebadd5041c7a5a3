//! `mailsync check-config`: validate without side effects, report everything.

use std::io::Write;
use std::path::Path;

use super::{CommandResult, ExitStatus, load_policy};

pub fn run(config_path: &Path) -> CommandResult {
    let policy = load_policy(config_path)?;
    let config = &policy.config;
    let syncing = config.users.iter().filter(|user| user.sync).count();
    let rule_files: std::collections::BTreeSet<_> =
        policy.rules.rules.iter().map(|rule| &rule.file).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: ok", config.source_path.display())?;
    writeln!(
        out,
        "  users: {} ({syncing} with sync on)\n  company domains: {}\n  rules: {} from {} file(s){}\n  free-mail domains: {}\n  store: {}",
        config.users.len(),
        config.company_domains.join(", "),
        policy.rules.rules.len(),
        rule_files.len(),
        config
            .rules_dir
            .as_ref()
            .map(|dir| format!(" in {}", dir.display()))
            .unwrap_or_default(),
        config.freemail.len(),
        config.store_path.display(),
    )?;
    Ok(ExitStatus::Success)
}
