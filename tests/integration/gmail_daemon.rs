//! The daemon against the Gmail-compatible sandbox, both as built binaries over loopback:
//! the real google-gmail1 client, the real OAuth flows, real signals, the real store.

use crate::common;

use std::time::Duration;

use common::gmail::{SandboxProcess, Setup, message, wait_until};
use common::logs::{assert_log_is_clean, assert_nothing_private};
use common::scenario::{MailFile, Scenario};

const ALICE: &str = "alice@customer.com";
const BOB: &str = "bob@bigclient.io";
const MICHELLE: &str = "michelle@abcorp.com";
const DAVE: &str = "dave@abcorp.com";
const WAIT: Duration = Duration::from_secs(60);

/// `count` messages for `user`'s mailbox, numbered from `first_index`: every third from a
/// stranger (skipped), the rest from Alice or Bob (synced).
fn mixed_mail(user: &str, count: usize, first_index: usize) -> Vec<MailFile> {
    (0..count)
        .map(|i| {
            let index = first_index + i;
            let from = match i % 3 {
                0 => "stranger@vendor.example",
                1 => ALICE,
                _ => BOB,
            };
            let raw = message(index, from, user, &format!("Secret subject {index}"));
            (format!("{index:04}.eml"), raw.into_bytes())
        })
        .collect()
}

/// Michelle's mailbox of `count` [`mixed_mail`] messages; Alice and Bob are contacts.
fn michelles_mailbox(count: usize) -> Scenario {
    Scenario::new()
        .mailbox(MICHELLE, mixed_mail(MICHELLE, count, 0))
        .contacts(&[ALICE, BOB])
}

/// Michelle's and Dave's mailboxes of `count` [`mixed_mail`] messages each (Dave's numbered
/// from 100); Alice and Bob are contacts.
fn michelles_and_daves_mailboxes(count: usize) -> Scenario {
    michelles_mailbox(count).mailbox(DAVE, mixed_mail(DAVE, count, 100))
}

/// How many of `mixed_mail(_, count, _)` will be synced (those not from the stranger).
fn synced_of_mixed_mail(count: usize) -> usize {
    (0..count).filter(|i| i % 3 != 0).count()
}

/// Every activity once, every source once per mailbox, every message decided once.
fn assert_exactly_once(setup: &Setup) {
    let duplicated_sources = setup.count(
        "(SELECT activity_id, user_email, count(*) AS n FROM activity_sources GROUP BY 1, 2)",
        "n > 1",
    );
    assert_eq!(duplicated_sources, 0);
    let duplicated_messages = setup.count(
        "(SELECT message_id, count(*) AS n FROM activities GROUP BY 1)",
        "n > 1",
    );
    assert_eq!(duplicated_messages, 0);
}

/// Every line of `log` is one JSON object.
fn assert_every_line_is_json(log: &str) {
    for line in log.lines() {
        assert!(
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line).is_ok(),
            "not a JSON log line: {line:?}"
        );
    }
}

/// The log-scan fixtures (`tests/fixtures/logscan/*.eml`), as a mailbox's mail.
fn logscan_mail() -> Vec<MailFile> {
    let mut mail = Vec::new();
    for entry in std::fs::read_dir(common::fixtures().join("logscan")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "eml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            mail.push((name, std::fs::read(&path).unwrap()));
        }
    }
    mail
}

/// HTML-only, multipart, encoded and attachment-bearing mail, synced by the daemon and
/// replayed from Gmail and from files, everything at `RUST_LOG=trace`: no subject, body word,
/// link, contact address or token reaches standard error. html5ever (under html2text) logs
/// every text node and attribute of HTML mail at debug and trace unless it is capped.
#[test]
fn trace_logs_hold_no_mail_content_tokens_or_addresses() {
    let fixtures = common::fixtures().join("logscan");
    let (_sandbox, setup) = Scenario::new()
        .mailbox(MICHELLE, logscan_mail())
        .contacts(&[ALICE, BOB])
        .service_account()
        .start();
    let mut daemon = setup.start_daemon();
    wait_until("the four messages decided", WAIT, || {
        setup.decisions(MICHELLE) == 4
    });
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
    let log = daemon.log_text();
    assert_log_is_clean(&log);
    assert_every_line_is_json(&log);

    // The HTML went through html2text (its words are in the store), so the scan above saw
    // what html5ever would have logged.
    let feed = setup.mailsync(&["feed", "--as", MICHELLE, "--json"]);
    let feed = String::from_utf8_lossy(&feed.stdout);
    for stored in [
        "marzipanword",
        "okapiword",
        "wombatword",
        "salary-review-ocelot",
    ] {
        assert!(feed.contains(stored), "{stored} was not stored: {feed}");
    }

    let fixtures = fixtures.to_str().unwrap();
    let dir_source = format!("dir:{fixtures}");
    let html_file = format!("{fixtures}/01-html-only.eml");
    for args in [
        &[
            "--log-format",
            "json",
            "replay",
            "--user",
            MICHELLE,
            "--source",
            "gmail",
        ][..],
        &[
            "--log-format",
            "json",
            "replay",
            "--user",
            MICHELLE,
            "--source",
            &dir_source,
        ],
        &[
            "--log-format",
            "json",
            "explain",
            "--user",
            MICHELLE,
            &html_file,
        ],
    ] {
        let output = setup.mailsync_logging(args, "trace");
        assert!(output.status.success(), "{args:?}: {output:?}");
        let log = String::from_utf8_lossy(&output.stderr);
        assert_nothing_private(&log);
        assert_every_line_is_json(&log);
    }

    // Text logs to a pipe (journald, a file) carry no terminal colour codes.
    let output = setup.mailsync_logging(
        &[
            "replay",
            "--user",
            MICHELLE,
            "--source",
            &dir_source,
            "--dry-run",
        ],
        "trace",
    );
    assert!(output.status.success());
    let text_log = String::from_utf8_lossy(&output.stderr);
    assert!(text_log.contains("DEBUG"), "{text_log}");
    assert!(!text_log.contains('\u{1b}'), "ANSI escapes in {text_log:?}");
}

/// `status` tells whether a daemon holds the store (its pid and uptime), never creates a
/// store, and `--watch` refreshes.
#[test]
fn status_says_whether_a_daemon_runs_and_never_creates_a_store() {
    let (_sandbox, setup) = michelles_mailbox(3).service_account().start();
    let text = |args: &[&str]| {
        let output = setup.mailsync(args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(text(&["status"]).starts_with("daemon: not running on "));
    let mut daemon = setup.start_daemon();
    wait_until("the first sync", WAIT, || setup.decisions(MICHELLE) == 3);
    let running = text(&["status"]);
    assert!(
        running.starts_with(&format!("daemon: running (pid {}, up ", daemon.pid())),
        "{running}"
    );
    assert_eq!(setup.status()[0]["daemon"]["running"], true);
    assert_eq!(setup.status()[0]["daemon"]["pid"], daemon.pid());

    // --watch renders again and again until interrupted.
    let mut watch = std::process::Command::new(common::gmail::binary())
        .args([
            "--config",
            setup.config.to_str().unwrap(),
            "status",
            "--watch",
            "--interval",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    watch.kill().unwrap();
    let output = watch.wait_with_output().unwrap();
    let renderings = String::from_utf8_lossy(&output.stdout)
        .matches("daemon: running")
        .count();
    assert!(renderings >= 2, "{renderings} renderings");

    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
    assert!(text(&["status"]).starts_with("daemon: not running on "));

    // A store that is not there is named, and not made.
    setup.edit_config(|config| {
        config.replace("path = \"crm.sqlite3\"", "path = \"sub/dir/crm.sqlite3\"")
    });
    let missing = setup.mailsync(&["status"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("there is no store at") && stderr.contains("sub/dir/crm.sqlite3"),
        "{stderr}"
    );
    assert!(
        !setup.dir.path().join("sub").exists(),
        "status created a folder"
    );
}

/// A first sync that cannot reach Google shows `error` with the reason while it is still
/// retrying, not `syncing` with nothing to say.
#[test]
fn a_failing_first_sync_shows_error_while_it_retries() {
    let (sandbox, setup) = michelles_mailbox(3).service_account().start();
    // The token endpoint and Gmail are the sandbox: gone before the first sync.
    drop(sandbox);
    let mut daemon = setup.start_daemon();
    wait_until("state error", WAIT, || setup.state_of(MICHELLE) == "error");
    let row = setup.status_of(MICHELLE);
    assert!(
        row["last_error"]
            .as_str()
            .is_some_and(|error| !error.is_empty()),
        "{row}"
    );
    assert_eq!(row["history_id"], serde_json::Value::Null);
    assert!(
        !daemon
            .log_text()
            .contains("sync failed; will retry at the next poll"),
        "the state came from the retries, before the poll gave up"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
    assert_log_is_clean(&daemon.log_text());
}

/// While Gmail cannot be reached, a sync spends its time in retries and backoff; SIGTERM
/// drops it at once instead of waiting out the shutdown timeout.
#[test]
fn sigterm_while_gmail_is_unreachable_stops_promptly() {
    let (sandbox, setup) = michelles_mailbox(3).service_account().start();
    let mut daemon = setup.start_daemon();
    wait_until("the first sync", WAIT, || setup.decisions(MICHELLE) == 3);
    // Gmail goes away: every request is refused, and each poll retries with backoff
    // (max_attempts 10, backoff up to 2 s: some fifteen seconds a poll).
    drop(sandbox);
    wait_until(
        "a poll retrying against the unreachable server",
        WAIT,
        || daemon.log_text().contains("retrying gmail request"),
    );
    let asked = std::time::Instant::now();
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)), Some(0));
    let took = asked.elapsed();
    let log = daemon.log_text();
    assert!(
        !log.contains("did not stop in time"),
        "shutdown waited for the retries ({took:?}):\n{log}"
    );
    // Well inside the shutdown timeout (9 s), which is what it would take otherwise.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_log_is_clean(&log);
}

#[test]
fn full_sync_across_pages_then_new_mail_from_history_then_sigterm() {
    let (synced_m, synced_d) = (synced_of_mixed_mail(35), synced_of_mixed_mail(12));
    let (sandbox, setup) = michelles_mailbox(35)
        .mailbox(DAVE, mixed_mail(DAVE, 12, 100))
        .service_account()
        .start();
    let mut daemon = setup.start_daemon();

    wait_until("the first full sync of both mailboxes", WAIT, || {
        setup.decisions(MICHELLE) == 35 && setup.decisions(DAVE) == 12
    });
    wait_until("both users ok with a cursor", WAIT, || {
        setup
            .status()
            .iter()
            .all(|row| row["state"] == "ok" && row["history_id"].is_string())
    });
    // 35 messages at 10 per page: the listing took 4 pages.
    assert!(sandbox.answers(MICHELLE, "messages.list", "200") >= 4);
    assert_eq!(
        setup.count("activity_sources", &format!("user_email = '{MICHELLE}'")),
        synced_m as i64
    );
    assert_eq!(
        setup.count("activity_sources", &format!("user_email = '{DAVE}'")),
        synced_d as i64
    );

    // New mail arrives; history brings it in, without listing again.
    let lists_before = sandbox.answers(MICHELLE, "messages.list", "200");
    sandbox.deliver(
        MICHELLE,
        &message(900, ALICE, MICHELLE, "Secret subject new"),
    );
    sandbox.deliver(
        MICHELLE,
        &message(
            901,
            "stranger@vendor.example",
            MICHELLE,
            "Secret subject spam?",
        ),
    );
    wait_until("new mail picked up by history", WAIT, || {
        setup.decisions(MICHELLE) == 37
    });
    assert_eq!(
        sandbox.answers(MICHELLE, "messages.list", "200"),
        lists_before,
        "incremental sync does not list"
    );
    assert!(sandbox.answers(MICHELLE, "history.list", "200") >= 1);
    // No message was fetched twice, every synced one was fetched, and the candidate search
    // spared some of the strangers' mail a fetch.
    let fetched = sandbox.answers(MICHELLE, "messages.get", "200");
    assert!(
        (synced_m as u64 + 1..37).contains(&fetched),
        "fetched {fetched} of 37 messages, {} of them synced",
        synced_m + 1
    );
    assert_eq!(
        setup.count("activity_sources", &format!("user_email = '{MICHELLE}'")),
        synced_m as i64 + 1
    );
    assert_exactly_once(&setup);

    let status = setup.status();
    let michelle = status.iter().find(|row| row["user"] == MICHELLE).unwrap();
    assert_eq!(michelle["activities"], synced_m as u64 + 1);
    assert!(michelle["last_sync_at"].is_string());

    daemon.signal("TERM");
    let code = daemon
        .wait(Duration::from_secs(10))
        .expect("SIGTERM stops the daemon within 10 seconds");
    assert_eq!(code, 0);
    let log = daemon.log_text();
    assert!(log.contains("sync finished"), "{log}");
    assert_log_is_clean(&log);
}

#[test]
fn expired_history_resyncs_without_refetching_or_duplicating() {
    let (sandbox, setup) = michelles_mailbox(15).service_account().start();
    let mut daemon = setup.start_daemon();
    wait_until("the first full sync", WAIT, || {
        setup.decisions(MICHELLE) == 15 && setup.state_of(MICHELLE) == "ok"
    });
    let fetched = sandbox.answers(MICHELLE, "messages.get", "200");
    assert_eq!(fetched, 15);

    // While the daemon is down, mail arrives and Gmail forgets the history our cursor points
    // into.
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
    sandbox.deliver(
        MICHELLE,
        &message(500, ALICE, MICHELLE, "Secret subject after expiry"),
    );
    sandbox.control("expire-history", &format!("user={MICHELLE}"), b"");
    let daemon = setup.start_daemon();
    wait_until("the resync after history expired", WAIT, || {
        setup.decisions(MICHELLE) == 16
    });
    assert!(
        sandbox.answers(MICHELLE, "history.list", "404") >= 1,
        "history answered 404"
    );
    assert_eq!(
        sandbox.answers(MICHELLE, "messages.get", "200"),
        16,
        "only the new message was fetched"
    );
    assert_exactly_once(&setup);
    drop(daemon);
}

/// The fault soak: full and incremental sync with 20% of Gmail requests failing in every way
/// the spec lists (429, 403 rate limits, 500, 503 with an HTML body, dropped connections, slow
/// and truncated answers, fresh messages that 404 for a moment) and access tokens that expire
/// mid-sync. It completes, exactly once, without a retry storm.
#[test]
fn faults_are_survived_and_every_activity_is_stored_exactly_once() {
    let synced = synced_of_mixed_mail(40);
    let mut args = vec!["--fault-rate", "0.2", "--access-token-lifetime-secs", "62"];
    for kind in [
        "429", "403", "500", "503", "drop", "slow", "truncate", "404new",
    ] {
        args.extend(["--fault-kind", kind]);
    }
    let (sandbox, setup) = michelles_mailbox(40)
        .sandbox_flags(&args)
        .refresh_tokens()
        .start();
    let daemon = setup.start_daemon();
    wait_until(
        "a full sync through faults",
        Duration::from_secs(120),
        || setup.decisions(MICHELLE) == 40,
    );
    for i in 0..5 {
        sandbox.deliver(
            MICHELLE,
            &message(700 + i, ALICE, MICHELLE, "Secret subject during faults"),
        );
    }
    wait_until("new mail through faults", Duration::from_secs(120), || {
        setup.decisions(MICHELLE) == 45
    });
    assert_eq!(setup.count("activity_sources", "1"), synced as i64 + 5);
    assert_exactly_once(&setup);
    let stats = sandbox.stats();
    let user = &stats["users"][MICHELLE];
    let sum = |map: &serde_json::Value| -> u64 {
        map.as_object()
            .map_or(0, |m| m.values().map(|v| v.as_u64().unwrap()).sum())
    };
    let faults = sum(&user["faults_injected"]);
    let requests = sum(&user["requests"]);
    let fault_kinds = user["faults_injected"].as_object().unwrap().len();
    assert!(
        faults >= 5 && fault_kinds >= 4,
        "faults were injected: {user}"
    );
    // Tokens expired during the run and were refreshed.
    assert!(
        stats["token_requests"]["refresh_token 200"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{stats}"
    );
    // No retry storm: the report CI prints, and a bound.
    let per_message = requests as f64 / 45.0;
    println!(
        "fault soak: {requests} Gmail requests for 45 messages ({per_message:.2} per message), {faults} faults injected"
    );
    assert!(per_message < 3.0, "{per_message:.2} requests per message");
    assert_log_is_clean(&daemon.log_text());
}

#[test]
fn a_revoked_user_is_isolated_while_the_others_sync() {
    let (sandbox, setup) = michelles_and_daves_mailboxes(6).refresh_tokens().start();
    sandbox.control("revoke", &format!("user={DAVE}"), b"");
    let daemon = setup.start_daemon();
    wait_until("dave marked needs_reauth", WAIT, || {
        setup.state_of(DAVE) == "needs_reauth"
    });
    wait_until("michelle synced", WAIT, || setup.decisions(MICHELLE) == 6);
    assert_eq!(setup.decisions(DAVE), 0);
    let dave = setup.status_of(DAVE);
    assert!(
        dave["last_error"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"),
        "{dave}"
    );
    // Michelle keeps syncing; Dave's polling stopped (no more token requests for him).
    let token_requests = sandbox.stats()["token_requests"].clone();
    sandbox.deliver(
        MICHELLE,
        &message(800, ALICE, MICHELLE, "Secret subject later"),
    );
    sandbox.deliver(DAVE, &message(801, ALICE, DAVE, "Secret subject later"));
    wait_until("michelle's new mail", WAIT, || {
        setup.decisions(MICHELLE) == 7
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(setup.decisions(DAVE), 0);
    let refresh_400 = |stats: &serde_json::Value| stats["refresh_token 400"].as_u64().unwrap_or(0);
    assert_eq!(
        refresh_400(&sandbox.stats()["token_requests"]),
        refresh_400(&token_requests),
        "no retry storm against a revoked grant"
    );
    drop(daemon);
}

#[test]
fn sighup_turns_a_user_off_and_on_again_and_a_bad_config_is_rejected() {
    let (sandbox, setup) = michelles_and_daves_mailboxes(3).service_account().start();
    let mut daemon = setup.start_daemon();
    wait_until("both synced", WAIT, || {
        setup.decisions(MICHELLE) == 3 && setup.decisions(DAVE) == 3
    });

    // A broken config is rejected; the daemon keeps running on the old one.
    let good = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, format!("{good}\nthis is not toml\n")).unwrap();
    daemon.signal("HUP");
    wait_until("the rejection logged", WAIT, || {
        daemon.log_text().contains("config reload rejected")
    });
    sandbox.deliver(DAVE, &message(300, ALICE, DAVE, "Secret subject one"));
    wait_until("dave still synced on the old config", WAIT, || {
        setup.decisions(DAVE) == 4
    });

    // Dave's sync turned off: nothing more of his mailbox is ingested.
    let dave_off = good.replace(
        &format!("email = \"{DAVE}\"\nsync = true"),
        &format!("email = \"{DAVE}\"\nsync = false"),
    );
    assert_ne!(dave_off, good);
    std::fs::write(&setup.config, dave_off).unwrap();
    daemon.signal("HUP");
    wait_until("dave disabled", WAIT, || {
        setup.state_of(DAVE) == "disabled" && daemon.log_text().contains("config reloaded")
    });
    sandbox.deliver(DAVE, &message(301, ALICE, DAVE, "Secret subject two"));
    sandbox.deliver(
        MICHELLE,
        &message(302, ALICE, MICHELLE, "Secret subject three"),
    );
    wait_until("michelle still syncing", WAIT, || {
        setup.decisions(MICHELLE) == 4
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        setup.decisions(DAVE),
        4,
        "nothing of dave's mailbox after sync was turned off"
    );

    // Regression: a user turned (back) on by a reload started a worker that read the old
    // config, saw sync off, and stopped. Dave's mail from while he was off comes in now.
    std::fs::write(&setup.config, &good).unwrap();
    daemon.signal("HUP");
    wait_until(
        "dave synced again after his sync was turned back on",
        WAIT,
        || setup.decisions(DAVE) == 5 && setup.state_of(DAVE) == "ok",
    );

    daemon.signal("INT");
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
}

/// Retroactive rules in the running daemon: a skip rule added and reloaded (SIGHUP) removes
/// the stored activities it matches, and a never-sync switch the CRM writes straight into the
/// store (`UPDATE contacts SET no_sync = 1`, no signal, no CLI) removes that contact's within
/// seconds.
#[test]
fn a_reloaded_skip_rule_and_a_crm_never_sync_switch_remove_stored_activities() {
    // Three messages each from a stranger, Alice and Bob.
    let (sandbox, setup) = michelles_mailbox(9)
        .service_account()
        .config_after_users("[rules]\ndir = \"rules\"\n")
        .start();
    let rules = setup.dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let mut daemon = setup.start_daemon();
    wait_until("the first sync", WAIT, || {
        setup.decisions(MICHELLE) == 9 && setup.state_of(MICHELLE) == "ok"
    });
    let linked =
        |address: &str| setup.count("activity_contacts", &format!("address = '{address}'"));
    assert_eq!((linked(ALICE), linked(BOB)), (3, 3));

    std::fs::write(
        rules.join("later.toml"),
        "[[rule]]\nname = \"no bigclient\"\nmatch = { domain = \"bigclient.io\" }\naction = \"skip\"\n",
    )
    .unwrap();
    daemon.signal("HUP");
    wait_until(
        "the reloaded skip rule applied to stored mail",
        WAIT,
        || linked(BOB) == 0,
    );
    assert_eq!(setup.count("activities", "1"), 3, "alice's stay");
    assert_eq!(
        setup.count("decisions", "reason = 'blocked_by_rule'"),
        3,
        "bob's decisions say why they went"
    );

    let crm = rusqlite::Connection::open(&setup.store).unwrap();
    crm.busy_timeout(Duration::from_secs(10)).unwrap();
    let switched = crm
        .execute(
            "UPDATE contacts SET no_sync = 1
             WHERE id = (SELECT contact_id FROM contact_emails WHERE email = ?1)",
            [ALICE],
        )
        .unwrap();
    assert_eq!(switched, 1);
    // The daemon reads contact changes every 5 seconds.
    wait_until(
        "the CRM's never-sync switch applied to stored mail",
        Duration::from_secs(15),
        || linked(ALICE) == 0,
    );
    assert_eq!(setup.count("activities", "1"), 0);
    // And to new mail.
    sandbox.deliver(
        MICHELLE,
        &message(50, ALICE, MICHELLE, "Secret subject later"),
    );
    wait_until("the new message decided", WAIT, || {
        setup.decisions(MICHELLE) == 10
    });
    assert_eq!(setup.count("activities", "1"), 0);

    daemon.signal("TERM");
    assert_eq!(
        daemon.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        daemon.log_text()
    );
    assert_log_is_clean(&daemon.log_text());
}

#[test]
fn kill_9_mid_sync_then_restart_loses_and_duplicates_nothing() {
    let synced = synced_of_mixed_mail(200);
    let (sandbox, setup) = michelles_mailbox(200)
        // A tight quota slows the sync down enough to kill it in the middle.
        .sandbox_flags(&["--quota-units-per-minute", "12000"])
        .gmail_settings("[gmail.quota]\nunits_per_minute = 12000\n")
        .service_account()
        .start();
    let mut daemon = setup.start_daemon();
    wait_until("some messages decided", WAIT, || {
        setup.decisions(MICHELLE) >= 30
    });
    daemon.signal("KILL");
    daemon.wait(Duration::from_secs(5)).expect("killed");
    let decided_at_kill = setup.decisions(MICHELLE);
    assert!(
        decided_at_kill < 200,
        "the kill came mid-sync ({decided_at_kill} decided)"
    );
    assert_exactly_once(&setup);

    let daemon = setup.start_daemon();
    wait_until(
        "the sync completed after restart",
        Duration::from_secs(120),
        || setup.decisions(MICHELLE) == 200 && setup.state_of(MICHELLE) == "ok",
    );
    assert_eq!(setup.count("activity_sources", "1"), synced as i64);
    assert_eq!(setup.count("activities", "1"), synced as i64);
    assert_exactly_once(&setup);
    // Decided messages were not fetched again (at most the batches in flight at the kill).
    let fetched = sandbox.answers(MICHELLE, "messages.get", "200");
    assert!(
        fetched <= 200 + 2 * 25,
        "{fetched} fetches for 200 messages"
    );
    drop(daemon);
}

#[test]
fn a_second_daemon_on_the_same_store_refuses_to_start() {
    let (_sandbox, setup) = michelles_mailbox(2)
        .contacts(&[ALICE])
        .service_account()
        .start();
    let first = setup.start_daemon();
    wait_until("first daemon running", WAIT, || {
        setup.decisions(MICHELLE) == 2
    });
    // The same config; another config whose store path is a symlink to the same store; and
    // the same config reached through a symlinked folder: the lock is on the canonical path,
    // so all three refuse.
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&setup.store, elsewhere.path().join("link.sqlite3")).unwrap();
    let other_config = elsewhere.path().join("mailsync.toml");
    std::fs::write(
        &other_config,
        std::fs::read_to_string(&setup.config)
            .unwrap()
            .replace("path = \"crm.sqlite3\"", "path = \"link.sqlite3\"")
            .replace(
                "service_account_key = \"",
                &format!("service_account_key = \"{}/", setup.dir.path().display()),
            ),
    )
    .unwrap();
    let linked_folder = elsewhere.path().join("folder");
    std::os::unix::fs::symlink(setup.dir.path(), &linked_folder).unwrap();
    for config in [
        setup.config.clone(),
        other_config,
        linked_folder.join("mailsync.toml"),
    ] {
        let second = std::process::Command::new(common::gmail::binary())
            .arg("--config")
            .arg(&config)
            .arg("run")
            .output()
            .unwrap();
        assert_eq!(second.status.code(), Some(1), "{second:?}");
        assert!(
            String::from_utf8_lossy(&second.stderr)
                .contains("another mailsync daemon is already running"),
            "{second:?}"
        );
    }
    drop(first);
}

#[test]
fn key_files_readable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (_sandbox, setup) = michelles_mailbox(1)
        .contacts(&[ALICE])
        .service_account()
        .start();
    let key = setup.dir.path().join("service-account.json");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = setup.mailsync(&["run", "--once"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("service-account.json") && stderr.contains("readable by group or others"),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"));
}

#[test]
fn run_once_and_replay_from_gmail() {
    let synced = synced_of_mixed_mail(9);
    let (_sandbox, setup) = michelles_mailbox(9).refresh_tokens().start();
    let once = setup.mailsync(&["run", "--once"]);
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert_eq!(setup.decisions(MICHELLE), 9);

    let replay = setup.mailsync(&[
        "replay",
        "--user",
        MICHELLE,
        "--source",
        "gmail",
        "--json",
        "--dry-run",
    ]);
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 9);
    assert_eq!(
        lines.iter().filter(|l| l["decision"] == "synced").count(),
        synced
    );
    assert!(
        lines
            .iter()
            .all(|l| l["source_id"].as_str().unwrap().len() == 16),
        "gmail ids"
    );

    let decisions = setup.mailsync(&["decisions", "--user", MICHELLE, "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&decisions.stdout).lines().count(),
        9
    );
}

/// How the person answers the consent page in [`consent`].
enum Answer<'a> {
    /// Signs in as this account, and the browser follows the redirect to the listener.
    Browser { account: &'a str },
    /// `--no-browser`: signs in as this account and pastes the address the browser was sent
    /// back to.
    Paste { account: &'a str },
}

/// Runs `auth login --user USER EXTRA...` and answers the consent page as `answer` says.
/// Returns the consent URL that was printed, the exit code and the rest of standard output
/// and error.
fn consent(setup: &Setup, user: &str, extra: &[&str], answer: Answer) -> (String, i32, String) {
    use std::io::{BufRead, BufReader, Write};
    let mut login = std::process::Command::new(common::gmail::binary())
        .arg("--config")
        .arg(&setup.config)
        .args(["auth", "login", "--user", user])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(login.stdout.take().unwrap());
    let mut url = String::new();
    while !url.starts_with("http") {
        url.clear();
        assert!(
            stdout.read_line(&mut url).unwrap() > 0,
            "auth login printed no URL"
        );
    }
    let url = url.trim().to_string();
    let account = match answer {
        Answer::Browser { account } | Answer::Paste { account } => account,
    };
    // The sandbox gives consent at once for the account named by `login_hint`; a person who
    // picks another account in Google's chooser is a different hint.
    let hint = |address: &str| format!("login_hint={}", address.replace('@', "%40"));
    let chosen = url.replace(&hint(user), &hint(account));
    let (status, _, head) = common::gmail::http("GET", &chosen, b"");
    assert_eq!(status, 302, "{head}");
    let location = head
        .lines()
        .find_map(|line| {
            line.strip_prefix("location: ")
                .or_else(|| line.strip_prefix("Location: "))
        })
        .unwrap()
        .trim()
        .to_string();
    match answer {
        Answer::Browser { .. } => {
            let (status, _, _) =
                common::gmail::http("GET", &location.replace("localhost", "127.0.0.1"), b"");
            assert_eq!(status, 200);
        }
        Answer::Paste { .. } => {
            let mut stdin = login.stdin.take().unwrap();
            writeln!(stdin, "{location}").unwrap();
        }
    }
    let output = login.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    rest.push_str(&String::from_utf8_lossy(&output.stderr));
    (url, output.status.code().unwrap_or(-1), rest)
}

#[test]
fn auth_login_runs_the_consent_flow_and_keeps_the_refresh_token() {
    let (_sandbox, setup) = michelles_mailbox(3).refresh_tokens().start();
    std::fs::remove_file(&setup.store).unwrap();
    let (url, code, rest) = consent(&setup, MICHELLE, &[], Answer::Browser { account: MICHELLE });
    assert!(url.contains("login_hint=michelle%40abcorp.com"), "{url}");
    assert_eq!(code, 0, "{rest}");
    assert!(rest.contains(&format!("authorized {MICHELLE}")), "{rest}");
    assert_eq!(
        setup.count("oauth_tokens", &format!("user_email = '{MICHELLE}'")),
        1
    );

    let once = setup.mailsync(&["run", "--once"]);
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert_eq!(setup.decisions(MICHELLE), 3);
}

/// Consent given in the browser with another signed-in account (the CEO's, say) stores
/// nothing: the grant would have put that mailbox under this user's name.
#[test]
fn auth_login_refuses_consent_given_with_another_account() {
    let (sandbox, setup) = michelles_and_daves_mailboxes(3)
        .users(&[MICHELLE])
        .refresh_tokens()
        .start();
    std::fs::remove_file(&setup.store).unwrap();
    let (_, code, rest) = consent(&setup, MICHELLE, &[], Answer::Browser { account: DAVE });
    assert_eq!(code, 1, "{rest}");
    assert!(
        rest.contains(&format!("consent was given for {DAVE}, not for {MICHELLE}")),
        "{rest}"
    );
    assert!(rest.contains("nothing was stored"), "{rest}");
    assert!(!rest.contains("authorized"), "{rest}");
    assert_eq!(setup.count("oauth_tokens", "1"), 0);
    // Only the profile was asked for: no message of the other mailbox was read.
    assert_eq!(sandbox.answers(DAVE, "getProfile", "200"), 1);
    assert_eq!(sandbox.answers(DAVE, "messages.list", "200"), 0);
}

/// Headless consent: `--no-browser` reads back the address the browser was sent to; `--port`
/// fixes the listener's port (for an SSH tunnel).
#[test]
fn auth_login_without_a_browser_and_on_a_fixed_port() {
    let (_sandbox, setup) = michelles_and_daves_mailboxes(3).refresh_tokens().start();
    std::fs::remove_file(&setup.store).unwrap();
    let (url, code, rest) = consent(
        &setup,
        MICHELLE,
        &["--no-browser"],
        Answer::Paste { account: MICHELLE },
    );
    assert_eq!(code, 0, "{rest}");
    assert!(url.contains("redirect_uri=http://localhost:1/"), "{url}");
    assert!(rest.contains(&format!("authorized {MICHELLE}")), "{rest}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (url, code, rest) = consent(
        &setup,
        DAVE,
        &["--port", &port.to_string()],
        Answer::Browser { account: DAVE },
    );
    assert_eq!(code, 0, "{rest}");
    assert!(
        url.contains(&format!("redirect_uri=http://localhost:{port}")),
        "{url}"
    );
    assert_eq!(setup.count("oauth_tokens", "1"), 2);
    let once = setup.mailsync(&["run", "--once"]);
    assert!(once.status.success(), "{once:?}");
    assert_eq!(setup.decisions(MICHELLE), 3);
    assert_eq!(setup.decisions(DAVE), 3);
}

/// A refresh token that opens someone else's mailbox (stored under the wrong user), and a
/// service account whose user the Workspace renamed: the daemon reads nothing from either
/// mailbox and puts the user in needs_reauth with the reason; an alias makes a rename fine.
#[test]
fn the_daemon_reads_nothing_from_a_mailbox_that_is_not_the_users() {
    let (sandbox, setup) = michelles_and_daves_mailboxes(3).refresh_tokens().start();
    // Michelle's row now holds a grant Dave gave.
    let connection = rusqlite::Connection::open(&setup.store).unwrap();
    connection
        .execute(
            "UPDATE oauth_tokens SET refresh_token = (SELECT refresh_token FROM oauth_tokens WHERE user_email = ?1) WHERE user_email = ?2",
            [DAVE, MICHELLE],
        )
        .unwrap();
    drop(connection);
    let once = setup.mailsync(&["run", "--once"]);
    assert_eq!(once.status.code(), Some(1), "{once:?}");
    let michelle = setup.status_of(MICHELLE);
    assert_eq!(michelle["state"], "needs_reauth");
    let reason = michelle["last_error"].as_str().unwrap();
    assert!(
        reason.contains(&format!("opens the mailbox of {DAVE}")),
        "{reason}"
    );
    assert_eq!(setup.decisions(MICHELLE), 0);
    assert_eq!(setup.decisions(DAVE), 3, "dave's own sync goes on");
    assert_eq!(
        setup.count("activity_sources", &format!("user_email = '{MICHELLE}'")),
        0
    );

    // Service account: the Workspace renames michelle; the same grant now opens a mailbox
    // whose profile names another address.
    let sandbox = SandboxProcess::start(sandbox.mailboxes(), &[]);
    let setup = Scenario::new()
        .users(&[MICHELLE])
        .contacts(&[ALICE, BOB])
        .service_account()
        .setup_for(&sandbox);
    let renamed = "michelle.new@abcorp.com";
    sandbox.control("rename", &format!("user={MICHELLE}&address={renamed}"), b"");
    let once = setup.mailsync(&["run", "--once"]);
    assert_eq!(once.status.code(), Some(1), "{once:?}");
    assert_eq!(setup.state_of(MICHELLE), "needs_reauth");
    assert_eq!(setup.decisions(MICHELLE), 0);
    assert_eq!(sandbox.answers(MICHELLE, "messages.list", "200"), 0);

    // The new address is hers: as an alias, the mailbox is hers again.
    let config = std::fs::read_to_string(&setup.config).unwrap().replace(
        &format!("email = \"{MICHELLE}\"\n"),
        &format!("email = \"{MICHELLE}\"\naliases = [\"{renamed}\"]\n"),
    );
    std::fs::write(&setup.config, config).unwrap();
    let once = setup.mailsync(&["run", "--once"]);
    assert!(once.status.success(), "{once:?}");
    assert_eq!(setup.decisions(MICHELLE), 3);
}

/// The daemon on a PostgreSQL store: two mailboxes synced, a kill -9 mid-sync survived with
/// nothing lost or doubled, new mail picked up, a reload, the read path and `verify` through
/// the CLI, and a clean SIGTERM with a clean log.
#[test]
fn the_daemon_on_postgresql_syncs_survives_kill_9_and_reads_through_the_cli() {
    let synced = synced_of_mixed_mail(60);
    let (sandbox, setup) = michelles_and_daves_mailboxes(60)
        .postgres()
        // Slow enough to kill it in the middle.
        .sandbox_flags(&["--quota-units-per-minute", "12000"])
        .gmail_settings("[gmail.quota]\nunits_per_minute = 12000\n")
        .service_account()
        .start();
    let mut daemon = setup.start_daemon();
    wait_until("some messages decided", WAIT, || {
        setup.decisions(MICHELLE) >= 10
    });
    daemon.signal("KILL");
    daemon.wait(Duration::from_secs(5)).expect("killed");
    assert!(
        setup.decisions(MICHELLE) + setup.decisions(DAVE) < 120,
        "killed mid-sync"
    );
    assert_exactly_once(&setup);

    let mut daemon = setup.start_daemon();
    wait_until("both first syncs completed after the restart", WAIT, || {
        setup.decisions(MICHELLE) == 60
            && setup.decisions(DAVE) == 60
            && setup.state_of(MICHELLE) == "ok"
            && setup.state_of(DAVE) == "ok"
    });
    sandbox.deliver(
        MICHELLE,
        &message(901, ALICE, MICHELLE, "Secret subject quincunx"),
    );
    wait_until("new mail from history", WAIT, || {
        setup.decisions(MICHELLE) == 61
    });
    assert_eq!(setup.count("activity_sources", "1"), 2 * synced as i64 + 1);
    assert_exactly_once(&setup);

    daemon.signal("HUP");
    wait_until("the reload", WAIT, || {
        daemon.log_text().contains("config reloaded")
    });
    let feed = setup.mailsync(&["feed", "--as", MICHELLE, "--json"]);
    assert!(feed.status.success(), "{feed:?}");
    assert_eq!(
        String::from_utf8_lossy(&feed.stdout).lines().count(),
        2 * synced + 1,
        "michelle sees every activity: Alice and Bob are visible to everyone"
    );
    let found = setup.mailsync(&["search", "--as", MICHELLE, "quincunx", "--json"]);
    let found = String::from_utf8_lossy(&found.stdout).to_string();
    assert_eq!(found.lines().count(), 1, "{found}");
    let verify = setup.mailsync(&["verify", "--user", MICHELLE]);
    assert!(verify.status.success(), "{verify:?}");

    daemon.signal("TERM");
    assert_eq!(
        daemon.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        daemon.log_text()
    );
    assert_log_is_clean(&daemon.log_text());
}

/// The mailboxes of `users`, each [`mixed_mail`] of `count` messages numbered apart.
fn company_mailboxes(users: &[&str], count: usize) -> Scenario {
    users.iter().enumerate().fold(
        Scenario::new().contacts(&[ALICE, BOB]),
        |scenario, (index, user)| {
            scenario.mailbox(user, mixed_mail(user, count, 1000 * (index + 1)))
        },
    )
}

/// `status --instances --json`: instance name → mailboxes it holds.
fn live_instances(setup: &Setup) -> std::collections::BTreeMap<String, u64> {
    let output = setup.mailsync(&["status", "--instances", "--json"]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            for field in ["host", "pid", "started_at", "heartbeat_at"] {
                assert!(!row[field].is_null(), "{field} in {row}");
            }
            (
                row["instance"].as_str().unwrap().to_string(),
                row["mailboxes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `status --json`: user → the instance holding its lease (None: nobody).
fn lease_holders(setup: &Setup) -> std::collections::BTreeMap<String, Option<String>> {
    setup
        .status()
        .into_iter()
        .map(|row| {
            let instance = row["instance"].as_str().map(str::to_string);
            assert_eq!(
                instance.is_some(),
                row["lease_expires_at"].is_string(),
                "a holder comes with an expiry: {row}"
            );
            (row["user"].as_str().unwrap().to_string(), instance)
        })
        .collect()
}

/// Three real instances on one PostgreSQL store (docs/spec/instances.md): the mailboxes are
/// spread evenly; a SIGKILLed instance's mailboxes sync again within lease + poll + 5 s; one
/// SIGSTOPped past its lease loses its mailboxes and, resumed, writes nothing more for them;
/// a fourth joins and gets its share; SIGHUP reaches them all; nothing is lost, doubled or
/// left undecided, and every instance stops cleanly.
#[test]
fn three_instances_share_the_mailboxes_and_survive_kill_stop_and_a_newcomer() {
    const USERS: [&str; 6] = [
        "ann@abcorp.com",
        "ben@abcorp.com",
        "cat@abcorp.com",
        "dan@abcorp.com",
        "eve@abcorp.com",
        "fay@abcorp.com",
    ];
    const LEASE_SECS: u64 = 3;
    let per_mailbox = 12;
    let (sandbox, setup) = company_mailboxes(&USERS, per_mailbox)
        .postgres()
        .config_after_users(&format!("[daemon]\nlease_secs = {LEASE_SECS}\n"))
        .service_account()
        .start();
    let decided_everywhere = |extra: i64| {
        USERS.iter().map(|user| setup.decisions(user)).sum::<i64>()
            == (USERS.len() * per_mailbox) as i64 + extra
    };
    let mut daemons: Vec<_> = (0..3).map(|_| setup.start_daemon()).collect();
    wait_until("every mailbox synced by three instances", WAIT, || {
        decided_everywhere(0)
    });
    wait_until("an even spread", WAIT, || {
        let instances = live_instances(&setup);
        instances.len() == 3 && instances.values().all(|held| *held == 2)
    });
    let holders = lease_holders(&setup);
    assert!(holders.values().all(Option::is_some), "{holders:?}");
    assert_exactly_once(&setup);

    // SIGKILL: its two mailboxes go to the others once the lease runs out.
    let victim = daemons.remove(0);
    let victim_instance = instance_of(&victim);
    let orphaned: Vec<String> = holders
        .iter()
        .filter(|(_, holder)| holder.as_deref() == Some(victim_instance.as_str()))
        .map(|(user, _)| user.clone())
        .collect();
    assert_eq!(orphaned.len(), 2, "{holders:?} {victim_instance}");
    victim.signal("KILL");
    let killed_at = std::time::Instant::now();
    sandbox.deliver(
        &orphaned[0],
        &message(7001, ALICE, &orphaned[0], "Secret subject orphan"),
    );
    wait_until("the orphaned mailbox synced again", WAIT, || {
        decided_everywhere(1)
    });
    let failover = killed_at.elapsed();
    assert!(
        failover <= Duration::from_secs(LEASE_SECS + 1 + 5),
        "failover took {failover:?}"
    );
    drop(victim);

    // SIGSTOP one past its lease: the last one takes its mailboxes over; resumed, the
    // stopped one finds its writes refused and lets them go.
    let stopped = &daemons[0];
    let stopped_instance = instance_of(stopped);
    stopped.signal("STOP");
    wait_until("the other instance holds every mailbox", WAIT, || {
        lease_holders(&setup)
            .values()
            .all(|holder| holder.is_some() && holder.as_deref() != Some(stopped_instance.as_str()))
    });
    for (index, user) in USERS.iter().enumerate() {
        sandbox.deliver(
            user,
            &message(8000 + index, BOB, user, "Secret subject while stopped"),
        );
    }
    wait_until("mail delivered meanwhile synced by the other", WAIT, || {
        decided_everywhere(1 + USERS.len() as i64)
    });
    stopped.signal("CONT");
    wait_until("the resumed instance gets its share back", WAIT, || {
        live_instances(&setup).get(&stopped_instance) == Some(&3)
    });

    // A newcomer: the load rebalances to two each.
    daemons.push(setup.start_daemon());
    wait_until("three live instances with two mailboxes each", WAIT, || {
        let instances = live_instances(&setup);
        instances.len() == 3 && instances.values().all(|held| *held == 2)
    });
    for (index, user) in USERS.iter().enumerate() {
        sandbox.deliver(
            user,
            &message(9000 + index, ALICE, user, "Secret subject after rebalance"),
        );
    }
    wait_until("mail after the rebalance synced", WAIT, || {
        decided_everywhere(1 + 2 * USERS.len() as i64)
    });
    assert_exactly_once(&setup);
    assert_eq!(
        setup.count("decisions", "decision = 'synced' AND activity_id IS NULL"),
        0
    );
    for user in USERS {
        let verify = setup.mailsync(&["verify", "--user", user, "--json"]);
        assert!(verify.status.success(), "{verify:?}");
        assert!(
            String::from_utf8_lossy(&verify.stdout).contains("\"gaps\":[]"),
            "{user}: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }

    for daemon in &daemons {
        daemon.signal("HUP");
    }
    for daemon in &daemons {
        wait_until("every instance reloaded", WAIT, || {
            daemon.log_text().contains("config reloaded")
        });
    }
    for mut daemon in daemons {
        daemon.signal("TERM");
        assert_eq!(
            daemon.wait(Duration::from_secs(15)),
            Some(0),
            "{}",
            daemon.log_text()
        );
        assert_log_is_clean(&daemon.log_text());
    }
    assert!(
        live_instances(&setup).is_empty(),
        "a clean stop leaves the store"
    );
}

/// The instance name a daemon logged when it started.
fn instance_of(daemon: &common::gmail::Daemon) -> String {
    let mut name = None;
    wait_until("the daemon's start line", WAIT, || {
        name = daemon.log_text().lines().find_map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).ok()?;
            (row["message"] == "mailsync daemon started")
                .then(|| row["instance"].as_str().map(str::to_string))
                .flatten()
        });
        name.is_some()
    });
    name.unwrap()
}
