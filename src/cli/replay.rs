//! `mailsync replay`: a mailbox dump through the pipeline, as support runs it.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use anyhow::Context;

use super::output::json_line;
use super::{CommandResult, ExitStatus, find_user, open_store};
use crate::config::User;
use crate::gmail::{GmailClient, http};
use crate::rules::{Outcome, Policy};
use crate::source::{
    DirReader, MboxOpenError, MboxReader, Preamble, SourceError, SourceMessage, SourceProblem,
    SourceSpec,
};
use crate::store::Recorded;
use crate::sync::gmail::{MailboxSync, Window};
use crate::sync::{self, DecisionLine, Mode, Processed};

use clap::Args;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The user whose mailbox this is (primary address or alias).
    #[arg(long, value_name = "EMAIL")]
    pub user: String,
    /// dir:PATH (every regular file in the folder, by name; links, FIFOs, folders and
    /// hidden files are counted, not read), mbox:PATH (an mbox file, e.g. a Google Takeout
    /// export, whose X-Gmail-Labels are honoured), or gmail (the user's mailbox through the
    /// API, re-fetching every message of the window).
    #[arg(long, value_name = "SOURCE")]
    pub source: crate::source::SourceSpec,
    /// With --source gmail: messages since this date (YYYY-MM-DD); default: the
    /// initial_sync_days window.
    #[arg(long, value_name = "DATE")]
    pub since: Option<chrono::NaiveDate>,
    /// Decide but write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// One decision object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Totals for the closing summary.
#[derive(Debug, Default)]
pub struct Summary {
    pub messages: usize,
    pub synced: usize,
    pub new_activities: usize,
    pub skipped_by_reason: BTreeMap<&'static str, usize>,
    pub unreadable: usize,
    /// Folder entries that are not message files, by kind.
    pub skipped_entries: BTreeMap<&'static str, usize>,
    /// Text before an mbox's first separator.
    pub preamble: Option<Preamble>,
}

impl Summary {
    fn add(&mut self, processed: &Processed) {
        self.messages += 1;
        match processed.decision.outcome() {
            Outcome::Synced => self.synced += 1,
            Outcome::Skipped => {
                *self
                    .skipped_by_reason
                    .entry(processed.decision.reason.as_str())
                    .or_default() += 1
            }
        }
        if matches!(processed.recorded, Some(Recorded::NewActivity(_))) {
            self.new_activities += 1;
        }
    }

    pub fn skipped(&self) -> usize {
        self.skipped_by_reason.values().sum()
    }
}

pub fn run(policy: &Policy, args: ReplayArgs) -> CommandResult {
    let user = find_user(policy, &args.user)?;
    if args.source == SourceSpec::Gmail {
        return replay_gmail(policy, user, &args);
    }
    if args.since.is_some() {
        return Err(super::CommandError::Usage(
            "--since applies to --source gmail only".to_string(),
        ));
    }
    let store = if args.dry_run {
        crate::store::open_for_looking(&policy.config).context("cannot open store for a dry run")?
    } else {
        open_store(policy)?
    };
    let mode = if args.dry_run {
        Mode::DryRun
    } else {
        Mode::Write
    };
    let source_name = args.source.store_name();
    let limits = &policy.config.limits;
    let mut reader = match &args.source {
        SourceSpec::Dir(path) => Reader::Dir(
            crate::source::read_dir(path, limits)
                .with_context(|| format!("cannot read folder {}", path.display()))?,
        ),
        SourceSpec::Mbox(path) => {
            Reader::Mbox(
                crate::source::open_mbox(path, limits).map_err(|error| match error {
                    // The command line names something that cannot be a mailbox dump.
                    MboxOpenError::NotAFile { .. } => super::CommandError::Usage(error.to_string()),
                    MboxOpenError::Io { .. } => super::CommandError::Failed(error.into()),
                })?,
            )
        }
        SourceSpec::Gmail => unreachable!("gmail replays return above"),
    };
    let span = tracing::info_span!("replay", user = %user.email, source = %source_name, dry_run = args.dry_run);
    let _entered = span.enter();

    // The first message is read before anything is printed, so a file that is not an mbox
    // is refused without a table, and text before the first separator is known.
    let first = reader.next();
    let mut summary = Summary::default();
    if let (Reader::Mbox(mbox), SourceSpec::Mbox(path)) = (&reader, &args.source) {
        if mbox.is_not_an_mbox() {
            let preamble = mbox.preamble().unwrap_or_default();
            return Err(anyhow::anyhow!(
                "mbox {} is not an mbox: none of its {} line(s) is a `From ` separator line, which starts each message; nothing was replayed",
                path.display(),
                preamble.lines
            )
            .into());
        }
        summary.preamble = mbox.preamble();
        if let Some(preamble) = summary.preamble {
            tracing::warn!(
                bytes = preamble.bytes,
                lines = preamble.lines,
                "text before the first `From ` separator is not part of any message and was not replayed"
            );
        }
    }
    if let Reader::Dir(dir) = &reader
        && !dir.skipped().is_empty()
    {
        summary.skipped_entries = dir.skipped().clone();
        tracing::warn!(
            skipped = %entry_counts(&summary.skipped_entries),
            "folder entries that are not message files were not read"
        );
    }

    let mut out = std::io::stdout().lock();
    if !args.json {
        writeln!(
            out,
            "{:<28} {:<8} {:<20} {:<10} CONTACTS / RULES",
            "SOURCE ID", "DECISION", "REASON", "VISIBILITY"
        )?;
    }
    for message in first.into_iter().chain(&mut reader) {
        let (source_id, processed) = match message {
            Ok(message) => (
                message.source_id.clone(),
                sync::process(policy, &*store, user, &source_name, &message, mode),
            ),
            Err(SourceError {
                source_id,
                problem: SourceProblem::TooLarge(too_large),
            }) => {
                let processed = sync::process_too_large(
                    policy,
                    &*store,
                    user,
                    &source_name,
                    &source_id,
                    &too_large,
                    mode,
                );
                (source_id, processed)
            }
            Err(error) => {
                summary.unreadable += 1;
                tracing::error!(source_id = %error.source_id, error = %error.problem, "cannot read message; continuing");
                continue;
            }
        };
        let processed = processed
            .with_context(|| format!("cannot record the decision for message {source_id}"))?;
        tracing::debug!(
            source_id = %processed.source_id,
            decision = processed.decision.outcome().as_str(),
            reason = processed.decision.reason.as_str(),
            "decided"
        );
        summary.add(&processed);
        if args.json {
            json_line(&mut out, &DecisionLine::new(user, &processed))?;
        } else {
            write_row(&mut out, &processed)?;
        }
    }
    if !args.json {
        write_summary(&mut out, &summary, &user.email, &source_name, args.dry_run)?;
    }
    tracing::info!(
        messages = summary.messages,
        synced = summary.synced,
        new_activities = summary.new_activities,
        skipped = summary.skipped(),
        unreadable = summary.unreadable,
        skipped_entries = summary.skipped_entries.values().sum::<usize>(),
        preamble_bytes = summary.preamble.map_or(0, |preamble| preamble.bytes),
        "replay finished"
    );
    Ok(if summary.unreadable > 0 {
        ExitStatus::SomeFailed
    } else {
        ExitStatus::Success
    })
}

/// A `dir:` or `mbox:` source, kept whole so that what it read past can be asked after its
/// messages.
enum Reader {
    Dir(DirReader),
    Mbox(MboxReader<std::io::BufReader<std::fs::File>>),
}

impl Iterator for Reader {
    type Item = Result<SourceMessage, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Reader::Dir(dir) => dir.next(),
            Reader::Mbox(mbox) => mbox.next(),
        }
    }
}

/// Re-fetches the user's Gmail window through the same sync engine the daemon runs, deciding
/// every message again (writes are idempotent) without moving the daemon's cursor.
fn replay_gmail(policy: &Policy, user: &User, args: &ReplayArgs) -> CommandResult {
    let gmail = &policy.config.gmail;
    let window = Window::since_or_days(args.since, gmail.initial_sync_days);
    let store = if args.dry_run {
        crate::store::open_for_looking(&policy.config).context("cannot open store for a dry run")?
    } else {
        open_store(policy)?
    };
    let refresh_token = store.refresh_token(&user.email)?;
    let json = args.json;
    let printer = Arc::new(Mutex::new((Summary::default(), std::io::stdout())));
    let interactive = std::io::stderr().is_terminal() && !json;
    let progress = interactive.then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} messages [{elapsed_precise}] {wide_bar}",
            )
            .expect("a valid template"),
        );
        bar
    });
    super::runtime()?.block_on(async {
        let credentials = super::load_credentials(policy).await?;
        let client = GmailClient::for_user(
            gmail,
            &credentials,
            &user.email,
            refresh_token,
            http::api_client(),
            http::oauth_client(),
        );
        if !json {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<28} {:<8} {:<20} {:<10} CONTACTS / RULES",
                "SOURCE ID", "DECISION", "REASON", "VISIBILITY"
            )?;
        }
        let on_decided = {
            let printer = printer.clone();
            let user = user.clone();
            let progress = progress.clone();
            move |processed: &Processed| {
                let mut guard = printer
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let (summary, out) = &mut *guard;
                summary.add(processed);
                let mut out = out.lock();
                let written = if json {
                    json_line(&mut out, &DecisionLine::new(&user, processed))
                } else {
                    write_row(&mut out, processed)
                };
                if let Err(error) = written {
                    tracing::debug!(error = %error, "cannot print a decision");
                }
                if let Some(bar) = &progress {
                    bar.inc(0);
                }
            }
        };
        let on_progress = {
            let progress = progress.clone();
            move |done: usize, total: usize| {
                if let Some(bar) = &progress {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                }
            }
        };
        let sync = MailboxSync {
            client: Arc::new(client),
            store,
            policy: Arc::new(policy.clone()),
            user: user.clone(),
            cancel: CancellationToken::new(),
            window,
            write: !args.dry_run,
            refetch_decided: true,
            on_decided: Some(Box::new(on_decided)),
            on_progress: Some(Box::new(on_progress)),
            metrics: None,
        };
        let report = sync.full().await.context("replay from gmail failed")?;
        if let Some(bar) = &progress {
            bar.finish_and_clear();
        }
        let guard = printer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !json {
            let mut out = std::io::stdout().lock();
            write_summary(&mut out, &guard.0, &user.email, "gmail", args.dry_run)?;
            if report.vanished > 0 {
                writeln!(
                    out,
                    "  {} message(s) were deleted before they could be fetched",
                    report.vanished
                )?;
            }
        }
        tracing::info!(
            messages = guard.0.messages,
            synced = guard.0.synced,
            "gmail replay finished"
        );
        Ok(ExitStatus::Success)
    })
}

fn write_row(out: &mut impl Write, processed: &Processed) -> std::io::Result<()> {
    let decision = &processed.decision;
    let mut what: Vec<String> = decision
        .approval()
        .map(|approval| approval.contacts().to_vec())
        .unwrap_or_default();
    what.extend(
        decision
            .rule_names()
            .into_iter()
            .map(|name| format!("[{name}]")),
    );
    if let Some(detail) = &decision.detail {
        what.push(format!("({detail})"));
    }
    writeln!(
        out,
        "{:<28} {:<8} {:<20} {:<10} {}",
        truncate(&crate::printable::escape(&processed.source_id), 28),
        decision.outcome().as_str(),
        decision.reason.as_str(),
        decision.visibility().map_or("-", |v| v.as_str()),
        crate::printable::escape(&what.join(" "))
    )
}

pub fn write_summary(
    out: &mut impl Write,
    summary: &Summary,
    user: &str,
    source: &str,
    dry_run: bool,
) -> std::io::Result<()> {
    writeln!(
        out,
        "\n{} message(s) in {user}'s mailbox from {source}: {} synced ({} new {}), {} skipped{}",
        summary.messages,
        summary.synced,
        summary.new_activities,
        if summary.new_activities == 1 {
            "activity"
        } else {
            "activities"
        },
        summary.skipped(),
        if dry_run {
            " — dry run, nothing written"
        } else {
            ""
        },
    )?;
    if !summary.skipped_by_reason.is_empty() {
        let reasons: Vec<String> = summary
            .skipped_by_reason
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        writeln!(out, "  skipped: {}", reasons.join(", "))?;
    }
    if summary.unreadable > 0 {
        writeln!(
            out,
            "  {} message(s) could not be read (see errors above)",
            summary.unreadable
        )?;
    }
    if !summary.skipped_entries.is_empty() {
        writeln!(
            out,
            "  not read, as not message files: {}",
            entry_counts(&summary.skipped_entries)
        )?;
    }
    if let Some(preamble) = summary.preamble {
        writeln!(
            out,
            "  {} byte(s) in {} line(s) before the first `From ` separator were not read: they are not part of any message",
            preamble.bytes, preamble.lines
        )?;
    }
    Ok(())
}

/// `1 folder, 2 symbolic links`.
fn entry_counts(counts: &BTreeMap<&'static str, usize>) -> String {
    counts
        .iter()
        .map(|(kind, count)| format!("{count} {kind}{}", if *count == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let kept: String = text.chars().take(width.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}
