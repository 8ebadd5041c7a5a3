//! `mailsync retention apply`, `audit` and `attachment`: content ageing, the access log, and
//! fetching an attachment's content through the read path.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context;

use super::output::json_line;
use super::{CommandError, CommandResult, ExitStatus, open_store};
use crate::printable;
use crate::rules::Policy;
use crate::store::Erased;

use clap::Subcommand;

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only accesses at or after this time (RFC 3339, e.g. 2026-01-31T00:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Only this viewer's accesses.
    #[arg(long, value_name = "EMAIL")]
    pub viewer: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AttachmentArgs {
    /// The user asking.
    #[arg(long = "as", value_name = "EMAIL")]
    pub viewer: String,
    /// The attachment's SHA-256 (64 hex digits).
    pub sha256: String,
    /// Write to this file (created 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Erase the content that is due now, and remove attachment files nothing else keeps.
    Apply {
        /// Count what would be erased, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The counts as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaptureCommand {
    /// Erase the subjects, bodies and attachments stored from mailboxes now captured as
    /// metadata only (`capture = "metadata"`), where no mailbox captured in full also has the
    /// message. Run with --dry-run first to see what would go.
    Apply {
        /// Count what would be erased, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The counts as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Erases the content stored only from metadata-only mailboxes.
pub fn capture_apply(policy: &Policy, dry_run: bool, json: bool) -> CommandResult {
    let mailboxes = crate::sync::capture::metadata_mailboxes(&policy.config);
    if mailboxes.is_empty() {
        return Err(CommandError::Usage(format!(
            "no mailbox is captured as metadata only: set `capture = \"metadata\"` under a [[users]] or in [company] of {}",
            policy.config.source_path.display()
        )));
    }
    let store = open_store(policy)?;
    let erased = crate::sync::capture::apply(&policy.config, &*store, dry_run)?.unwrap_or_default();
    report_erased(
        &format!(
            "metadata-only capture ({})",
            printable::escape(&mailboxes.join(", "))
        ),
        ("mailboxes", serde_json::json!(mailboxes)),
        &erased,
        dry_run,
        json,
    )
}

/// Erases the content of activities older than `[retention] body_days`.
pub fn retention_apply(policy: &Policy, dry_run: bool, json: bool) -> CommandResult {
    let Some(days) = policy.config.retention_body_days else {
        return Err(CommandError::Usage(format!(
            "no retention is configured: set `[retention] body_days` in {}",
            policy.config.source_path.display()
        )));
    };
    let store = open_store(policy)?;
    let erased =
        crate::sync::retention::apply(&policy.config, &*store, dry_run)?.unwrap_or_default();
    report_erased(
        &format!("retention ({days} days)"),
        ("body_days", serde_json::json!(days)),
        &erased,
        dry_run,
        json,
    )
}

/// What an erasure did (or, in a dry run, would do): one line of text, or one JSON object
/// with `dry_run`, the erasure's own `setting`, and the counts; logged unless a dry run.
fn report_erased(
    heading: &str,
    setting: (&str, serde_json::Value),
    erased: &Erased,
    dry_run: bool,
    json: bool,
) -> CommandResult {
    let mut out = std::io::stdout().lock();
    if json {
        let mut line = serde_json::Map::new();
        line.insert("dry_run".to_string(), dry_run.into());
        line.insert(setting.0.to_string(), setting.1);
        line.insert(
            "activities_erased".to_string(),
            erased.activities_erased.into(),
        );
        line.insert(
            "attachment_files_removed".to_string(),
            erased.attachment_files_removed.into(),
        );
        json_line(&mut out, &line)?;
    } else {
        writeln!(
            out,
            "{heading}: {} the content of {} activities; {} {} attachment files",
            if dry_run { "would erase" } else { "erased" },
            erased.activities_erased,
            if dry_run { "would remove" } else { "removed" },
            erased.attachment_files_removed
        )?;
    }
    if !dry_run {
        tracing::info!(
            activities_erased = erased.activities_erased,
            attachment_files_removed = erased.attachment_files_removed,
            "content erased"
        );
    }
    Ok(ExitStatus::Success)
}

/// Lists the access log.
pub fn audit(policy: &Policy, args: AuditArgs) -> CommandResult {
    let AuditArgs {
        since,
        viewer,
        json,
    } = args;
    let viewer = viewer.as_deref().map(crate::address::normalize);
    let store = open_store(policy)?;
    let records = store.access_log(since.map(|at| at.timestamp()), viewer.as_deref())?;
    let mut out = std::io::stdout().lock();
    if json {
        for record in &records {
            json_line(&mut out, record)?;
        }
        return Ok(ExitStatus::Success);
    }
    writeln!(
        out,
        "{:<20}  {:<32}  {:>8}  {:<10}  message-id",
        "when", "viewer", "activity", "path"
    )?;
    for record in &records {
        let path = match (&record.change, record.viewer_is_owner) {
            (Some(change), _) => format!("{} {change}", record.path),
            (None, true) => format!("{} (own)", record.path),
            (None, false) => record.path.clone(),
        };
        writeln!(
            out,
            "{:<20}  {:<32}  {:>8}  {:<10}  {}",
            printable::escape(&record.at),
            printable::escape(&record.viewer),
            record.activity_id,
            printable::escape(&path),
            printable::escape(record.message_id.as_deref().unwrap_or("-"))
        )?;
    }
    writeln!(out, "{} accesses", records.len())?;
    Ok(ExitStatus::Success)
}

/// Writes an attachment's content, if the viewer may see it.
pub fn attachment(policy: &Policy, args: AttachmentArgs) -> CommandResult {
    let AttachmentArgs {
        viewer,
        sha256,
        output,
    } = args;
    let output: Option<&Path> = output.as_deref();
    if output.is_none() && std::io::stdout().is_terminal() {
        // Raw bytes from whoever sent the mail: on a terminal they could be escape sequences.
        return Err(CommandError::Usage(
            "attachment content is raw bytes from the sender, not for a terminal: use `--output FILE` or redirect standard output".to_string(),
        ));
    }
    let viewer = super::feed::viewer(policy, &viewer)?;
    if policy.config.attachments_dir.is_none() {
        return Err(CommandError::Usage(format!(
            "attachment content is not kept: set `[store] attachments_dir` in {}",
            policy.config.source_path.display()
        )));
    }
    let sha256 = sha256.trim().to_ascii_lowercase();
    let store = open_store(policy)?;
    let Some(content) = store.attachment_content(&viewer, &sha256)? else {
        return Err(CommandError::Failed(anyhow::anyhow!(
            "no attachment you may see has that sha256"
        )));
    };
    match output {
        Some(path) => {
            // Created private: the content may be private mail.
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(&content)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&content)?;
            out.flush()?;
        }
    }
    Ok(ExitStatus::Success)
}
