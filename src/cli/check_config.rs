//! `mailsync check-config`: validate without side effects, report everything. It loads what
//! `run` loads, through the same function (`settings::load`): config, every rules file and the
//! Gmail credentials, so a config that passes here is one the daemon starts with.

use std::io::Write;
use std::path::Path;

use super::{CommandError, CommandResult, ExitStatus, runtime};

pub fn run(config_path: &Path) -> CommandResult {
    let crate::settings::Settings {
        policy,
        credentials,
        push_key,
    } = runtime()?
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
    if let (Some(push), Some(key)) = (&config.gmail.push, &push_key) {
        writeln!(
            out,
            "  push: watch publishes to {}; pulled from {} as {} (safety poll every {} s)",
            push.topic, push.subscription, key.client_email, push.safety_poll_secs
        )?;
    } else {
        writeln!(
            out,
            "  push: off (polling every {} s)",
            config.gmail.poll_interval_secs
        )?;
    }
    Ok(ExitStatus::Success)
}
