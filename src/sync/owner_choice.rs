//! The owner's override (`mailsync activity set`): a mailbox owner's choice for one activity
//! or its whole conversation, which wins over labels and rules (docs/spec/decisions.md, "The
//! level of a synced message", step 2). The CLI stands in for the CRM's button; a CRM calls
//! [`plan`] and `Store::apply_owner_choice` the same way.

use crate::config::User;
use crate::rules::{Action, Policy, Reason, Visibility, activity_level};
use crate::store::read_rules::takes_part;
use crate::store::{
    ConversationChoice, OwnerChoice, SourceChange, Store, StoreError, StoredSource, Viewer,
};

use super::retro::{LabelsByConversation, decide_again_with, never_sync_hashes};

/// What the owner chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// `skip`, `participants`, `private` or `visible`.
    Set(Action),
    /// Back to labels, rules and the user's default.
    Default,
}

impl Choice {
    pub fn parse(text: &str) -> Option<Choice> {
        match text {
            "default" => Some(Choice::Default),
            other => Action::parse(other).map(Choice::Set),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Set(action) => action.as_str(),
            Choice::Default => "default",
        }
    }
}

/// Why a choice cannot be made. One answer for "no such activity" and "not yours": the
/// difference would tell anyone that a participants-only activity exists.
#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    #[error(
        "{viewer} has no activity {activity_id} to set: only a user whose mailbox it came from, or an admin, may set one"
    )]
    NotAvailable { viewer: String, activity_id: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Plans `viewer`'s choice for `activity_id` (with `whole_conversation`, for every activity of
/// its conversation). An owner sets their own mailbox's copies; an admin who owns none sets
/// every mailbox's, unless the activity is participants-only and the admin took no part in
/// it (for them it does not exist). A user whose copies of the conversation are gone (they
/// skipped them) may still set the conversation back (`default`).
pub fn plan(
    policy: &Policy,
    store: &dyn Store,
    viewer: &User,
    activity_id: i64,
    whole_conversation: bool,
    choice: Choice,
) -> Result<OwnerChoice, ChoiceError> {
    let not_available = || ChoiceError::NotAvailable {
        viewer: viewer.email.clone(),
        activity_id,
    };
    let conversation_sources = store.sources_of(activity_id, true)?;
    let Some(target) = conversation_sources
        .iter()
        .find(|source| source.activity_id == activity_id)
    else {
        return Err(not_available());
    };
    let conversation = target.conversation.clone();
    let message_id = target.message_id.clone();
    let viewer_is_owner = conversation_sources
        .iter()
        .any(|source| source.activity_id == activity_id && source.user_email == viewer.email);
    // An owner whose copies are gone is still the conversation's owner for its own choice.
    let owns_conversation_choice = whole_conversation
        && store
            .conversation_contexts(&viewer.email, std::slice::from_ref(&conversation), "", &[])?
            .get(&conversation)
            .is_some_and(|context| context.owner_choice.is_some());
    let acts_as_owner = viewer_is_owner || owns_conversation_choice;
    if !acts_as_owner {
        let level = activity_level(
            conversation_sources
                .iter()
                .filter(|source| source.activity_id == activity_id)
                .map(|source| (source.visibility, source.decided_by)),
        );
        let hidden = level == Some(Visibility::Participants)
            && !takes_part(
                &Viewer::of(viewer, policy.config.admins_see_private_emails),
                activity_id,
                &conversation_sources,
            );
        if !viewer.is_admin() || hidden {
            return Err(not_available());
        }
    }
    let chosen: Vec<&StoredSource> = conversation_sources
        .iter()
        .filter(|source| whole_conversation || source.activity_id == activity_id)
        .filter(|source| !acts_as_owner || source.user_email == viewer.email)
        .collect();
    let labels = LabelsByConversation::of(&conversation_sources);
    let never_sync = never_sync_hashes(store)?;
    let changes: Vec<SourceChange> = chosen
        .iter()
        .filter_map(|source| change_for(policy, source, choice, &labels, &never_sync))
        .collect();
    // Whose choice it is: the owner's own mailbox, or, for an admin, every mailbox (a
    // mailbox whose copies are all gone may still hold a conversation choice or skips).
    let mailboxes: Vec<String> = if acts_as_owner {
        vec![viewer.email.clone()]
    } else {
        policy
            .config
            .users
            .iter()
            .map(|user| user.email.clone())
            .collect()
    };
    let action = match choice {
        Choice::Set(action) => Some(action),
        Choice::Default => None,
    };
    let conversation_choice = whole_conversation.then(|| ConversationChoice {
        conversation: conversation.clone(),
        mailboxes: mailboxes
            .iter()
            .map(|mailbox| (mailbox.clone(), action))
            .collect(),
    });
    let change = if whole_conversation {
        format!("{} (conversation)", choice.as_str())
    } else {
        choice.as_str().to_string()
    };
    Ok(OwnerChoice {
        viewer: viewer.email.clone(),
        activity_id,
        message_id,
        viewer_is_owner,
        conversation: conversation_choice,
        change,
        changes,
        unskip: if choice == Choice::Default {
            mailboxes
        } else {
            Vec::new()
        },
        conversation_key: conversation,
    })
}

fn change_for(
    policy: &Policy,
    source: &StoredSource,
    choice: Choice,
    labels: &LabelsByConversation,
    never_sync: &std::collections::HashSet<String>,
) -> Option<SourceChange> {
    match choice {
        Choice::Set(Action::Skip) => Some(SourceChange::Remove {
            source: source.clone(),
            reason: Reason::SkippedByOwner,
            rules: Vec::new(),
            labels: source.labels.clone(),
        }),
        Choice::Set(action) => Some(SourceChange::SetVisibility {
            source: source.clone(),
            visibility: action.visibility()?,
            decided_by: crate::rules::DecidedBy::Owner,
            labels: source.labels.clone(),
            rules: Vec::new(),
        }),
        Choice::Default => decide_again_with(
            policy,
            source,
            &source.labels,
            &labels.of_source(source),
            None,
            never_sync,
        ),
    }
}
