//! `mailsync feed`, `search` and `export`: the read path as a user would see it. All three go
//! through the store's one read-path function, so what a viewer is shown is the same
//! everywhere.

use std::io::Write;

use anyhow::Context;

use super::output::json_line;
use super::{CommandResult, ExitStatus, ExportArgs, ExportFormat, FeedArgs, find_user, open_store};
use crate::printable;
use crate::rules::Policy;
use crate::store::{ActivityView, Store, Viewer};

pub(super) fn viewer(policy: &Policy, address: &str) -> Result<Viewer, super::CommandError> {
    let user = find_user(policy, address)?;
    Ok(Viewer {
        email: user.email.clone(),
        is_admin: user.is_admin(),
        admins_see_private_emails: policy.config.admins_see_private_emails,
    })
}

pub fn run(policy: &Policy, args: FeedArgs) -> CommandResult {
    let viewer = viewer(policy, &args.viewer)?;
    let activities = open_store(policy)?.feed(&viewer, args.contact.as_deref(), args.limit)?;
    print(&activities, &viewer, args.json)
}

pub fn search(
    policy: &Policy,
    viewer_address: &str,
    query: &str,
    limit: Option<usize>,
    json: bool,
) -> CommandResult {
    let viewer = viewer(policy, viewer_address)?;
    let activities = open_store(policy)?.search(&viewer, query, limit)?;
    print(&activities, &viewer, json)
}

fn print(activities: &[ActivityView], viewer: &Viewer, json: bool) -> CommandResult {
    let mut out = std::io::stdout().lock();
    for activity in activities {
        if json {
            json_line(&mut out, activity)?;
            continue;
        }
        writeln!(
            out,
            "#{} {} {} {} — {}",
            activity.activity_id,
            printable::escape(activity.date.as_deref().unwrap_or("(no date)")),
            printable::escape(&activity.direction),
            printable::escape(&activity.contacts.join(", ")),
            printable::escape(&activity.sources.join(", ")),
        )?;
        match &activity.subject {
            Some(subject) => writeln!(out, "    {}", printable::escape(subject))?,
            None if activity.content_erased_at.is_some() => writeln!(
                out,
                "    (content erased by retention on {})",
                printable::escape(activity.content_erased_at.as_deref().unwrap_or_default())
            )?,
            None if activity.private => writeln!(out, "    (private: content withheld)")?,
            None => writeln!(out, "    (no subject)")?,
        }
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
