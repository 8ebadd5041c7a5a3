//! `mailsync check-config`: validate without side effects, report everything. It loads what
//! `run` loads, through the same function (`settings::load`): config, every rules file and the
//! Gmail credentials, so a config that passes here is one the daemon starts with.

use std::io::Write;
use std::path::Path;

use super::{CommandError, CommandResult, ExitStatus, runtime};

pub fn run(config_path: &Path) -> CommandResult {
    let (policy, credentials) = runtime()?
        .block_on(crate::settings::load(config_path))
        .map_err(CommandError::Config)?;
    let config = &policy.config;
    let syncing = config.users.iter().filter(|user| user.sync).count();
    let rule_files: std::collections::BTreeSet<_> =
        policy.rules.rules.iter().map(|rule| &rule.file).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: ok", config.source_path.display())?;
    writeln!(
        out,
        "  users: {} ({syncing} with sync on)\n  company domains: {}\n  rules: {} from {} file(s){}\n  free-mail domains: {}\n  credentials: {}\n  store: {}",
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
        credentials.describe(),
        config.store,
    )?;
    Ok(ExitStatus::Success)
}
