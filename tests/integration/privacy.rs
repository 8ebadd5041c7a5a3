//! Privacy controls through the store, on each backend: retention erases content (and
//! its search terms and files) for good, the access log records exactly the reads it should,
//! and attachment content is kept content-addressed and shown only to who may see it.

use crate::common;
use crate::conformance;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use mailsync::store::{NewContact, Recorded, Viewer};
use mailsync::sync;

use common::world::World;

fn config(attachments_dir: &Path, extra: &str) -> String {
    format!(
        r#"
[company]
domains = ["abcorp.com"]
admins_see_private_emails = true
[store]
path = "unused.sqlite3"
attachments_dir = "{}"
max_attachment_bytes = 1000
{extra}
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
email = "erin@abcorp.com"
sync = true
emails_visible = false
"#,
        attachments_dir.display()
    )
}

/// The privacy tests' world: attachment content kept in its own folder, `extra` in
/// `[store]`, and Alice as a contact.
fn world_with(extra: &str) -> World {
    World::in_folder(|folder| config(&folder.join("attachments"), extra), "").with_contact(
        NewContact {
            name: Some("Alice".to_string()),
            emails: vec!["alice@customer.com".to_string()],
            visible_to: None,
            no_sync: None,
        },
    )
}

fn world() -> World {
    world_with("")
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// A private message (dave's emails are private) from a contact, dated `date`, with two
/// attachments named by an attacker: `../../etc/passwd` and `/abs`, and one too large to keep.
fn private_mail(message_id: &str, date: &str, attachment: &str) -> String {
    use base64::Engine;
    let big = "x".repeat(2000);
    format!(
        "From: Alice <alice@customer.com>\nTo: dave@abcorp.com\nSubject: Quarterly zanzibar figures\n\
         Date: {date}\nMessage-ID: <{message_id}>\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b\"\n\n\
         --b\nContent-Type: text/plain\n\nThe confidential marmalade numbers.\n\
         --b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"../../etc/passwd\"\n\
         Content-Transfer-Encoding: base64\n\n{}\n\
         --b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=\"/abs\"\n\n{attachment}-second\n\
         --b\nContent-Type: application/zip\nContent-Disposition: attachment; filename=\"big.zip\"\n\n{big}\n\
         --b--\n",
        base64::engine::general_purpose::STANDARD.encode(attachment)
    )
}

const OLD: &str = "Mon, 02 Sep 2024 09:15:00 +0000";

fn recent() -> String {
    (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc2822()
}

conformance! {
fn attachment_content_is_stored_by_hash_never_by_name() {
    let world = &mut world();
    world.replay(
        "dave@abcorp.com",
        "1",
        &private_mail("a@x", &recent(), "root:x:0:0"),
    );
    let first = sha256(b"root:x:0:0");
    let second = sha256(b"root:x:0:0-second");
    let mut expected = vec![
        format!("{}/{first}", &first[..2]),
        format!("{}/{second}", &second[..2]),
    ];
    expected.sort();
    assert_eq!(
        world.files(),
        expected,
        "named by hash only; the big one is not kept"
    );
    assert!(!world.dir.path().join("etc/passwd").exists());
    assert!(!Path::new("/abs").exists());
    let root = world.attachments_dir();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join(&first[..2])), 0o700);
    assert_eq!(mode(&root.join(&first[..2]).join(&first)), 0o600);

    let dave = world.viewer("dave@abcorp.com");
    let feed = world.store.feed(&dave, None, None).unwrap();
    let attachments = feed[0].attachments.as_ref().expect("the owner sees them");
    let names: Vec<_> = attachments.iter().map(|a| a.file_name.as_deref()).collect();
    assert_eq!(
        names,
        [Some("../../etc/passwd"), Some("/abs"), Some("big.zip")]
    );
    assert!(attachments[0].stored && !attachments[0].too_large);
    assert!(!attachments[2].stored && attachments[2].too_large);
    assert_eq!(attachments[2].size_bytes, 2000);
    assert_eq!(
        world
            .store
            .attachment_content(&dave, &first)
            .unwrap()
            .as_deref(),
        Some(&b"root:x:0:0"[..])
    );
    // Erin sees that the email happened (Alice is visible to everyone), not its attachments.
    let erin = world.viewer("erin@abcorp.com");
    let feed = world.store.feed(&erin, None, None).unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].attachments, None);
    assert_eq!(world.store.attachment_content(&erin, &first).unwrap(), None);
    // Not a hash: nothing, and no path is made of it.
    for hostile in ["../../etc/passwd", "/abs", &first.to_uppercase()] {
        assert_eq!(
            world.store.attachment_content(&dave, hostile).unwrap(),
            None
        );
    }
    // Recording the same mail again writes nothing new.
    world.replay(
        "dave@abcorp.com",
        "1",
        &private_mail("a@x", &recent(), "root:x:0:0"),
    );
    assert_eq!(world.files(), expected);
}
}

conformance! {
fn retention_erases_content_search_terms_and_files_and_keeps_metadata() {
    let world = &mut world();
    world.replay(
        "dave@abcorp.com",
        "old",
        &private_mail("old@x", OLD, "old content"),
    );
    world.replay(
        "dave@abcorp.com",
        "new",
        &private_mail("new@x", &recent(), "new content"),
    );
    // Shared content: the old mail's second attachment differs, but this one is the same as
    // the recent mail's, so its file must stay.
    world.replay(
        "dave@abcorp.com",
        "old-shared",
        &private_mail("old-shared@x", OLD, "new content"),
    );
    let dave = world.viewer("dave@abcorp.com");
    assert_eq!(
        world.store.search(&dave, "marmalade", None).unwrap().len(),
        3
    );
    assert_eq!(world.search_index_matches("zanzibar"), 3);
    let files_before = world.files().len();
    assert_eq!(files_before, 4);

    let cutoff = chrono::Utc::now().timestamp() - 30 * 86_400;
    let planned = world.store.erase_content_before(cutoff, true).unwrap();
    assert_eq!(planned.activities_erased, 2);
    assert_eq!(
        planned.attachment_files_removed, 2,
        "old content's two files"
    );
    assert_eq!(
        world.files().len(),
        files_before,
        "a dry run removes nothing"
    );

    let erased = world.store.erase_content_before(cutoff, false).unwrap();
    assert_eq!(erased, planned);
    let feed = world.store.feed(&dave, None, None).unwrap();
    assert_eq!(feed.len(), 3, "metadata stays");
    for activity in &feed {
        let old = activity.message_id.as_deref() != Some("<new@x>");
        assert_eq!(activity.subject.is_none(), old, "{activity:?}");
        assert_eq!(activity.body.is_none(), old);
        assert_eq!(activity.content_erased_at.is_some(), old);
        assert_eq!(activity.contacts, ["alice@customer.com"]);
        let attachments = activity.attachments.as_ref().unwrap();
        assert_eq!(attachments.len(), 3, "type, size and hash stay");
        if old {
            assert!(
                attachments
                    .iter()
                    .all(|a| a.file_name.is_none() && !a.stored)
            );
            assert_eq!(activity.date.as_deref(), Some("2024-09-02T09:15:00Z"));
        }
    }
    // Search no longer matches erased words, for anyone, and the index holds no terms.
    assert_eq!(
        world.store.search(&dave, "marmalade", None).unwrap().len(),
        1
    );
    assert_eq!(world.search_index_matches("zanzibar"), 1);
    assert_eq!(world.search_index_matches("passwd"), 1);
    assert_eq!(
        world.files().len(),
        2,
        "only the recent mail's files are left"
    );
    assert!(
        world
            .store
            .attachment_content(&dave, &sha256(b"new content"))
            .unwrap()
            .is_some(),
        "a file the recent mail also has stays"
    );
    assert_eq!(
        world
            .store
            .attachment_content(&dave, &sha256(b"old content"))
            .unwrap(),
        None
    );
    // Applying again finds nothing more.
    assert_eq!(
        world.store.erase_content_before(cutoff, false).unwrap(),
        Default::default()
    );
}
}

conformance! {
fn erased_content_stays_erased_when_the_message_is_synced_again() {
    let world = &mut world();
    let mail = private_mail("twice@x", OLD, "once").replace(
        "To: dave@abcorp.com",
        "To: dave@abcorp.com, erin@abcorp.com",
    );
    world.replay("dave@abcorp.com", "1", &mail);
    let cutoff = chrono::Utc::now().timestamp() - 30 * 86_400;
    world.store.erase_content_before(cutoff, false).unwrap();
    // Another mailbox (a verify repair, a late sync) brings the same message.
    let recorded = world.replay("erin@abcorp.com", "9", &mail).recorded;
    assert!(
        matches!(recorded, Some(Recorded::ExistingActivity(_))),
        "{recorded:?}"
    );
    // And the same mailbox again, as a replay would.
    world.replay("dave@abcorp.com", "1", &mail);
    for viewer in ["dave@abcorp.com", "erin@abcorp.com"] {
        let feed = world.store.feed(&world.viewer(viewer), None, None).unwrap();
        assert_eq!(feed.len(), 1);
        assert_eq!(feed[0].subject, None, "{viewer}");
        assert_eq!(feed[0].body, None);
        assert!(feed[0].content_erased_at.is_some());
        assert_eq!(feed[0].sources, ["dave@abcorp.com", "erin@abcorp.com"]);
    }
    assert_eq!(world.search_index_matches("marmalade"), 0);
    assert!(world.files().is_empty());
}
}

conformance! {
fn a_message_already_past_retention_is_stored_without_content() {
    let world = &mut world_with("[retention]\nbody_days = 30");
    world.replay("dave@abcorp.com", "1", &private_mail("late@x", OLD, "late"));
    world.replay(
        "dave@abcorp.com",
        "2",
        &private_mail("fresh@x", &recent(), "fresh"),
    );
    let feed = world
        .store
        .feed(&world.viewer("dave@abcorp.com"), None, None)
        .unwrap();
    let late = feed
        .iter()
        .find(|a| a.message_id.as_deref() == Some("<late@x>"))
        .unwrap();
    assert_eq!(late.subject, None);
    assert!(late.content_erased_at.is_some());
    let fresh = feed
        .iter()
        .find(|a| a.message_id.as_deref() == Some("<fresh@x>"))
        .unwrap();
    assert!(fresh.subject.is_some());
    assert_eq!(world.search_index_matches("zanzibar"), 1);
    assert_eq!(world.files().len(), 2, "only the fresh mail's files");
}
}

conformance! {
fn purge_removes_the_files_only_that_mailbox_kept() {
    let world = &mut world();
    world.replay(
        "dave@abcorp.com",
        "1",
        &private_mail("dave-only@x", &recent(), "dave's"),
    );
    let shared = private_mail("shared@x", &recent(), "shared").replace(
        "To: dave@abcorp.com",
        "To: dave@abcorp.com, erin@abcorp.com",
    );
    world.replay("dave@abcorp.com", "2", &shared);
    world.replay("erin@abcorp.com", "3", &shared);
    assert_eq!(world.files().len(), 4);
    let purged = world.store.purge_user("dave@abcorp.com").unwrap();
    assert_eq!(purged.activities_removed, 1);
    assert_eq!(purged.attachment_files_removed, 2);
    let erin = world.viewer("erin@abcorp.com");
    assert!(
        world
            .store
            .attachment_content(&erin, &sha256(b"shared"))
            .unwrap()
            .is_some()
    );
    assert_eq!(world.files().len(), 2);
}
}

conformance! {
fn the_access_log_records_exactly_admin_reads_of_private_content_and_exports() {
    let world = &mut world();
    world.replay(
        "dave@abcorp.com",
        "1",
        &private_mail("private@x", &recent(), "secret"),
    );
    // A visible message (michelle's mail is visible) is never logged.
    world.replay(
        "michelle@abcorp.com",
        "2",
        "From: michelle@abcorp.com\nTo: alice@customer.com\nSubject: Hi\nDate: Mon, 02 Sep 2024 09:15:00 +0000\nMessage-ID: <visible@x>\n\nhello\n",
    );
    let id = world
        .store
        .feed(&world.viewer("dave@abcorp.com"), None, None)
        .unwrap()
        .into_iter()
        .find(|a| a.private)
        .unwrap()
        .activity_id;
    assert!(
        world.access_rows().is_empty(),
        "the owner reading is not logged"
    );

    // A non-admin sees no content and leaves no row.
    let erin = world.viewer("erin@abcorp.com");
    let seen = world.store.feed(&erin, None, None).unwrap();
    assert!(
        seen.iter().any(|a| a.private),
        "erin sees the private activity's metadata"
    );
    assert!(seen.iter().all(|a| !a.private || a.subject.is_none()));
    assert!(
        world
            .store
            .search(&erin, "marmalade", None)
            .unwrap()
            .is_empty(),
        "words of content withheld from erin never match"
    );
    let exported = world.store.export(&erin, None).unwrap();
    assert!(exported.iter().any(|a| a.private));
    assert!(
        exported
            .iter()
            .all(|a| !a.private || (a.subject.is_none() && a.body.is_none()))
    );
    assert!(world.access_rows().is_empty());

    // The admin with admins_see_private_emails: one row per read, naming the path.
    let michelle = world.viewer("michelle@abcorp.com");
    let feed = world.store.feed(&michelle, None, None).unwrap();
    assert!(feed.iter().any(|a| a.private && a.subject.is_some()));
    let admin = |path: &str| {
        (
            "michelle@abcorp.com".to_string(),
            id,
            path.to_string(),
            false,
        )
    };
    assert_eq!(world.access_rows(), [admin("feed")]);
    world.store.feed(&michelle, None, None).unwrap();
    assert_eq!(world.access_rows(), [admin("feed"), admin("feed")]);
    assert_eq!(
        world
            .store
            .search(&michelle, "marmalade", None)
            .unwrap()
            .len(),
        1
    );
    world.store.export(&michelle, None).unwrap();
    assert!(
        world
            .store
            .attachment_content(&michelle, &sha256(b"secret"))
            .unwrap()
            .is_some()
    );
    assert_eq!(
        world.access_rows(),
        [
            admin("feed"),
            admin("feed"),
            admin("search"),
            admin("export"),
            admin("attachment")
        ]
    );

    // The same admin without the setting sees nothing private and leaves no row.
    let without = Viewer {
        admins_see_private_emails: false,
        ..michelle.clone()
    };
    let feed = world.store.feed(&without, None, None).unwrap();
    assert!(feed.iter().any(|a| a.private));
    assert!(feed.iter().all(|a| !a.private || a.subject.is_none()));
    assert_eq!(
        world
            .store
            .attachment_content(&without, &sha256(b"secret"))
            .unwrap(),
        None
    );
    assert_eq!(world.access_rows().len(), 5);

    // An owner's export of private content leaves the system: recorded too.
    let dave = world.viewer("dave@abcorp.com");
    world.store.export(&dave, None).unwrap();
    assert_eq!(
        world.access_rows().last().unwrap(),
        &(
            "dave@abcorp.com".to_string(),
            id,
            "export".to_string(),
            true
        )
    );
    assert_eq!(
        world
            .store
            .access_log(None, Some("dave@abcorp.com"))
            .unwrap()
            .len(),
        1
    );
    let future = chrono::Utc::now().timestamp() + 60;
    assert!(
        world
            .store
            .access_log(Some(future), None)
            .unwrap()
            .is_empty()
    );

    // Erased content is shown to nobody, so reading it is not recorded.
    let rows = world.access_rows().len();
    world
        .store
        .erase_content_before(chrono::Utc::now().timestamp() + 86_400, false)
        .unwrap();
    world.store.feed(&michelle, None, None).unwrap();
    assert_eq!(world.access_rows().len(), rows);
}
}

conformance! {
fn a_new_skip_rule_removes_the_files_of_the_activities_it_removes() {
    let world = &mut world();
    world.replay(
        "dave@abcorp.com",
        "1",
        &private_mail("skip@x", &recent(), "skipped"),
    );
    assert_eq!(world.files().len(), 2);
    let stricter = common::policy(
        &config(&world.attachments_dir(), ""),
        "[[rule]]\nname = \"no customer\"\nmatch = { domain = \"customer.com\" }\naction = \"skip\"\n",
    );
    let result = sync::retro::apply(&stricter, &*world.store, false).unwrap();
    assert_eq!(result.applied.unwrap().activities_removed, 1);
    assert!(world.files().is_empty());
}
}

conformance! {
fn retention_sweeps_files_a_crash_left_behind() {
    let world = &mut world();
    world.replay(
        "dave@abcorp.com",
        "1",
        &private_mail("kept@x", &recent(), "kept"),
    );
    let orphan = sha256(b"written, then the process died before the commit");
    let folder = world.attachments_dir().join(&orphan[..2]);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join(&orphan), b"orphan").unwrap();
    std::fs::write(folder.join(format!(".tmp-{orphan}-1-0")), b"half").unwrap();
    // Something that is not ours is left alone.
    std::fs::write(world.attachments_dir().join("README"), b"not ours").unwrap();
    assert_eq!(world.files().len(), 5);
    let erased = world
        .store
        .erase_content_before(chrono::Utc::now().timestamp() - 86_400 * 30, false)
        .unwrap();
    assert_eq!(erased.activities_erased, 0);
    assert_eq!(erased.attachment_files_removed, 1, "the orphan");
    let left = world.files();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.contains(&"README".to_string()));
    assert!(!left.iter().any(|f| f.contains(&orphan)));
}
}

/// `config` with `capture = "metadata"` for `user`.
fn metadata_only(config: &str, user: &str) -> String {
    let line = format!("email = \"{user}\"\n");
    assert!(config.contains(&line));
    config.replace(&line, &format!("{line}capture = \"metadata\"\n"))
}

conformance! {
fn metadata_only_capture_stores_and_indexes_no_content() {
    let world = &mut World::in_folder(
        |folder| metadata_only(&config(&folder.join("attachments"), ""), "erin@abcorp.com"),
        "",
    )
    .with_contact(NewContact {
        name: Some("Alice".to_string()),
        emails: vec!["alice@customer.com".to_string()],
        visible_to: None,
        no_sync: None,
    });
    let text = private_mail("m@x", &recent(), "secret bytes").replace("dave@abcorp.com", "erin@abcorp.com");
    let processed = world.replay("erin@abcorp.com", "1", &text);
    assert_eq!(processed.decision.reason.as_str(), "synced");
    let erin = world.viewer("erin@abcorp.com");
    let feed = world.store.feed(&erin, None, None).unwrap();
    assert_eq!(feed.len(), 1, "the activity is there, with its metadata");
    assert_eq!(feed[0].contacts, ["alice@customer.com"]);
    assert_eq!((feed[0].subject.as_deref(), feed[0].body.as_deref()), (None, None), "not even for its owner");
    assert_eq!(feed[0].attachments.as_deref(), Some(&[][..]));
    assert_eq!(world.search_index_matches("zanzibar"), 0);
    assert_eq!(world.search_index_matches("marmalade"), 0);
    assert!(world.files().is_empty(), "no attachment content");
    assert_eq!(world.crm_number("SELECT count(*) FROM attachments"), 0);
}
}

conformance! {
fn switching_a_mailbox_to_metadata_erases_what_only_it_stored_after_a_dry_run() {
    let world = &mut world();
    // Dave's own message, and one Michelle (captured in full) has too.
    world.replay("dave@abcorp.com", "1", &private_mail("only-dave@x", &recent(), "dave's bytes"));
    let shared = private_mail("shared@x", &recent(), "shared bytes").replace(
        "To: dave@abcorp.com",
        "To: dave@abcorp.com, michelle@abcorp.com",
    );
    world.replay("dave@abcorp.com", "2", &shared);
    world.replay("michelle@abcorp.com", "3", &shared);
    assert_eq!(world.files().len(), 4);
    world.policy = common::policy(
        &metadata_only(&config(&world.attachments_dir(), ""), "dave@abcorp.com"),
        "",
    );
    let before = world.dump();
    let dry = sync::capture::apply(&world.policy.config, &*world.store, true)
        .unwrap()
        .unwrap();
    assert_eq!((dry.activities_erased, dry.attachment_files_removed), (1, 2));
    assert_eq!(world.dump(), before, "a dry run changes nothing");
    let erased = sync::capture::apply(&world.policy.config, &*world.store, false)
        .unwrap()
        .unwrap();
    assert_eq!(erased, dry, "it did what the dry run said");
    let dave = world.viewer("dave@abcorp.com");
    let feed = world.store.feed(&dave, None, None).unwrap();
    let mine = feed.iter().find(|a| a.message_id.as_deref() == Some("<only-dave@x>")).unwrap();
    assert_eq!(mine.subject, None);
    assert!(mine.content_erased_at.is_some());
    let theirs = feed.iter().find(|a| a.message_id.as_deref() == Some("<shared@x>")).unwrap();
    assert_eq!(theirs.subject.as_deref(), Some("Quarterly zanzibar figures"), "Michelle captured it in full");
    assert_eq!(world.search_index_matches("zanzibar"), 1);
    assert_eq!(world.files().len(), 2);
    // Applying again finds nothing more.
    let again = sync::capture::apply(&world.policy.config, &*world.store, false).unwrap().unwrap();
    assert_eq!(again.activities_erased, 0);
}
}
