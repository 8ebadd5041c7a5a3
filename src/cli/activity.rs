//! `mailsync activity set`: the owner's override, standing in for the CRM's button.

use std::io::Write;

use clap::{Args, Subcommand, ValueEnum};

use super::output::json_line;
use super::{CommandError, CommandResult, ExitStatus, find_user, open_store};
use crate::rules::{Action, Policy};
use crate::store::AppliedChanges;
use crate::sync::owner_choice::{self, Choice, ChoiceError};

#[derive(Debug, Subcommand)]
pub enum ActivityCommand {
    /// Set how one activity (or, with --conversation, its whole conversation, later replies
    /// included) is seen: private, visible, participants (only the users on the
    /// conversation see it at all), skip (this mailbox's copy is removed), or default (back
    /// to labels and rules). Only a user whose mailbox it came from, or an admin, may; the
    /// choice wins over labels and rules and is written to the access log.
    Set(SetArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChoiceArg {
    Private,
    Visible,
    Participants,
    Skip,
    Default,
}

impl ChoiceArg {
    fn choice(self) -> Choice {
        match self {
            ChoiceArg::Private => Choice::Set(Action::Private),
            ChoiceArg::Visible => Choice::Set(Action::Visible),
            ChoiceArg::Participants => Choice::Set(Action::Participants),
            ChoiceArg::Skip => Choice::Set(Action::Skip),
            ChoiceArg::Default => Choice::Default,
        }
    }
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// The user making the choice: an owner of the activity's mailbox, or an admin.
    #[arg(long = "as", value_name = "EMAIL")]
    pub viewer: String,
    /// The activity, by the id `feed` shows.
    #[arg(value_name = "ACTIVITY_ID")]
    pub activity_id: i64,
    /// Set the whole conversation, later replies included.
    #[arg(long)]
    pub conversation: bool,
    /// What to set.
    #[arg(value_enum, value_name = "CHOICE")]
    pub choice: ChoiceArg,
    /// What changed, as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
struct SetLine<'a> {
    activity_id: i64,
    conversation: bool,
    choice: &'static str,
    set_by: &'a str,
    #[serde(flatten)]
    applied: AppliedChanges,
}

pub fn run(policy: &Policy, command: ActivityCommand) -> CommandResult {
    let ActivityCommand::Set(args) = command;
    let viewer = find_user(policy, &args.viewer)?;
    let store = open_store(policy)?;
    let choice = args.choice.choice();
    let planned = owner_choice::plan(
        policy,
        &*store,
        viewer,
        args.activity_id,
        args.conversation,
        choice,
    )
    .map_err(|error: ChoiceError| CommandError::Failed(error.into()))?;
    let applied = store.apply_owner_choice(&planned)?;
    let line = SetLine {
        activity_id: args.activity_id,
        conversation: args.conversation,
        choice: choice.as_str(),
        set_by: &viewer.email,
        applied,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        json_line(&mut out, &line)?;
    } else {
        writeln!(
            out,
            "activity {}{}: {} — {} copies changed, {} removed, {} activities removed",
            args.activity_id,
            if args.conversation {
                " and its conversation"
            } else {
                ""
            },
            choice.as_str(),
            applied.visibility_changed,
            applied.sources_removed,
            applied.activities_removed
        )?;
    }
    tracing::info!(
        activity_id = args.activity_id,
        conversation = args.conversation,
        choice = choice.as_str(),
        "owner's choice applied"
    );
    Ok(ExitStatus::Success)
}
