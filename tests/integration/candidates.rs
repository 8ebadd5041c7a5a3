//! Quota spent only on mail that can matter, and mail of contacts that appear later: the
//! candidate search of a full sync against a fetch-everything run on the same mailbox, and
//! the backfill of a new contact's earlier mail, whether the contact came from the CLI or was
//! written into the store by the CRM. Real binaries over loopback, as in `gmail_daemon.rs`.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::gmail::{SandboxProcess, Setup, wait_until};
use common::scenario::{MailFile, Sandbox, Scenario};

const ALICE: &str = "alice@customer.com";
const BOB: &str = "bob@bigclient.io";
const QUIET: &str = "quiet@bigclient.io";
const CAROL: &str = "carol@newco.example";
const ERIN: &str = "erin@newco.example";
const DAN: &str = "dan@later.example";
const MICHELLE: &str = "michelle@abcorp.com";
const STRANGER: &str = "stranger@vendor.example";
const QUOTA: &[&str] = &["--quota-units-per-minute", "1000000"];

/// The shapes a contact address can take in real mail, and the ways it can be there without
/// being a party. Each index makes one message; the pattern repeats.
fn message(index: usize) -> String {
    let (headers, _) = match index % 14 {
        0 => (
            format!("From: {STRANGER}\r\nTo: {MICHELLE}\r\n"),
            "not a contact",
        ),
        1 => (
            format!("From: Alice <{ALICE}>\r\nTo: {MICHELLE}\r\n"),
            "contact",
        ),
        2 => (format!("From: {MICHELLE}\r\nTo: {BOB}\r\n"), "outgoing"),
        3 => (
            format!("From: {MICHELLE}\r\nTo: {STRANGER}\r\nBcc: {ALICE}\r\n"),
            "outgoing bcc",
        ),
        4 => (
            format!("From: {STRANGER}\r\nTo: {MICHELLE}\r\nCc: \"Bob B\" <BOB@BigClient.IO>\r\n"),
            "mixed case cc",
        ),
        5 => (
            format!(
                "From: {ALICE}\r\nTo: {MICHELLE}\r\nList-Id: <news.customer.com>\r\nList-Unsubscribe: <mailto:u@customer.com>\r\n"
            ),
            "newsletter",
        ),
        6 => (
            format!("From: dave@abcorp.com\r\nTo: {MICHELLE}\r\n"),
            "internal",
        ),
        7 => (
            format!("From: {STRANGER}\r\nTo: Team: {ALICE}, x@y.example;, {MICHELLE}\r\n"),
            "group",
        ),
        8 => (
            format!("From: =?utf-8?q?Al=C3=AFce?= <{ALICE}>\r\nTo: {MICHELLE}\r\n"),
            "encoded name",
        ),
        9 => (
            format!("From: {CAROL}\r\nTo: {MICHELLE}\r\n"),
            "later contact",
        ),
        10 => (
            format!("From: {STRANGER}\r\nTo: {MICHELLE}\r\nBcc: {ALICE}\r\n"),
            "incoming bcc is not a party",
        ),
        11 => (
            format!("From: {ALICE}\r\nTo: {MICHELLE}\r\nCc: {ERIN}\r\n"),
            "synced, later gains a contact",
        ),
        12 => (
            format!("From: {STRANGER}\r\nReply-To: {ALICE}\r\nTo: {MICHELLE}\r\n"),
            "reply-to is not a party",
        ),
        _ => (
            format!("From: {QUIET}\r\nTo: {MICHELLE}\r\nCc: {BOB}\r\n"),
            "never-sync contact",
        ),
    };
    format!(
        "{headers}Subject: Secret subject {index}\r\nDate: Mon, 02 Sep 2024 {:02}:{:02}:00 +0000\r\nMessage-ID: <c{index}@test.example>\r\n\r\nBody of message {index}.\r\n",
        8 + index / 60,
        index % 60
    )
}

/// The sandbox serving Michelle's mailbox of `count` messages of [`message`]'s shapes.
fn sandbox_with_mail(count: usize) -> Sandbox {
    let mail: Vec<MailFile> = (0..count)
        .map(|index| (format!("{index:04}.eml"), message(index).into_bytes()))
        .collect();
    Scenario::new()
        .mailbox(MICHELLE, mail)
        .sandbox_flags(QUOTA)
        .start_sandbox()
}

/// Michelle's mailsync against `sandbox`, with or without the candidate search; Quiet is a
/// never-sync contact.
fn setup(sandbox: &SandboxProcess, candidate_search: bool) -> Setup {
    let setup = Scenario::new()
        .users(&[MICHELLE])
        .contacts(&[ALICE, BOB, QUIET])
        .service_account()
        // Quota is not what is measured here (the fetch counts are), so it is scaled up.
        .gmail_settings(&format!(
            "candidate_search = {candidate_search}\nbackfill_days = 36500\n[gmail.quota]\nunits_per_minute = 1000000\n"
        ))
        .setup_for(sandbox);
    let quiet = setup.mailsync(&["contacts", "set", QUIET, "--no-sync"]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    setup
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// New contact addresses `user`'s mailbox has still to backfill: the events after its mark.
fn pending_backfill(setup: &Setup, user: &str, condition: &str) -> i64 {
    setup.count(
        "contact_events",
        &format!(
            "kind = 'address_added' AND {condition}
             AND id > (SELECT covered_through FROM backfill_marks WHERE user_email = '{user}')"
        ),
    )
}

fn run_once(setup: &Setup) {
    let once = setup.mailsync(&["run", "--once"]);
    assert!(once.status.success(), "{}", stderr(&once));
}

/// Every stored activity as (Message-ID, linked contact addresses, visibility of the source).
fn activities(setup: &Setup) -> BTreeSet<(String, String, String)> {
    let connection = rusqlite::Connection::open(&setup.store).unwrap();
    let mut statement = connection
        .prepare(
            "SELECT a.message_id,
                    (SELECT group_concat(address, ',') FROM
                       (SELECT address FROM activity_contacts c WHERE c.activity_id = a.id ORDER BY address)),
                    s.visibility
             FROM activities a JOIN activity_sources s ON s.activity_id = a.id",
        )
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                row.get(2)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn gets(sandbox: &SandboxProcess) -> u64 {
    sandbox.answers(MICHELLE, "messages.get", "200")
}

fn lists(sandbox: &SandboxProcess) -> u64 {
    sandbox.answers(MICHELLE, "messages.list", "200")
}

#[test]
fn candidate_search_syncs_exactly_what_fetching_everything_syncs() {
    const MESSAGES: usize = 140;
    let sandbox = sandbox_with_mail(MESSAGES);

    let everything = setup(&sandbox, false);
    run_once(&everything);
    let fetched_everything = gets(&sandbox);
    assert_eq!(fetched_everything, MESSAGES as u64);

    let candidates = setup(&sandbox, true);
    run_once(&candidates);
    let fetched_candidates = gets(&sandbox) - fetched_everything;

    let synced = activities(&everything);
    assert!(
        synced.len() >= MESSAGES / 2,
        "the fixture syncs most shapes: {synced:?}"
    );
    assert_eq!(
        activities(&candidates),
        synced,
        "the candidate search must never miss a message that would be synced"
    );
    // Not fetched: the shapes without a (syncable) contact in From/To/Cc/Bcc — a stranger,
    // internal mail, a not-yet contact, a contact only in Reply-To — except among the newest
    // 25, which are always fetched because search can lag delivery.
    let not_candidates = (0..MESSAGES - 25)
        .filter(|i| [0, 6, 9, 12].contains(&(i % 14)))
        .count() as u64;
    assert_eq!(
        fetched_candidates,
        fetched_everything - not_candidates,
        "candidates fetched {fetched_candidates} of {fetched_everything}"
    );
    // Everything listed has a decision; the ones not fetched say why.
    assert_eq!(candidates.decisions(MICHELLE), MESSAGES as i64);
    let by_search = candidates.count("decisions", "detail LIKE 'decided by search%'");
    assert_eq!(
        by_search as u64 + fetched_candidates,
        MESSAGES as u64,
        "every message was either fetched or decided by search"
    );
    assert!(by_search > 0);
    assert_eq!(
        candidates.count(
            "decisions",
            "detail LIKE 'decided by search%' AND reason != 'no_qualifying_party'"
        ),
        0
    );
    // Reconciliation sees no gap.
    let verify = candidates.mailsync(&["verify", "--user", MICHELLE, "--json"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["gaps"].as_array().map(Vec::len), Some(0), "{report}");
    // The never-sync contact's mail was not stored by either run.
    for setup in [&everything, &candidates] {
        assert_eq!(
            setup.count("activity_contacts", &format!("address = '{QUIET}'")),
            0
        );
    }
}

#[test]
fn a_new_contacts_earlier_mail_is_backfilled_once() {
    const MESSAGES: usize = 70;
    let sandbox = sandbox_with_mail(MESSAGES);
    let setup = setup(&sandbox, true);
    run_once(&setup);
    let carol_messages = (0..MESSAGES).filter(|i| i % 14 == 9).count() as i64;
    let erin_messages = (0..MESSAGES).filter(|i| i % 14 == 11).count() as i64;
    assert_eq!(
        setup.count("activity_contacts", &format!("address = '{CAROL}'")),
        0
    );
    let activities_before = setup.count("activities", "1");

    // A contact added with the CLI: Carol's earlier mail, decided `no_qualifying_party`
    // (some of it by search, never fetched), is synced at the next run; Erin, who was on
    // synced mail, gets linked to it.
    let add = setup.mailsync(&["contacts", "add", CAROL, ERIN, "--name", "Newco"]);
    assert!(add.status.success(), "{}", stderr(&add));
    run_once(&setup);
    assert_eq!(
        setup.count("activity_contacts", &format!("address = '{CAROL}'")),
        carol_messages
    );
    assert_eq!(
        setup.count("activity_contacts", &format!("address = '{ERIN}'")),
        erin_messages
    );
    assert_eq!(
        setup.count("activities", "1"),
        activities_before + carol_messages,
        "Erin's mail was already an activity: linked, not duplicated"
    );
    assert_eq!(pending_backfill(&setup, MICHELLE, "1"), 0);

    // Once: the next run searches nothing more.
    let lists_before = lists(&sandbox);
    let gets_before = gets(&sandbox);
    run_once(&setup);
    assert_eq!(
        lists(&sandbox),
        lists_before,
        "no search without new contacts"
    );
    assert_eq!(gets(&sandbox), gets_before);

    // The CRM writes a contact straight into the store while the daemon runs: a trigger
    // queues it, the daemon notices within seconds and backfills.
    let folder = sandbox.mailbox(MICHELLE);
    for index in 0..3 {
        std::fs::write(
            folder.join(format!("dan{index}.eml")),
            format!(
                "From: {DAN}\r\nTo: {MICHELLE}\r\nSubject: Secret subject dan {index}\r\nDate: Tue, 03 Sep 2024 10:0{index}:00 +0000\r\nMessage-ID: <dan{index}@test.example>\r\n\r\nBody.\r\n"
            ),
        )
        .unwrap();
    }
    // The sandbox read the folder at start; deliver Dan's mail the way new mail arrives.
    for index in 0..3 {
        let raw = std::fs::read_to_string(folder.join(format!("dan{index}.eml"))).unwrap();
        sandbox.deliver(MICHELLE, &raw);
    }
    let mut daemon = setup.start_daemon();
    wait_until(
        "Dan's mail decided (not synced: not a contact yet)",
        Duration::from_secs(60),
        || setup.decisions(MICHELLE) == MESSAGES as i64 + 3,
    );
    assert_eq!(
        setup.count("activity_contacts", &format!("address = '{DAN}'")),
        0
    );
    {
        let connection = rusqlite::Connection::open(&setup.store).unwrap();
        connection.busy_timeout(Duration::from_secs(10)).unwrap();
        connection
            .execute(
                "INSERT INTO contacts (name, created_at) VALUES ('Dan', 0)",
                [],
            )
            .unwrap();
        let id = connection.last_insert_rowid();
        connection
            .execute(
                "INSERT INTO contact_emails (email, contact_id) VALUES (?1, ?2)",
                rusqlite::params![DAN, id],
            )
            .unwrap();
    }
    wait_until(
        "the CRM's new contact backfilled by the running daemon",
        Duration::from_secs(60),
        || setup.count("activity_contacts", &format!("address = '{DAN}'")) == 3,
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
    let log = daemon.log_text();
    assert!(log.contains("backfilled"), "{log}");
    for forbidden in ["Secret subject", DAN, CAROL] {
        assert!(!log.contains(forbidden), "the log holds {forbidden:?}");
    }
}

/// Regression: a contact added while a user's sync was off was never backfilled for that
/// mailbox: the incremental sync that resumes from the cursor never sees earlier mail. The
/// paused mailbox keeps its backfill mark, and catches up when its sync is back on.
#[test]
fn a_contact_added_while_sync_is_off_is_backfilled_when_it_is_back_on() {
    const MESSAGES: usize = 28;
    let sandbox = sandbox_with_mail(MESSAGES);
    let setup = setup(&sandbox, true);
    let carol_messages = (0..MESSAGES).filter(|i| i % 14 == 9).count() as i64;
    let linked = || setup.count("activity_contacts", &format!("address = '{CAROL}'"));
    let mut daemon = setup.start_daemon();
    wait_until("the first sync", Duration::from_secs(60), || {
        setup.decisions(MICHELLE) == MESSAGES as i64 && setup.state_of(MICHELLE) == "ok"
    });
    assert_eq!(
        setup.count("backfill_marks", &format!("user_email = '{MICHELLE}'")),
        1,
        "the first sync placed its mark"
    );
    assert_eq!(
        pending_backfill(&setup, MICHELLE, "1"),
        0,
        "a first sync needs none"
    );

    let on = std::fs::read_to_string(&setup.config).unwrap();
    let off = on.replace(
        &format!("email = \"{MICHELLE}\"\nsync = true"),
        &format!("email = \"{MICHELLE}\"\nsync = false"),
    );
    assert_ne!(off, on);
    std::fs::write(&setup.config, &off).unwrap();
    daemon.signal("HUP");
    wait_until("michelle's sync off", Duration::from_secs(60), || {
        setup.state_of(MICHELLE) == "disabled"
    });
    let add = setup.mailsync(&["contacts", "add", CAROL]);
    assert!(add.status.success(), "{}", stderr(&add));
    // The daemon reads the change (its own mark moves past it); the paused mailbox's mark
    // stays behind it, and nothing of that mailbox is read.
    wait_until(
        "the daemon read carol's addition",
        Duration::from_secs(20),
        || {
            setup.count(
                "event_marks",
                "name = 'rules' AND covered_through >= (SELECT max(id) FROM contact_events)",
            ) == 1
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pending_backfill(&setup, MICHELLE, &format!("email = '{CAROL}'")),
        1,
        "a backfill pending for the paused mailbox"
    );
    assert_eq!(linked(), 0, "nothing of a paused mailbox is read");

    std::fs::write(&setup.config, &on).unwrap();
    daemon.signal("HUP");
    wait_until(
        "carol's earlier mail backfilled once sync is back on",
        Duration::from_secs(60),
        || linked() == carol_messages,
    );
    wait_until("the backfill done", Duration::from_secs(10), || {
        pending_backfill(&setup, MICHELLE, "1") == 0
    });
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
}
