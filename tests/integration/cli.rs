//! The built binary, run as a user would run it: exit codes, output formats, and the
//! commands working together on a real store.

use crate::common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn mailsync() -> Command {
    let mut command = Command::cargo_bin("mailsync").unwrap();
    command
        .env_remove("MAILSYNC_CONFIG")
        .env("RUST_LOG", "warn");
    command
}

/// A copy of the demo config and rules in a temp folder, with contacts imported.
struct Playground {
    dir: tempfile::TempDir,
}

impl Playground {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let demo = common::demo();
        std::fs::copy(demo.join("mailsync.toml"), dir.path().join("mailsync.toml")).unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        for rules in ["rules/demo.toml", "rules/labels.toml"] {
            std::fs::copy(demo.join(rules), dir.path().join(rules)).unwrap();
        }
        let playground = Playground { dir };
        playground
            .run(&[
                "contacts",
                "import",
                demo.join("contacts.csv").to_str().unwrap(),
            ])
            .assert()
            .success();
        playground
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("mailsync.toml")
    }

    /// Per-user OAuth credentials, as `run` and `check-config` need.
    fn add_client_secret(&self) {
        use std::os::unix::fs::PermissionsExt;
        let secret = self.dir.path().join("client_secret.json");
        std::fs::write(
            &secret,
            r#"{"installed": {"client_id": "c.apps.example", "client_secret": "s", "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": "https://oauth2.googleapis.com/token", "redirect_uris": ["http://127.0.0.1"]}}"#,
        )
        .unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = std::fs::read_to_string(self.config()).unwrap();
        std::fs::write(
            self.config(),
            format!("{config}\n[gmail]\nclient_secret = \"client_secret.json\"\n"),
        )
        .unwrap();
    }

    fn run(&self, args: &[&str]) -> Command {
        let mut command = mailsync();
        command.arg("--config").arg(self.config()).args(args);
        command
    }

    /// Replays the demo mailboxes of these users (`michelle` for michelle@abcorp.com) into the
    /// store.
    fn replay_demo(&self, users: &[&str]) {
        for user in users {
            self.stdout(&[
                "replay",
                "--user",
                &format!("{user}@abcorp.com"),
                "--source",
                &mailbox(user),
            ]);
        }
    }

    fn stdout(&self, args: &[&str]) -> String {
        let output = self.run(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

fn mailbox(name: &str) -> String {
    format!(
        "dir:{}",
        common::demo()
            .join("mailboxes")
            .join(format!("{name}@abcorp.com"))
            .display()
    )
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect()
}

#[test]
fn demo_syncs_through_the_sandbox_and_a_second_run_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("play");
    let first = mailsync()
        .args(["demo", "--dir"])
        .arg(&demo_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("Gmail-compatible sandbox listening on http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("6 created"), "{stdout}");
    // Delivered once the mailboxes are watched, and brought in by push.
    let pushed = stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("stored ")?
                .split(" ms after it arrived")
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("the demo shows push at work:\n{stdout}"));
    assert!(pushed < 5_000, "stored {pushed} ms after delivery");
    assert!(
        stdout.contains("14 decision(s): 6 synced, 8 skipped"),
        "michelle's mailbox:\n{stdout}"
    );
    // Michelle labelled one conversation CRM/Private and one CRM/Never in Gmail.
    assert!(
        stdout.contains("is private; dave@abcorp.com sees that it happened, subject withheld"),
        "{stdout}"
    );
    assert!(
        stdout.contains("blocked_by_rule      [label: CRM/Never]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("CRM/Never: 1 message of michelle@abcorp.com's mailbox never synced"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("Dinner on Saturday"),
        "nothing of the CRM/Never conversation is shown:\n{stdout}"
    );
    assert!(
        stdout.contains("michelle@abcorp.com              on    ok") && stdout.contains(" push "),
        "status shows push:\n{stdout}"
    );
    assert!(
        stdout.contains("blocked_by_rule      [never the doctor]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("blocked_by_rule      [no newsletters]"),
        "{stdout}"
    );
    assert!(stdout.contains("excluded_label"), "{stdout}");
    assert!(stdout.contains("parse_error"), "{stdout}");
    assert!(
        stdout.contains("(private: content withheld)"),
        "an admin without the setting sees metadata only:\n{stdout}"
    );
    assert!(
        stdout.contains("olga@abcorp.com                  off   disabled"),
        "{stdout}"
    );
    let config = demo_dir.join("mailsync.toml");
    let feed = |viewer: &str| -> usize {
        let output = mailsync()
            .arg("--config")
            .arg(&config)
            .args(["feed", "--as", viewer, "--json"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).lines().count()
    };
    assert_eq!(feed("michelle@abcorp.com"), 9);

    let second = mailsync()
        .args(["demo", "--dir"])
        .arg(&demo_dir)
        .output()
        .unwrap();
    assert!(second.status.success());
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("6 unchanged"), "{stdout}");
    assert!(
        stdout.contains("an earlier run of the demo stored it already"),
        "{stdout}"
    );
    assert!(
        stdout.contains("14 decision(s): 6 synced, 8 skipped"),
        "no new decisions on the second run:\n{stdout}"
    );
    assert_eq!(
        feed("michelle@abcorp.com"),
        9,
        "no new activities on the second run"
    );
}

#[test]
fn replay_json_has_one_spec_object_per_message() {
    let playground = Playground::new();
    let out = playground.stdout(&[
        "replay",
        "--user",
        "michelle@abcorp.com",
        "--source",
        &mailbox("michelle"),
        "--json",
    ]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 13);
    let by_file = |name: &str| {
        lines
            .iter()
            .find(|l| l["source_id"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let reply = by_file("02-reply-to-alice.eml");
    assert_eq!(
        reply,
        &serde_json::json!({
            "user": "michelle@abcorp.com",
            "source_id": "02-reply-to-alice.eml",
            "message_id": "<reply-2@abcorp.com>",
            "decision": "synced",
            "reason": "synced",
            "visibility": "visible",
            "decided_by": "rule",
            "conversation": "<renewal-1@customer.com>",
            "contacts": ["alice@customer.com", "bob@bigclient.io"],
            "rules": ["customers visible"],
            "parties": [
                {"address": "alice@customer.com", "verdict": "qualifies"},
                {"address": "dave@abcorp.com", "verdict": "is_user"},
                {"address": "bob@bigclient.io", "verdict": "qualifies"}
            ]
        })
    );
    assert_eq!(by_file("05-doctor-cc.eml")["reason"], "blocked_by_rule");
    assert_eq!(
        by_file("05-doctor-cc.eml")["visibility"],
        serde_json::Value::Null
    );
    assert_eq!(by_file("06-draft.eml")["reason"], "excluded_label");
    assert_eq!(by_file("07-not-a-message.eml")["reason"], "parse_error");
    assert_eq!(
        by_file("09-subsidiary.eml")["parties"][0]["verdict"],
        "shared_domain"
    );
    let group = by_file("08-group-and-encoded.eml");
    assert_eq!(
        group["contacts"],
        serde_json::json!(["carol@customer.com", "alice.c@customer.com"])
    );
}

#[test]
fn replay_writes_unless_dry_run_and_is_idempotent() {
    let playground = Playground::new();
    let store = playground.dir.path().join("crm.sqlite3");
    let before = common::dump_store(&store);
    playground.stdout(&[
        "replay",
        "--user",
        "michelle@abcorp.com",
        "--source",
        &mailbox("michelle"),
        "--dry-run",
    ]);
    assert_eq!(
        common::dump_store(&store),
        before,
        "a dry run writes nothing"
    );
    let first = playground.stdout(&[
        "replay",
        "--user",
        "m@abcorp.com",
        "--source",
        &mailbox("michelle"),
    ]);
    assert!(first.contains("5 synced (5 new activities)"), "{first}");
    let after_first = common::dump_store(&store);
    let second = playground.stdout(&[
        "replay",
        "--user",
        "michelle@abcorp.com",
        "--source",
        &mailbox("michelle"),
    ]);
    assert!(second.contains("5 synced (0 new activities)"), "{second}");
    assert_eq!(
        common::dump_store(&store),
        after_first,
        "replaying again changes nothing"
    );
}

#[test]
fn replay_reads_takeout_mbox_and_honours_its_labels() {
    let playground = Playground::new();
    let mbox = common::fixtures().join("mbox/takeout-sample.mbox");
    let out = playground.stdout(&[
        "replay",
        "--user",
        "michelle@abcorp.com",
        "--source",
        &format!("mbox:{}", mbox.display()),
        "--json",
    ]);
    let reasons: Vec<(String, String)> = json_lines(&out)
        .iter()
        .map(|l| {
            (
                l["source_id"].as_str().unwrap().to_string(),
                l["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("1".to_string(), "synced".to_string()),
            ("2".to_string(), "excluded_label".to_string()),
            ("3".to_string(), "excluded_label".to_string()),
            ("4".to_string(), "synced".to_string()),
        ]
    );
}

/// An mbox whose separators have no blank line before them (as git format-patch writes
/// them), with a note before the first one and a body line that starts with "From".
#[test]
fn replay_mbox_starts_a_message_at_every_separator_and_reports_text_before_the_first() {
    let playground = Playground::new();
    let mbox = common::fixtures().join("mbox/no-blank-lines.mbox");
    let source = format!("mbox:{}", mbox.display());
    let args = [
        "replay",
        "--user",
        "michelle@abcorp.com",
        "--source",
        &source,
    ];
    let output = playground
        .run(&args)
        .args(["--dry-run", "--json", "--log-format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let message_ids: Vec<String> = json_lines(&String::from_utf8(output.stdout).unwrap())
        .iter()
        .map(|line| line["message_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        message_ids,
        [
            "<nb-1@customer.com>",
            "<nb-2@customer.com>",
            "<nb-3@customer.com>"
        ]
    );
    let text = std::fs::read_to_string(&mbox).unwrap();
    let preamble_bytes = text.find("From alice").unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("text before the first `From ` separator")
            && stderr.contains(&format!("\"bytes\":{preamble_bytes},\"lines\":2"))
            && !stderr.contains("export tool"),
        "a warning with the size, never the text: {stderr}"
    );
    let summary = playground.stdout(&[&args[..], &["--dry-run"]].concat());
    assert!(
        summary.contains(&format!(
            "{preamble_bytes} byte(s) in 2 line(s) before the first `From ` separator were not read"
        )),
        "{summary}"
    );
}

#[test]
fn replay_refuses_what_is_not_an_mbox_file() {
    let playground = Playground::new();
    let replay = |path: &Path| {
        let mut command = playground.run(&[
            "replay",
            "--user",
            "michelle@abcorp.com",
            "--source",
            &format!("mbox:{}", path.display()),
            "--dry-run",
        ]);
        // A FIFO used to block forever.
        command.timeout(std::time::Duration::from_secs(60));
        command
    };
    let text = playground.dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "Subject: notes\n\nFrom the start, this was never an mbox.\n",
    )
    .unwrap();
    replay(&text)
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "mbox {} is not an mbox: none of its 3 line(s) is a `From ` separator line",
            text.display()
        )));
    replay(Path::new("/dev/zero"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "mbox /dev/zero is a device, not a regular file",
        ));
    let fifo = playground.dir.path().join("export.mbox");
    make_fifo(&fifo);
    replay(&fifo)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is a FIFO, not a regular file"));
    replay(playground.dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is a folder, not a regular file"));
    // An empty file is an empty mailbox: nothing in it goes unread.
    let empty = playground.dir.path().join("empty.mbox");
    std::fs::write(&empty, "").unwrap();
    replay(&empty)
        .assert()
        .success()
        .stdout(predicate::str::contains("0 message(s) in"));
}

fn make_fifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
}

/// A 1 GiB message (sparse: it costs no disk) in an mbox and in a folder, replayed with
/// `max_message_bytes = 65536` by a process allowed 512 MiB of address space: it becomes a
/// `parse_error` and the messages after it are read. Reading it whole used to abort.
#[test]
fn replay_reads_past_a_message_over_the_limit_without_holding_it() {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::process::CommandExt;
    let playground = Playground::new();
    let mut config = std::fs::read_to_string(playground.config()).unwrap();
    config.push_str("\n[limits]\nmax_message_bytes = 65536\n");
    std::fs::write(playground.config(), config).unwrap();
    let huge = 1u64 << 30;
    let separator = "From alice@customer.com Mon Sep  2 09:00:00 2024\n";

    let mbox_path = playground.dir.path().join("huge.mbox");
    let mut mbox = std::fs::File::create(&mbox_path).unwrap();
    write!(mbox, "{separator}{PERSON}\n{separator}Subject: huge\n\n").unwrap();
    mbox.seek(SeekFrom::Current(huge as i64)).unwrap();
    write!(mbox, "\n\n{separator}{BOTH}").unwrap();
    drop(mbox);
    let (folder_source, folder) = mailbox_of(&playground, &[("1.eml", PERSON), ("3.eml", BOTH)]);
    std::fs::File::create(folder.join("2.eml"))
        .unwrap()
        .set_len(huge)
        .unwrap();

    for source in [format!("mbox:{}", mbox_path.display()), folder_source] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mailsync"));
        command
            .env_remove("MAILSYNC_CONFIG")
            .env("RUST_LOG", "warn")
            .arg("--config")
            .arg(playground.config())
            .args([
                "replay",
                "--user",
                "michelle@abcorp.com",
                "--source",
                &source,
            ]);
        // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 512 << 20,
                    rlim_max: 512 << 20,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{source}: {output:?}\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let rows: Vec<&str> = stdout.lines().skip(1).take(3).collect();
        assert!(rows[0].contains("synced"), "{source}:\n{stdout}");
        assert!(
            rows[1].contains("parse_error")
                && rows[1].contains("over the 65536-byte limit ([limits] max_message_bytes)"),
            "{source}:\n{stdout}"
        );
        assert!(rows[2].contains("synced"), "{source}:\n{stdout}");
    }
}

/// Two file names that differ only in bytes that are not UTF-8 used to share one source id,
/// so each replay wrote one decision over the other; every row must now stay as it was,
/// the decision log's `decided_at` included (it has a resolution of one second, hence the
/// pause).
#[test]
fn replaying_a_folder_twice_changes_no_row_decided_at_included() {
    use std::os::unix::ffi::OsStrExt;
    let playground = Playground::new();
    let (source, folder) = mailbox_of(
        &playground,
        &[("person.eml", PERSON), ("newsletter.eml", NEWSLETTER)],
    );
    let name = |bytes: &[u8]| folder.join(std::ffi::OsStr::from_bytes(bytes));
    std::fs::write(name(b"m\xff.eml"), BOTH).unwrap();
    std::fs::write(name(b"m\xfe.eml"), "not a message at all").unwrap();
    let replay = [
        "replay",
        "--user",
        "michelle@abcorp.com",
        "--source",
        &source,
    ];
    let first = json_lines(&playground.stdout(&[&replay[..], &["--json"]].concat()));
    let store = playground.dir.path().join("crm.sqlite3");
    let after_first = common::dump_store(&store);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    playground.stdout(&replay);
    assert_eq!(common::dump_store(&store), after_first);
    let ids: Vec<(&str, &str)> = first
        .iter()
        .map(|line| {
            (
                line["source_id"].as_str().unwrap(),
                line["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            (r"m\xfe.eml", "parse_error"),
            (r"m\xff.eml", "synced"),
            ("newsletter.eml", "blocked_by_rule"),
            ("person.eml", "synced"),
        ]
    );
}

#[test]
fn replay_reads_only_a_folders_message_files_and_counts_the_rest() {
    let playground = Playground::new();
    let (source, folder) = mailbox_of(&playground, &[("person.eml", PERSON), (".DS_Store", "")]);
    std::fs::create_dir(folder.join("attachments")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", folder.join("zero.eml")).unwrap();
    make_fifo(&folder.join("pipe.eml"));
    let output = playground
        .run(&[
            "replay",
            "--user",
            "michelle@abcorp.com",
            "--source",
            &source,
        ])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("1 message(s) in"), "{stdout}");
    assert!(
        stdout.contains(
            "not read, as not message files: 1 FIFO, 1 folder, 1 hidden file, 1 symbolic link"
        ),
        "{stdout}"
    );
}

#[test]
fn explain_names_each_verdict_and_the_rule_with_its_file_and_line() {
    let playground = Playground::new();
    let message = common::demo().join("mailboxes/michelle@abcorp.com/05-doctor-cc.eml");
    let out = playground.stdout(&[
        "explain",
        "--user",
        "michelle@abcorp.com",
        message.to_str().unwrap(),
    ]);
    assert!(
        out.contains("decision:   skipped — blocked_by_rule"),
        "{out}"
    );
    assert!(out.contains("dr.jones@clinic.example"), "{out}");
    assert!(out.contains("skip rule \"never the doctor\""), "{out}");
    let rules_file = playground.dir.path().join("rules/demo.toml");
    assert!(
        out.contains(&format!(
            "\"never the doctor\" ({}:16)",
            rules_file.display()
        )),
        "{out}"
    );

    let json = playground.stdout(&[
        "explain",
        "--user",
        "michelle@abcorp.com",
        message.to_str().unwrap(),
        "--json",
    ]);
    let decision = &json_lines(&json)[0];
    assert_eq!(decision["rules"], serde_json::json!(["never the doctor"]));
    assert_eq!(decision["source_id"], "05-doctor-cc.eml");
}

#[test]
fn explain_shows_how_visibility_was_chosen() {
    let playground = Playground::new();
    let message = common::demo().join("mailboxes/dave@abcorp.com/02-bob.eml");
    let out = playground.stdout(&[
        "explain",
        "--user",
        "dave@abcorp.com",
        message.to_str().unwrap(),
    ]);
    assert!(
        out.contains("visibility: private (decided_by default) — step 2: no owner's choice, label rule or address rule"),
        "{out}"
    );
    assert!(out.contains("emails_visible = false"), "{out}");
}

#[test]
fn feed_json_follows_the_read_path() {
    let playground = Playground::new();
    playground.replay_demo(&["michelle", "dave", "ceo"]);
    let feed = |viewer: &str| json_lines(&playground.stdout(&["feed", "--as", viewer, "--json"]));
    let michelle = feed("michelle@abcorp.com");
    let jan = michelle
        .iter()
        .find(|a| a["message_id"] == "<q3-1@bookkeeper.nl>")
        .expect("admin sees every contact");
    assert_eq!(jan["private"], true);
    assert_eq!(jan["subject"], serde_json::Value::Null);
    assert_eq!(jan["body"], serde_json::Value::Null);
    assert_eq!(jan["sources"], serde_json::json!(["ceo@abcorp.com"]));
    let ceo = feed("ceo@abcorp.com");
    let jan = ceo
        .iter()
        .find(|a| a["message_id"] == "<q3-1@bookkeeper.nl>")
        .unwrap();
    assert_eq!(jan["subject"], "Q3 accounts and your salary statement");
    let dave = feed("dave@abcorp.com");
    assert!(
        dave.iter()
            .all(|a| a["message_id"] != "<q3-1@bookkeeper.nl>"),
        "jan is the CEO's contact only"
    );
    let shared = dave
        .iter()
        .find(|a| a["message_id"] == "<reply-2@abcorp.com>")
        .unwrap();
    assert_eq!(
        shared["sources"],
        serde_json::json!(["dave@abcorp.com", "michelle@abcorp.com"])
    );
    assert_eq!(shared["direction"], "outgoing");
    let keys: Vec<&str> = shared
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "activity_id",
            "attachments",
            "body",
            "contacts",
            "content_erased_at",
            "conversation",
            "date",
            "direction",
            "level",
            "message_id",
            "private",
            "sources",
            "subject"
        ]
    );
    // Newest first.
    let dates: Vec<&str> = michelle.iter().filter_map(|a| a["date"].as_str()).collect();
    let mut sorted = dates.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, sorted);
    let only_bob = json_lines(&playground.stdout(&[
        "feed",
        "--as",
        "dave@abcorp.com",
        "--contact",
        "bob@bigclient.io",
        "--json",
    ]));
    assert_eq!(only_bob.len(), 2);
}

#[test]
fn contacts_import_reports_bad_rows_by_line_and_imports_the_rest() {
    let playground = Playground::new();
    let csv = playground.dir.path().join("more.csv");
    std::fs::write(
        &csv,
        "name,email,visible_to\nGood One,good@new.example,\nBad Address,not-an-address,\nUnknown User,x@new.example,nobody@abcorp.com\nColleague,dave@abcorp.com,\n",
    )
    .unwrap();
    playground
        .run(&["contacts", "import", csv.to_str().unwrap()])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("1 created"))
        .stderr(predicate::str::contains("more.csv:3:"))
        .stderr(predicate::str::contains("more.csv:4:"))
        .stderr(predicate::str::contains("more.csv:5:"));
    let list = json_lines(&playground.stdout(&["contacts", "list", "--json"]));
    assert!(
        list.iter()
            .any(|c| c["emails"] == serde_json::json!(["good@new.example"]))
    );
    assert!(
        list.iter()
            .all(|c| c["emails"] != serde_json::json!(["x@new.example"]))
    );

    let bad_header = playground.dir.path().join("bad.csv");
    std::fs::write(&bad_header, "name,mail\nx,y@z.example\n").unwrap();
    playground
        .run(&["contacts", "import", bad_header.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown column `mail`"));
}

#[test]
fn contacts_add_and_list() {
    let playground = Playground::new();
    playground
        .run(&[
            "contacts",
            "add",
            "New@Person.example",
            "--name",
            "New Person",
            "--visible-to",
            "m@abcorp.com",
        ])
        .assert()
        .success();
    let list = json_lines(&playground.stdout(&["contacts", "list", "--json"]));
    let added = list.iter().find(|c| c["name"] == "New Person").unwrap();
    assert_eq!(added["emails"], serde_json::json!(["new@person.example"]));
    assert_eq!(
        added["visible_to"],
        serde_json::json!(["michelle@abcorp.com"])
    );
    playground
        .run(&["contacts", "add", "new@person.example"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already belongs"));
    playground
        .run(&[
            "contacts",
            "add",
            "x@y.example",
            "--visible-to",
            "stranger@x.example",
        ])
        .assert()
        .code(2);
    let table = playground.stdout(&["contacts", "list"]);
    assert!(
        table.contains("New Person") && table.contains("michelle@abcorp.com"),
        "{table}"
    );
}

#[test]
fn check_config_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailsync.toml");
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        &config,
        "[company]\ndomains = [\"gmail.com\"]\n[store]\npath = \"x.sqlite3\"\n[rules]\ndir = \"rules\"\n[[users]]\nemail = \"a@abcorp.com\"\nsnyc = true\n[[users]]\nemail = \"a@abcorp.com\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules/r.toml"),
        "[[rule]]\nname = \"x\"\nmatch = { domain = \"a.com\" }\naction = \"hide\"\n",
    )
    .unwrap();
    let output = mailsync()
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let config_text = config.display().to_string();
    for expected in [
        format!("{config_text}:2:"),
        format!("{config_text}:9: unknown key `users[0].snyc` (did you mean `sync`?)"),
        // The line itself, and where on it.
        "9 | snyc = true\n  | ^^^^ column 1".to_string(),
        format!("{config_text}:11:"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected} in:\n{stderr}"
        );
    }
    // The rules are checked only once the config is valid; fix it and the rule error shows.
    std::fs::write(&config, "[company]\ndomains = [\"abcorp.com\"]\n[store]\npath = \"x.sqlite3\"\n[rules]\ndir = \"rules\"\n").unwrap();
    let output = mailsync()
        .args(["--config", config.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("r.toml:4:"), "{stderr}");
}

/// `check-config` loads what `run` loads: credential files present, readable, valid, private
/// and of one kind, and every problem of every rule. Each case is a `[gmail]` section (with
/// its files) and what both commands must say, with the config line.
#[test]
fn check_config_refuses_what_run_refuses_with_file_and_line() {
    use std::os::unix::fs::PermissionsExt;
    struct Case {
        gmail: &'static str,
        files: &'static [(&'static str, &'static str, u32)],
        expected: &'static [&'static str],
    }
    const KEY: &str = "@KEY@";
    let cases = [
        Case {
            gmail: "",
            files: &[],
            expected: &["mailsync.toml:7: no Gmail credentials"],
        },
        Case {
            gmail: "service_account_key = \"missing.json\"",
            files: &[],
            expected: &["mailsync.toml:8: cannot read", "missing.json"],
        },
        Case {
            gmail: "service_account_key = \"key.json\"",
            files: &[("key.json", KEY, 0o644)],
            expected: &[
                "mailsync.toml:8: ",
                "key.json is readable by group or others (mode 644)",
            ],
        },
        Case {
            gmail: "service_account_key = \"key.json\"",
            files: &[("key.json", "{\"type\": \"service_account\"}", 0o600)],
            expected: &[
                "mailsync.toml:8: ",
                "key.json is not a valid service account key",
            ],
        },
        Case {
            gmail: "service_account_key = \"key.json\"",
            files: &[(
                "key.json",
                "{\"type\": \"service_account\", \"private_key\": \"not a key\", \"client_email\": \"a@b\", \"token_uri\": \"https://oauth2.googleapis.com/token\"}",
                0o600,
            )],
            expected: &[
                "mailsync.toml:8: ",
                "key.json is not a valid service account key",
                "private_key",
            ],
        },
        Case {
            gmail: "service_account_key = \"key.json\"\nclient_secret = \"secret.json\"",
            files: &[("key.json", KEY, 0o600), ("secret.json", "{}", 0o640)],
            expected: &[
                "mailsync.toml:9: set only one of [gmail] service_account_key and [gmail] client_secret",
                "mailsync.toml:9: ",
                "secret.json is readable by group or others (mode 640)",
            ],
        },
    ];
    let key = serde_json::json!({
        "type": "service_account",
        "private_key": common::gmail::test_rsa_key(),
        "client_email": "mailsync@test.iam.example",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string();
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mailsync.toml");
        std::fs::write(
            &config,
            format!(
                "[company]\ndomains = [\"abcorp.com\"]\n[store]\npath = \"x.sqlite3\"\n[[users]]\nemail = \"a@abcorp.com\"\n[gmail]\n{}\n",
                case.gmail
            ),
        )
        .unwrap();
        for (name, content, mode) in case.files {
            let path = dir.path().join(name);
            std::fs::write(&path, content.replace(KEY, &key)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        for command in [&["check-config"][..], &["run", "--once"]] {
            let output = mailsync()
                .arg("--config")
                .arg(&config)
                .args(command)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{}: {command:?}: {stderr}",
                case.gmail
            );
            for expected in case.expected {
                assert!(
                    stderr.contains(expected),
                    "{}: {command:?}: missing {expected:?} in:\n{stderr}",
                    case.gmail
                );
            }
        }
        assert!(
            !dir.path().join("x.sqlite3").exists(),
            "{}: a refused start created the store",
            case.gmail
        );
    }
}

/// A type error in one rule does not hide the problems of the rules after it, nor the
/// credentials' problems.
#[test]
fn check_config_reports_every_rules_problem_not_only_the_first_type_error() {
    let playground = Playground::new();
    std::fs::write(
        playground.dir.path().join("rules/zz-broken.toml"),
        "[[rule]]\nname = \"one\"\nmatch = { domain = \"a.com\" }\naction = \"delete\"\n\n[[rule]]\nname = 5\nmatch = { domain = \"b.com\" }\naction = \"skip\"\n\n[[rule]]\nname = \"three\"\nmatch = { domain = \"c.com\" }\naction = \"skip\"\nusers = [\"nobody@abcorp.com\"]\ncolour = \"red\"\n",
    )
    .unwrap();
    let output = playground.run(&["check-config"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "zz-broken.toml:4: unknown variant `delete`",
        "zz-broken.toml:7: invalid type: integer `5`",
        "zz-broken.toml:15: rule `three`: `nobody@abcorp.com` is not a user",
        "zz-broken.toml:16: unknown key `rule[2].colour`",
        // Credential problems come in the same report, not after the rules are fixed.
        "mailsync.toml: no Gmail credentials",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_config_accepts_the_demo_and_the_config_can_come_from_the_environment() {
    let playground = Playground::new();
    playground.add_client_secret();
    mailsync()
        .env("MAILSYNC_CONFIG", playground.config())
        .arg("check-config")
        .assert()
        .success()
        .stdout(predicate::str::contains("users: 4 (3 with sync on)"))
        .stdout(predicate::str::contains("rules: 7 from 2 file(s)"));
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let playground = Playground::new();
    playground
        .run(&["feed", "--as", "nobody@abcorp.com"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "`nobody@abcorp.com` is not a user",
        ));
    playground
        .run(&["replay", "--user", "dave@abcorp.com", "--source", "imap:x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a source"));
    mailsync()
        .args(["--config", "/nonexistent/mailsync.toml", "check-config"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read config file"));
}

/// The test server's control routes hand out tokens and its API serves mail: it refuses to
/// listen anywhere but loopback.
#[test]
fn the_sandbox_refuses_addresses_other_than_loopback() {
    let mailboxes = tempfile::tempdir().unwrap();
    for address in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8089"] {
        mailsync()
            .args(["sandbox", "--mailboxes"])
            .arg(mailboxes.path())
            .args(["--listen", address])
            .timeout(std::time::Duration::from_secs(30))
            .assert()
            .code(2)
            .stderr(predicate::str::contains("listens on loopback only"));
    }
}

#[test]
fn a_missing_message_folder_fails_with_exit_1() {
    let playground = Playground::new();
    playground
        .run(&[
            "replay",
            "--user",
            "dave@abcorp.com",
            "--source",
            "dir:/nonexistent/folder",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot read folder /nonexistent/folder",
        ));
}

#[test]
fn every_ugly_corpus_fixture_gets_a_decision() {
    let playground = Playground::new();
    let corpus = common::fixtures().join("corpus");
    for folder in std::fs::read_dir(&corpus).unwrap() {
        let folder = folder.unwrap().path();
        if !folder.is_dir() {
            continue;
        }
        let out = playground.stdout(&[
            "replay",
            "--user",
            "michelle@abcorp.com",
            "--source",
            &format!("dir:{}", folder.display()),
            "--json",
            "--dry-run",
        ]);
        let files = std::fs::read_dir(&folder)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_file())
            .count();
        assert_eq!(
            json_lines(&out).len(),
            files,
            "one decision per file in {}",
            folder.display()
        );
    }
}

#[test]
fn help_explains_each_command() {
    let out = mailsync().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for command in [
        "check-config",
        "contacts",
        "replay",
        "explain",
        "feed",
        "demo",
    ] {
        assert!(help.contains(command), "{command} missing from --help");
    }
    mailsync()
        .args(["replay", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("X-Gmail-Labels"));
}

#[allow(dead_code)]
fn _paths_are_utf8(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The spec's retroactive rules: after a rule change, stored activities a skip rule now
/// matches are removed (also through a party that is not a contact, whose address the store
/// does not keep), and visibility is recomputed; a dry run shows exactly that and writes
/// nothing.
#[test]
fn rules_apply_removes_what_a_new_skip_rule_matches_and_recomputes_visibility() {
    let playground = Playground::new();
    playground.stdout(&[
        "replay",
        "--user",
        "michelle@abcorp.com",
        "--source",
        &mailbox("michelle"),
    ]);
    let feed = |viewer: &str| json_lines(&playground.stdout(&["feed", "--as", viewer, "--json"]));
    let before = feed("michelle@abcorp.com");
    assert!(
        before
            .iter()
            .any(|a| a["message_id"] == "<quote-8@customer.com>")
    );
    assert!(
        before
            .iter()
            .any(|a| a["message_id"] == "<invoice-10@mail.gmail.com>" && a["private"] == false)
    );

    // john@elsewhere.example was a party of quote-8 but is no contact; the freelancer becomes private.
    std::fs::write(
        playground.dir.path().join("rules/later.toml"),
        "[[rule]]\nname = \"skip elsewhere\"\nmatch = { domain = \"elsewhere.example\" }\naction = \"skip\"\n\n\
         [[rule]]\nname = \"freelancer private\"\nmatch = { address = \"frank.freelancer@gmail.com\" }\naction = \"private\"\n",
    )
    .unwrap();
    let store = playground.dir.path().join("crm.sqlite3");
    let untouched = common::dump_store(&store);
    let dry = playground.stdout(&["rules", "apply", "--dry-run"]);
    assert!(
        dry.contains(
            "<quote-8@customer.com> in michelle@abcorp.com's mailbox: removed [skip elsewhere]"
        ),
        "{dry}"
    );
    assert!(dry.contains("<invoice-10@mail.gmail.com> in michelle@abcorp.com's mailbox: becomes private [freelancer private]"), "{dry}");
    assert!(
        dry.contains(
            "dry run: 1 source(s) would be removed (1 activities gone), 1 visibility change(s)"
        ),
        "{dry}"
    );
    assert_eq!(
        common::dump_store(&store),
        untouched,
        "a dry run writes nothing"
    );

    let applied = playground.stdout(&["rules", "apply"]);
    assert!(
        applied
            .contains("applied: 1 source(s) removed (1 activities gone), 1 visibility change(s)"),
        "{applied}"
    );
    let after = feed("dave@abcorp.com");
    assert!(
        after
            .iter()
            .all(|a| a["message_id"] != "<quote-8@customer.com>")
    );
    let invoice = after
        .iter()
        .find(|a| a["message_id"] == "<invoice-10@mail.gmail.com>")
        .unwrap();
    assert_eq!(invoice["private"], true);
    assert_eq!(
        invoice["subject"],
        serde_json::Value::Null,
        "private now: content withheld from dave"
    );
    let log =
        json_lines(&playground.stdout(&["decisions", "--user", "michelle@abcorp.com", "--json"]));
    let quote = log
        .iter()
        .find(|d| d["source_id"] == "08-group-and-encoded.eml")
        .unwrap();
    assert_eq!(quote["reason"], "blocked_by_rule");
    assert_eq!(quote["rules"], serde_json::json!(["skip elsewhere"]));
    // Applying again finds nothing more; replaying again agrees with the applied rules.
    assert!(
        playground
            .stdout(&["rules", "apply"])
            .contains("nothing to change")
    );
    let again = json_lines(&playground.stdout(&[
        "replay",
        "--user",
        "michelle@abcorp.com",
        "--source",
        &mailbox("michelle"),
        "--json",
        "--dry-run",
    ]));
    let replayed = again
        .iter()
        .find(|d| d["source_id"] == "08-group-and-encoded.eml")
        .unwrap();
    assert_eq!(replayed["reason"], "blocked_by_rule");

    let check = playground.stdout(&["rules", "check"]);
    assert!(
        check.contains("9 rule(s), all valid")
            && check.contains("\"skip elsewhere\"  skip domain elsewhere.example"),
        "{check}"
    );
}

/// A dry run says how many activities would disappear entirely, not only sources: a source
/// removed from an activity another mailbox also saw leaves the activity; `--json` ends with
/// the same counts as an object, and applying reports what the dry run predicted.
#[test]
fn rules_apply_dry_run_counts_the_activities_that_would_disappear() {
    let playground = Playground::new();
    playground.replay_demo(&["michelle", "dave"]);
    // Dave's copy of reply-2 goes (Michelle's stays); quote-8, Michelle's only, goes whole.
    std::fs::write(
        playground.dir.path().join("rules/later.toml"),
        "[[rule]]\nname = \"skip elsewhere\"\nmatch = { domain = \"elsewhere.example\" }\naction = \"skip\"\n\n\
         [[rule]]\nname = \"dave: no customer.com\"\nmatch = { domain = \"customer.com\" }\naction = \"skip\"\nusers = [\"dave@abcorp.com\"]\n",
    )
    .unwrap();
    let dry = playground.stdout(&["rules", "apply", "--dry-run"]);
    assert!(
        dry.contains(
            "dry run: 2 source(s) would be removed (1 activities gone), 0 visibility change(s); nothing written"
        ),
        "{dry}"
    );
    let lines = json_lines(&playground.stdout(&["rules", "apply", "--dry-run", "--json"]));
    let (counts, changes) = lines.split_last().expect("at least the counts line");
    assert_eq!(
        *counts,
        serde_json::json!({
            "dry_run": true,
            "sources_removed": 2,
            "activities_removed": 1,
            "visibility_changed": 0
        })
    );
    let mut removed: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| {
            assert_eq!(c["change"], "remove");
            (
                c["message_id"].as_str().unwrap(),
                c["user"].as_str().unwrap(),
            )
        })
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            ("<quote-8@customer.com>", "michelle@abcorp.com"),
            ("<reply-2@abcorp.com>", "dave@abcorp.com")
        ]
    );
    let applied = json_lines(&playground.stdout(&["rules", "apply", "--json"]));
    assert_eq!(
        applied.last().unwrap(),
        &serde_json::json!({
            "dry_run": false,
            "sources_removed": 2,
            "activities_removed": 1,
            "visibility_changed": 0
        }),
        "applying does what the dry run said"
    );
    let shared = json_lines(&playground.stdout(&["feed", "--as", "michelle@abcorp.com", "--json"]))
        .into_iter()
        .find(|a| a["message_id"] == "<reply-2@abcorp.com>")
        .expect("reply-2 keeps michelle's source");
    assert_eq!(
        shared["sources"],
        serde_json::json!(["michelle@abcorp.com"])
    );
    assert_eq!(
        json_lines(&playground.stdout(&["rules", "apply", "--json"])),
        [serde_json::json!({
            "dry_run": false,
            "sources_removed": 0,
            "activities_removed": 0,
            "visibility_changed": 0
        })],
        "nothing left to do: only the counts"
    );
}

#[test]
fn export_and_search_follow_the_read_path() {
    let playground = Playground::new();
    playground.replay_demo(&["michelle", "dave", "ceo"]);
    let csv = playground.stdout(&["export", "--as", "michelle@abcorp.com", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "activity_id",
            "message_id",
            "date",
            "direction",
            "contacts",
            "private",
            "subject",
            "body",
            "sources"
        ],
        "the header the issue fixes; JSON carries attachments and content_erased_at"
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let feed = json_lines(&playground.stdout(&["feed", "--as", "michelle@abcorp.com", "--json"]));
    assert_eq!(
        rows.len(),
        feed.len(),
        "one row per activity the viewer may see"
    );
    let jan = rows
        .iter()
        .find(|r| &r[1] == "<q3-1@bookkeeper.nl>")
        .unwrap();
    assert_eq!(&jan[5], "true");
    assert_eq!((&jan[6], &jan[7]), ("", ""), "withheld fields are empty");
    let json = json_lines(&playground.stdout(&[
        "export",
        "--as",
        "michelle@abcorp.com",
        "--format",
        "json",
    ]));
    assert_eq!(json, feed);

    // --contact: exactly the contact's activities that feed --contact shows, for a viewer who
    // may see the contact, and nothing for one who may not.
    for (viewer, contact) in [
        ("dave@abcorp.com", "bob@bigclient.io"),
        ("michelle@abcorp.com", "alice.c@customer.com"),
        ("ceo@abcorp.com", "bob@bigclient.io"),
    ] {
        let feed = json_lines(&playground.stdout(&[
            "feed",
            "--as",
            viewer,
            "--contact",
            contact,
            "--json",
        ]));
        let json = json_lines(&playground.stdout(&[
            "export",
            "--as",
            viewer,
            "--contact",
            contact,
            "--format",
            "json",
        ]));
        assert_eq!(json, feed, "{viewer} {contact}");
        let csv = playground.stdout(&[
            "export",
            "--as",
            viewer,
            "--contact",
            contact,
            "--format",
            "csv",
        ]);
        let ids: Vec<String> = csv::Reader::from_reader(csv.as_bytes())
            .records()
            .map(|r| r.unwrap()[1].to_string())
            .collect();
        let feed_ids: Vec<String> = feed
            .iter()
            .map(|a| a["message_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, feed_ids, "{viewer} {contact}");
        if viewer == "ceo@abcorp.com" {
            assert!(ids.is_empty(), "bob is dave's contact only");
        } else {
            assert!(!ids.is_empty(), "{viewer} {contact}");
        }
    }

    let found = json_lines(&playground.stdout(&[
        "search",
        "--as",
        "ceo@abcorp.com",
        "salary",
        "statement",
        "--json",
    ]));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["message_id"], "<q3-1@bookkeeper.nl>");
    let hidden = json_lines(&playground.stdout(&[
        "search",
        "--as",
        "michelle@abcorp.com",
        "salary",
        "--json",
    ]));
    assert!(
        hidden.is_empty(),
        "the admin may not read the CEO's private mail, so cannot find it"
    );
    let by_attachment = json_lines(&playground.stdout(&[
        "search",
        "--as",
        "dave@abcorp.com",
        "quote.pdf",
        "--json",
    ]));
    assert_eq!(by_attachment.len(), 1, "attachment names are searched");
}

/// Offboarding: purge removes a mailbox's contribution and nothing else.
#[test]
fn purge_removes_a_mailbox_contribution_and_nothing_else() {
    let playground = Playground::new();
    playground.replay_demo(&["michelle", "dave"]);
    let ids = |viewer: &str| -> Vec<String> {
        let mut ids: Vec<String> =
            json_lines(&playground.stdout(&["feed", "--as", viewer, "--json"]))
                .iter()
                .map(|a| a["message_id"].as_str().unwrap().to_string())
                .collect();
        ids.sort();
        ids
    };
    let before = ids("michelle@abcorp.com");
    assert!(before.contains(&"<pricing-2@bigclient.io>".to_string()));
    // Without --yes and without a terminal, nothing happens.
    playground
        .run(&["purge", "--user", "dave@abcorp.com"])
        .assert()
        .code(2);
    assert_eq!(ids("michelle@abcorp.com"), before);

    let out = playground.stdout(&["purge", "--user", "dave@abcorp.com", "--yes"]);
    assert!(out.contains("purged dave@abcorp.com: 1 activities removed, 1 shared activities lost this mailbox's source, 2 decisions removed"), "{out}");
    let after = ids("michelle@abcorp.com");
    let expected: Vec<String> = before
        .iter()
        .filter(|id| *id != "<pricing-2@bigclient.io>")
        .cloned()
        .collect();
    assert_eq!(after, expected, "only dave's own message went");
    let shared = json_lines(&playground.stdout(&["feed", "--as", "michelle@abcorp.com", "--json"]))
        .into_iter()
        .find(|a| a["message_id"] == "<reply-2@abcorp.com>")
        .unwrap();
    assert_eq!(
        shared["sources"],
        serde_json::json!(["michelle@abcorp.com"])
    );
    assert!(
        json_lines(&playground.stdout(&["decisions", "--user", "dave@abcorp.com", "--json"]))
            .is_empty()
    );
}

impl Playground {
    /// Rewrites the config: `store` lines go under `[store]`, `tail` is appended.
    fn configure(&self, store: &str, tail: &str) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let text = text.replace(
            "[store]\npath = \"crm.sqlite3\"\n",
            &format!("[store]\npath = \"crm.sqlite3\"\n{store}\n"),
        );
        std::fs::write(self.config(), format!("{text}\n{tail}\n")).unwrap();
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let Ok(folders) = std::fs::read_dir(self.dir.path().join("files")) else {
            return files;
        };
        for folder in folders {
            for file in std::fs::read_dir(folder.unwrap().path()).unwrap() {
                files.push(file.unwrap().path());
            }
        }
        files
    }
}

/// Retention: content older than body_days goes (subject, body, search terms, files); what
/// happened stays; a dry run counts first.
#[test]
fn retention_apply_erases_old_content_and_search_forgets_it() {
    let playground = Playground::new();
    playground.configure("attachments_dir = \"files\"", "");
    playground.stdout(&[
        "replay",
        "--user",
        "michelle@abcorp.com",
        "--source",
        &mailbox("michelle"),
    ]);
    assert_eq!(playground.files().len(), 1, "quote.pdf is kept");
    playground
        .run(&["retention", "apply"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("[retention] body_days"));

    // Far in the past: nothing is due.
    playground.configure("", "[retention]\nbody_days = 36500");
    let counts = json_lines(&playground.stdout(&["retention", "apply", "--json"]));
    assert_eq!(counts[0]["activities_erased"], 0);

    let text = std::fs::read_to_string(playground.config())
        .unwrap()
        .replace("body_days = 36500", "body_days = 30");
    std::fs::write(playground.config(), text).unwrap();
    let feed = |viewer: &str| json_lines(&playground.stdout(&["feed", "--as", viewer, "--json"]));
    let before = feed("michelle@abcorp.com");
    let planned = json_lines(&playground.stdout(&["retention", "apply", "--dry-run", "--json"]));
    assert_eq!(planned[0]["dry_run"], true);
    assert_eq!(planned[0]["activities_erased"], before.len());
    assert_eq!(planned[0]["attachment_files_removed"], 1);
    assert_eq!(
        feed("michelle@abcorp.com"),
        before,
        "a dry run changes nothing"
    );

    let out = playground.stdout(&["retention", "apply"]);
    assert!(
        out.contains(&format!(
            "erased the content of {} activities; removed 1 attachment files",
            before.len()
        )),
        "{out}"
    );
    let after = feed("michelle@abcorp.com");
    assert_eq!(after.len(), before.len(), "metadata stays");
    for activity in &after {
        assert_eq!(activity["subject"], serde_json::Value::Null);
        assert_eq!(activity["body"], serde_json::Value::Null);
        assert!(activity["content_erased_at"].is_string());
    }
    assert!(playground.files().is_empty());
    for words in [["quote.pdf"], ["renewal"]] {
        let mut args = vec!["search", "--as", "michelle@abcorp.com", "--json"];
        args.extend(words);
        assert!(
            json_lines(&playground.stdout(&args)).is_empty(),
            "{words:?}"
        );
    }
    let text = playground.stdout(&["feed", "--as", "michelle@abcorp.com"]);
    assert!(text.contains("(content erased by retention on "), "{text}");
}

/// Attachments are fetched by hash through the read path; an admin reading private mail is
/// in the access log, and `audit` lists it.
#[test]
fn attachment_and_audit_follow_the_read_path() {
    let playground = Playground::new();
    playground.configure("attachments_dir = \"files\"", "");
    let text = std::fs::read_to_string(playground.config())
        .unwrap()
        .replace(
            "admins_see_private_emails = false",
            "admins_see_private_emails = true",
        );
    std::fs::write(playground.config(), text).unwrap();
    playground.replay_demo(&["michelle", "ceo"]);
    let feed = |viewer: &str| json_lines(&playground.stdout(&["feed", "--as", viewer, "--json"]));
    let dave = feed("dave@abcorp.com");
    let quote = dave
        .iter()
        .find(|a| a["message_id"] == "<quote-8@customer.com>")
        .unwrap();
    let attachment = &quote["attachments"][0];
    assert_eq!(attachment["file_name"], "quote.pdf");
    assert_eq!(attachment["stored"], true);
    let sha256 = attachment["sha256"].as_str().unwrap();
    let output = playground.dir.path().join("out.pdf");
    playground
        .run(&[
            "attachment",
            "--as",
            "dave@abcorp.com",
            sha256,
            "--output",
            output.to_str().unwrap(),
        ])
        .assert()
        .success();
    let bytes = std::fs::read(&output).unwrap();
    assert_eq!(
        bytes.len() as u64,
        attachment["size_bytes"].as_u64().unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&output).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // To a terminal (util-linux `script` gives it one), raw content is refused.
    let on_a_terminal = format!(
        "{} --config {} attachment --as dave@abcorp.com {sha256}",
        common::gmail::binary().display(),
        playground.config().display()
    );
    let refused = std::process::Command::new("script")
        .args(["-qec", &on_a_terminal, "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("--output FILE"),
        "{refused:?}"
    );
    for unknown in ["0".repeat(64).as_str(), "../../etc/passwd", "/abs"] {
        playground
            .run(&["attachment", "--as", "dave@abcorp.com", unknown])
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicate::str::contains(
                "no attachment you may see has that sha256",
            ));
    }
    // Visible mail leaves no trace; the admin reading the CEO's private mail does, once per
    // read.
    assert!(json_lines(&playground.stdout(&["audit", "--json"])).is_empty());
    let michelle = feed("michelle@abcorp.com");
    let private = michelle
        .iter()
        .find(|a| a["message_id"] == "<q3-1@bookkeeper.nl>")
        .unwrap();
    assert!(private["subject"].is_string());
    let log = json_lines(&playground.stdout(&["audit", "--json"]));
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["viewer"], "michelle@abcorp.com");
    assert_eq!(log[0]["path"], "feed");
    assert_eq!(log[0]["activity_id"], private["activity_id"]);
    assert_eq!(log[0]["message_id"], "<q3-1@bookkeeper.nl>");
    feed("ceo@abcorp.com");
    assert_eq!(
        json_lines(&playground.stdout(&["audit", "--json"])).len(),
        1
    );
    playground.stdout(&["export", "--as", "ceo@abcorp.com", "--format", "csv"]);
    let log = json_lines(&playground.stdout(&["audit", "--json", "--viewer", "CEO@abcorp.com"]));
    assert_eq!(log.len(), 1);
    assert_eq!(
        (&log[0]["path"], &log[0]["viewer_is_owner"]),
        (&"export".into(), &true.into())
    );
    assert!(
        json_lines(&playground.stdout(&["audit", "--json", "--since", "2999-01-01T00:00:00Z"]))
            .is_empty()
    );
    let table = playground.stdout(&["audit"]);
    assert!(
        table.contains("michelle@abcorp.com") && table.contains("2 accesses"),
        "{table}"
    );
    playground
        .run(&["audit", "--since", "yesterday"])
        .assert()
        .code(2);
}

/// Takes the demo's newsletter rule out, for tests that add rules of their own or count
/// newsletters as synced.
fn without_newsletter_rule(playground: &Playground) {
    let path = playground.dir.path().join("rules/demo.toml");
    let rules = std::fs::read_to_string(&path).unwrap();
    let cut = rules
        .find("# Newsletters")
        .expect("the demo rules end with the newsletter rule");
    std::fs::write(&path, &rules[..cut]).unwrap();
}

/// Writes `messages` (file name, raw text) into a fresh mailbox folder and returns its `dir:`
/// source and the folder.
fn mailbox_of(playground: &Playground, messages: &[(&str, &str)]) -> (String, PathBuf) {
    let folder = playground.dir.path().join("mailbox");
    std::fs::create_dir_all(&folder).unwrap();
    for (name, raw) in messages {
        std::fs::write(folder.join(name), raw).unwrap();
    }
    (format!("dir:{}", folder.display()), folder)
}

const PERSON: &str = "From: Alice <alice@customer.com>\nTo: michelle@abcorp.com\nSubject: Quote\nDate: Mon, 02 Sep 2024 09:00:00 +0000\nMessage-ID: <person@customer.com>\n\nCan you send the quote?\n";
const NEWSLETTER: &str = "From: Carol <carol@customer.com>\nTo: michelle@abcorp.com\nSubject: Our autumn newsletter\nDate: Mon, 02 Sep 2024 10:00:00 +0000\nMessage-ID: <news@customer.com>\nList-Id: <news.customer.com>\nList-Unsubscribe: <mailto:unsubscribe@customer.com>\nPrecedence: bulk\n\nNews.\n";
const BOTH: &str = "From: Alice <alice@customer.com>\nTo: michelle@abcorp.com\nCc: carol@customer.com\nSubject: Meeting\nDate: Mon, 02 Sep 2024 11:00:00 +0000\nMessage-ID: <both@customer.com>\n\nSee you.\n";

#[test]
fn a_never_sync_contact_is_kept_out_now_and_retroactively() {
    let playground = Playground::new();
    without_newsletter_rule(&playground);
    let (source, folder) = mailbox_of(
        &playground,
        &[("1.eml", PERSON), ("2.eml", NEWSLETTER), ("3.eml", BOTH)],
    );
    let replay = |playground: &Playground| {
        json_lines(&playground.stdout(&[
            "replay",
            "--user",
            "michelle@abcorp.com",
            "--source",
            &source,
            "--json",
        ]))
    };
    let synced = |lines: &[serde_json::Value]| {
        lines
            .iter()
            .filter(|line| line["decision"] == "synced")
            .count()
    };
    assert_eq!(synced(&replay(&playground)), 3);

    let store = playground.dir.path().join("crm.sqlite3");
    let untouched = common::dump_store(&store);
    let dry = playground.stdout(&[
        "contacts",
        "set",
        "carol@customer.com",
        "--no-sync",
        "--dry-run",
    ]);
    assert!(dry.contains("would remove 2 stored source(s)"), "{dry}");
    assert_eq!(
        common::dump_store(&store),
        untouched,
        "a dry run writes nothing"
    );

    let set = playground.stdout(&["contacts", "set", "CAROL@customer.com", "--no-sync"]);
    assert!(
        set.contains("never synced; 2 stored source(s) removed (2 activities gone)"),
        "{set}"
    );
    let feed = json_lines(&playground.stdout(&["feed", "--as", "michelle@abcorp.com", "--json"]));
    let ids: Vec<&str> = feed
        .iter()
        .filter_map(|a| a["message_id"].as_str())
        .filter(|id| id.ends_with("@customer.com>"))
        .collect();
    assert!(ids.contains(&"<person@customer.com>"), "{ids:?}");
    assert!(!ids.contains(&"<both@customer.com>"), "{ids:?}");
    assert!(!ids.contains(&"<news@customer.com>"), "{ids:?}");
    let list = playground.stdout(&["contacts", "list"]);
    let carol = list
        .lines()
        .find(|l| l.contains("carol@customer.com"))
        .unwrap();
    assert!(carol.contains("never"), "{list}");

    // New decisions honour it too, and explain says why.
    let again = replay(&playground);
    assert_eq!(synced(&again), 1);
    let blocked = again
        .iter()
        .find(|line| line["message_id"] == "<both@customer.com>")
        .unwrap();
    assert_eq!(blocked["reason"], "blocked_by_rule");
    assert_eq!(blocked["rules"], serde_json::json!(["contact: never sync"]));
    let explained = playground.stdout(&[
        "explain",
        "--user",
        "michelle@abcorp.com",
        folder.join("3.eml").to_str().unwrap(),
    ]);
    assert!(
        explained.contains("a contact marked never-sync"),
        "{explained}"
    );
    assert!(
        explained.contains("carol@customer.com is marked never-sync"),
        "{explained}"
    );

    // Lifting it lets new decisions sync again.
    playground.stdout(&["contacts", "set", "carol@customer.com", "--sync"]);
    assert_eq!(synced(&replay(&playground)), 3);

    playground
        .run(&["contacts", "set", "nobody@nowhere.example", "--no-sync"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no contact has the address"));
    playground
        .run(&["contacts", "set", "carol@customer.com"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--no-sync"));
}

#[test]
fn automated_mail_rules_skip_newsletters_from_contacts_and_explain_says_why() {
    let playground = Playground::new();
    without_newsletter_rule(&playground);
    let (source, folder) = mailbox_of(&playground, &[("1.eml", PERSON), ("2.eml", NEWSLETTER)]);
    playground.stdout(&[
        "replay",
        "--user",
        "michelle@abcorp.com",
        "--source",
        &source,
    ]);
    let explain = |playground: &Playground, file: &str| {
        playground.stdout(&[
            "explain",
            "--user",
            "michelle@abcorp.com",
            folder.join(file).to_str().unwrap(),
        ])
    };
    let person = explain(&playground, "1.eml");
    assert!(person.contains("automated:  no"), "{person}");

    // The shipped example rule, added after the newsletter was stored: retroactive.
    std::fs::write(
        playground.dir.path().join("rules/newsletters.toml"),
        "[[rule]]\nname = \"no newsletters\"\nmatch = { automated = true }\naction = \"skip\"\n",
    )
    .unwrap();
    let check = playground.stdout(&["rules", "check"]);
    assert!(
        check.contains("\"no newsletters\"  skip automated mail"),
        "{check}"
    );
    let applied = playground.stdout(&["rules", "apply"]);
    assert!(
        applied.contains(
            "<news@customer.com> in michelle@abcorp.com's mailbox: removed [no newsletters]"
        ),
        "{applied}"
    );
    let news = explain(&playground, "2.eml");
    assert!(
        news.contains("automated:  yes (List-Id, List-Unsubscribe, Precedence)"),
        "{news}"
    );
    assert!(
        news.contains("decision:   skipped — blocked_by_rule"),
        "{news}"
    );
    assert!(
        news.contains("skip automated mail matched carol@customer.com"),
        "{news}"
    );
    let person = explain(&playground, "1.eml");
    assert!(person.contains("decision:   synced"), "{person}");

    // A rule with nothing to match on is refused, with its file and line.
    std::fs::write(
        playground.dir.path().join("rules/bad.toml"),
        "[[rule]]\nname = \"everything\"\nmatch = {}\naction = \"skip\"\n",
    )
    .unwrap();
    playground.run(&["rules", "check"]).assert().code(2).stderr(
        predicate::str::contains("bad.toml:3").and(predicate::str::contains(
            "an empty match would match every message",
        )),
    );
}

#[test]
fn contacts_csv_no_sync_column_sets_and_leaves_the_switch() {
    let playground = Playground::new();
    let csv = playground.dir.path().join("more.csv");
    std::fs::write(
        &csv,
        "name,email,visible_to,no_sync\nQuiet,quiet@bigclient.io,,yes\nLoud,loud@bigclient.io,,\nBad,bad@bigclient.io,,maybe\n",
    )
    .unwrap();
    let output = playground
        .run(&["contacts", "import", csv.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "a rejected row is a partial failure"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("more.csv:4: no_sync: `maybe` is not true/false"),
        "{stderr}"
    );
    let contacts = json_lines(&playground.stdout(&["contacts", "list", "--json"]));
    let no_sync_of = |address: &str| {
        contacts
            .iter()
            .find(|c| c["emails"].as_array().unwrap().iter().any(|e| e == address))
            .map(|c| c["no_sync"].clone())
    };
    assert_eq!(
        no_sync_of("quiet@bigclient.io"),
        Some(serde_json::json!(true))
    );
    assert_eq!(
        no_sync_of("loud@bigclient.io"),
        Some(serde_json::json!(false))
    );
    assert_eq!(no_sync_of("bad@bigclient.io"), None);
    // An empty field leaves an existing contact's switch as it is.
    std::fs::write(&csv, "name,email,no_sync\nQuiet,quiet@bigclient.io,\n").unwrap();
    playground.stdout(&["contacts", "import", csv.to_str().unwrap()]);
    let contacts = json_lines(&playground.stdout(&["contacts", "list", "--json"]));
    assert!(
        contacts
            .iter()
            .any(|c| c["name"] == "Quiet" && c["no_sync"] == true)
    );
}

/// Regression: re-importing a contact from a CSV without a `visible_to` column (or with the
/// field empty) made a restricted contact visible to everyone. Not saying leaves the list as
/// it is; `*` says "every user" and is the one way to clear it.
#[test]
fn contacts_import_never_widens_visible_to_unless_told_with_a_star() {
    let playground = Playground::new();
    let visible_to = |address: &str| {
        json_lines(&playground.stdout(&["contacts", "list", "--json"]))
            .into_iter()
            .find(|c| c["emails"].as_array().unwrap().iter().any(|e| e == address))
            .map(|c| c["visible_to"].clone())
            .unwrap_or_else(|| panic!("no contact has {address}"))
    };
    let import = |text: &str| {
        let csv = playground.dir.path().join("update.csv");
        std::fs::write(&csv, text).unwrap();
        playground
            .run(&["contacts", "import", csv.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let dave_only = serde_json::json!(["dave@abcorp.com"]);
    assert_eq!(
        visible_to("bob@bigclient.io"),
        dave_only,
        "from the demo CSV"
    );

    // No visible_to column, then an empty field: Bob stays Dave's; the name is updated.
    assert!(
        import("name,email\nBob B.,bob@bigclient.io\n")
            .status
            .success()
    );
    assert_eq!(visible_to("bob@bigclient.io"), dave_only);
    assert!(
        import("name,email,visible_to,no_sync\nBob,bob@bigclient.io,,\n")
            .status
            .success()
    );
    assert_eq!(visible_to("bob@bigclient.io"), dave_only);
    // The read path agrees: the CEO is still not shown Bob on Dave's mail.
    playground.replay_demo(&["dave"]);
    let ceo = json_lines(&playground.stdout(&["feed", "--as", "ceo@abcorp.com", "--json"]));
    assert!(
        ceo.iter().all(|a| !a["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "bob@bigclient.io")),
        "{ceo:?}"
    );

    // A new contact with an empty field is visible to everyone, as documented.
    assert!(
        import("name,email,visible_to\nNew,new@bigclient.io,\n")
            .status
            .success()
    );
    assert_eq!(visible_to("new@bigclient.io"), serde_json::json!([]));
    // A list replaces the list; `*` clears it; `*` with users is refused by line.
    assert!(
        import("email,visible_to\nbob@bigclient.io,ceo@abcorp.com;m@abcorp.com\n")
            .status
            .success()
    );
    assert_eq!(
        visible_to("bob@bigclient.io"),
        serde_json::json!(["ceo@abcorp.com", "michelle@abcorp.com"])
    );
    assert!(
        import("email,visible_to\nbob@bigclient.io,*\n")
            .status
            .success()
    );
    assert_eq!(visible_to("bob@bigclient.io"), serde_json::json!([]));
    let mixed = import("email,visible_to\njan@bookkeeper.nl,*;dave@abcorp.com\n");
    assert_eq!(mixed.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&mixed.stderr)
            .contains("update.csv:2: visible_to: `*` (every user) cannot be combined with users"),
        "{}",
        String::from_utf8_lossy(&mixed.stderr)
    );
    assert_eq!(
        visible_to("jan@bookkeeper.nl"),
        serde_json::json!(["ceo@abcorp.com"])
    );
}

/// Mail is written by strangers and exports are opened in spreadsheets: a CSV cell that would
/// run as a formula is written as text (a leading `'`); the JSON export keeps it as it is.
#[test]
fn export_csv_cells_never_run_as_formulas() {
    let playground = Playground::new();
    let (source, _) = mailbox_of(
        &playground,
        &[
            (
                "1.eml",
                "From: Alice <alice@customer.com>\nTo: michelle@abcorp.com\nSubject: =HYPERLINK(\"http://evil.example\",\"open\")\nDate: Mon, 02 Sep 2024 09:00:00 +0000\nMessage-ID: <formula@customer.com>\n\n@SUM(1+1)\n",
            ),
            // Full-width forms, and a formula behind blanks that some spreadsheets trim.
            (
                "2.eml",
                "From: Alice <alice@customer.com>\nTo: michelle@abcorp.com\nSubject: =?UTF-8?Q?=EF=BC=9DHYPERLINK(1)?=\nDate: Mon, 02 Sep 2024 10:00:00 +0000\nMessage-ID: <wide@customer.com>\nContent-Type: text/plain; charset=utf-8\n\n  -2+3\n",
            ),
        ],
    );
    playground.stdout(&[
        "replay",
        "--user",
        "michelle@abcorp.com",
        "--source",
        &source,
    ]);
    let csv = playground.stdout(&["export", "--as", "michelle@abcorp.com", "--format", "csv"]);
    let row = csv::Reader::from_reader(csv.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .find(|r| &r[1] == "<formula@customer.com>")
        .expect("the message is exported");
    assert_eq!(&row[6], "'=HYPERLINK(\"http://evil.example\",\"open\")");
    assert_eq!(&row[7], "'@SUM(1+1)\n");
    assert_eq!(&row[4], "alice@customer.com", "plain cells are untouched");
    let row = csv::Reader::from_reader(csv.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .find(|r| &r[1] == "<wide@customer.com>")
        .expect("the message is exported");
    assert_eq!(&row[6], "'\u{FF1D}HYPERLINK(1)");
    assert_eq!(&row[7], "'  -2+3\n");
    let json = json_lines(&playground.stdout(&[
        "export",
        "--as",
        "michelle@abcorp.com",
        "--format",
        "json",
    ]));
    let activity = json
        .iter()
        .find(|a| a["message_id"] == "<formula@customer.com>")
        .unwrap();
    assert_eq!(
        activity["subject"],
        "=HYPERLINK(\"http://evil.example\",\"open\")"
    );
}

/// A character that can change what a terminal shows: a control other than the line feed
/// that ends each line (C0, DEL, C1), or a bidi control. Written out here rather than taken
/// from `mailsync::printable`, so that a hole in its list cannot hide from this test.
fn spoofing_character(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        (c.is_control() && c != '\n')
            || matches!(
                c,
                '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            )
    })
}

/// `tests/fixtures/spoof/spoofed.eml` carries a right-to-left override (U+202E) and terminal
/// escapes (a colour, an OSC 8 hyperlink, an 8-bit CSI) in its sender's name and address, its
/// Message-ID, subject, body and attachment name; its file name, a contact's name and a rule's
/// name carry them too. Every command that prints them shows the escape, `\u{202e}`, and
/// never the character; JSON writes `\u202e`, which decodes to the exact original.
#[test]
fn no_command_prints_a_raw_control_or_bidi_character() {
    let playground = Playground::new();
    let address = "ann\u{202e}gpj.exe@customer.com";
    playground.stdout(&[
        "contacts",
        "add",
        address,
        "--name",
        "Ann \u{202e}\u{1b}[31mC",
    ]);
    std::fs::write(
        playground.dir.path().join("rules/spoof.toml"),
        "[[rule]]\nname = \"vip \\u202E\\u001B[2J\"\nmatch = { address = \"ann\\u202Egpj.exe@customer.com\" }\naction = \"visible\"\n",
    )
    .unwrap();
    let raw = std::fs::read_to_string(common::fixtures().join("spoof/spoofed.eml")).unwrap();
    let file_name = "spoof\u{202e}lme.\u{1b}[31m.eml";
    let (source, folder) = mailbox_of(&playground, &[(file_name, &raw)]);
    let message = folder.join(file_name);
    let michelle = "michelle@abcorp.com";
    let shown_address = "ann\\u{202e}gpj.exe@customer.com";
    let shown_rule = "vip \\u{202e}\\u{1b}[2J";
    let shown_subject = "Invoice \\u{202e}fdp.exe";
    // (the command, what it must show), in order: the replay stores what the others read.
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["replay", "--user", michelle, "--source", &source],
            &["spoof\\u{202e}lme.\\u{1b}[31m", shown_address, shown_rule],
        ),
        (
            &["explain", "--user", michelle, message.to_str().unwrap()],
            &[
                "message:    spoof\\u{202e}lme.\\u{1b}[31m.eml",
                "message-id: <spoof\\u{202e}1@customer.com>",
                shown_address,
                shown_rule,
            ],
        ),
        (&["feed", "--as", michelle], &[shown_address, shown_subject]),
        (
            &["search", "--as", michelle, "invoice"],
            &[shown_address, shown_subject],
        ),
        (
            &["decisions", "--user", michelle],
            &[
                "spoof\\u{202e}lme.\\u{1b}[31m.eml",
                shown_address,
                shown_rule,
            ],
        ),
        (
            &["export", "--as", michelle, "--format", "csv"],
            &[
                shown_address,
                shown_subject,
                "Pay \\u{202e}now \\u{1b}[31mred\\u{1b}[0m \\u{9b}2J",
            ],
        ),
        (
            &["contacts", "list"],
            &["Ann \\u{202e}\\u{1b}[31mC", shown_address],
        ),
        (&["rules", "check"], &[shown_rule, shown_address]),
        (
            &["feed", "--as", michelle, "--json"],
            &["ann\\u202egpj.exe", "\\u009b2J"],
        ),
        (
            &["export", "--as", michelle, "--format", "json"],
            &["ann\\u202egpj.exe", "\\u009b2J"],
        ),
        (
            &["decisions", "--user", michelle, "--json"],
            &["vip \\u202e\\u001b[2J"],
        ),
    ];
    // Every command is checked before failing, so a failure lists all that print raw.
    let mut failures = Vec::new();
    let mut check = |args: &[&str], shown: &[&str]| {
        let output = playground.stdout(args);
        if let Some(c) = spoofing_character(&output) {
            failures.push(format!("{args:?} printed a raw {c:?}:\n{output}"));
        }
        for escaped in shown {
            if !output.contains(escaped) {
                failures.push(format!("{args:?} does not show {escaped}:\n{output}"));
            }
        }
    };
    for (args, shown) in cases {
        check(args, shown);
    }
    // The rule turned private: `rules apply` lists the change with the message and rule.
    let rule_file = playground.dir.path().join("rules/spoof.toml");
    let rule = std::fs::read_to_string(&rule_file).unwrap();
    std::fs::write(&rule_file, rule.replace("\"visible\"", "\"private\"")).unwrap();
    check(
        &["rules", "apply", "--dry-run"],
        &["<spoof\\u{202e}1@customer.com>", shown_rule],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for json in [
        vec!["feed", "--as", michelle, "--json"],
        vec!["export", "--as", michelle, "--format", "json"],
    ] {
        let lines = json_lines(&playground.stdout(&json));
        let activity = &lines[0];
        assert_eq!(
            activity["contacts"],
            serde_json::json!([address]),
            "{json:?}"
        );
        assert_eq!(activity["message_id"], "<spoof\u{202e}1@customer.com>");
        assert!(
            activity["subject"]
                .as_str()
                .unwrap()
                .starts_with("Invoice \u{202e}fdp.exe"),
            "{activity}"
        );
        assert_eq!(
            activity["body"],
            "Pay \u{202e}now \u{1b}[31mred\u{1b}[0m \u{9b}2J"
        );
        assert_eq!(
            activity["attachments"][0]["file_name"],
            "invoice\u{202e}fdp.exe[31m"
        );
    }
    // Errors name files too.
    let missing = folder.join("gone\u{202e}\u{1b}[2J.eml");
    let output = playground
        .run(&["explain", "--user", michelle, missing.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(spoofing_character(&stderr), None, "{stderr}");
    assert!(stderr.contains("gone\\u{202e}\\u{1b}[2J.eml"), "{stderr}");
}

/// With `--log-format json`, every line on standard error is a JSON object — log lines, a
/// bad row reported while an import goes on, a fatal config error, a usage mistake — so a
/// log shipper never meets a line it cannot parse.
#[test]
fn with_json_logs_every_line_on_standard_error_is_json() {
    let playground = Playground::new();
    let bad_rows = playground.dir.path().join("bad.csv");
    std::fs::write(
        &bad_rows,
        "name,email,visible_to\nGood,good@customer.com,\nBad,not-an-address,\nWorse,,\n",
    )
    .unwrap();
    let broken_config = playground.dir.path().join("broken.toml");
    std::fs::write(&broken_config, "[company]\ndomains = 5\nsurprise = true\n").unwrap();
    let config = playground.config().display().to_string();
    let broken_config = broken_config.display().to_string();
    let bad_rows = bad_rows.display().to_string();
    let runs: [(&[&str], i32, &str); 4] = [
        (
            &["--config", &config, "contacts", "import", &bad_rows],
            1,
            "bad.csv:3:",
        ),
        (
            &["--config", &broken_config, "check-config"],
            2,
            "broken.toml:2:",
        ),
        (
            &["--config", &config, "feed", "--as", "nobody@abcorp.com"],
            2,
            "is not a user",
        ),
        (
            &["--config", &config, "feed", "--no-such-flag"],
            2,
            "--no-such-flag",
        ),
    ];
    for (args, code, said) in runs {
        let output = mailsync()
            .env("RUST_LOG", "debug")
            .args(["--log-format", "json"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(code), "{args:?}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(said), "{args:?}: {stderr}");
        for line in stderr.lines() {
            let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                .unwrap_or_else(|_| panic!("{args:?}: not a JSON line: {line:?}"));
            assert!(object.contains_key("level"), "{args:?}: {line}");
        }
    }
}

/// An argument that is not UTF-8 is a usage mistake like any other: exit 2 with clap's
/// report (a JSON line in JSON mode), not a panic while reporting it.
#[test]
fn an_argument_that_is_not_utf8_is_a_usage_error() {
    use std::os::unix::ffi::OsStrExt;
    let playground = Playground::new();
    let not_utf8 = std::ffi::OsStr::from_bytes(b"caf\xe9@abcorp.com");
    for json in [false, true] {
        let mut command = mailsync();
        if json {
            command.args(["--log-format", "json"]);
        }
        let output = command
            .arg("--config")
            .arg(playground.config())
            .args(["feed", "--as"])
            .arg(not_utf8)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "json={json}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "json={json}: {stderr}");
        assert!(stderr.contains("UTF-8"), "json={json}: {stderr}");
        if json {
            for line in stderr.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|_| panic!("not a JSON line: {line:?}"));
            }
        }
    }
}

/// `store migrate` moves the demo's store to PostgreSQL and back: every table verified, and
/// every user's feed and searches the same from either store; running it again changes
/// nothing.
#[test]
fn store_migrate_moves_a_store_to_postgresql_and_back_with_nothing_changed() {
    let playground = Playground::new();
    playground.replay_demo(&["michelle", "dave", "ceo"]);
    // Some state beyond activities: an access-log row, a never-sync contact.
    playground.stdout(&["contacts", "set", "jan@bookkeeper.nl", "--no-sync"]);
    let database = common::postgres::ScratchDatabase::create();
    let sqlite = playground.dir.path().join("crm.sqlite3");
    let migrate = |from: &str, to: &str| {
        let output = mailsync()
            .args(["store", "migrate", "--from", from, "--to", to, "--json"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let checks = json_lines(&String::from_utf8(output.stdout).unwrap());
        assert!(checks.len() >= 10, "{checks:?}");
        for check in &checks {
            assert_eq!(check["source_rows"], check["target_rows"], "{check}");
            assert_eq!(
                check["source_checksum"], check["target_checksum"],
                "{check}"
            );
        }
        checks
    };
    let there = migrate(sqlite.to_str().unwrap(), &database.url());
    let activities = there.iter().find(|c| c["table"] == "activities").unwrap();
    assert!(
        activities["source_rows"].as_u64().unwrap() > 5,
        "{activities}"
    );
    assert_eq!(
        migrate(sqlite.to_str().unwrap(), &database.url()),
        there,
        "again: the same"
    );
    let back = playground.dir.path().join("back.sqlite3");
    migrate(&database.url(), back.to_str().unwrap());

    // The same config on each of the three stores: the same answers for every user.
    let config = std::fs::read_to_string(playground.config()).unwrap();
    let on = |store_line: &str, name: &str| {
        let path = playground.dir.path().join(name);
        std::fs::write(&path, config.replace("path = \"crm.sqlite3\"", store_line)).unwrap();
        path
    };
    let configs = [
        playground.config(),
        on(&format!("url = \"{}\"", database.url()), "postgres.toml"),
        on("path = \"back.sqlite3\"", "back.toml"),
    ];
    let ask = |config: &PathBuf, args: &[&str]| {
        let output = mailsync()
            .arg("--config")
            .arg(config)
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    for viewer in [
        "michelle@abcorp.com",
        "dave@abcorp.com",
        "ceo@abcorp.com",
        "olga@abcorp.com",
    ] {
        for args in [
            vec!["feed", "--as", viewer, "--json"],
            vec!["search", "--as", viewer, "quote", "--json"],
            vec!["search", "--as", viewer, "pdf", "--json"],
        ] {
            let answers: Vec<String> = configs.iter().map(|config| ask(config, &args)).collect();
            assert_eq!(answers[0], answers[1], "{args:?} on PostgreSQL");
            assert_eq!(answers[0], answers[2], "{args:?} back on SQLite");
        }
    }
    let found = ask(
        &configs[1],
        &["search", "--as", "dave@abcorp.com", "quote", "--json"],
    );
    assert!(!found.is_empty(), "the search index was rebuilt");
}

/// `activity set` as a user would run it: only an owner or an admin may, it changes what a
/// colleague sees, `audit` lists it, and `feed --threads` groups a conversation.
#[test]
fn activity_set_is_the_owners_button_and_the_audit_lists_it() {
    let playground = Playground::new();
    playground.replay_demo(&["michelle", "dave"]);
    let feed = |viewer: &str, extra: &[&str]| {
        let mut args = vec!["feed", "--as", viewer, "--json"];
        args.extend_from_slice(extra);
        json_lines(&playground.stdout(&args))
    };
    // The renewal question and Dave's reply to it (in both mailboxes) are one conversation.
    let renewal = |viewer: &str| -> Vec<serde_json::Value> {
        feed(viewer, &[])
            .into_iter()
            .filter(|a| a["conversation"] == "<renewal-1@customer.com>")
            .collect()
    };
    let question = renewal("michelle@abcorp.com")
        .into_iter()
        .find(|a| a["message_id"] == "<renewal-1@customer.com>")
        .unwrap();
    let id = question["activity_id"].as_i64().unwrap().to_string();
    assert_eq!(renewal("dave@abcorp.com").len(), 2);
    assert!(
        renewal("dave@abcorp.com")
            .iter()
            .all(|a| a["subject"].is_string())
    );

    // Dave owns the reply but not the question: he may not set it.
    let refused = playground
        .run(&["activity", "set", "--as", "dave@abcorp.com", &id, "private"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("has no activity")
            && String::from_utf8_lossy(&refused.stderr)
                .contains("only a user whose mailbox it came from, or an admin, may set one"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Michelle makes her copies of the conversation participants-only; Dave took part (he
    // wrote the reply), so he still sees both, in full.
    let set = json_lines(&playground.stdout(&[
        "activity",
        "set",
        "--as",
        "michelle@abcorp.com",
        &id,
        "--conversation",
        "participants",
        "--json",
    ]));
    assert_eq!(set[0]["choice"], "participants");
    assert_eq!(set[0]["visibility_changed"], 2);
    assert!(
        renewal("dave@abcorp.com")
            .iter()
            .all(|a| a["level"] == "participants" && a["subject"].is_string())
    );
    // The CEO, who may see Alice, no longer sees that the conversation happened.
    assert!(renewal("ceo@abcorp.com").is_empty());
    // Back to the rules: the CEO sees it again.
    playground.stdout(&[
        "activity",
        "set",
        "--as",
        "michelle@abcorp.com",
        &id,
        "--conversation",
        "default",
    ]);
    assert_eq!(renewal("ceo@abcorp.com").len(), 2);

    let audit = json_lines(&playground.stdout(&["audit", "--json"]));
    let changes: Vec<&str> = audit
        .iter()
        .filter(|entry| entry["path"] == "set")
        .map(|entry| entry["change"].as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        ["participants (conversation)", "default (conversation)"]
    );

    let threads = playground.stdout(&["feed", "--as", "michelle@abcorp.com", "--threads"]);
    assert!(
        threads.contains("conversation <renewal-1@customer.com> (2 activities)"),
        "{threads}"
    );
}

/// Help from the shell: completions and the man page on standard output, the commit in
/// `--version`, and a suggestion for a mistyped user.
#[test]
fn completions_man_version_and_did_you_mean() {
    let bash = mailsync().args(["completions", "bash"]).output().unwrap();
    assert!(bash.status.success());
    let script = String::from_utf8_lossy(&bash.stdout);
    assert!(
        script.contains("_mailsync()") && script.contains("activity"),
        "{script}"
    );
    let zsh = mailsync().args(["completions", "zsh"]).output().unwrap();
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef mailsync"));
    let man = mailsync().arg("man").output().unwrap();
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH mailsync"),
        "{page}"
    );
    assert!(
        page.contains("check\\-config"),
        "every command is in the man page"
    );
    let version = mailsync().arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.contains("(commit ") && version.contains(", built "),
        "{version}"
    );

    let playground = Playground::new();
    let typo = playground
        .run(&["feed", "--as", "dav@abcorp.com"])
        .output()
        .unwrap();
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("did you mean `dave@abcorp.com`?"),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
}

/// `capture apply` as ops run it: refused without a metadata-only mailbox; with one, a dry run
/// that counts and writes nothing, then the erasure.
#[test]
fn capture_apply_erases_what_a_metadata_mailbox_stored_after_a_dry_run() {
    let playground = Playground::new();
    playground.replay_demo(&["dave"]);
    let none = playground.run(&["capture", "apply"]).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no mailbox is captured as metadata only")
    );

    let config = std::fs::read_to_string(playground.config()).unwrap();
    let line = "email = \"dave@abcorp.com\"\n";
    assert!(config.contains(line));
    std::fs::write(
        playground.config(),
        config.replace(line, &format!("{line}capture = \"metadata\"\n")),
    )
    .unwrap();
    let subjects = || -> Vec<serde_json::Value> {
        json_lines(&playground.stdout(&["feed", "--as", "dave@abcorp.com", "--json"]))
            .into_iter()
            .map(|activity| activity["subject"].clone())
            .collect()
    };
    assert!(subjects().iter().all(serde_json::Value::is_string));
    let dry = json_lines(&playground.stdout(&["capture", "apply", "--dry-run", "--json"]));
    assert_eq!(dry[0]["dry_run"], true);
    assert_eq!(dry[0]["mailboxes"], serde_json::json!(["dave@abcorp.com"]));
    assert_eq!(dry[0]["activities_erased"], 2);
    assert!(
        subjects().iter().all(serde_json::Value::is_string),
        "a dry run erases nothing"
    );
    let done = json_lines(&playground.stdout(&["capture", "apply", "--json"]));
    assert_eq!(done[0]["activities_erased"], 2);
    assert!(subjects().iter().all(serde_json::Value::is_null));
}
