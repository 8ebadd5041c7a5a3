//! Per-conversation privacy through the store, on each backend (docs/spec/decisions.md,
//! "Conversations" and "The level of a synced message"): label rules, the owner's override
//! and its undoing, the participants level, and what every viewer gets from `feed`, `search`
//! and `export`.

use crate::common;
use crate::conformance;

use mailsync::rules::{Action, Visibility};
use mailsync::store::{ActivityView, NewContact};
use mailsync::sync::owner_choice::{self, Choice, ChoiceError};

use common::world::World;

const CONFIG: &str = r#"
[company]
domains = ["abcorp.com"]
admins_see_private_emails = true
[store]
path = "unused.sqlite3"
[[users]]
email = "michelle@abcorp.com"
role = "admin"
sync = true
emails_visible = true
[[users]]
email = "dave@abcorp.com"
sync = true
emails_visible = true
[[users]]
email = "erin@abcorp.com"
sync = true
emails_visible = false
[[users]]
email = "olga@abcorp.com"
aliases = ["olga.k@abcorp.com"]
sync = false
"#;

/// The ready-made label rules, as shipped, and a participants label.
fn rules() -> String {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/labels.toml"),
    )
    .unwrap();
    format!(
        "{shipped}\n[[rule]]\nname = \"label: CRM/Participants\"\nmatch = {{ label = \"CRM/Participants\" }}\naction = \"participants\"\n"
    )
}

fn world() -> World {
    World::new(CONFIG, &rules()).with_contact(NewContact {
        name: Some("Alice".to_string()),
        emails: vec!["alice@customer.com".to_string()],
        visible_to: None,
        no_sync: None,
    })
}

/// A message from Alice to `to`, in the conversation `<first@customer.com>` when `reply`.
fn mail(message_id: &str, to: &str, subject: &str, reply: bool) -> String {
    let thread = if reply {
        "In-Reply-To: <first@customer.com>\nReferences: <first@customer.com>\n"
    } else {
        ""
    };
    format!(
        "From: Alice <alice@customer.com>\nTo: {to}\nSubject: {subject}\n\
         Date: Mon, 02 Sep 2024 09:15:00 +0000\nMessage-ID: <{message_id}>\n{thread}\n\
         The zanzibar figures, between us.\n"
    )
}

fn feed(world: &World, viewer: &str) -> Vec<ActivityView> {
    world.store.feed(&world.viewer(viewer), None, None).unwrap()
}

fn search(world: &World, viewer: &str) -> Vec<ActivityView> {
    world
        .store
        .search(&world.viewer(viewer), "zanzibar", None)
        .unwrap()
}

fn export(world: &World, viewer: &str) -> Vec<ActivityView> {
    world.store.export(&world.viewer(viewer), None).unwrap()
}

/// Whether the viewer gets the activity at all, and its subject.
fn seen(world: &World, viewer: &str, message_id: &str) -> Option<Option<String>> {
    feed(world, viewer)
        .into_iter()
        .find(|activity| activity.message_id.as_deref() == Some(message_id))
        .map(|activity| activity.subject)
}

fn set(
    world: &World,
    viewer: &str,
    activity_id: i64,
    conversation: bool,
    choice: Choice,
) -> Result<mailsync::store::AppliedChanges, ChoiceError> {
    let user = world.policy.config.user_by_address(viewer).unwrap();
    let planned = owner_choice::plan(
        &world.policy,
        &*world.store,
        user,
        activity_id,
        conversation,
        choice,
    )?;
    Ok(world.store.apply_owner_choice(&planned)?)
}

conformance! {
fn participants_see_it_in_full_and_nobody_else_sees_it_at_all() {
    let world = &mut world();
    // Dave labels the conversation CRM/Participants; Olga, whose sync is off, is on its Cc
    // under her alias.
    let first = mail(
        "first@customer.com",
        "dave@abcorp.com\nCc: olga.k@abcorp.com",
        "Negotiation",
        false,
    );
    let processed = world.replay_labelled("dave@abcorp.com", "1", &first, &["INBOX", "CRM/Participants"]);
    assert_eq!(processed.decision.visibility(), Some(Visibility::Participants));
    // A later reply without the label inherits it: the label is the conversation's.
    let reply = mail("second@customer.com", "dave@abcorp.com", "Re: Negotiation", true);
    world.replay("dave@abcorp.com", "2", &reply);

    for message_id in ["<first@customer.com>", "<second@customer.com>"] {
        // The owner, and a participant under an alias whose sync is off: in full.
        for participant in ["dave@abcorp.com", "olga@abcorp.com"] {
            assert_eq!(
                seen(world, participant, message_id),
                Some(Some(
                    if message_id.starts_with("<first") { "Negotiation" } else { "Re: Negotiation" }
                        .to_string()
                )),
                "{participant} {message_id}"
            );
        }
        // Not even that it happened: a colleague who may see Alice, and an admin whom
        // admins_see_private_emails lets read private mail.
        for outsider in ["erin@abcorp.com", "michelle@abcorp.com"] {
            assert_eq!(seen(world, outsider, message_id), None, "{outsider} {message_id}");
        }
    }
    for outsider in ["erin@abcorp.com", "michelle@abcorp.com"] {
        assert!(search(world, outsider).is_empty(), "{outsider}");
        assert!(export(world, outsider).is_empty(), "{outsider}");
    }
    assert_eq!(search(world, "olga@abcorp.com").len(), 2);
    let level = &feed(world, "olga@abcorp.com")[0];
    assert_eq!(level.level, Visibility::Participants);
    assert_eq!(level.conversation, "<first@customer.com>");
    // A participant's feed leaves no access record; an export of it does.
    assert!(world.access_rows().is_empty());
    assert_eq!(export(world, "olga@abcorp.com").len(), 2);
    let rows = world.access_rows();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(viewer, _, path, owner)| viewer == "olga@abcorp.com" && path == "export" && !owner));
}
}

conformance! {
fn a_label_in_one_mailbox_makes_the_shared_activity_private_until_it_is_removed() {
    let world = &mut world();
    // The same message in Michelle's mailbox (visible by default) and Dave's, where it
    // carries CRM/Private: the explicit choice wins over the default.
    let text = mail("first@customer.com", "michelle@abcorp.com, dave@abcorp.com", "Salary", false);
    world.replay("michelle@abcorp.com", "m1", &text);
    assert_eq!(seen(world, "erin@abcorp.com", "<first@customer.com>"), Some(Some("Salary".to_string())));
    world.replay_labelled("dave@abcorp.com", "d1", &text, &["CRM/Private"]);
    assert_eq!(seen(world, "erin@abcorp.com", "<first@customer.com>"), Some(None), "private: metadata only");
    assert!(search(world, "erin@abcorp.com").is_empty());
    assert_eq!(export(world, "erin@abcorp.com")[0].subject, None);
    // Both owners still read it.
    for owner in ["michelle@abcorp.com", "dave@abcorp.com"] {
        assert_eq!(seen(world, owner, "<first@customer.com>"), Some(Some("Salary".to_string())));
    }
    // The label removed (the copy decided again without it): visible again.
    world.replay_labelled("dave@abcorp.com", "d1", &text, &[]);
    assert_eq!(seen(world, "erin@abcorp.com", "<first@customer.com>"), Some(Some("Salary".to_string())));
}
}

conformance! {
fn the_owners_override_wins_until_undone_and_is_written_to_the_access_log() {
    let world = &mut world();
    let text = mail("first@customer.com", "dave@abcorp.com", "Renewal", false);
    world.replay_labelled("dave@abcorp.com", "d1", &text, &["CRM/Private"]);
    let reply = mail("second@customer.com", "dave@abcorp.com", "Re: Renewal", true);
    world.replay("dave@abcorp.com", "d2", &reply);
    let id = feed(world, "dave@abcorp.com")
        .iter()
        .find(|a| a.message_id.as_deref() == Some("<first@customer.com>"))
        .unwrap()
        .activity_id;
    // Someone whose mailbox it did not come from, and who is no admin, may not; and is told
    // exactly what a missing activity would tell.
    let refused = set(world, "erin@abcorp.com", id, false, Choice::Set(Action::Visible))
        .unwrap_err()
        .to_string();
    let missing = set(world, "erin@abcorp.com", 999_999, false, Choice::Default)
        .unwrap_err()
        .to_string();
    assert!(matches!(
        set(world, "dave@abcorp.com", 999_999, false, Choice::Default),
        Err(ChoiceError::NotAvailable { .. })
    ));
    assert_eq!(refused.replace(&id.to_string(), "N"), missing.replace("999999", "N"));
    // Dave's override wins over his label, for the whole conversation.
    let applied = set(world, "dave@abcorp.com", id, true, Choice::Set(Action::Visible)).unwrap();
    assert_eq!(applied.visibility_changed, 2);
    for message_id in ["<first@customer.com>", "<second@customer.com>"] {
        assert!(seen(world, "erin@abcorp.com", message_id).unwrap().is_some(), "{message_id}");
    }
    // Rules applied again leave an owner's choice alone.
    let plan = mailsync::sync::retro::plan(&world.policy, &*world.store).unwrap();
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    // A later reply inherits the override, whatever its labels.
    let third = mail("third@customer.com", "dave@abcorp.com", "Re: Renewal again", true);
    let processed = world.replay_labelled("dave@abcorp.com", "d3", &third, &["CRM/Private"]);
    assert_eq!(processed.decision.visibility(), Some(Visibility::Visible));
    assert_eq!(
        processed.decision.decided_by().map(|d| d.as_str()),
        Some("owner")
    );
    // Undone with default: the label decides again.
    set(world, "dave@abcorp.com", id, true, Choice::Default).unwrap();
    assert_eq!(seen(world, "erin@abcorp.com", "<first@customer.com>"), Some(None));
    assert_eq!(seen(world, "erin@abcorp.com", "<second@customer.com>"), Some(None), "the reply inherits the label again");
    // Every change is in the access log, with what was chosen.
    let log = world.store.access_log(None, None).unwrap();
    let changes: Vec<(&str, &str, Option<&str>)> = log
        .iter()
        .filter(|entry| entry.path == "set")
        .map(|entry| (entry.viewer.as_str(), entry.path.as_str(), entry.change.as_deref()))
        .collect();
    assert_eq!(
        changes,
        [
            ("dave@abcorp.com", "set", Some("visible (conversation)")),
            ("dave@abcorp.com", "set", Some("default (conversation)")),
        ]
    );
    // An admin may skip it: the only copy goes, and the activity with it.
    let applied = set(world, "michelle@abcorp.com", id, false, Choice::Set(Action::Skip)).unwrap();
    assert_eq!((applied.sources_removed, applied.activities_removed), (1, 1));
    assert_eq!(seen(world, "dave@abcorp.com", "<first@customer.com>"), None);
    let log = world.store.decision_log("dave@abcorp.com", None).unwrap();
    let skipped = log.iter().find(|d| d.source_id == "d1").unwrap();
    assert_eq!((skipped.reason.as_str(), skipped.decided_by.as_deref()), ("skipped_by_owner", Some("owner")));
}
}

conformance! {
fn a_skip_label_takes_away_this_mailboxs_copy_only() {
    let world = &mut world();
    let text = mail("first@customer.com", "michelle@abcorp.com, dave@abcorp.com", "Dinner", false);
    world.replay("michelle@abcorp.com", "m1", &text);
    world.replay("dave@abcorp.com", "d1", &text);
    // Dave's copy is labelled CRM/Never: rules applied again take his source away; the
    // activity stays with Michelle's.
    world.replay_labelled("dave@abcorp.com", "d1", &text, &["CRM/Never"]);
    let activity = feed(world, "michelle@abcorp.com").pop().unwrap();
    assert_eq!(activity.sources, ["michelle@abcorp.com"]);
    // Michelle labels hers too: the activity goes with its last source.
    world.replay_labelled("michelle@abcorp.com", "m1", &text, &["crm/never"]);
    assert!(feed(world, "michelle@abcorp.com").is_empty());
    assert_eq!(world.store.counts().unwrap().activities, 0);
}
}

conformance! {
fn rules_applied_again_weigh_the_stored_labels() {
    let world = &mut world();
    let text = mail("first@customer.com", "dave@abcorp.com", "Pricing", false);
    world.replay_labelled("dave@abcorp.com", "d1", &text, &["CRM/Private"]);
    assert_eq!(seen(world, "erin@abcorp.com", "<first@customer.com>"), Some(None));
    // The label rules are removed: what the label made private follows dave's default.
    world.policy = common::policy(CONFIG, "");
    let dry = mailsync::sync::retro::apply(&world.policy, &*world.store, true).unwrap();
    assert_eq!(dry.planned.visibility_changed, 1);
    assert_eq!(seen(world, "erin@abcorp.com", "<first@customer.com>"), Some(None), "a dry run changes nothing");
    mailsync::sync::retro::apply(&world.policy, &*world.store, false).unwrap();
    assert_eq!(seen(world, "erin@abcorp.com", "<first@customer.com>"), Some(Some("Pricing".to_string())));
    // And back: the stored label is matched again, without the message.
    world.policy = common::policy(CONFIG, &rules());
    mailsync::sync::retro::apply(&world.policy, &*world.store, false).unwrap();
    assert_eq!(seen(world, "erin@abcorp.com", "<first@customer.com>"), Some(None));
}
}

conformance! {
fn a_resync_finds_the_labelled_copies_and_what_a_skip_label_kept_out() {
    let world = &mut world();
    let text = |id: &str| mail(id, "dave@abcorp.com", "Plans", false);
    world.replay_labelled("dave@abcorp.com", "d1", &text("one@customer.com"), &["INBOX", "CRM/Private"]);
    world.replay_labelled("dave@abcorp.com", "d2", &text("two@customer.com"), &["CRM/Never"]);
    world.replay_labelled("dave@abcorp.com", "d3", &text("three@customer.com"), &["INBOX"]);
    world.replay_labelled("michelle@abcorp.com", "m1", &text("four@customer.com"), &["CRM/Private"]);

    let labelled = world.store.labelled_sources("dave@abcorp.com", "dir:/test").unwrap();
    let labelled: Vec<(&str, &[String])> = labelled
        .iter()
        .map(|source| (source.source_id.as_str(), source.labels.as_slice()))
        .collect();
    assert_eq!(labelled, [("d1", &["crm/private".to_string()][..])], "only dave's labelled copy");
    let never = ["label: CRM/Never".to_string()];
    assert_eq!(world.store.blocked_by("dave@abcorp.com", "dir:/test", &never).unwrap(), ["d2"]);
    assert!(world.store.blocked_by("dave@abcorp.com", "dir:/test", &["other".to_string()]).unwrap().is_empty());
    assert!(world.store.blocked_by("michelle@abcorp.com", "dir:/test", &never).unwrap().is_empty());
}
}

/// Labels applied and removed in Gmail reach the store within one sync, through history,
/// without fetching the message again; and what each viewer gets follows (the built daemon
/// and the sandbox over loopback).
mod through_gmail {
    use std::time::Duration;

    use crate::common::gmail::{Daemon, Setup, message, wait_until};
    use crate::common::scenario::{Sandbox, Scenario};

    const ALICE: &str = "alice@customer.com";
    const BOB: &str = "bob@bigclient.io";
    const MICHELLE: &str = "michelle@abcorp.com";
    const DAVE: &str = "dave@abcorp.com";
    const ERIN: &str = "erin@abcorp.com";
    const WAIT: Duration = Duration::from_secs(60);

    fn json_lines(output: std::process::Output) -> Vec<serde_json::Value> {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// What `viewer` gets of the activity with `subject` from feed, search and export: for
    /// each, `None` when it is not there, else its subject as shown.
    fn seen(setup: &Setup, viewer: &str, subject: &str, word: &str) -> [Option<Option<String>>; 3] {
        let find = |lines: Vec<serde_json::Value>| {
            lines
                .into_iter()
                .find(|activity| {
                    activity["message_id"]
                        .as_str()
                        .is_some_and(|id| id.contains(subject))
                })
                .map(|activity| activity["subject"].as_str().map(str::to_string))
        };
        [
            find(json_lines(
                setup.mailsync(&["feed", "--as", viewer, "--json"]),
            )),
            find(json_lines(
                setup.mailsync(&["search", "--as", viewer, word, "--json"]),
            )),
            find(json_lines(
                setup.mailsync(&["export", "--as", viewer, "--format", "json"]),
            )),
        ]
    }

    /// The Gmail id of the message of `user`'s mailbox whose Message-ID holds `marker`.
    fn gmail_id(setup: &Setup, user: &str, marker: &str) -> String {
        json_lines(setup.mailsync(&["decisions", "--user", user, "--json"]))
            .into_iter()
            .find(|logged| {
                logged["message_id"]
                    .as_str()
                    .is_some_and(|id| id.contains(marker))
            })
            .and_then(|logged| logged["source_id"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("no decision for {marker} in {user}'s mailbox"))
    }

    /// Michelle's okapi conversation and Dave's wombat one, both with a contact, Erin's
    /// mailbox empty, and the shipped label rules in the config's rules folder.
    fn two_conversations() -> (Sandbox, Setup) {
        let (sandbox, setup) = Scenario::new()
            .mailbox(
                MICHELLE,
                [(
                    "0001.eml".to_string(),
                    message(1, ALICE, MICHELLE, "Okapi salary talk").into_bytes(),
                )],
            )
            .mailbox(
                DAVE,
                [(
                    "0002.eml".to_string(),
                    message(2, BOB, DAVE, "Wombat dinner plans").into_bytes(),
                )],
            )
            .mailbox(ERIN, [])
            .contacts(&[ALICE, BOB])
            .service_account()
            .start();
        let rules = setup.dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/labels.toml"),
            rules.join("labels.toml"),
        )
        .unwrap();
        setup.edit_config(|config| format!("{config}[rules]\ndir = \"rules\"\n"));
        (sandbox, setup)
    }

    const OKAPI: &str = "m1-michelle";
    const WOMBAT: &str = "m2-dave";

    fn label(sandbox: &Sandbox, user: &str, id: &str, change: &str) {
        sandbox.control("label", &format!("user={user}&message={id}&{change}"), b"");
    }

    /// The daemon, once both conversations are synced.
    fn start_synced(setup: &Setup) -> Daemon {
        let daemon = setup.start_daemon();
        wait_until("both mailboxes synced", WAIT, || {
            setup.decisions(MICHELLE) == 1 && setup.decisions(DAVE) == 1
        });
        daemon
    }

    fn stop(mut daemon: Daemon) {
        daemon.signal("TERM");
        assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
        crate::common::logs::assert_log_is_clean(&daemon.log_text());
    }

    #[test]
    fn labels_applied_and_removed_in_gmail_change_what_everyone_sees_within_one_sync() {
        let (sandbox, setup) = two_conversations();
        let daemon = start_synced(&setup);
        let (okapi, wombat) = (OKAPI, WOMBAT);
        let shown = Some(Some("Okapi salary talk".to_string()));
        assert_eq!(
            seen(&setup, ERIN, okapi, "okapi"),
            [shown.clone(), shown.clone(), shown.clone()]
        );

        // Michelle labels her conversation CRM/Private in Gmail.
        let fetched_before = sandbox.answers(MICHELLE, "messages.get", "200");
        let okapi_id = gmail_id(&setup, MICHELLE, okapi);
        label(&sandbox, MICHELLE, &okapi_id, "add=CRM/Private");
        wait_until("Erin sees metadata only", WAIT, || {
            seen(&setup, ERIN, okapi, "okapi")[0] == Some(None)
        });
        // Search does not find withheld content; the export withholds it too.
        assert_eq!(
            seen(&setup, ERIN, okapi, "okapi"),
            [Some(None), None, Some(None)]
        );
        assert_eq!(
            seen(&setup, MICHELLE, okapi, "okapi"),
            [shown.clone(), shown.clone(), shown.clone()]
        );
        assert_eq!(
            sandbox.answers(MICHELLE, "messages.get", "200"),
            fetched_before,
            "a label change is read from history, not by fetching the message"
        );

        // Removing the label undoes it.
        label(&sandbox, MICHELLE, &okapi_id, "remove=CRM/Private");
        wait_until("Erin reads it again", WAIT, || {
            seen(&setup, ERIN, okapi, "okapi")[0] == shown
        });

        // Dave labels his CRM/Never: his copy, the only one, goes with its activity.
        let wombat_id = gmail_id(&setup, DAVE, wombat);
        label(&sandbox, DAVE, &wombat_id, "add=CRM/Never");
        wait_until("the activity gone", WAIT, || {
            seen(&setup, DAVE, wombat, "wombat") == [None, None, None]
        });
        let logged = json_lines(setup.mailsync(&["decisions", "--user", DAVE, "--json"]));
        assert_eq!(logged[0]["reason"], "blocked_by_rule");
        assert_eq!(logged[0]["rules"], serde_json::json!(["label: CRM/Never"]));
        // Taking the label off brings it back: nothing of it was kept, so it is fetched.
        label(&sandbox, DAVE, &wombat_id, "remove=CRM/Never");
        let dinner = Some(Some("Wombat dinner plans".to_string()));
        wait_until("the activity back", WAIT, || {
            seen(&setup, DAVE, wombat, "wombat")[0] == dinner
        });
        assert_eq!(
            seen(&setup, ERIN, wombat, "wombat"),
            [dinner.clone(), dinner.clone(), dinner]
        );
        stop(daemon);
    }

    /// A label rule a reload adds counts for conversations labelled before it: the reload
    /// reads the mailbox's labels again, without fetching a message.
    #[test]
    fn a_label_rule_added_by_a_reload_counts_for_conversations_labelled_before() {
        let (sandbox, setup) = two_conversations();
        let daemon = start_synced(&setup);
        let okapi_id = gmail_id(&setup, MICHELLE, OKAPI);
        label(&sandbox, MICHELLE, &okapi_id, "add=CRM/Participants");
        // Read from history, but no rule names the label yet.
        let polls = sandbox.answers(MICHELLE, "history.list", "200");
        wait_until("two more polls", WAIT, || {
            sandbox.answers(MICHELLE, "history.list", "200") >= polls + 2
        });
        let talk = Some(Some("Okapi salary talk".to_string()));
        assert_eq!(seen(&setup, ERIN, OKAPI, "okapi")[0], talk);

        let fetched_before = sandbox.answers(MICHELLE, "messages.get", "200");
        std::fs::write(
            setup.dir.path().join("rules/participants.toml"),
            "[[rule]]\nname = \"label: CRM/Participants\"\nmatch = { label = \"CRM/Participants\" }\naction = \"participants\"\n",
        )
        .unwrap();
        daemon.signal("HUP");
        wait_until("Erin no longer sees that it happened", WAIT, || {
            seen(&setup, ERIN, OKAPI, "okapi") == [None, None, None]
        });
        assert_eq!(
            seen(&setup, MICHELLE, OKAPI, "okapi"),
            [talk.clone(), talk.clone(), talk]
        );
        assert_eq!(
            sandbox.answers(MICHELLE, "messages.get", "200"),
            fetched_before,
            "labels are listed, not read by fetching the messages"
        );
        stop(daemon);
    }

    /// History tells only of changes since the cursor: labels changed while no daemon ran,
    /// with the history expired meanwhile, are read as they are at the re-sync, both ways.
    #[test]
    fn labels_changed_while_history_expired_count_at_the_resync() {
        let (sandbox, setup) = two_conversations();
        let daemon = start_synced(&setup);
        let (okapi_id, wombat_id) = (
            gmail_id(&setup, MICHELLE, OKAPI),
            gmail_id(&setup, DAVE, WOMBAT),
        );
        stop(daemon);
        label(&sandbox, MICHELLE, &okapi_id, "add=CRM/Private");
        label(&sandbox, DAVE, &wombat_id, "add=CRM/Never");
        for user in [MICHELLE, DAVE] {
            sandbox.control("expire-history", &format!("user={user}"), b"");
        }
        let fetched_before = sandbox.answers(MICHELLE, "messages.get", "200");
        let daemon = setup.start_daemon();
        wait_until("the labels read at the re-sync", WAIT, || {
            seen(&setup, ERIN, OKAPI, "okapi")[0] == Some(None)
                && seen(&setup, DAVE, WOMBAT, "wombat")[0].is_none()
        });
        assert!(
            sandbox.answers(MICHELLE, "history.list", "404") >= 1,
            "history expired"
        );
        assert_eq!(
            seen(&setup, ERIN, OKAPI, "okapi"),
            [Some(None), None, Some(None)]
        );
        assert_eq!(seen(&setup, ERIN, WOMBAT, "wombat"), [None, None, None]);
        assert_eq!(
            sandbox.answers(MICHELLE, "messages.get", "200"),
            fetched_before,
            "labels are listed, not read by fetching the messages"
        );
        stop(daemon);

        // Both labels taken off while down again: private becomes visible, and the message the
        // skip label kept out is fetched and stored.
        label(&sandbox, MICHELLE, &okapi_id, "remove=CRM/Private");
        label(&sandbox, DAVE, &wombat_id, "remove=CRM/Never");
        for user in [MICHELLE, DAVE] {
            sandbox.control("expire-history", &format!("user={user}"), b"");
        }
        let daemon = setup.start_daemon();
        let talk = Some(Some("Okapi salary talk".to_string()));
        let dinner = Some(Some("Wombat dinner plans".to_string()));
        wait_until("the labels' removal read at the re-sync", WAIT, || {
            seen(&setup, ERIN, OKAPI, "okapi")[0] == talk
                && seen(&setup, ERIN, WOMBAT, "wombat")[0] == dinner
        });
        assert_eq!(
            seen(&setup, ERIN, WOMBAT, "wombat"),
            [dinner.clone(), dinner.clone(), dinner]
        );
        stop(daemon);
    }
}

conformance! {
fn a_skip_label_keeps_later_replies_out_and_its_removal_lets_them_in() {
    let world = &mut world();
    // The first message is labelled CRM/Never in Dave's mailbox: nothing of it is stored...
    let first = mail("first@customer.com", "dave@abcorp.com", "Dinner", false);
    let processed = world.replay_labelled("dave@abcorp.com", "d1", &first, &["CRM/Never"]);
    assert_eq!(processed.decision.reason.as_str(), "blocked_by_rule");
    assert_eq!(world.store.counts().unwrap().activities, 0);
    // ...and a reply without the label, later, is kept out too: the label is the
    // conversation's, even on a copy that was not kept.
    let reply = mail("second@customer.com", "dave@abcorp.com", "Re: Dinner", true);
    let processed = world.replay("dave@abcorp.com", "d2", &reply);
    assert_eq!(processed.decision.reason.as_str(), "blocked_by_rule");
    assert_eq!(processed.decision.decided_by().map(|d| d.as_str()), Some("label"));
    let logged = world.store.decision_log("dave@abcorp.com", None).unwrap();
    assert!(logged.iter().all(|d| d.decided_by.as_deref() == Some("label")), "{logged:?}");
    // The label taken off the first message: the reply, decided again, is synced.
    world.replay("dave@abcorp.com", "d1", &first);
    let processed = world.replay("dave@abcorp.com", "d2", &reply);
    assert_eq!(processed.decision.reason.as_str(), "synced");
    // In another mailbox the label counts for nothing.
    let michelles = mail("third@customer.com", "michelle@abcorp.com", "Re: Dinner", true);
    assert_eq!(world.replay("michelle@abcorp.com", "m3", &michelles).decision.reason.as_str(), "synced");
}
}

conformance! {
fn an_owners_choice_for_one_copy_survives_a_replay_and_default_brings_a_skip_back() {
    let world = &mut world();
    let text = mail("first@customer.com", "dave@abcorp.com", "Renewal", false);
    world.replay("dave@abcorp.com", "d1", &text);
    let id = feed(world, "dave@abcorp.com")[0].activity_id;
    set(world, "dave@abcorp.com", id, false, Choice::Set(Action::Private)).unwrap();
    // Replayed, even with a label saying otherwise: the owner's choice stands.
    let processed = world.replay_labelled("dave@abcorp.com", "d1", &text, &["CRM/Never"]);
    assert_eq!(processed.decision.decided_by().map(|d| d.as_str()), Some("owner"));
    assert_eq!(seen(world, "erin@abcorp.com", "<first@customer.com>"), Some(None));
    // Skipped by its owner, then replayed: still skipped.
    set(world, "dave@abcorp.com", id, true, Choice::Set(Action::Skip)).unwrap();
    assert_eq!(world.replay("dave@abcorp.com", "d1", &text).decision.reason.as_str(), "skipped_by_owner");
    assert_eq!(world.store.counts().unwrap().activities, 0);
    // Michelle has the message too: Dave, with no copy left, sets his conversation back.
    world.replay("michelle@abcorp.com", "m1", &text.replace("To: dave@abcorp.com", "To: dave@abcorp.com, michelle@abcorp.com"));
    let shared = feed(world, "michelle@abcorp.com")[0].activity_id;
    set(world, "dave@abcorp.com", shared, true, Choice::Default).unwrap();
    // The skipped copy's decision is forgotten: the next look at the mailbox decides it again.
    assert!(world.store.decision_log("dave@abcorp.com", None).unwrap().iter().all(|d| d.source_id != "d1"));
    assert_eq!(world.replay("dave@abcorp.com", "d1", &text).decision.reason.as_str(), "synced");
}
}

conformance! {
fn a_forged_reference_in_someone_elses_mailbox_makes_no_participant() {
    let world = &mut world();
    let first = mail("first@customer.com", "dave@abcorp.com", "Negotiation", false);
    world.replay_labelled("dave@abcorp.com", "d1", &first, &["CRM/Participants"]);
    // A message into Erin's mailbox claiming to belong to the conversation.
    let forged = mail("forged@customer.com", "erin@abcorp.com", "Re: Negotiation", true);
    world.replay("erin@abcorp.com", "e1", &forged);
    assert_eq!(seen(world, "erin@abcorp.com", "<first@customer.com>"), None);
    assert!(seen(world, "erin@abcorp.com", "<forged@customer.com>").is_some(), "her own mail");
    // An admin who took no part cannot even set it.
    let id = feed(world, "dave@abcorp.com")
        .iter()
        .find(|a| a.message_id.as_deref() == Some("<first@customer.com>"))
        .unwrap()
        .activity_id;
    assert!(matches!(
        set(world, "michelle@abcorp.com", id, false, Choice::Set(Action::Visible)),
        Err(ChoiceError::NotAvailable { .. })
    ));
    assert_eq!(seen(world, "michelle@abcorp.com", "<first@customer.com>"), None);
}
}
