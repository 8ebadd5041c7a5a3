//! Nothing lost, nothing duplicated: reconciliation finds silent gaps, twenty SIGKILLs during
//! a large initial sync change nothing in the end result, and a CRM working on the same store
//! at the same time never sees (or causes) a lost write.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::gmail::{Setup, message, wait_until};
use common::scenario::{MailFile, Scenario};

const ALICE: &str = "alice@customer.com";
const BOB: &str = "bob@bigclient.io";
const MICHELLE: &str = "michelle@abcorp.com";
const WAIT: Duration = Duration::from_secs(90);

/// `count` messages for `user`'s mailbox, in turn from Alice, Bob and a stranger; every tenth
/// has an attachment.
fn mail(user: &str, count: usize) -> Vec<MailFile> {
    (0..count)
        .map(|i| {
            let from = [ALICE, BOB, "stranger@vendor.example"][i % 3];
            let mut text = message(i, from, user, &format!("Secret subject {i}"));
            if i % 10 == 0 {
                // Some attachments, so the comparison covers them too.
                text = format!(
                    "From: {from}\r\nTo: {user}\r\nSubject: With attachment {i}\r\nMessage-ID: <att{i}@test.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/pdf; name=\"doc{i}.pdf\"\r\nContent-Disposition: attachment; filename=\"doc{i}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
                );
            }
            (format!("{i:04}.eml"), text.into_bytes())
        })
        .collect()
}

/// Michelle's mailbox of `count` messages, Alice and Bob as contacts, a service account, and
/// `gmail_settings` in `[gmail]`: the set-up every test here starts from.
fn michelles_mailbox(count: usize, gmail_settings: &str) -> Scenario {
    Scenario::new()
        .mailbox(MICHELLE, mail(MICHELLE, count))
        .contacts(&[ALICE, BOB])
        .service_account()
        .gmail_settings(gmail_settings)
}

/// The store's content, independent of row ids and timestamps: what must be equal between a
/// crashed-and-restarted run and a clean one.
fn content(setup: &Setup) -> Vec<String> {
    let connection = rusqlite::Connection::open(&setup.store).unwrap();
    let mut all = Vec::new();
    for (name, sql) in [
        (
            "activity",
            "SELECT message_key, message_id, date, direction, subject, body FROM activities",
        ),
        (
            "source",
            "SELECT a.message_key, s.user_email, s.source, s.source_id, s.visibility, s.direction FROM activity_sources s JOIN activities a ON a.id = s.activity_id",
        ),
        (
            "link",
            "SELECT a.message_key, ac.address FROM activity_contacts ac JOIN activities a ON a.id = ac.activity_id",
        ),
        (
            "attachment",
            "SELECT a.message_key, t.position, t.file_name, t.content_type, t.size_bytes, t.sha256 FROM attachments t JOIN activities a ON a.id = t.activity_id",
        ),
        (
            "decision",
            "SELECT user_email, source, source_id, decision, reason, rules FROM decisions",
        ),
        ("cursor", "SELECT user_email, history_id FROM sync_state"),
    ] {
        all.extend(
            common::sorted_rows(&connection, sql)
                .into_iter()
                .map(|row| format!("{name}: {row}")),
        );
    }
    all
}

#[test]
fn verify_reports_undecided_messages_and_repair_decides_them() {
    let (_sandbox, setup) = michelles_mailbox(12, "verify_interval_secs = 0").start();
    assert!(setup.mailsync(&["run", "--once"]).status.success());
    let clean = setup.mailsync(&["verify", "--user", MICHELLE]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    assert!(
        String::from_utf8_lossy(&clean.stdout)
            .contains("12 message(s) listed in the window, 0 without a decision")
    );

    // A silent gap: decisions lost (as a bug or a bad restore would lose them).
    let before = content(&setup);
    let connection = rusqlite::Connection::open(&setup.store).unwrap();
    let lost: Vec<String> = connection
        .prepare("SELECT source_id FROM decisions ORDER BY source_id LIMIT 3")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    connection.execute("DELETE FROM decisions WHERE source_id IN (SELECT source_id FROM decisions ORDER BY source_id LIMIT 3)", []).unwrap();
    drop(connection);

    let found = setup.mailsync(&["verify", "--user", MICHELLE, "--json"]);
    assert_eq!(found.status.code(), Some(1), "gaps remain: exit 1");
    let report: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    let gaps: BTreeSet<String> = report["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect();
    assert_eq!(gaps, lost.into_iter().collect::<BTreeSet<_>>());
    let status = setup.status_of(MICHELLE);
    assert_eq!(status["verify_gaps"], 3);

    let repaired = setup.mailsync(&["verify", "--user", MICHELLE, "--repair"]);
    assert_eq!(
        repaired.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&repaired.stdout)
    );
    assert_eq!(
        content(&setup),
        before,
        "repair restores exactly what was there, no duplicates"
    );
    assert_eq!(
        setup
            .mailsync(&["verify", "--user", MICHELLE])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn the_daemon_reconciles_on_schedule_and_counts_gaps() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_sandbox, setup) = michelles_mailbox(9, "verify_interval_secs = 1")
        .config_after_users(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"))
        .start();
    let daemon = setup.start_daemon();
    wait_until("synced", WAIT, || setup.decisions(MICHELLE) == 9);
    let connection = rusqlite::Connection::open(&setup.store).unwrap();
    connection.busy_timeout(Duration::from_secs(10)).unwrap();
    connection.execute("DELETE FROM decisions WHERE source_id IN (SELECT source_id FROM decisions ORDER BY source_id LIMIT 2)", []).unwrap();
    drop(connection);
    wait_until("the gaps repaired by the daemon", WAIT, || {
        setup.decisions(MICHELLE) == 9
    });
    let metric = format!("mailsync_verify_gaps_total{{user=\"{MICHELLE}\"}} ");
    wait_until("the gaps counted in metrics", WAIT, || {
        let (_, body, _) =
            common::gmail::http("GET", &format!("http://127.0.0.1:{port}/metrics"), b"");
        let text = String::from_utf8_lossy(&body).to_string();
        text.lines()
            .any(|line| line.starts_with(&metric) && line.ends_with(" 2"))
    });
    assert!(
        daemon
            .log_text()
            .contains("reconciliation found undecided messages and repaired them")
    );
}

/// The crash test of the issue: SIGKILL at random points of a large initial sync, twenty
/// times, then the store must equal the one a clean single run makes.
#[test]
fn twenty_sigkills_during_a_large_initial_sync_change_nothing() {
    // The crashed daemon keeps to Gmail's real per-user quota (about 5 fetches a second), so
    // the full sync takes over a minute of running time and the kills land mid-sync; the
    // clean run, whose speed does not matter, gets a larger one.
    let scenario = michelles_mailbox(400, "verify_interval_secs = 0")
        .sandbox_flags(&["--quota-units-per-minute", "1000000"]);
    let (sandbox, crashed) = scenario.start();
    let mut seed: u64 = 0x5eed;
    let mut kills_mid_sync = 0;
    for _ in 0..20 {
        let mut daemon = crashed.start_daemon();
        // Pseudo-random 150..1150 ms (xorshift: reproducible, no extra dependency).
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 1000));
        if crashed.decisions(MICHELLE) < 400 {
            kills_mid_sync += 1;
        }
        daemon.signal("KILL");
        daemon.wait(Duration::from_secs(5)).expect("killed");
    }
    assert!(
        kills_mid_sync >= 10,
        "most kills should land mid-sync ({kills_mid_sync})"
    );
    // Finish at full speed: the quota is not what is being tested.
    crashed.edit_config(|config| {
        config.replace(
            "verify_interval_secs = 0",
            "verify_interval_secs = 0\n[gmail.quota]\nunits_per_minute = 1000000",
        )
    });
    let daemon = crashed.start_daemon();
    wait_until(
        "the crashed store completes",
        Duration::from_secs(180),
        || crashed.decisions(MICHELLE) == 400 && crashed.state_of(MICHELLE) == "ok",
    );
    drop(daemon);

    let clean = scenario
        .gmail_settings("[gmail.quota]\nunits_per_minute = 1000000\n")
        .setup_for(&sandbox);
    assert!(clean.mailsync(&["run", "--once"]).status.success());
    let (crashed_content, clean_content) = (content(&crashed), content(&clean));
    assert_eq!(crashed_content.len(), clean_content.len());
    assert_eq!(
        crashed_content, clean_content,
        "a crashed-and-restarted store equals a clean one"
    );
    assert!(
        crashed_content
            .iter()
            .any(|row| row.starts_with("attachment: "))
    );
    let fetched = sandbox.answers(MICHELLE, "messages.get", "200");
    // The clean run fetched 400; the crashed one at most 400 plus what was in flight at each
    // kill (batches of 25, a few fetches ahead).
    assert!(
        fetched <= 400 + 400 + 20 * 25,
        "{fetched} fetches: decided messages must not be fetched again"
    );
}

/// Another process reads and writes the same store while the daemon syncs: contacts added,
/// feeds read. Nothing surfaces as `database is locked`, nothing is lost.
#[test]
fn a_crm_working_on_the_same_store_during_sync_loses_nothing() {
    let (_sandbox, setup) = michelles_mailbox(
        200,
        "verify_interval_secs = 0\n[gmail.quota]\nunits_per_minute = 60000\n",
    )
    .sandbox_flags(&["--quota-units-per-minute", "60000"])
    .start();
    let daemon = setup.start_daemon();
    let mut crm_failures = Vec::new();
    let mut added = 0;
    while setup.decisions(MICHELLE) < 200 && added < 200 {
        // The CRM writing through its own connection, in a transaction of its own.
        let connection = rusqlite::Connection::open(&setup.store).unwrap();
        connection.busy_timeout(Duration::from_secs(10)).unwrap();
        let result = connection.execute_batch(&format!(
            "BEGIN IMMEDIATE; INSERT INTO contacts (name, created_at) VALUES ('crm {added}', 0); \
             INSERT INTO contact_emails (email, contact_id) VALUES ('crm{added}@crm.example', last_insert_rowid()); COMMIT;"
        ));
        if let Err(error) = result {
            crm_failures.push(error.to_string());
        }
        added += 1;
        // And the CLI reading the feed and adding a contact, as other processes.
        let feed = setup.mailsync(&["feed", "--as", MICHELLE, "--json", "--limit", "5"]);
        if !feed.status.success() {
            crm_failures.push(String::from_utf8_lossy(&feed.stderr).to_string());
        }
        let add = setup.mailsync(&["contacts", "add", &format!("cli{added}@crm.example")]);
        if !add.status.success() {
            crm_failures.push(String::from_utf8_lossy(&add.stderr).to_string());
        }
    }
    assert!(
        crm_failures.is_empty(),
        "the CRM saw failures: {crm_failures:?}"
    );
    wait_until("the sync completes", WAIT, || {
        setup.decisions(MICHELLE) == 200 && setup.state_of(MICHELLE) == "ok"
    });
    assert!(
        added >= 3,
        "the CRM worked during the sync ({added} rounds)"
    );
    assert_eq!(
        setup.count("contact_emails", "email LIKE 'crm%@crm.example'"),
        added as i64
    );
    assert_eq!(
        setup.count("contact_emails", "email LIKE 'cli%@crm.example'"),
        added as i64
    );
    let log = daemon.log_text();
    assert!(
        !log.contains("database is locked") && !log.contains("SQLITE_BUSY"),
        "busy errors in the daemon log"
    );
    assert!(
        !log.contains("\"level\":\"ERROR\""),
        "errors in the daemon log"
    );
}

/// A full disk, then a read-only store: the daemon logs a clear error, keeps its cursor and
/// retries; once it can write again it completes, with nothing half-written and nothing twice.
/// The store lives on a small tmpfs. Mounting needs root, which CI has; elsewhere the test
/// fails and says so rather than passing without checking anything (`--skip full_disk` to
/// leave it out on purpose).
#[test]
fn a_full_disk_and_a_read_only_store_are_survived_with_nothing_half_written() {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    assert!(
        is_root,
        "this test mounts a tmpfs and needs root; run it as root, or leave it out with `cargo test -- --skip full_disk`"
    );
    let filler = "lorem ipsum dolor sit amet ".repeat(2000);
    let big_mail = (0..30).map(|i| {
        let from = if i % 2 == 0 { ALICE } else { BOB };
        let raw = format!("From: {from}\r\nTo: {MICHELLE}\r\nSubject: Big {i}\r\nMessage-ID: <big{i}@test.example>\r\n\r\n{i} {filler}\r\n");
        (format!("{i:02}.eml"), raw.into_bytes())
    });
    let (sandbox, mut setup) = Scenario::new()
        .mailbox(MICHELLE, big_mail)
        .contacts(&[ALICE, BOB])
        .service_account()
        .gmail_settings("verify_interval_secs = 0")
        .start();
    let mount = setup.dir.path().join("small-disk");
    std::fs::create_dir(&mount).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=700k", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(mounted.success(), "root could not mount a tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let store = mount.join("crm.sqlite3");
    setup.edit_config(|config| {
        config.replace(
            "path = \"crm.sqlite3\"",
            &format!("path = \"{}\"", store.display()),
        )
    });
    setup.store = store;
    let csv = setup.dir.path().join("contacts.csv");
    assert!(
        setup
            .mailsync(&["contacts", "import", csv.to_str().unwrap()])
            .status
            .success()
    );

    let daemon = setup.start_daemon();
    wait_until("the disk-full error", WAIT, || {
        daemon.log_text().contains("database or disk is full")
    });
    let decided_while_full = setup.decisions(MICHELLE);
    assert!(
        decided_while_full < 30,
        "the disk filled mid-sync ({decided_while_full} decided)"
    );
    // Whatever was committed is whole: every synced decision has its activity and source.
    assert_eq!(
        setup.count("decisions", "decision = 'synced' AND activity_id IS NULL"),
        0,
        "no synced decision without its activity"
    );
    assert_eq!(
        setup.count("sync_state", "history_id IS NOT NULL"),
        0,
        "the cursor did not move past unstored mail"
    );

    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=20m"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(grown.success());
    wait_until("the sync completes once there is room", WAIT, || {
        setup.decisions(MICHELLE) == 30 && setup.state_of(MICHELLE) == "ok"
    });
    assert_eq!(setup.count("activities", "1"), 30);
    assert_eq!(setup.count("activity_sources", "1"), 30);

    // A read-only store (remounted read-only while the daemon is stopped): the daemon refuses
    // to start with a clear error instead of running without being able to record anything;
    // once writable again, the mail that arrived meanwhile is synced exactly once.
    let mut daemon = daemon;
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
    let read_only = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(read_only.success());
    sandbox.deliver(
        MICHELLE,
        &message(900, ALICE, MICHELLE, "Secret subject while read-only"),
    );
    let refused = setup.mailsync(&["run", "--once"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("Read-only file system") || stderr.contains("readonly"),
        "{stderr}"
    );
    let writable = std::process::Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(writable.success());
    let resumed = setup.mailsync(&["run", "--once"]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(setup.decisions(MICHELLE), 31);
    assert_eq!(setup.count("activity_sources", "1"), 31);
    drop(daemon);
}
