//! `mailsync explain`: one message's decision, spelled out for a support engineer.

use std::io::Write;

use anyhow::Context;

use super::output::json_line;
use super::{CommandResult, ExitStatus, find_user};
use crate::address;
use crate::config::User;
use crate::printable;
use crate::rules::{DecidedBy, NO_SYNC_RULE_NAME, Policy, Reason, Verdict, Visibility};
use crate::source::SourceMessage;
use crate::sync::{self, DecisionLine, Mode, Processed};

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The user whose mailbox the message is in.
    #[arg(long, value_name = "EMAIL")]
    pub user: String,
    /// The message file (.eml).
    pub file: PathBuf,
    /// The decision object of the spec instead of the readable explanation.
    #[arg(long)]
    pub json: bool,
}

pub fn run(policy: &Policy, args: ExplainArgs) -> CommandResult {
    let user = find_user(policy, &args.user)?;
    let raw = std::fs::read(&args.file)
        .with_context(|| format!("cannot read message file {}", args.file.display()))?;
    let message = SourceMessage {
        source_id: args
            .file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        labels: crate::parse::gmail_labels(&raw),
        raw,
    };
    let store = crate::store::open_for_looking(&policy.config)
        .context("cannot open store to look up contacts")?;
    let processed = sync::process(policy, &*store, user, "explain", &message, Mode::DryRun)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        json_line(&mut out, &DecisionLine::new(user, &processed))?;
    } else {
        write_explanation(&mut out, policy, user, &processed)?;
    }
    Ok(ExitStatus::Success)
}

fn write_explanation(
    out: &mut impl Write,
    policy: &Policy,
    user: &User,
    processed: &Processed,
) -> std::io::Result<()> {
    let decision = &processed.decision;
    writeln!(
        out,
        "message:    {}",
        printable::escape(&processed.source_id)
    )?;
    writeln!(
        out,
        "message-id: {}",
        printable::escape(processed.message_id.as_deref().unwrap_or("(none)"))
    )?;
    writeln!(
        out,
        "mailbox:    {}{}",
        printable::escape(&user.email),
        decision
            .direction
            .map(|d| format!(" ({})", d.as_str()))
            .unwrap_or_default()
    )?;
    if let Some(automation) = &processed.automation {
        let reasons = automation.reasons();
        let automated = if reasons.is_empty() {
            "no (no List-Id, List-Unsubscribe, bulk Precedence or Auto-Submitted)".to_string()
        } else {
            format!("yes ({})", reasons.join(", "))
        };
        writeln!(out, "automated:  {automated}")?;
        if automation.calendar_only {
            writeln!(
                out,
                "calendar:   calendar-only (an invitation or a reply to one)"
            )?;
        }
    }
    writeln!(
        out,
        "decision:   {} — {}",
        decision.outcome().as_str(),
        decision.reason.as_str()
    )?;
    let why = match decision.reason {
        Reason::SyncDisabled => format!(
            "sync is off for {} in {} (users.sync = false): nothing of this mailbox is read or stored",
            printable::escape(&user.email),
            printable::escape(&policy.config.source_path.display().to_string())
        ),
        Reason::ExcludedLabel => format!(
            "the message carries an excluded label ({}): drafts, spam, trash and chats are never synced",
            printable::escape(decision.detail.as_deref().unwrap_or("?"))
        ),
        Reason::ParseError => format!(
            "the message headers cannot be read ({})",
            printable::escape(decision.detail.as_deref().unwrap_or("?"))
        ),
        Reason::BlockedByRule if decision.rules.iter().all(|rule| rule.name == NO_SYNC_RULE_NAME) => {
            "a party is a contact marked never-sync (`contacts set --no-sync`); one blocked party keeps the whole message out".to_string()
        }
        Reason::BlockedByRule if decision.decided_by() == Some(DecidedBy::Label) => {
            "a skip rule matched a label of the conversation in this mailbox: this mailbox's copy is not kept".to_string()
        }
        Reason::BlockedByRule => {
            "a skip rule matched a party; one blocked party keeps the whole message out".to_string()
        }
        Reason::SkippedByOwner => {
            "the mailbox's owner chose skip for this conversation (`activity set --conversation`)".to_string()
        }
        Reason::NoQualifyingParty => {
            "no party is a contact outside the company: nothing links this message to the CRM"
                .to_string()
        }
        Reason::Synced => "at least one party is a contact outside the company".to_string(),
    };
    writeln!(out, "because:    {why}")?;
    if !decision.parties.is_empty() {
        writeln!(out, "parties:")?;
        for party in &decision.parties {
            writeln!(
                out,
                "  {:<36} {:<14} {}",
                printable::escape(&party.address),
                party.verdict.as_str(),
                printable::escape(&verdict_reason(
                    policy,
                    decision,
                    &party.address,
                    party.verdict
                ))
            )?;
        }
    }
    if let Some(visibility) = decision.visibility() {
        let decided_by = decision.decided_by().unwrap_or(DecidedBy::Default);
        let how = match decided_by {
            DecidedBy::Owner => {
                "step 2: the owner's choice for this conversation (`activity set`), which wins over labels and rules".to_string()
            }
            DecidedBy::Label => {
                "step 2: a label rule matched a label of the conversation in this mailbox (the most restrictive wins)".to_string()
            }
            DecidedBy::Rule => {
                "step 2: an address or domain rule matched a qualifying party (the most restrictive wins)".to_string()
            }
            DecidedBy::Default => format!(
                "step 2: no owner's choice, label rule or address rule, so the user setting applies (emails_visible = {})",
                user.emails_visible
            ),
        };
        writeln!(
            out,
            "visibility: {} (decided_by {}) — {how}",
            visibility.as_str(),
            decided_by.as_str()
        )?;
        match visibility {
            Visibility::Private => writeln!(
                out,
                "            others see the date, direction and contacts, not the subject, body or attachments"
            )?,
            Visibility::Participants => writeln!(
                out,
                "            only the users on the conversation (its mailboxes' owners, and users on its From, To or Cc) see it at all"
            )?,
            Visibility::Visible => {}
        }
        writeln!(
            out,
            "            step 4: the activity's level weighs every mailbox's copy: an owner's or label's choice, the most restrictive; else the least restrictive"
        )?;
    }
    if !decision.rules.is_empty() {
        writeln!(out, "rules:")?;
        for rule in &decision.rules {
            if rule.name == NO_SYNC_RULE_NAME {
                writeln!(
                    out,
                    "  \"{}\" (contact setting) — skip: {} is marked never-sync",
                    printable::escape(&rule.name),
                    printable::escape(&rule.party)
                )?;
                continue;
            }
            let matcher = policy
                .rules
                .rules
                .iter()
                .find(|candidate| candidate.name == rule.name)
                .map(|candidate| candidate.matcher.to_string())
                .unwrap_or_default();
            writeln!(
                out,
                "  \"{}\" ({}:{}) — {} {} matched {}",
                printable::escape(&rule.name),
                printable::escape(&rule.file.display().to_string()),
                rule.line,
                rule.action.as_str(),
                printable::escape(&matcher),
                printable::escape(&rule.party)
            )?;
        }
    }
    if !processed.problems.is_empty() {
        writeln!(out, "parse notes (best effort, not errors):")?;
        for problem in &processed.problems {
            writeln!(out, "  {}", printable::escape(problem))?;
        }
    }
    Ok(())
}

fn verdict_reason(
    policy: &Policy,
    decision: &crate::rules::Decision,
    party: &str,
    verdict: Verdict,
) -> String {
    match verdict {
        Verdict::Blocked => {
            let names: Vec<String> = decision
                .rules
                .iter()
                .filter(|rule| rule.party == party)
                .map(|rule| format!("\"{}\"", rule.name))
                .collect();
            format!("skip rule {}", names.join(", "))
        }
        Verdict::IsUser => format!(
            "an address of user {}",
            policy
                .config
                .user_by_address(party)
                .map_or("?", |user| user.email.as_str())
        ),
        Verdict::SharedDomain => format!(
            "inside internal domain {}",
            address::domain_of(party)
                .and_then(|domain| policy.internal_domain_covering(domain))
                .unwrap_or("?")
        ),
        Verdict::NotAContact => "no contact has this address".to_string(),
        Verdict::Qualifies => "a contact outside the company".to_string(),
    }
}
