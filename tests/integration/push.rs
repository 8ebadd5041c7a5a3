//! Push against the sandbox, both as built binaries over loopback: `users.watch` and
//! `users.stop` through the real google-gmail1 client, notifications pulled through the real
//! google-pubsub1 client with the service account's own token, and each failure the sandbox
//! can inject (pulls refused, notifications dropped or duplicated, watches running out).
//!
//! The config polls every second (`poll_interval_secs = 1`) and, while push works, only
//! every `safety_poll_secs`: with a long safety poll, mail stored within seconds came by
//! push, and mail stored while pulling fails came by the fallback to polling.

use crate::common;

use std::time::{Duration, Instant};

use common::gmail::{Daemon, Setup, message, wait_until};
use common::logs::assert_log_is_clean;
use common::scenario::{MailFile, PUSH_SUBSCRIPTION, PUSH_TOPIC, Sandbox, Scenario};
use common::smtp::SmtpSink;

const ALICE: &str = "alice@customer.com";
const MICHELLE: &str = "michelle@abcorp.com";
const DAVE: &str = "dave@abcorp.com";
const WAIT: Duration = Duration::from_secs(60);
/// Long enough that nothing in a test is found by the safety poll.
const NEVER: u64 = 3_600;

fn mail_from_alice(user: &str, index: usize) -> MailFile {
    (
        format!("{index:04}.eml"),
        message(index, ALICE, user, &format!("Push subject {index}")).into_bytes(),
    )
}

/// Michelle's and Dave's mailboxes, one message from Alice each; Alice is a contact.
fn two_mailboxes(safety_poll_secs: u64) -> Scenario {
    Scenario::new()
        .mailbox(MICHELLE, [mail_from_alice(MICHELLE, 1)])
        .mailbox(DAVE, [mail_from_alice(DAVE, 2)])
        .contacts(&[ALICE])
        .service_account()
        .push(safety_poll_secs)
}

fn push_state(setup: &Setup, user: &str) -> String {
    setup
        .status()
        .into_iter()
        .find(|row| row["user"] == user)
        .and_then(|row| row["push"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Starts the daemon and waits until every mailbox is synced and reached by push.
fn start_pushing(setup: &Setup, users: &[&str]) -> Daemon {
    let daemon = setup.start_daemon();
    wait_until("every mailbox reached by push", WAIT, || {
        users.iter().all(|user| push_state(setup, user) == "push")
    });
    daemon
}

fn activities(setup: &Setup) -> i64 {
    setup.count("activities", "1")
}

/// Delivers a message from Alice to `user` and returns how long it took to be stored.
fn deliver_and_time(sandbox: &Sandbox, setup: &Setup, user: &str, index: usize) -> Duration {
    let before = activities(setup);
    let delivered = Instant::now();
    sandbox.deliver(user, &message(index, ALICE, user, "Fresh"));
    wait_until("the delivered message stored", WAIT, || {
        activities(setup) == before + 1
    });
    delivered.elapsed()
}

/// Runs a command that must succeed; its standard output.
fn succeeds(setup: &Setup, args: &[&str]) -> String {
    let output = setup.mailsync(args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn requests(sandbox: &Sandbox, user: &str, method: &str) -> u64 {
    sandbox.stats()["users"][user]["requests"][method]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_notification_brings_new_mail_in_seconds_and_idle_mailboxes_are_not_polled() {
    let scenario = two_mailboxes(NEVER);
    let (sandbox, setup) = scenario.start();
    let daemon = start_pushing(&setup, &[MICHELLE, DAVE]);
    for user in [MICHELLE, DAVE] {
        let status = setup.status_of(user);
        let expires = chrono::DateTime::parse_from_rfc3339(
            status["watch_expires_at"].as_str().expect("a watch"),
        )
        .expect("RFC 3339");
        let days = (expires.timestamp() - chrono::Utc::now().timestamp()) / 86_400;
        assert!(
            (6..=7).contains(&days),
            "{user}: the watch runs {days} days"
        );
        assert_eq!(requests(&sandbox, user, "watch"), 1, "{user}: one watch");
        assert!(
            !sandbox.stats()["users"][user]["watch"].is_null(),
            "{user}: the sandbox has the watch"
        );
    }
    // Polling would ask every second; with push nothing asks while nothing happens.
    let polls = requests(&sandbox, MICHELLE, "history.list");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        requests(&sandbox, MICHELLE, "history.list"),
        polls,
        "an idle mailbox is not polled while push works"
    );
    let daves_polls = requests(&sandbox, DAVE, "history.list");
    let elapsed = deliver_and_time(&sandbox, &setup, MICHELLE, 10);
    assert!(
        elapsed < Duration::from_secs(5),
        "stored {elapsed:?} after delivery"
    );
    assert!(requests(&sandbox, MICHELLE, "history.list") > polls);
    assert_eq!(
        requests(&sandbox, DAVE, "history.list"),
        daves_polls,
        "only the mailbox that changed is asked"
    );
    assert_eq!(activities(&setup), 3);
    assert_log_is_clean(&daemon.log_text());
}

#[test]
fn when_pulling_fails_every_mailbox_is_polled_until_it_works_again() {
    let smtp = SmtpSink::start();
    let (sandbox, setup) = two_mailboxes(NEVER)
        .config_after_users(&format!(
            "\n[notify]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nsmtp_security = \"none\"\nfrom = \"mailsync <mailsync@abcorp.com>\"\nops = [\"ops@abcorp.com\"]\nnotify_user = true\n",
            smtp.port
        ))
        .start();
    let daemon = start_pushing(&setup, &[MICHELLE, DAVE]);
    sandbox.push_faults(serde_json::json!({"pull_failure": 503}));
    wait_until("every mailbox polled instead", WAIT, || {
        [MICHELLE, DAVE]
            .iter()
            .all(|user| push_state(&setup, user) == "polling")
    });
    // Pulling is down, so only polling can bring this in.
    deliver_and_time(&sandbox, &setup, DAVE, 20);
    wait_until("ops told", WAIT, || !smtp.messages().is_empty());
    let told = smtp.messages();
    assert_eq!(told.len(), 1, "one notification, to ops only");
    assert_eq!(
        told[0].to,
        vec!["ops@abcorp.com".to_string()],
        "not a user's business"
    );
    // Unfolded, and quoted-printable's soft line breaks taken out.
    let text = told[0].data.replace("=\r\n", "").replace("\r\n ", " ");
    assert!(text.contains("push notifications fail"), "{text}");
    assert!(
        text.contains("projects/sandbox/subscriptions/mailsync"),
        "{text}"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("pulling push notifications failed"),
        "the fallback is logged"
    );
    sandbox.push_faults(serde_json::json!({"pull_failure": null}));
    wait_until("back to push", WAIT, || {
        [MICHELLE, DAVE]
            .iter()
            .all(|user| push_state(&setup, user) == "push")
    });
    assert!(daemon.log_text().contains("works again; back to push"));
    let elapsed = deliver_and_time(&sandbox, &setup, MICHELLE, 21);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_log_is_clean(&daemon.log_text());
}

/// Each way pulling can fail from the start, and what the log says to fix: the mailboxes are
/// polled, and new mail still arrives.
#[test]
fn every_way_pulling_fails_means_polling_and_the_log_says_what_to_fix() {
    let cases: &[(&str, &str)] = &[
        (
            "403",
            "give the service account the Pub/Sub Subscriber role",
        ),
        ("404", "no subscription by that name"),
        ("network", "cannot reach Pub/Sub"),
    ];
    for (failure, advice) in cases {
        let (sandbox, setup) = two_mailboxes(NEVER).start();
        if *failure == "network" {
            // A port nothing listens on.
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = closed.local_addr().unwrap().port();
            drop(closed);
            setup.edit_config(|config| {
                config.replace(
                    &format!("pubsub_base_url = \"{}\"", sandbox.base_url),
                    &format!("pubsub_base_url = \"http://127.0.0.1:{port}/\""),
                )
            });
        } else {
            let status: u16 = failure.parse().unwrap();
            sandbox.push_faults(serde_json::json!({ "pull_failure": status }));
        }
        let daemon = setup.start_daemon();
        wait_until(
            &format!("{failure}: both mailboxes synced and polled"),
            WAIT,
            || {
                [MICHELLE, DAVE]
                    .iter()
                    .all(|user| push_state(&setup, user) == "polling")
                    && activities(&setup) == 2
            },
        );
        deliver_and_time(&sandbox, &setup, MICHELLE, 30);
        let log = daemon.log_text();
        assert!(log.contains(advice), "{failure}: the log says {advice:?}");
        assert_log_is_clean(&log);
    }
}

#[test]
fn lost_notifications_are_found_by_the_safety_poll() {
    let (sandbox, setup) = two_mailboxes(2).start();
    let _daemon = start_pushing(&setup, &[MICHELLE, DAVE]);
    sandbox.push_faults(serde_json::json!({"drop_rate": 1.0}));
    let elapsed = deliver_and_time(&sandbox, &setup, MICHELLE, 40);
    assert!(
        elapsed < Duration::from_secs(2 + 5),
        "found by the safety poll after {elapsed:?}"
    );
    assert!(sandbox.stats()["pubsub"]["dropped"].as_u64().unwrap_or(0) >= 1);
}

#[test]
fn duplicated_notifications_store_each_message_once() {
    let (sandbox, setup) = two_mailboxes(NEVER).start();
    let _daemon = start_pushing(&setup, &[MICHELLE, DAVE]);
    sandbox.push_faults(serde_json::json!({"duplicate_rate": 1.0}));
    for index in 50..55 {
        deliver_and_time(&sandbox, &setup, MICHELLE, index);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        sandbox.stats()["pubsub"]["duplicated"]
            .as_u64()
            .unwrap_or(0)
            >= 5
    );
    assert_eq!(activities(&setup), 2 + 5);
    assert_eq!(setup.decisions(MICHELLE), 1 + 5);
    assert_eq!(
        setup.count(
            "(SELECT message_id, count(*) AS n FROM activities GROUP BY 1)",
            "n > 1"
        ),
        0
    );
}

#[test]
fn a_watch_close_to_running_out_is_renewed_and_turning_sync_off_stops_it() {
    let (sandbox, setup) = two_mailboxes(NEVER).start();
    let daemon = start_pushing(&setup, &[MICHELLE, DAVE]);
    // As if the watch were six days old: the next poll renews it.
    let soon = chrono::Utc::now().timestamp() + 3_600;
    setup.write_sql(&format!(
        "UPDATE sync_state SET watch_expires_at = {soon} WHERE user_email = '{MICHELLE}'"
    ));
    deliver_and_time(&sandbox, &setup, MICHELLE, 60);
    wait_until("the watch renewed", WAIT, || {
        requests(&sandbox, MICHELLE, "watch") == 2
    });
    wait_until("the renewal recorded", WAIT, || {
        setup.status_of(MICHELLE)["watch_expires_at"]
            .as_str()
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .is_some_and(|at| at.timestamp() > soon + 86_400)
    });
    setup.edit_config(|config| {
        config.replace(
            &format!("email = \"{DAVE}\"\nsync = true"),
            &format!("email = \"{DAVE}\"\nsync = false"),
        )
    });
    daemon.signal("HUP");
    wait_until("Dave's watch stopped", WAIT, || {
        requests(&sandbox, DAVE, "stop") == 1 && sandbox.stats()["users"][DAVE]["watch"].is_null()
    });
    wait_until("and forgotten", WAIT, || {
        setup.status_of(DAVE)["watch_expires_at"].is_null()
    });
    assert_eq!(requests(&sandbox, MICHELLE, "stop"), 0);
}

#[test]
fn with_per_user_oauth_push_pulls_with_a_service_account_of_its_own() {
    let scenario = Scenario::new()
        .mailbox(MICHELLE, [mail_from_alice(MICHELLE, 1)])
        .contacts(&[ALICE])
        .refresh_tokens();
    let (sandbox, setup) = scenario.start();
    // Added after the set-up: without a key it is a config error, which every command
    // (the contacts import of the set-up too) refuses.
    setup.edit_config(|config| {
        config.replace(
            "[[users]]",
            &format!(
                "[gmail.push]\ntopic = \"{PUSH_TOPIC}\"\nsubscription = \"{PUSH_SUBSCRIPTION}\"\npubsub_base_url = \"{}\"\nsafety_poll_secs = {NEVER}\n\n[[users]]",
                sandbox.base_url
            ),
        )
    });
    let output = setup.mailsync(&["check-config"]);
    assert_eq!(output.status.code(), Some(2), "no key to pull with");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[gmail.push] needs `service_account_key`"),
        "{stderr}"
    );
    let line = std::fs::read_to_string(&setup.config)
        .unwrap()
        .lines()
        .position(|line| line == "[gmail.push]")
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("mailsync.toml:{line}")),
        "{stderr}"
    );
    common::gmail::write_credentials(
        setup.dir.path(),
        &sandbox.base_url,
        common::gmail::Auth::ServiceAccount,
    );
    setup.edit_config(|config| {
        config.replace(
            "[gmail.push]\n",
            "[gmail.push]\nservice_account_key = \"service-account.json\"\n",
        )
    });
    assert!(
        succeeds(&setup, &["check-config"])
            .contains("pulled from projects/sandbox/subscriptions/mailsync")
    );
    let mut daemon = start_pushing(&setup, &[MICHELLE]);
    let elapsed = deliver_and_time(&sandbox, &setup, MICHELLE, 70);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(WAIT), Some(0));
    // Offboarding: the purge ends the watch first, while the user's token is still there.
    assert!(
        succeeds(&setup, &["purge", "--user", MICHELLE, "--yes"])
            .contains("stopped michelle@abcorp.com's Gmail watch")
    );
    assert_eq!(requests(&sandbox, MICHELLE, "stop"), 1);
    assert!(sandbox.stats()["users"][MICHELLE]["watch"].is_null());
}

#[test]
fn on_postgresql_a_notification_reaches_the_instance_holding_the_mailbox() {
    let owners = [
        "ann@abcorp.com",
        "bo@abcorp.com",
        "cy@abcorp.com",
        "di@abcorp.com",
    ];
    let mut scenario = Scenario::new()
        .contacts(&[ALICE])
        .service_account()
        .push(NEVER)
        .postgres();
    for (index, owner) in owners.iter().enumerate() {
        scenario = scenario.mailbox(owner, [mail_from_alice(owner, index)]);
    }
    let (sandbox, setup) = scenario.start();
    let _first = setup.start_daemon();
    let _second = setup.start_daemon();
    wait_until(
        "the mailboxes shared by two instances, all by push",
        WAIT,
        || {
            let status = setup.status();
            let holders: std::collections::HashSet<&str> = status
                .iter()
                .filter_map(|row| row["instance"].as_str())
                .collect();
            holders.len() == 2 && status.iter().all(|row| row["push"] == "push")
        },
    );
    // Both instances pull the one subscription, so about half of the notifications reach
    // the instance that does not hold the mailbox, and must be handed on.
    for (index, owner) in owners.iter().enumerate() {
        let elapsed = deliver_and_time(&sandbox, &setup, owner, 80 + index);
        assert!(elapsed < Duration::from_secs(5), "{owner}: {elapsed:?}");
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(activities(&setup), 8);
    assert_eq!(setup.count("mailbox_wakes", "1"), 0, "every wake-up taken");
}
