//! `mailsync rules apply|check`: retroactive rules and a lint of the rules folder.

use std::io::Write;

use super::output::json_line;
use super::{CommandResult, ExitStatus, open_store};
use crate::printable;
use crate::rules::Policy;
use crate::store::SourceChange;
use crate::sync::retro;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Decide the stored activities again against the current rules: sources a skip rule now
    /// matches are removed (the activity with its last source), visibility is recomputed.
    /// The daemon does the same on every reload.
    Apply {
        /// Show exactly what would change, as a list and counts, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON object per change.
        #[arg(long)]
        json: bool,
    },
    /// Check the rules folder (every problem with its file and line) and list the rules.
    Check,
}

#[derive(Debug, serde::Serialize)]
struct ChangeLine<'a> {
    change: &'static str,
    activity_id: i64,
    message_id: Option<&'a str>,
    user: &'a str,
    source: &'a str,
    source_id: &'a str,
    visibility: Option<&'static str>,
    rules: &'a [String],
}

fn line(change: &SourceChange) -> ChangeLine<'_> {
    match change {
        SourceChange::Remove { source, rules, .. } => ChangeLine {
            change: "remove",
            activity_id: source.activity_id,
            message_id: source.message_id.as_deref(),
            user: &source.user_email,
            source: &source.source,
            source_id: &source.source_id,
            visibility: None,
            rules,
        },
        SourceChange::SetVisibility {
            source,
            visibility,
            rules,
            ..
        } => ChangeLine {
            change: "visibility",
            activity_id: source.activity_id,
            message_id: source.message_id.as_deref(),
            user: &source.user_email,
            source: &source.source,
            source_id: &source.source_id,
            visibility: Some(visibility.as_str()),
            rules,
        },
    }
}

/// The counts line of `rules apply --json`, after the change lines: what was (or, in a dry
/// run, would be) done, in the names `retention apply --json` uses for its counts.
#[derive(Debug, serde::Serialize)]
struct CountsLine {
    dry_run: bool,
    sources_removed: u64,
    activities_removed: u64,
    visibility_changed: u64,
}

pub fn apply(policy: &Policy, dry_run: bool, json: bool) -> CommandResult {
    let store = open_store(policy)?;
    let result = retro::apply(policy, &*store, dry_run)?;
    let mut out = std::io::stdout().lock();
    for change in &result.changes {
        let line = line(change);
        if json {
            json_line(&mut out, &line)?;
        } else {
            let what = match line.visibility {
                Some(visibility) => format!("becomes {visibility}"),
                None => "removed".to_string(),
            };
            writeln!(
                out,
                "activity #{} {} in {}'s mailbox: {what} [{}]",
                line.activity_id,
                printable::escape(line.message_id.unwrap_or("(no message-id)")),
                printable::escape(line.user),
                printable::escape(&line.rules.join(", "))
            )?;
        }
    }
    let counts = result.applied.unwrap_or(result.planned);
    if json {
        json_line(
            &mut out,
            &CountsLine {
                dry_run,
                sources_removed: counts.sources_removed,
                activities_removed: counts.activities_removed,
                visibility_changed: counts.visibility_changed,
            },
        )?;
    } else if result.changes.is_empty() {
        writeln!(
            out,
            "nothing to change: the stored activities agree with the rules"
        )?;
    } else if dry_run {
        writeln!(
            out,
            "dry run: {} source(s) would be removed ({} activities gone), {} visibility change(s); nothing written",
            counts.sources_removed, counts.activities_removed, counts.visibility_changed
        )?;
    } else {
        writeln!(
            out,
            "applied: {} source(s) removed ({} activities gone), {} visibility change(s)",
            counts.sources_removed, counts.activities_removed, counts.visibility_changed
        )?;
    }
    tracing::info!(
        sources_removed = counts.sources_removed,
        activities_removed = counts.activities_removed,
        visibility_changed = counts.visibility_changed,
        dry_run,
        "rules applied to stored activities"
    );
    Ok(ExitStatus::Success)
}

/// Lints the rules folder: the same checks as at start-up, and the rules listed.
pub fn check(policy: &Policy) -> CommandResult {
    let mut out = std::io::stdout().lock();
    let Some(dir) = &policy.config.rules_dir else {
        writeln!(
            out,
            "no [rules] dir in {}: no rules",
            policy.config.source_path.display()
        )?;
        return Ok(ExitStatus::Success);
    };
    writeln!(
        out,
        "{}: {} rule(s), all valid",
        printable::escape(&dir.display().to_string()),
        policy.rules.rules.len()
    )?;
    for rule in &policy.rules.rules {
        let scope = match &rule.users {
            Some(users) => format!(" (only {})", printable::escape(&users.join(", "))),
            None => String::new(),
        };
        writeln!(
            out,
            "  {}:{}  \"{}\"  {} {}{scope}",
            printable::escape(&rule.file.display().to_string()),
            rule.line,
            printable::escape(&rule.name),
            rule.action.as_str(),
            printable::escape(&rule.matcher.to_string())
        )?;
    }
    Ok(ExitStatus::Success)
}
