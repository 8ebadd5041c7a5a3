//! The owner's override (`mailsync activity set`): a mailbox owner's choice for one activity
//! or its whole conversation, which wins over labels and rules (docs/spec/decisions.md, "The
//! level of a synced message", step 2). The CLI stands in for the CRM's button; a CRM calls
//! [`plan`] and `Store::apply_owner_choice` the same way.

use crate::config::User;
use crate::rules::{Action, Policy, Reason};
use crate::store::{
    ConversationChoice, OwnerChoice, SourceChange, Store, StoreError, StoredSource,
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

/// Why a choice cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    #[error("no activity {0} in the store")]
    NoSuchActivity(i64),
    #[error(
        "{viewer} may not set activity {activity_id}: only a user whose mailbox it came from, or an admin, may"
    )]
    NotAllowed { viewer: String, activity_id: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Plans `viewer`'s choice for `activity_id` (with `whole_conversation`, for every activity of
/// its conversation). An owner sets their own mailbox's copies; an admin who owns none sets
/// every mailbox's.
pub fn plan(
    policy: &Policy,
    store: &dyn Store,
    viewer: &User,
    activity_id: i64,
    whole_conversation: bool,
    choice: Choice,
) -> Result<OwnerChoice, ChoiceError> {
    let conversation_sources = store.sources_of(activity_id, true)?;
    let Some(target) = conversation_sources
        .iter()
        .find(|source| source.activity_id == activity_id)
    else {
        return Err(ChoiceError::NoSuchActivity(activity_id));
    };
    let conversation = target.conversation.clone();
    let message_id = target.message_id.clone();
    let viewer_is_owner = conversation_sources
        .iter()
        .any(|source| source.activity_id == activity_id && source.user_email == viewer.email);
    if !viewer_is_owner && !viewer.is_admin() {
        return Err(ChoiceError::NotAllowed {
            viewer: viewer.email.clone(),
            activity_id,
        });
    }
    let chosen: Vec<&StoredSource> = conversation_sources
        .iter()
        .filter(|source| whole_conversation || source.activity_id == activity_id)
        .filter(|source| !viewer_is_owner || source.user_email == viewer.email)
        .collect();
    let labels = LabelsByConversation::of(&conversation_sources);
    let never_sync = never_sync_hashes(store)?;
    let changes: Vec<SourceChange> = chosen
        .iter()
        .filter_map(|source| change_for(policy, source, choice, &labels, &never_sync))
        .collect();
    let conversation = whole_conversation.then(|| {
        let mut mailboxes: Vec<String> = chosen
            .iter()
            .map(|source| source.user_email.clone())
            .collect();
        mailboxes.sort_unstable();
        mailboxes.dedup();
        let action = match choice {
            Choice::Set(action) => Some(action),
            Choice::Default => None,
        };
        ConversationChoice {
            conversation,
            mailboxes: mailboxes
                .into_iter()
                .map(|mailbox| (mailbox, action))
                .collect(),
        }
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
        conversation,
        change,
        changes,
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
