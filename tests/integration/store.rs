//! The store through its trait, on a real SQLite file with the real migrations: idempotent
//! writes, one activity per message across mailboxes, the decision log's privacy, and the
//! read path for every kind of viewer.

use crate::common;
use crate::conformance;

use std::collections::HashSet;

use mailsync::parse::parse_message;
use mailsync::rules::decide;
use mailsync::store::{NewContact, Recorded, SqliteStore, Store, Viewer};
use mailsync::sync;

use common::world::{World, contact};

const CONFIG: &str = r#"
[company]
domains = ["abcorp.com"]
admins_see_private_emails = false
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
emails_visible = false
[[users]]
email = "ceo@abcorp.com"
sync = true
emails_visible = true
[[users]]
email = "erin@abcorp.com"
sync = true
"#;

const RULES: &str = r#"
[[rule]]
name = "bookkeeper private"
match = { domain = "bookkeeper.nl" }
action = "private"
users = ["ceo@abcorp.com"]
"#;

/// The store tests' world: Alice (two addresses, visible to everyone), Bob (visible to Dave
/// only) and Jan (visible to the CEO only).
fn world() -> World {
    World::new(CONFIG, RULES)
        .with_contact(contact(
            "Alice",
            &["alice@customer.com", "alice@customer.org"],
            &[],
        ))
        .with_contact(contact("Bob", &["bob@bigclient.io"], &["dave@abcorp.com"]))
        .with_contact(contact("Jan", &["jan@bookkeeper.nl"], &["ceo@abcorp.com"]))
}

const FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE: &str = "From: Alice <alice@customer.com>\nTo: dave@abcorp.com, michelle@abcorp.com\nCc: bob@bigclient.io\nSubject: Renewal terms\nDate: Mon, 02 Sep 2024 09:15:00 +0000\nMessage-ID: <two-mailboxes@customer.com>\n\nThe secret price is 42.\n";

conformance! {
fn the_same_message_in_two_mailboxes_is_one_activity_with_two_sources() {
    let mut world = world();
    world.replay(
        "dave@abcorp.com",
        "1",
        FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE,
    );
    world.replay(
        "michelle@abcorp.com",
        "a",
        FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE,
    );
    let counts = world.store.counts().unwrap();
    assert_eq!(counts.activities, 1);
    assert_eq!(counts.sources, 2);
    assert_eq!(counts.contact_links, 2, "alice and bob, once each");
    assert_eq!(counts.decisions, 2);

    let feed = world
        .store
        .feed(&world.viewer("erin@abcorp.com"), None, None)
        .unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(
        feed[0].sources,
        vec!["dave@abcorp.com", "michelle@abcorp.com"]
    );
    // Dave's copy was private (his setting), Michelle's visible: any visible source wins.
    assert!(!feed[0].private);
    assert_eq!(feed[0].subject.as_deref(), Some("Renewal terms"));
    // Erin may not see Bob, so Bob is left out of what she is shown.
    assert_eq!(feed[0].contacts, vec!["alice@customer.com"]);
}
}

/// A batch with every way two records can meet: one message under two source ids of one
/// mailbox, a message reusing another's Message-ID with other content, a message decided
/// twice, and skipped mail between them.
const BATCH: &[(&str, &str)] = &[
    ("1", FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE),
    (
        "2",
        "From: x@vendor.example\nTo: dave@abcorp.com\nSubject: Hello\n\nbody\n",
    ),
    ("3", FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE),
    (
        "4",
        "From: Alice <alice@customer.com>\nTo: dave@abcorp.com\nSubject: Not the renewal\nDate: Mon, 02 Sep 2024 09:15:00 +0000\nMessage-ID: <two-mailboxes@customer.com>\n\nOther words.\n",
    ),
    (
        "5",
        "From: Jan <jan@bookkeeper.nl>\nTo: dave@abcorp.com\nSubject: Invoice\nMessage-ID: <invoice@bookkeeper.nl>\n\nPay.\n",
    ),
    ("1", FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE),
];

conformance! {
fn a_batch_stores_what_its_records_one_by_one_would() {
    let mut batched = world();
    let recorded = batched.replay_batch("dave@abcorp.com", BATCH);
    let mut one_by_one = world();
    let expected: Vec<_> = BATCH
        .iter()
        .map(|(source_id, text)| {
            one_by_one
                .replay("dave@abcorp.com", source_id, text)
                .recorded
                .expect("written")
        })
        .collect();
    assert_eq!(recorded, expected);
    assert!(
        matches!(recorded[..], [
            Recorded::NewActivity(first),
            Recorded::DecisionOnly,
            Recorded::ExistingActivity(again),
            Recorded::NewActivity(reused),
            Recorded::NewActivity(_),
            Recorded::ExistingActivity(last),
        ] if first == again && first == last && reused != first),
        "{recorded:?}"
    );
    assert_eq!(batched.store.counts().unwrap(), one_by_one.store.counts().unwrap());
    for viewer in ["michelle@abcorp.com", "dave@abcorp.com", "ceo@abcorp.com", "erin@abcorp.com"] {
        assert_eq!(
            batched.store.feed(&batched.viewer(viewer), None, None).unwrap(),
            one_by_one.store.feed(&one_by_one.viewer(viewer), None, None).unwrap(),
            "{viewer}'s feed"
        );
    }
    let log = |world: &World| -> Vec<_> {
        world
            .store
            .decision_log("dave@abcorp.com", None)
            .unwrap()
            .into_iter()
            .map(|logged| (logged.source_id, logged.decision, logged.reason, logged.rules, logged.activity_id, logged.contacts))
            .collect()
    };
    assert_eq!(log(&batched), log(&one_by_one));
    assert_eq!(batched.search_index_matches("secret"), 1);
    assert_eq!(batched.search_index_matches("other"), 1);
}
}

conformance! {
fn writing_the_same_message_again_changes_nothing() {
    let mut world = world();
    world.replay(
        "dave@abcorp.com",
        "1",
        FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE,
    );
    world.replay(
        "dave@abcorp.com",
        "2",
        "From: x@vendor.example\nTo: dave@abcorp.com\nSubject: Hello\n\nbody\n",
    );
    let before = world.dump();
    world.replay(
        "dave@abcorp.com",
        "1",
        FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE,
    );
    world.replay(
        "dave@abcorp.com",
        "2",
        "From: x@vendor.example\nTo: dave@abcorp.com\nSubject: Hello\n\nbody\n",
    );
    assert_eq!(world.dump(), before);
}
}

conformance! {
fn a_message_without_message_id_is_identified_by_its_bytes() {
    let mut world = world();
    let text = "From: alice@customer.com\nTo: dave@abcorp.com\nSubject: no id\n\nbody\n";
    world.replay("dave@abcorp.com", "1", text);
    world.replay(
        "michelle@abcorp.com",
        "1",
        &text.replace("dave@", "michelle@"),
    );
    world.replay("dave@abcorp.com", "again", text);
    let counts = world.store.counts().unwrap();
    assert_eq!(
        counts.activities, 2,
        "different bytes are different messages"
    );
    assert_eq!(
        counts.sources, 2,
        "the same bytes twice in one mailbox are one source"
    );
}
}

conformance! {
fn skipped_mail_leaves_no_address_and_no_subject_in_the_store() {
    let mut world = world();
    let processed = world.replay(
        "dave@abcorp.com",
        "stranger.eml",
        "From: Stranger <stranger@vendor.example>\nTo: dave@abcorp.com\nSubject: Confidential merger\n\nbody\n",
    );
    assert_eq!(processed.decision.reason.as_str(), "no_qualifying_party");
    let dump = world.dump().join("\n");
    assert!(!dump.contains("stranger@vendor.example"), "{dump}");
    assert!(!dump.contains("Confidential merger"), "{dump}");
    assert!(dump.contains("no_qualifying_party"));
}
}

conformance! {
fn a_disabled_user_leaves_no_trace() {
    let mut world = world();
    let config = CONFIG.replace(
        "email = \"erin@abcorp.com\"\nsync = true",
        "email = \"erin@abcorp.com\"\nsync = false",
    );
    world.policy = common::policy(&config, RULES);
    let before = world.dump();
    let processed = world.replay(
        "erin@abcorp.com",
        "1",
        FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE,
    );
    assert_eq!(processed.decision.reason.as_str(), "sync_disabled");
    assert_eq!(world.dump(), before);
}
}

/// The read path's world: restricted contacts (Bob for Dave, Jan for the CEO), private mail
/// (by a user's setting and by a rule), and a message seen in two mailboxes. Each body holds
/// words of its own, for searches.
fn read_path_world() -> World {
    let mut world = world();
    // 1: Alice and Bob, in Dave's (private) and Michelle's (visible) mailboxes.
    world.replay(
        "dave@abcorp.com",
        "1",
        FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE,
    );
    world.replay(
        "michelle@abcorp.com",
        "1",
        FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE,
    );
    // 2: Bob only, Dave's mailbox, private by Dave's setting.
    world.replay("dave@abcorp.com", "2", "From: bob@bigclient.io\nTo: dave@abcorp.com\nSubject: Bob's private note\nDate: Tue, 03 Sep 2024 09:00:00 +0000\nMessage-ID: <bob-2@bigclient.io>\n\nfalcon budget figures\n");
    // 3: the bookkeeper, CEO's mailbox, private by rule.
    world.replay("ceo@abcorp.com", "3", "From: jan@bookkeeper.nl\nTo: ceo@abcorp.com\nSubject: Salary statement\nDate: Wed, 04 Sep 2024 09:00:00 +0000\nMessage-ID: <jan-3@bookkeeper.nl>\n\npayroll for september\n");
    // 4: Alice, CEO's mailbox, visible by the CEO's setting.
    world.replay("ceo@abcorp.com", "4", "From: alice@customer.org\nTo: ceo@abcorp.com\nSubject: Thanks\nDate: Thu, 05 Sep 2024 09:00:00 +0000\nMessage-ID: <alice-4@customer.org>\n\nthe invoice is paid\n");
    world
}

conformance! {
/// The read path, viewer by viewer, on a store with restricted contacts, private mail and a
/// message seen in two mailboxes.
fn each_viewer_sees_exactly_what_the_spec_allows() {
    let world = read_path_world();

    let show = |viewer: Viewer| -> Vec<String> {
        world
            .store
            .feed(&viewer, None, None)
            .unwrap()
            .into_iter()
            .map(|a| {
                format!(
                    "{} contacts={:?} private={} subject={:?}",
                    a.message_id.unwrap(),
                    a.contacts,
                    a.private,
                    a.subject
                )
            })
            .collect()
    };

    // Erin: no restricted contact, no mailbox of her own here.
    assert_eq!(
        show(world.viewer("erin@abcorp.com")),
        vec![
            r#"<alice-4@customer.org> contacts=["alice@customer.org"] private=false subject=Some("Thanks")"#,
            r#"<two-mailboxes@customer.com> contacts=["alice@customer.com"] private=false subject=Some("Renewal terms")"#,
        ]
    );
    // Dave: may see Bob; owns 1 and 2, so sees 2's content although it is private.
    assert_eq!(
        show(world.viewer("dave@abcorp.com")),
        vec![
            r#"<alice-4@customer.org> contacts=["alice@customer.org"] private=false subject=Some("Thanks")"#,
            r#"<bob-2@bigclient.io> contacts=["bob@bigclient.io"] private=true subject=Some("Bob's private note")"#,
            r#"<two-mailboxes@customer.com> contacts=["alice@customer.com", "bob@bigclient.io"] private=false subject=Some("Renewal terms")"#,
        ]
    );
    // CEO: may see Jan, owns 3 and 4; Bob is Dave's only.
    assert_eq!(
        show(world.viewer("ceo@abcorp.com")),
        vec![
            r#"<alice-4@customer.org> contacts=["alice@customer.org"] private=false subject=Some("Thanks")"#,
            r#"<jan-3@bookkeeper.nl> contacts=["jan@bookkeeper.nl"] private=true subject=Some("Salary statement")"#,
            r#"<two-mailboxes@customer.com> contacts=["alice@customer.com"] private=false subject=Some("Renewal terms")"#,
        ]
    );
    // Michelle, admin: sees every contact, but private content only with the account setting.
    assert_eq!(
        show(world.viewer("michelle@abcorp.com")),
        vec![
            r#"<alice-4@customer.org> contacts=["alice@customer.org"] private=false subject=Some("Thanks")"#,
            r#"<jan-3@bookkeeper.nl> contacts=["jan@bookkeeper.nl"] private=true subject=None"#,
            r#"<bob-2@bigclient.io> contacts=["bob@bigclient.io"] private=true subject=None"#,
            r#"<two-mailboxes@customer.com> contacts=["alice@customer.com", "bob@bigclient.io"] private=false subject=Some("Renewal terms")"#,
        ]
    );
    let with_setting = show(world.viewer_with("michelle@abcorp.com", true));
    assert!(with_setting.contains(&r#"<jan-3@bookkeeper.nl> contacts=["jan@bookkeeper.nl"] private=true subject=Some("Salary statement")"#.to_string()));
    // The setting is for admins only.
    assert_eq!(
        show(world.viewer_with("erin@abcorp.com", true)),
        show(world.viewer("erin@abcorp.com"))
    );

    // Body follows subject.
    let ceo_view = world
        .store
        .feed(&world.viewer("michelle@abcorp.com"), None, None)
        .unwrap();
    let jan = ceo_view
        .iter()
        .find(|a| a.message_id.as_deref() == Some("<jan-3@bookkeeper.nl>"))
        .unwrap();
    assert!(jan.body.is_none());
}
}

conformance! {
/// The done-when of the privacy controls: for every viewer, `search` and `export` show
/// exactly what `feed` shows — the same activities, with the same fields withheld — on the
/// read path's world. A search for a word finds exactly the feed's activities whose content
/// shown to that viewer holds the word, so words in withheld private content never match.
fn search_and_export_show_each_viewer_exactly_what_the_feed_shows() {
    let world = read_path_world();
    let viewers = [
        world.viewer("erin@abcorp.com"),
        world.viewer_with("erin@abcorp.com", true),
        world.viewer("dave@abcorp.com"),
        world.viewer("ceo@abcorp.com"),
        world.viewer("michelle@abcorp.com"),
        world.viewer_with("michelle@abcorp.com", true),
    ];
    // Visible content (price: message 1, invoice: 4, renewal: 1's subject), private content
    // only (budget: 2, payroll: 3, salary: 3's subject), and a word in no message.
    let words = [
        "price", "invoice", "renewal", "budget", "payroll", "salary", "nowhere",
    ];
    let shown_words = |view: &mailsync::store::ActivityView| -> HashSet<String> {
        [&view.subject, &view.body]
            .into_iter()
            .flatten()
            .flat_map(|text| text.split(|c: char| !c.is_alphanumeric()))
            .map(str::to_lowercase)
            .collect()
    };
    let contacts = [
        "alice@customer.com",
        "alice@customer.org",
        "bob@bigclient.io",
        "jan@bookkeeper.nl",
    ];
    for viewer in &viewers {
        let feed = world.store.feed(viewer, None, None).unwrap();
        assert!(!feed.is_empty(), "{viewer:?}");
        assert_eq!(
            world.store.export(viewer, None).unwrap(),
            feed,
            "export shows {viewer:?} what feed does"
        );
        for contact in contacts {
            assert_eq!(
                world.store.export(viewer, Some(contact)).unwrap(),
                world.store.feed(viewer, Some(contact), None).unwrap(),
                "export --contact {contact} for {viewer:?}"
            );
        }
        for word in words {
            let expected: Vec<_> = feed
                .iter()
                .filter(|view| shown_words(view).contains(word))
                .cloned()
                .collect();
            assert_eq!(
                world.store.search(viewer, word, None).unwrap(),
                expected,
                "search {word:?} for {viewer:?}"
            );
        }
    }
    // The expectations are not empty by accident: each kind of word finds something for
    // someone, and private words are in activities that viewers who may not read them see.
    let search = |email: &str, setting: bool, word: &str| -> Vec<String> {
        world
            .store
            .search(&world.viewer_with(email, setting), word, None)
            .unwrap()
            .into_iter()
            .map(|a| a.message_id.unwrap())
            .collect()
    };
    assert_eq!(
        search("erin@abcorp.com", false, "price"),
        ["<two-mailboxes@customer.com>"]
    );
    assert_eq!(
        search("erin@abcorp.com", false, "invoice"),
        ["<alice-4@customer.org>"]
    );
    assert_eq!(
        search("dave@abcorp.com", false, "budget"),
        ["<bob-2@bigclient.io>"]
    );
    assert_eq!(
        search("ceo@abcorp.com", false, "payroll"),
        ["<jan-3@bookkeeper.nl>"]
    );
    assert!(search("michelle@abcorp.com", false, "payroll").is_empty());
    assert!(search("michelle@abcorp.com", false, "budget").is_empty());
    assert_eq!(
        search("michelle@abcorp.com", true, "budget"),
        ["<bob-2@bigclient.io>"]
    );
    let michelle = world
        .store
        .feed(&world.viewer("michelle@abcorp.com"), None, None)
        .unwrap();
    assert!(
        michelle
            .iter()
            .any(|a| a.message_id.as_deref() == Some("<jan-3@bookkeeper.nl>") && a.body.is_none()),
        "the admin sees that the private activity exists, not its words"
    );
}
}

conformance! {
fn contact_filter_uses_any_address_of_the_contact_and_respects_visibility() {
    let mut world = world();
    world.replay(
        "dave@abcorp.com",
        "1",
        FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE,
    );
    world.replay("ceo@abcorp.com", "4", "From: alice@customer.org\nTo: ceo@abcorp.com\nSubject: Thanks\nMessage-ID: <alice-4@customer.org>\n\nbody\n");
    let erin = world.viewer("erin@abcorp.com");
    assert_eq!(
        world
            .store
            .feed(&erin, Some("ALICE@customer.com"), None)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        world
            .store
            .feed(&erin, Some("bob@bigclient.io"), None)
            .unwrap()
            .len(),
        0,
        "erin may not see bob"
    );
    let dave = world.viewer("dave@abcorp.com");
    assert_eq!(
        world
            .store
            .feed(&dave, Some("bob@bigclient.io"), None)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        world.store.feed(&erin, None, Some(1)).unwrap().len(),
        1,
        "limit"
    );
}
}

conformance! {
fn contacts_upsert_merges_addresses_and_rejects_conflicts() {
    let world = world();
    let change = world
        .store
        .upsert_contact(&NewContact {
            name: Some("Alice C.".into()),
            emails: vec!["alice@customer.com".into(), "alice@customer.net".into()],
            visible_to: None,
            no_sync: None,
        })
        .unwrap();
    assert!(matches!(change, mailsync::store::ContactChange::Updated(_)));
    let alice = world
        .store
        .list_contacts()
        .unwrap()
        .into_iter()
        .find(|c| c.name.as_deref() == Some("Alice C."))
        .unwrap();
    assert_eq!(
        alice.emails,
        vec![
            "alice@customer.com",
            "alice@customer.net",
            "alice@customer.org"
        ]
    );
    let conflict = world.store.upsert_contact(&NewContact {
        name: None,
        emails: vec!["alice@customer.com".into(), "bob@bigclient.io".into()],
        visible_to: None,
        no_sync: None,
    });
    assert!(conflict.is_err());
    assert!(
        world
            .store
            .add_contact(&NewContact {
                name: None,
                emails: vec!["bob@bigclient.io".into()],
                visible_to: None,
                no_sync: None,
            })
            .is_err()
    );
}
}

conformance! {
fn contact_book_finds_only_contact_addresses_and_never_sync_ones() {
    let world = world();
    let book = world
        .store
        .contact_book(&[
            "alice@customer.org".to_string(),
            "nobody@x.example".to_string(),
        ])
        .unwrap();
    assert_eq!(
        book.contacts,
        HashSet::from(["alice@customer.org".to_string()])
    );
    assert!(book.never_sync.is_empty());
    let alice = world
        .store
        .set_contact_no_sync("alice@customer.com", true)
        .unwrap()
        .expect("alice is a contact");
    assert!(alice.no_sync);
    let book = world
        .store
        .contact_book(&["alice@customer.org".to_string()])
        .unwrap();
    assert_eq!(
        book.never_sync,
        HashSet::from(["alice@customer.org".to_string()]),
        "the switch covers every address of the contact"
    );
    assert_eq!(
        world.store.never_sync_addresses().unwrap(),
        vec!["alice@customer.com", "alice@customer.org"]
    );
    assert!(
        !world
            .store
            .candidate_addresses()
            .unwrap()
            .contains(&"alice@customer.com".to_string())
    );
    assert!(
        world
            .store
            .set_contact_no_sync("nobody@x.example", true)
            .unwrap()
            .is_none()
    );
}
}

#[test]
fn reopening_the_store_keeps_data_and_schema() {
    let mut world = world();
    world.replay(
        "dave@abcorp.com",
        "1",
        FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE,
    );
    let path = world.path.clone();
    drop(world.store);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.counts().unwrap().activities, 1);
    let read_only = SqliteStore::open_read_only_or_empty(&path).unwrap();
    assert_eq!(read_only.counts().unwrap().contacts, 3);
    // Decisions made through the pure function match what the pipeline recorded.
    let policy = common::policy(CONFIG, RULES);
    let user = policy.config.user_by_address("dave@abcorp.com").unwrap();
    let parsed = parse_message(FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE.as_bytes()).unwrap();
    let known = read_only
        .contact_book(&["alice@customer.com".into(), "bob@bigclient.io".into()])
        .unwrap();
    let decision = decide(&policy, user, &[], Ok(&parsed), &known);
    assert_eq!(decision.reason.as_str(), "synced");
}

conformance! {
/// Regression (found in the security review): a message that reuses the Message-ID of a
/// private activity must not merge into it, or the private content would be shown under the
/// forger's visibility.
fn a_reused_message_id_does_not_merge_into_or_reveal_a_private_activity() {
    let mut world = world();
    // The CEO's private mail with the bookkeeper.
    world.replay("ceo@abcorp.com", "1", "From: jan@bookkeeper.nl\nTo: ceo@abcorp.com\nSubject: Salary statement\nDate: Wed, 04 Sep 2024 09:00:00 +0000\nMessage-ID: <secret@bookkeeper.nl>\n\nthe numbers\n");
    // Someone sends Michelle (visible by her setting) mail from a customer with the same id.
    world.replay("michelle@abcorp.com", "2", "From: alice@customer.com\nTo: michelle@abcorp.com\nSubject: Hello\nDate: Thu, 05 Sep 2024 09:00:00 +0000\nMessage-ID: <secret@bookkeeper.nl>\n\nhi\n");
    assert_eq!(
        world.store.counts().unwrap().activities,
        2,
        "different content: two activities"
    );
    let erin = world.viewer("erin@abcorp.com");
    for activity in world.store.feed(&erin, None, None).unwrap() {
        assert_ne!(activity.subject.as_deref(), Some("Salary statement"));
        assert_ne!(activity.body.as_deref(), Some("the numbers\n"));
    }
    // A true copy (same content) in another mailbox still merges.
    world.replay("dave@abcorp.com", "3", "From: jan@bookkeeper.nl\nTo: ceo@abcorp.com, dave@abcorp.com\nSubject: Salary statement\nDate: Wed, 04 Sep 2024 09:00:00 +0000\nMessage-ID: <secret@bookkeeper.nl>\n\nthe numbers\n");
    assert_eq!(world.store.counts().unwrap().activities, 2);
    // Replaying the forged one again neither duplicates nor merges it.
    world.replay("michelle@abcorp.com", "2", "From: alice@customer.com\nTo: michelle@abcorp.com\nSubject: Hello\nDate: Thu, 05 Sep 2024 09:00:00 +0000\nMessage-ID: <secret@bookkeeper.nl>\n\nhi\n");
    assert_eq!(world.store.counts().unwrap().activities, 2);
}
}

#[test]
fn a_new_store_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/crm.sqlite3");
    SqliteStore::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

conformance! {
/// Search goes through the read path: words inside content withheld from a viewer never
/// match for that viewer, and match for those who may read it.
fn search_never_matches_words_in_content_withheld_from_the_viewer() {
    let mut world = world();
    // Private (Dave's setting), Bob is Dave's contact only, content only for Dave.
    world.replay("dave@abcorp.com", "2", "From: bob@bigclient.io\nTo: dave@abcorp.com\nSubject: Merger codename Falcon\nDate: Tue, 03 Sep 2024 09:00:00 +0000\nMessage-ID: <bob-2@bigclient.io>\n\nbudget figures\n");
    // Visible (Michelle's setting), Alice visible to all.
    world.replay("michelle@abcorp.com", "1", "From: alice@customer.com\nTo: michelle@abcorp.com\nSubject: Falcon renewal\nDate: Wed, 04 Sep 2024 09:00:00 +0000\nMessage-ID: <alice-1@customer.com>\n\nrenewal terms\n");
    let ids = |viewer: Viewer, words: &str| -> Vec<String> {
        world
            .store
            .search(&viewer, words, None)
            .unwrap()
            .into_iter()
            .map(|a| a.message_id.unwrap())
            .collect()
    };
    assert_eq!(
        ids(world.viewer("dave@abcorp.com"), "falcon"),
        vec!["<alice-1@customer.com>", "<bob-2@bigclient.io>"]
    );
    assert_eq!(
        ids(world.viewer("dave@abcorp.com"), "budget"),
        vec!["<bob-2@bigclient.io>"]
    );
    // Michelle (admin) sees Bob's activity but not its content: its words do not match.
    assert_eq!(
        ids(world.viewer("michelle@abcorp.com"), "falcon"),
        vec!["<alice-1@customer.com>"]
    );
    assert!(ids(world.viewer("michelle@abcorp.com"), "budget").is_empty());
    // With the account setting, the admin reads private content, and may find it.
    assert_eq!(
        ids(world.viewer_with("michelle@abcorp.com", true), "budget"),
        vec!["<bob-2@bigclient.io>"]
    );
    // Erin may not see Bob at all.
    assert!(ids(world.viewer("erin@abcorp.com"), "budget").is_empty());
    assert!(
        ids(
            world.viewer("erin@abcorp.com"),
            "\"; DROP TABLE activities; --"
        )
        .is_empty(),
        "query text is data"
    );
    assert_eq!(world.store.counts().unwrap().activities, 2);
}
}

conformance! {
/// Regression: a departed user's stored mail escaped retroactive rules, so a new skip rule or
/// a contact marked never-sync left it in colleagues' feeds until someone purged it. Rules
/// without a `users` scope and never-sync contacts reach it; what no rule decides keeps the
/// visibility it was stored with (the user's `emails_visible` left with them).
fn retroactive_rules_reach_the_stored_mail_of_a_user_who_left_the_config() {
    let mut world = world();
    // Erin's mail (private by her default setting), each with a party the rules below match.
    world.replay("erin@abcorp.com", "1", "From: alice@customer.com\nTo: erin@abcorp.com\nCc: nurse@clinic.example\nSubject: Appointment\nDate: Mon, 02 Sep 2024 09:00:00 +0000\nMessage-ID: <clinic-1@customer.com>\n\nbody\n");
    world.replay("erin@abcorp.com", "2", "From: alice@customer.com\nTo: erin@abcorp.com\nCc: someone@scoped.example\nSubject: Scoped\nDate: Tue, 03 Sep 2024 09:00:00 +0000\nMessage-ID: <scoped-2@customer.com>\n\nbody\n");
    world.replay("erin@abcorp.com", "3", "From: bob@bigclient.io\nTo: erin@abcorp.com\nSubject: Bob\nDate: Wed, 04 Sep 2024 09:00:00 +0000\nMessage-ID: <bob-3@bigclient.io>\n\nbody\n");
    world.replay("erin@abcorp.com", "4", "From: alice@customer.org\nTo: erin@abcorp.com\nSubject: Kept\nDate: Thu, 05 Sep 2024 09:00:00 +0000\nMessage-ID: <kept-4@customer.org>\n\nbody\n");
    let michelle = world.viewer("michelle@abcorp.com");
    assert_eq!(world.store.feed(&michelle, None, None).unwrap().len(), 4);

    // Erin leaves the config (not purged yet); an unscoped skip rule and one scoped to Dave
    // are added, and Bob is marked never-sync.
    let departed = CONFIG.replace("[[users]]\nemail = \"erin@abcorp.com\"\nsync = true\n", "");
    assert_ne!(departed, CONFIG);
    world.policy = common::policy(
        &departed,
        &format!(
            "{RULES}\n[[rule]]\nname = \"no clinics\"\nmatch = {{ domain = \"clinic.example\" }}\naction = \"skip\"\n\n\
             [[rule]]\nname = \"dave: no scoped\"\nmatch = {{ domain = \"scoped.example\" }}\naction = \"skip\"\nusers = [\"dave@abcorp.com\"]\n"
        ),
    );
    world
        .store
        .set_contact_no_sync("bob@bigclient.io", true)
        .unwrap();

    let applied = sync::retro::apply(&world.policy, &*world.store, false).unwrap();
    let mut removed: Vec<(String, Vec<String>)> = applied
        .changes
        .iter()
        .map(|change| match change {
            mailsync::store::SourceChange::Remove { source, rules, .. } => {
                (source.message_id.clone().unwrap(), rules.clone())
            }
            other => panic!("only removals expected, got {other:?}"),
        })
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        vec![
            (
                "<bob-3@bigclient.io>".to_string(),
                vec!["contact: never sync".to_string()]
            ),
            (
                "<clinic-1@customer.com>".to_string(),
                vec!["no clinics".to_string()]
            ),
        ],
        "a rule scoped to another user does not reach erin's mail; private stays private"
    );
    assert_eq!(applied.applied.unwrap().activities_removed, 2);
    let mut left: Vec<(String, bool)> = world
        .store
        .feed(&michelle, None, None)
        .unwrap()
        .into_iter()
        .map(|a| (a.message_id.unwrap(), a.private))
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            ("<kept-4@customer.org>".to_string(), true),
            ("<scoped-2@customer.com>".to_string(), true),
        ]
    );
    // Erin's decision log says why, as for anyone's mailbox.
    let log = world.store.decision_log("erin@abcorp.com", None).unwrap();
    let blocked: Vec<&str> = log
        .iter()
        .filter(|d| d.reason == "blocked_by_rule")
        .map(|d| d.source_id.as_str())
        .collect();
    assert_eq!(blocked, vec!["1", "3"]);
    // Nothing more to do.
    assert!(
        sync::retro::plan(&world.policy, &*world.store)
            .unwrap()
            .changes
            .is_empty()
    );
    // A departed user's visibility only narrows. An unscoped visible rule does not open mail
    // that was private: what made it private (here her emails_visible = false; it could have
    // been a private rule scoped to her) left with her and can no longer be weighed.
    let visible = "[[rule]]\nname = \"customer.org visible\"\nmatch = { domain = \"customer.org\" }\naction = \"visible\"\n";
    let private = visible.replace("visible", "private");
    world.policy = common::policy(&departed, visible);
    let changes = sync::retro::plan(&world.policy, &*world.store)
        .unwrap()
        .changes;
    assert!(changes.is_empty(), "private stays private: {changes:?}");
    // Mail that was visible while she was here stays visible, and an unscoped private rule
    // closes it.
    world.policy = common::policy(CONFIG, visible);
    sync::retro::apply(&world.policy, &*world.store, false).unwrap();
    world.policy = common::policy(&departed, visible);
    assert!(
        sync::retro::plan(&world.policy, &*world.store)
            .unwrap()
            .changes
            .is_empty(),
        "visible stays visible"
    );
    world.policy = common::policy(&departed, &private);
    let changes = sync::retro::plan(&world.policy, &*world.store)
        .unwrap()
        .changes;
    assert!(
        matches!(
            changes.as_slice(),
            [mailsync::store::SourceChange::SetVisibility { source, visibility: mailsync::rules::Visibility::Private, .. }]
                if source.message_id.as_deref() == Some("<kept-4@customer.org>")
        ),
        "{changes:?}"
    );
}
}

fn carol() -> NewContact {
    NewContact {
        emails: vec!["carol@newco.example".to_string()],
        ..NewContact::default()
    }
}

/// The addresses `user`'s mailbox still has to backfill; `None` when it has no mark.
fn pending(store: &dyn Store, user: &str) -> Option<Vec<String>> {
    store
        .pending_backfill(user, 1_000)
        .unwrap()
        .map(|pending| pending.addresses)
}

conformance! {
/// Regressions: a contact added while a mailbox's first full sync was under way (past reading
/// the contact addresses for its candidate search), or while a user's sync was off, was never
/// backfilled for that mailbox. Every mailbox now backfills what was added after its mark,
/// whether its sync is on or off; a first sync places the mark as it starts, so a new mailbox
/// does not search for the contacts it already saw, and a re-sync keeps its mark.
fn backfill_marks_reach_first_syncs_and_paused_mailboxes_and_a_first_sync_skips_what_it_saw() {
    let mut world = world();
    // Dave synced before (his sync is off now); Michelle's first sync is under way.
    assert!(world.store.place_backfill_mark("dave@abcorp.com").unwrap());
    world.replay(
        "dave@abcorp.com",
        "1",
        FROM_ALICE_AND_BOB_TO_DAVE_AND_MICHELLE,
    );
    assert!(
        world
            .store
            .place_backfill_mark("michelle@abcorp.com")
            .unwrap()
    );
    world.store.add_contact(&carol()).unwrap();

    let carol_only = Some(vec!["carol@newco.example".to_string()]);
    assert_eq!(pending(&*world.store, "michelle@abcorp.com"), carol_only);
    assert_eq!(
        pending(&*world.store, "dave@abcorp.com"),
        carol_only,
        "backfilled when dave's sync is back on"
    );
    assert_eq!(
        pending(&*world.store, "erin@abcorp.com"),
        None,
        "erin has not started syncing"
    );
    // Erin's first sync starting now sees carol; Dave's re-sync (history expired) keeps his
    // mark: his earlier decisions were made without carol.
    assert!(world.store.place_backfill_mark("erin@abcorp.com").unwrap());
    assert_eq!(pending(&*world.store, "erin@abcorp.com"), Some(vec![]));
    assert!(!world.store.place_backfill_mark("dave@abcorp.com").unwrap());
    assert_eq!(pending(&*world.store, "dave@abcorp.com"), carol_only);

    // Done once: Dave's mark moves past carol; Michelle's does not, and holds the event.
    let through = world
        .store
        .pending_backfill("dave@abcorp.com", 10)
        .unwrap()
        .unwrap()
        .through
        .unwrap();
    world
        .store
        .finish_backfill("dave@abcorp.com", through)
        .unwrap();
    assert_eq!(pending(&*world.store, "dave@abcorp.com"), Some(vec![]));
    assert_eq!(pending(&*world.store, "michelle@abcorp.com"), carol_only);
    // A mark never goes back.
    world.store.finish_backfill("dave@abcorp.com", 0).unwrap();
    assert_eq!(pending(&*world.store, "dave@abcorp.com"), Some(vec![]));
}
}

conformance! {
/// The moment a first sync places its mark divides the contacts: one stored before is seen
/// by that sync (its candidate search reads the addresses after the mark), one added after
/// is left to the backfill, even while the sync runs.
fn a_contact_added_after_a_first_sync_placed_its_mark_is_pending_and_one_added_before_is_not() {
    let world = world();
    world
        .store
        .add_contact(&NewContact {
            emails: vec!["before@newco.example".to_string()],
            ..NewContact::default()
        })
        .unwrap();
    assert!(world.store.place_backfill_mark("erin@abcorp.com").unwrap());
    assert_eq!(pending(&*world.store, "erin@abcorp.com"), Some(vec![]));
    world
        .store
        .add_contact(&NewContact {
            emails: vec![
                "after@newco.example".to_string(),
                "after@newco.org".to_string(),
            ],
            ..NewContact::default()
        })
        .unwrap();
    assert_eq!(
        pending(&*world.store, "erin@abcorp.com"),
        Some(vec![
            "after@newco.example".to_string(),
            "after@newco.org".to_string()
        ])
    );
    // A never-sync change needs nothing from a mailbox, but is read, and the mark moves
    // past it.
    world
        .store
        .set_contact_no_sync("before@newco.example", true)
        .unwrap()
        .unwrap();
    let read = world
        .store
        .pending_backfill("erin@abcorp.com", 10)
        .unwrap()
        .unwrap();
    assert_eq!(read.addresses.len(), 2);
    world
        .store
        .finish_backfill("erin@abcorp.com", read.through.unwrap())
        .unwrap();
    assert_eq!(
        world.store.pending_backfill("erin@abcorp.com", 10).unwrap(),
        Some(mailsync::store::PendingBackfill::default())
    );
    // A round reads a bounded number of events; the rest wait for the next.
    world.store.add_contact(&carol()).unwrap();
    world
        .store
        .add_contact(&NewContact {
            emails: vec!["dora@newco.example".to_string()],
            ..NewContact::default()
        })
        .unwrap();
    let first = world
        .store
        .pending_backfill("erin@abcorp.com", 1)
        .unwrap()
        .unwrap();
    assert_eq!(first.addresses, ["carol@newco.example"]);
    world
        .store
        .finish_backfill("erin@abcorp.com", first.through.unwrap())
        .unwrap();
    assert_eq!(
        pending(&*world.store, "erin@abcorp.com"),
        Some(vec!["dora@newco.example".to_string()])
    );
}
}

conformance! {
/// Regression (benchmark, 10,000 users): backfill was one row per (mailbox, new address), so
/// a large import wrote users × addresses rows, 10,000,000 for 1,000 contacts, and the first
/// cycle took two minutes. Now no table grows with that product: every mailbox still has every
/// address pending, from rows that number users + addresses.
fn many_mailboxes_and_many_new_contacts_leave_rows_for_each_not_for_each_pair() {
    const USERS: usize = 2_000;
    const ADDRESSES: usize = 500;
    let world = world();
    let users: Vec<String> = (0..USERS).map(|i| format!("user{i}@abcorp.com")).collect();
    for user in &users {
        world.store.place_backfill_mark(user).unwrap();
    }
    for i in 0..ADDRESSES {
        world
            .store
            .add_contact(&NewContact {
                emails: vec![format!("contact{i}@import.example")],
                ..NewContact::default()
            })
            .unwrap();
    }
    let rows = |table: &str| {
        world
            .dump()
            .iter()
            .filter(|line| line.starts_with(&format!("{table}: ")))
            .count()
    };
    let dump = world.dump();
    let tables: HashSet<&str> = dump
        .iter()
        .filter_map(|line| line.split(": ").next())
        .collect();
    // The world's own contacts and the new ones, once each.
    let world_addresses = 4;
    for table in &tables {
        assert!(
            rows(table) <= USERS + ADDRESSES + world_addresses + 1,
            "{table} holds {} rows",
            rows(table)
        );
    }
    assert_eq!(rows("backfill_marks"), USERS);
    assert_eq!(rows("contact_events"), world_addresses + ADDRESSES);

    for user in &users {
        let pending = world.store.pending_backfill(user, 1).unwrap().unwrap();
        assert_eq!(pending.addresses, ["contact0@import.example"], "{user}");
    }
    let last = world
        .store
        .pending_backfill(&users[USERS - 1], ADDRESSES)
        .unwrap()
        .unwrap();
    assert_eq!(last.addresses.len(), ADDRESSES);

    // Once the daemon and every mailbox are past them, the events go.
    let through = last.through.unwrap();
    let events = world.store.contact_events(10_000).unwrap();
    assert_eq!(events.addresses_added as usize, world_addresses + ADDRESSES);
    world
        .store
        .finish_contact_events(events.through.unwrap())
        .unwrap();
    for user in &users[..USERS - 1] {
        world.store.finish_backfill(user, through).unwrap();
    }
    assert_eq!(
        rows("contact_events"),
        ADDRESSES,
        "the last mailbox still needs them (the world's own, behind every mark, are gone)"
    );
    world
        .store
        .finish_backfill(&users[USERS - 1], through)
        .unwrap();
    assert_eq!(rows("contact_events"), 0);
    // And a mailbox whose first sync starts now is past them too.
    world.store.place_backfill_mark("late@abcorp.com").unwrap();
    assert_eq!(pending(&*world.store, "late@abcorp.com"), Some(vec![]));
}
}

conformance! {
/// The daemon reads the log from its own mark: a never-sync change is reported once, and
/// nothing is pending after it (the supervisor's turn with nothing new does nothing more).
fn the_daemon_reads_each_contact_change_once() {
    let world = world();
    let events = world.store.contact_events(10_000).unwrap();
    assert_eq!((events.addresses_added, events.no_sync_changed), (4, 0));
    world
        .store
        .finish_contact_events(events.through.unwrap())
        .unwrap();
    assert_eq!(
        world.store.contact_events(10_000).unwrap(),
        mailsync::store::ContactEvents::default()
    );
    world
        .store
        .set_contact_no_sync("jan@bookkeeper.nl", true)
        .unwrap()
        .unwrap();
    world.store.add_contact(&carol()).unwrap();
    let events = world.store.contact_events(10_000).unwrap();
    assert_eq!((events.addresses_added, events.no_sync_changed), (1, 1));
    world
        .store
        .finish_contact_events(events.through.unwrap())
        .unwrap();
    assert_eq!(world.store.contact_events(10_000).unwrap().through, None);
}
}

conformance! {
/// A CRM writes `contact_emails` itself, maybe as `Dan@Later.Example`: the store keeps it
/// trimmed and lower-cased, so it matches mail, is backfilled, and its visibility applies.
fn contact_addresses_the_crm_writes_in_mixed_case_are_stored_lower_cased() {
    let mut world = world();
    world.store.place_backfill_mark("dave@abcorp.com").unwrap();
    let dan = world.crm_number("INSERT INTO contacts (name, created_at) VALUES ('Dan', 0) RETURNING id");
    world
        .crm_execute(&format!(
            "INSERT INTO contact_emails (email, contact_id) VALUES (' Dan@Later.Example', {dan})"
        ))
        .unwrap();
    world
        .crm_execute(&format!(
            "INSERT INTO contact_visible_to (contact_id, user_email) VALUES ({dan}, 'Dave@AbCorp.com')"
        ))
        .unwrap();
    let listed = world
        .store
        .list_contacts()
        .unwrap()
        .into_iter()
        .find(|c| c.id == dan)
        .unwrap();
    assert_eq!(listed.emails, ["dan@later.example"]);
    assert_eq!(listed.visible_to, ["dave@abcorp.com"]);
    assert_eq!(
        pending(&*world.store, "dave@abcorp.com"),
        Some(vec!["dan@later.example".to_string()])
    );
    let processed = world.replay("dave@abcorp.com", "dan", "From: dan@later.example\nTo: dave@abcorp.com\nSubject: Hello\nDate: Tue, 03 Sep 2024 09:00:00 +0000\nMessage-ID: <dan@later.example>\n\nbody\n");
    assert_eq!(processed.decision.reason.as_str(), "synced");
    let shown = |email: &str| {
        world
            .store
            .feed(&world.viewer(email), Some("DAN@later.example"), None)
            .unwrap()
            .len()
    };
    assert_eq!(shown("dave@abcorp.com"), 1);
    assert_eq!(shown("erin@abcorp.com"), 0, "dan is dave's contact only");
    // An address the CRM changes in place is stored lower-cased too, and backfilled as new.
    world
        .crm_execute(&format!(
            "UPDATE contact_emails SET email = 'Daniel@Later.Example' WHERE contact_id = {dan}"
        ))
        .unwrap();
    assert!(
        pending(&*world.store, "dave@abcorp.com")
            .unwrap()
            .contains(&"daniel@later.example".to_string())
    );
    // One address, one contact, whatever its case.
    assert!(
        world
            .crm_execute(&format!(
                "INSERT INTO contact_emails (email, contact_id) VALUES ('ALICE@customer.com', {dan})"
            ))
            .is_err()
    );
}
}

conformance! {
/// Purge takes the mailbox's backfill state with it (its mark, which would otherwise hold
/// contact changes back for a mailbox that is gone), and keeps the access log: who read what
/// stays on record.
fn purge_removes_the_mailboxs_backfill_mark_and_keeps_the_access_log() {
    let world = read_path_world();
    for user in ["dave@abcorp.com", "ceo@abcorp.com"] {
        world.store.place_backfill_mark(user).unwrap();
    }
    world.store.add_contact(&carol()).unwrap();
    let carol_only = Some(vec!["carol@newco.example".to_string()]);
    assert_eq!(pending(&*world.store, "dave@abcorp.com"), carol_only);
    // The admin, allowed to, reads Dave's private mail: recorded.
    world
        .store
        .feed(&world.viewer_with("michelle@abcorp.com", true), None, None)
        .unwrap();
    let log = world.store.access_log(None, None).unwrap();
    assert!(
        log.iter()
            .any(|r| r.message_id.as_deref() == Some("<bob-2@bigclient.io>")),
        "{log:?}"
    );
    world.store.purge_user("dave@abcorp.com").unwrap();
    assert_eq!(pending(&*world.store, "dave@abcorp.com"), None);
    let marks = world.crm_number("SELECT count(*) FROM backfill_marks WHERE user_email = 'dave@abcorp.com'");
    assert_eq!(marks, 0, "no backfill state left for the purged mailbox");
    assert_eq!(
        pending(&*world.store, "ceo@abcorp.com"),
        carol_only,
        "only the purged mailbox's backfill goes"
    );
    assert_eq!(world.store.access_log(None, None).unwrap(), log);
}
}

/// The schema up to version 12, when backfill was one `backfill_tasks` row per (mailbox,
/// address), applied to `path`.
fn store_at_schema_12(path: &std::path::Path) -> rusqlite::Connection {
    use rusqlite_migration::{M, Migrations};
    let mut connection = rusqlite::Connection::open(path).unwrap();
    Migrations::new(vec![
        M::up(include_str!(
            "../../src/store/sqlite/migrations/001_initial.sql"
        )),
        M::up(include_str!(
            "../../src/store/sqlite/migrations/002_oauth_tokens.sql"
        )),
        M::up(include_str!(
            "../../src/store/sqlite/migrations/003_health_and_notifications.sql"
        )),
        M::up(include_str!(
            "../../src/store/sqlite/migrations/004_verify.sql"
        )),
        M::up(include_str!(
            "../../src/store/sqlite/migrations/005_fingerprint.sql"
        )),
        M::up(include_str!(
            "../../src/store/sqlite/migrations/006_source_parties.sql"
        )),
        M::up(include_str!(
            "../../src/store/sqlite/migrations/007_search.sql"
        )),
        M::up(include_str!(
            "../../src/store/sqlite/migrations/008_contact_controls_and_backfill.sql"
        )),
        M::up(include_str!(
            "../../src/store/sqlite/migrations/009_retention.sql"
        )),
        M::up(include_str!(
            "../../src/store/sqlite/migrations/010_access_log.sql"
        )),
        M::up(include_str!(
            "../../src/store/sqlite/migrations/011_attachment_content.sql"
        )),
        M::up(include_str!(
            "../../src/store/sqlite/migrations/012_contact_addresses_lower_case.sql"
        )),
    ])
    .to_latest(&mut connection)
    .unwrap();
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 12);
    connection
}

/// Upgrading a store whose daemon had queued backfill tasks loses none of that work: the
/// mailboxes that had tasks (and had synced) backfill those addresses, events not drained yet
/// reach every mailbox that had synced, a mailbox whose first sync had not started is left to
/// that sync, and a never-sync change not applied yet is still applied.
#[test]
fn the_migration_to_marks_keeps_pending_backfill_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.sqlite3");
    {
        let old = store_at_schema_12(&path);
        let contact = |name: &str, email: &str| {
            old.execute(
                "INSERT INTO contacts (name, created_at) VALUES (?1, 0)",
                [name],
            )
            .unwrap();
            let id = old.last_insert_rowid();
            old.execute(
                "INSERT INTO contact_emails (email, contact_id) VALUES (?1, ?2)",
                rusqlite::params![email, id],
            )
            .unwrap();
            id
        };
        contact("Carol", "carol@newco.example");
        let dora = contact("Dora", "dora@newco.example");
        // Drained by the old daemon: carol and dora became tasks.
        old.execute("DELETE FROM contact_events", []).unwrap();
        let decided = |user: &str| {
            old.execute(
                "INSERT INTO decisions (user_email, source, source_id, decision, reason, decided_at)
                 VALUES (?1, 'gmail', 'm1', 'skipped', 'no_qualifying_party', 0)",
                [user],
            )
            .unwrap();
        };
        let task = |user: &str, email: &str, created_at: i64| {
            old.execute(
                "INSERT INTO backfill_tasks (user_email, email, created_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![user, email, created_at],
            )
            .unwrap();
        };
        // Dave had synced and still had both to do; the CEO had done them.
        decided("dave@abcorp.com");
        task("dave@abcorp.com", "dora@newco.example", 2);
        task("dave@abcorp.com", "carol@newco.example", 1);
        decided("ceo@abcorp.com");
        // Erin's mailbox was empty: a cursor, no decisions, and carol to do.
        old.execute(
            "INSERT INTO sync_state (user_email, history_id) VALUES ('erin@abcorp.com', '7')",
            [],
        )
        .unwrap();
        task("erin@abcorp.com", "carol@newco.example", 1);
        // Michelle's first sync had not started: it would have dropped her task.
        task("michelle@abcorp.com", "carol@newco.example", 1);
        // A task whose address is gone from the contacts since is still done, as it was.
        task("dave@abcorp.com", "gone@newco.example", 3);
        // Written after the last drain: a new address and a never-sync switch.
        contact("Eve", "eve@newco.example");
        old.execute("UPDATE contacts SET no_sync = 1 WHERE id = ?1", [dora])
            .unwrap();
    }

    let store = SqliteStore::open(&path).unwrap();
    let addresses = |list: &[&str]| Some(list.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    assert_eq!(
        pending(&store, "dave@abcorp.com"),
        addresses(&[
            "eve@newco.example",
            "carol@newco.example",
            "dora@newco.example",
            "gone@newco.example"
        ])
    );
    assert_eq!(
        pending(&store, "erin@abcorp.com"),
        addresses(&[
            "eve@newco.example",
            "carol@newco.example",
            "dora@newco.example",
            "gone@newco.example"
        ]),
        "erin keeps carol and gets eve (her mailbox was empty, with a cursor); dora and gone she redoes once"
    );
    assert_eq!(
        pending(&store, "ceo@abcorp.com"),
        pending(&store, "dave@abcorp.com"),
        "the ceo redoes carol and dora once: the migration cannot tell who had done what"
    );
    assert_eq!(
        pending(&store, "michelle@abcorp.com"),
        None,
        "michelle's first sync places her mark"
    );
    let events = store.contact_events(10_000).unwrap();
    assert_eq!((events.addresses_added, events.no_sync_changed), (4, 1));
    let crm = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = crm
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'backfill_tasks'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
    let gone_contact: i64 = crm
        .query_row(
            "SELECT contact_id FROM contact_events WHERE email = 'gone@newco.example'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(gone_contact, 0);
}
