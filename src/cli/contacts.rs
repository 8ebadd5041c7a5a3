//! `mailsync contacts import|add|list`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::output::json_line;
use super::{CommandError, CommandResult, ContactsCommand, ExitStatus, open_store};
use crate::address;
use crate::rules::Policy;
use crate::store::{ContactChange, NewContact, Store};

pub fn run(policy: &Policy, command: ContactsCommand) -> CommandResult {
    match command {
        ContactsCommand::Import { file } => import(policy, &file),
        ContactsCommand::Add {
            emails,
            name,
            visible_to,
        } => add(policy, emails, name, visible_to),
        ContactsCommand::List { json } => list(policy, json),
    }
}

/// Splits a `;`-separated field into trimmed, non-empty parts.
fn split_list(field: &str) -> impl Iterator<Item = &str> {
    field
        .split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
}

/// Checks addresses and resolves `visible_to` entries to users' primary emails.
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
    for user in visible_to {
        let known = policy
            .config
            .user_by_address(user)
            .ok_or_else(|| format!("visible_to: `{user}` is not a user in the config"))?;
        if !contact.visible_to.contains(&known.email) {
            contact.visible_to.push(known.email.clone());
        }
    }
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
        if !["name", "email", "visible_to"].contains(&header) {
            return Err(CommandError::Usage(format!(
                "{}:1: unknown column `{header}`; the columns are name,email,visible_to",
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
    let mut store = open_store(policy)?;
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
                        build_contact(policy, Some(row.name.clone()), &emails, &visible_to)
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
                eprintln!("{}:{line}: {problem}", file.display());
            }
        }
    }
    println!(
        "imported {}: {created} created, {updated} updated, {unchanged} unchanged, {failed} rejected",
        file.display()
    );
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
    let mut store = open_store(policy)?;
    let id = store.add_contact(&contact)?;
    println!("added contact {id}: {}", contact.emails.join(", "));
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
        "{:<5} {:<24} {:<40} VISIBLE TO",
        "ID", "NAME", "EMAILS"
    )?;
    for contact in &contacts {
        let visible_to = if contact.visible_to.is_empty() {
            "everyone".to_string()
        } else {
            contact.visible_to.join(", ")
        };
        writeln!(
            out,
            "{:<5} {:<24} {:<40} {visible_to}",
            contact.id,
            contact.name.as_deref().unwrap_or("-"),
            contact.emails.join(", "),
        )?;
    }
    writeln!(out, "{} contact(s)", contacts.len())?;
    Ok(ExitStatus::Success)
}
