//! `mailsync feed`, `search` and `export`: the read path as a user would see it. All three go
//! through the store's one read-path function, so what a viewer is shown is the same
//! everywhere.

use std::io::Write;

use anyhow::Context;

use super::output::json_line;
use super::{CommandResult, ExitStatus, find_user, open_store};
use crate::printable;
use crate::rules::Policy;
use crate::store::{ActivityView, Viewer};

use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The user looking.
    #[arg(long = "as", value_name = "EMAIL")]
    pub viewer: String,
    /// The words to find (all of them).
    #[arg(required = true)]
    pub query: Vec<String>,
    /// At most this many activities, newest first.
    #[arg(long)]
    pub limit: Option<usize>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FeedArgs {
    /// The user looking.
    #[arg(long = "as", value_name = "EMAIL")]
    pub viewer: String,
    /// Only activities linked to the contact with this address.
    #[arg(long, value_name = "ADDR")]
    pub contact: Option<String>,
    /// At most this many activities.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Group the activities by conversation (the conversation with the newest activity
    /// first, each newest first).
    #[arg(long)]
    pub threads: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The user the export is for.
    #[arg(long = "as", value_name = "EMAIL")]
    pub viewer: String,
    /// `csv` (one row per activity, withheld fields empty) or `json` (the objects of `feed
    /// --json`).
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Only activities linked to the contact with this address.
    #[arg(long, value_name = "ADDR")]
    pub contact: Option<String>,
}

pub(super) fn viewer(policy: &Policy, address: &str) -> Result<Viewer, super::CommandError> {
    let user = find_user(policy, address)?;
    Ok(Viewer::of(user, policy.config.admins_see_private_emails))
}

pub fn run(policy: &Policy, args: FeedArgs) -> CommandResult {
    let viewer = viewer(policy, &args.viewer)?;
    let activities = open_store(policy)?.feed(&viewer, args.contact.as_deref(), args.limit)?;
    if args.threads {
        print_threads(&activities, &viewer, args.json)
    } else {
        print(&activities, &viewer, args.json)
    }
}

/// The feed grouped by conversation, in the order each conversation first appears.
fn print_threads(activities: &[ActivityView], viewer: &Viewer, json: bool) -> CommandResult {
    let mut order: Vec<&str> = Vec::new();
    let mut threads: std::collections::HashMap<&str, Vec<&ActivityView>> =
        std::collections::HashMap::new();
    for activity in activities {
        let members = threads.entry(&activity.conversation).or_default();
        if members.is_empty() {
            order.push(&activity.conversation);
        }
        members.push(activity);
    }
    let mut out = std::io::stdout().lock();
    for conversation in &order {
        let members = &threads[conversation];
        if json {
            for activity in members {
                json_line(&mut out, activity)?;
            }
            continue;
        }
        writeln!(
            out,
            "conversation {} ({} activit{})",
            printable::escape(conversation),
            members.len(),
            if members.len() == 1 { "y" } else { "ies" }
        )?;
        for activity in members {
            print_one(&mut out, activity, "  ")?;
        }
    }
    if !json {
        writeln!(
            out,
            "{} conversation{} visible to {}",
            order.len(),
            if order.len() == 1 { "" } else { "s" },
            printable::escape(&viewer.email)
        )?;
    }
    Ok(ExitStatus::Success)
}

pub fn search(policy: &Policy, args: SearchArgs) -> CommandResult {
    let viewer = viewer(policy, &args.viewer)?;
    let activities = open_store(policy)?.search(&viewer, &args.query.join(" "), args.limit)?;
    print(&activities, &viewer, args.json)
}

fn print(activities: &[ActivityView], viewer: &Viewer, json: bool) -> CommandResult {
    let mut out = std::io::stdout().lock();
    for activity in activities {
        if json {
            json_line(&mut out, activity)?;
            continue;
        }
        print_one(&mut out, activity, "")?;
    }
    if !json {
        writeln!(
            out,
            "{} activit{} visible to {}",
            activities.len(),
            if activities.len() == 1 { "y" } else { "ies" },
            printable::escape(&viewer.email)
        )?;
    }
    Ok(ExitStatus::Success)
}

/// One activity as text: a heading line (with its level when it is not visible to all) and
/// its subject, or why there is none.
fn print_one(out: &mut impl Write, activity: &ActivityView, indent: &str) -> std::io::Result<()> {
    let level = match activity.level {
        crate::rules::Visibility::Visible => String::new(),
        other => format!(" [{}]", other.as_str()),
    };
    writeln!(
        out,
        "{indent}#{} {} {} {} — {}{level}",
        activity.activity_id,
        printable::escape(activity.date.as_deref().unwrap_or("(no date)")),
        printable::escape(&activity.direction),
        printable::escape(&activity.contacts.join(", ")),
        printable::escape(&activity.sources.join(", ")),
    )?;
    match &activity.subject {
        Some(subject) => writeln!(out, "{indent}    {}", printable::escape(subject)),
        None if activity.content_erased_at.is_some() => writeln!(
            out,
            "{indent}    (content erased by retention on {})",
            printable::escape(activity.content_erased_at.as_deref().unwrap_or_default())
        ),
        None if activity.private => writeln!(out, "{indent}    (private: content withheld)"),
        None => writeln!(out, "{indent}    (no subject)"),
    }
}

/// The CSV header of `export --format csv`, as the issue fixes it. The JSON form carries
/// everything else (attachments, content_erased_at).
pub const CSV_HEADER: [&str; 9] = [
    "activity_id",
    "message_id",
    "date",
    "direction",
    "contacts",
    "private",
    "subject",
    "body",
    "sources",
];

pub fn export(policy: &Policy, args: ExportArgs) -> CommandResult {
    let viewer = viewer(policy, &args.viewer)?;
    let activities = open_store(policy)?.export(&viewer, args.contact.as_deref())?;
    match args.format {
        ExportFormat::Json => print(&activities, &viewer, true),
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(std::io::stdout().lock());
            writer
                .write_record(CSV_HEADER)
                .context("cannot write the export")?;
            for activity in &activities {
                // Withheld fields are empty, exactly like null in the JSON form.
                let record: [String; CSV_HEADER.len()] = [
                    activity.activity_id.to_string(),
                    activity.message_id.clone().unwrap_or_default(),
                    activity.date.clone().unwrap_or_default(),
                    activity.direction.clone(),
                    activity.contacts.join(";"),
                    activity.private.to_string(),
                    activity.subject.clone().unwrap_or_default(),
                    activity.body.clone().unwrap_or_default(),
                    activity.sources.join(";"),
                ];
                writer
                    .write_record(record.map(|field| printable::spreadsheet::cell(&field)))
                    .context("cannot write the export")?;
            }
            writer.flush()?;
            tracing::info!(viewer = %viewer.email, activities = activities.len(), "exported");
            Ok(ExitStatus::Success)
        }
    }
}
