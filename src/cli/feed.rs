//! `mailsync feed`: the read path as a user would see it.

use std::io::Write;

use super::output::json_line;
use super::{CommandResult, ExitStatus, FeedArgs, find_user, open_store};
use crate::rules::Policy;
use crate::store::{Store, Viewer};

pub fn run(policy: &Policy, args: FeedArgs) -> CommandResult {
    let user = find_user(policy, &args.viewer)?;
    let viewer = Viewer {
        email: user.email.clone(),
        is_admin: user.is_admin(),
        admins_see_private_emails: policy.config.admins_see_private_emails,
    };
    let store = open_store(policy)?;
    let activities = store.feed(&viewer, args.contact.as_deref(), args.limit)?;
    let mut out = std::io::stdout().lock();
    for activity in &activities {
        if args.json {
            json_line(&mut out, activity)?;
            continue;
        }
        writeln!(
            out,
            "#{} {} {} {} — {}",
            activity.activity_id,
            activity.date.as_deref().unwrap_or("(no date)"),
            activity.direction,
            activity.contacts.join(", "),
            activity.sources.join(", "),
        )?;
        match &activity.subject {
            Some(subject) => writeln!(out, "    {subject}")?,
            None if activity.private => writeln!(out, "    (private: content withheld)")?,
            None => writeln!(out, "    (no subject)")?,
        }
    }
    if !args.json {
        writeln!(
            out,
            "{} activit{} visible to {}",
            activities.len(),
            if activities.len() == 1 { "y" } else { "ies" },
            viewer.email
        )?;
    }
    Ok(ExitStatus::Success)
}
