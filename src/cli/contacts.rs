//! `mailsync contacts import|add|list|set`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::output::json_line;
use super::{CommandError, CommandResult, ExitStatus, open_store};
use crate::address;
use crate::printable;
use crate::rules::Policy;
use crate::store::{ContactChange, NewContact};

use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Import contacts from a CSV file with the header `name,email,visible_to[,no_sync]`.
    ///
    /// Several emails (or visible_to users) in one field are separated by `;`. A row whose
    /// addresses belong to an existing contact updates it; an empty field (or a missing
    /// column) leaves that contact's setting as it is. visible_to lists the users who may see
    /// the contact: empty means every user for a new contact, `*` means every user (and
    /// clears an existing list). `no_sync` is `true`/`false` (or `yes`/`no`, `1`/`0`): true
    /// never syncs the contact's mail and removes what is stored. Bad rows are reported with
    /// their line; the others are imported.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// Add one contact with one or more addresses.
    Add {
        /// The contact's email addresses.
        #[arg(required = true, value_name = "EMAIL")]
        emails: Vec<String>,
        /// The contact's name.
        #[arg(long)]
        name: Option<String>,
        /// A user allowed to see this contact (repeatable). Without it, every user may.
        #[arg(long = "visible-to", value_name = "USER")]
        visible_to: Vec<String>,
    },
    /// List the contacts.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Change a contact's settings: `--no-sync` never syncs its mail (in any mailbox, and
    /// what is stored is removed now), `--sync` lifts that.
    ///
    /// Mail removed by `--no-sync` comes back with `--sync` only through a backfill (the daemon
    /// does one for new addresses) or a `replay`: what was removed is not kept anywhere.
    Set {
        /// Any address of the contact.
        #[arg(value_name = "EMAIL")]
        email: String,
        /// Never sync this contact's mail.
        #[arg(long, conflicts_with = "sync")]
        no_sync: bool,
        /// Sync this contact's mail again.
        #[arg(long)]
        sync: bool,
        /// Show what `--no-sync` would remove, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(policy: &Policy, command: ContactsCommand) -> CommandResult {
    match command {
        ContactsCommand::Import { file } => import(policy, &file),
        ContactsCommand::Add {
            emails,
            name,
            visible_to,
        } => add(policy, emails, name, visible_to),
        ContactsCommand::List { json } => list(policy, json),
        ContactsCommand::Set {
            email,
            no_sync,
            sync,
            dry_run,
        } => set(policy, &email, no_sync, sync, dry_run),
    }
}

/// `true`/`false`, `yes`/`no`, `1`/`0`, case-insensitive; empty = not given.
fn parse_flag(field: &str) -> Result<Option<bool>, String> {
    match field.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "true" | "yes" | "1" => Ok(Some(true)),
        "false" | "no" | "0" => Ok(Some(false)),
        other => Err(format!(
            "no_sync: `{other}` is not true/false (or yes/no, 1/0)"
        )),
    }
}

fn set(policy: &Policy, email: &str, no_sync: bool, sync: bool, dry_run: bool) -> CommandResult {
    if no_sync == sync {
        return Err(CommandError::Usage(
            "say what to change: `--no-sync` or `--sync`".to_string(),
        ));
    }
    let email = address::normalize(email);
    let store = open_store(policy)?;
    if dry_run {
        let Some(contact) = store
            .list_contacts()?
            .into_iter()
            .find(|contact| contact.emails.contains(&email))
        else {
            return Err(CommandError::Usage(format!(
                "no contact has the address `{email}`"
            )));
        };
        let planned = crate::sync::retro::plan_with_never_sync(
            policy,
            &*store,
            if no_sync { &contact.emails } else { &[] },
        )?
        .counts;
        println!(
            "dry run: marking contact {} never-sync would remove {} stored source(s) ({} activities gone); nothing written",
            contact.id, planned.sources_removed, planned.activities_removed
        );
        return Ok(ExitStatus::Success);
    }
    let Some(contact) = store.set_contact_no_sync(&email, no_sync)? else {
        return Err(CommandError::Usage(format!(
            "no contact has the address `{email}`"
        )));
    };
    // The switch is retroactive: stored mail with the contact goes now, not at the next reload.
    let applied = crate::sync::retro::apply(policy, &*store, false)?;
    let removed = applied.applied.unwrap_or_default();
    println!(
        "contact {} ({}): {}; {} stored source(s) removed ({} activities gone)",
        contact.id,
        printable::escape(&contact.emails.join(", ")),
        if contact.no_sync {
            "never synced"
        } else {
            "synced again for new mail"
        },
        removed.sources_removed,
        removed.activities_removed,
    );
    tracing::info!(
        contact = contact.id,
        no_sync = contact.no_sync,
        sources_removed = removed.sources_removed,
        activities_removed = removed.activities_removed,
        "contact sync switch changed"
    );
    Ok(ExitStatus::Success)
}

/// Splits a `;`-separated field into trimmed, non-empty parts.
fn split_list(field: &str) -> impl Iterator<Item = &str> {
    field
        .split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
}

/// The `visible_to` value that means every user: an empty field means "not given" (an
/// existing contact keeps its list), so clearing a list needs a word of its own.
const EVERY_USER: &str = "*";

/// Checks addresses and resolves `visible_to` entries to users' primary emails. No entries
/// leave the list unset (`None`); [`EVERY_USER`] alone sets it to everyone.
fn build_contact(
    policy: &Policy,
    name: Option<String>,
    emails: &[&str],
    visible_to: &[&str],
) -> Result<NewContact, String> {
    let mut contact = NewContact {
        name: name
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty()),
        ..NewContact::default()
    };
    for email in emails {
        let email = address::normalize(email);
        address::validate(&email)?;
        if let Some(user) = policy.config.user_by_address(&email) {
            return Err(format!(
                "`{email}` is an address of user `{}`; users cannot be contacts",
                user.email
            ));
        }
        if !contact.emails.contains(&email) {
            contact.emails.push(email);
        }
    }
    if contact.emails.is_empty() {
        return Err("a contact needs at least one email".to_string());
    }
    contact.visible_to = match visible_to {
        [] => None,
        [every] if *every == EVERY_USER => Some(Vec::new()),
        users if users.contains(&EVERY_USER) => {
            return Err(format!(
                "visible_to: `{EVERY_USER}` (every user) cannot be combined with users"
            ));
        }
        users => {
            let mut resolved: Vec<String> = Vec::new();
            for user in users {
                let known = policy
                    .config
                    .user_by_address(user)
                    .ok_or_else(|| format!("visible_to: `{user}` is not a user in the config"))?;
                if !resolved.contains(&known.email) {
                    resolved.push(known.email.clone());
                }
            }
            Some(resolved)
        }
    };
    Ok(contact)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvRow {
    #[serde(default)]
    name: String,
    email: String,
    #[serde(default)]
    visible_to: String,
    #[serde(default)]
    no_sync: String,
}

fn import(policy: &Policy, file: &Path) -> CommandResult {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(file)
        .with_context(|| format!("cannot read contacts file {}", file.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("cannot read the header of {}", file.display()))?
        .clone();
    for header in &headers {
        if !["name", "email", "visible_to", "no_sync"].contains(&header) {
            return Err(CommandError::Usage(format!(
                "{}:1: unknown column `{header}`; the columns are name,email,visible_to,no_sync",
                file.display()
            )));
        }
    }
    if !headers.iter().any(|header| header == "email") {
        return Err(CommandError::Usage(format!(
            "{}:1: no `email` column; the header must be name,email,visible_to",
            file.display()
        )));
    }
    let store = open_store(policy)?;
    let (mut created, mut updated, mut unchanged, mut failed) = (0, 0, 0, 0);
    for record in reader.records() {
        let (line, result) = match record {
            Ok(record) => {
                let line = record.position().map_or(0, |position| position.line());
                let result = record
                    .deserialize::<CsvRow>(Some(&headers))
                    .map_err(|error| error.to_string())
                    .and_then(|row| {
                        let emails: Vec<&str> = split_list(&row.email).collect();
                        let visible_to: Vec<&str> = split_list(&row.visible_to).collect();
                        let no_sync = parse_flag(&row.no_sync)?;
                        build_contact(policy, Some(row.name.clone()), &emails, &visible_to)
                            .map(|contact| NewContact { no_sync, ..contact })
                    });
                (line, result)
            }
            Err(error) => (
                error.position().map_or(0, |position| position.line()),
                Err(error.to_string()),
            ),
        };
        let outcome = result.and_then(|contact| {
            store
                .upsert_contact(&contact)
                .map_err(|error| error.to_string())
        });
        match outcome {
            Ok(ContactChange::Created(_)) => created += 1,
            Ok(ContactChange::Updated(_)) => updated += 1,
            Ok(ContactChange::Unchanged(_)) => unchanged += 1,
            Err(problem) => {
                failed += 1;
                crate::logging::report_problem(&format!("{}:{line}: {problem}", file.display()));
            }
        }
    }
    // `no_sync` is retroactive: what is stored with a contact the file marks never-sync goes.
    let applied = crate::sync::retro::apply(policy, &*store, false)?
        .applied
        .unwrap_or_default();
    println!(
        "imported {}: {created} created, {updated} updated, {unchanged} unchanged, {failed} rejected",
        file.display()
    );
    if applied.sources_removed > 0 || applied.visibility_changed > 0 {
        println!(
            "never-sync contacts: {} stored source(s) removed ({} activities gone)",
            applied.sources_removed, applied.activities_removed
        );
    }
    tracing::info!(
        created,
        updated,
        unchanged,
        rejected = failed,
        "contacts imported"
    );
    Ok(if failed > 0 {
        ExitStatus::SomeFailed
    } else {
        ExitStatus::Success
    })
}

fn add(
    policy: &Policy,
    emails: Vec<String>,
    name: Option<String>,
    visible_to: Vec<String>,
) -> CommandResult {
    let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
    let visible_to: Vec<&str> = visible_to.iter().map(String::as_str).collect();
    let contact = build_contact(policy, name, &emails, &visible_to).map_err(CommandError::Usage)?;
    let store = open_store(policy)?;
    let id = store.add_contact(&contact)?;
    println!(
        "added contact {id}: {}",
        printable::escape(&contact.emails.join(", "))
    );
    Ok(ExitStatus::Success)
}

fn list(policy: &Policy, json: bool) -> CommandResult {
    let store = open_store(policy)?;
    let contacts = store.list_contacts()?;
    let mut out = std::io::stdout().lock();
    if json {
        for contact in &contacts {
            json_line(&mut out, contact)?;
        }
        return Ok(ExitStatus::Success);
    }
    writeln!(
        out,
        "{:<5} {:<24} {:<40} {:<7} VISIBLE TO",
        "ID", "NAME", "EMAILS", "SYNC"
    )?;
    for contact in &contacts {
        let visible_to = if contact.visible_to.is_empty() {
            "everyone".to_string()
        } else {
            printable::escape(&contact.visible_to.join(", ")).into_owned()
        };
        writeln!(
            out,
            "{:<5} {:<24} {:<40} {:<7} {visible_to}",
            contact.id,
            printable::escape(contact.name.as_deref().unwrap_or("-")),
            printable::escape(&contact.emails.join(", ")),
            if contact.no_sync { "never" } else { "yes" },
        )?;
    }
    writeln!(out, "{} contact(s)", contacts.len())?;
    Ok(ExitStatus::Success)
}
