//! What ops see: notifications over a real SMTP conversation, Prometheus metrics that match
//! what happened, and status.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::gmail::{message, wait_until};
use common::scenario::{MailFile, Scenario};
use common::smtp::SmtpSink;

const ALICE: &str = "alice@customer.com";
const MICHELLE: &str = "michelle@abcorp.com";
const DAVE: &str = "dave@abcorp.com";
const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `count` messages for `user`'s mailbox, alternately from Alice (synced) and a stranger
/// (skipped).
fn alternating_mail(user: &str, count: usize) -> Vec<MailFile> {
    (0..count)
        .map(|i| {
            let from = if i % 2 == 0 {
                ALICE
            } else {
                "stranger@vendor.example"
            };
            let raw = message(i, from, user, &format!("Secret subject {i}"));
            (format!("{i}.eml"), raw.into_bytes())
        })
        .collect()
}

fn notify_section(smtp_port: u16) -> String {
    format!(
        "\n[notify]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\nsmtp_security = \"none\"\nfrom = \"mailsync <mailsync@abcorp.com>\"\nops = [\"ops@abcorp.com\"]\nnotify_user = true\nfailure_threshold = 2\nnotify_interval_secs = 3600\n"
    )
}

/// Parses the Prometheus text format strictly enough to fail on garbage: every sample line
/// is `name{labels} value`, every name was declared by `# TYPE`, the text ends with `# EOF`.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    let mut declared = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            declared.push(rest.split_whitespace().next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        if series.contains('{') {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        assert!(
            declared
                .iter()
                .any(|family| name.starts_with(family.as_str())),
            "{name} has no # TYPE"
        );
        samples.insert(series.to_string(), value);
    }
    samples
}

/// Michelle's mailbox of 6 and Dave's of 2, Alice a contact, per-user OAuth, `config` after
/// the users; Dave's grant revoked before anything runs.
fn michelle_and_revoked_dave(config: &str) -> (common::scenario::Sandbox, common::gmail::Setup) {
    let (sandbox, setup) = Scenario::new()
        .mailbox(MICHELLE, alternating_mail(MICHELLE, 6))
        .mailbox(DAVE, alternating_mail(DAVE, 2))
        .contacts(&[ALICE])
        .refresh_tokens()
        .config_after_users(config)
        .start();
    sandbox.control("revoke", &format!("user={DAVE}"), b"");
    (sandbox, setup)
}

#[test]
fn a_revoked_grant_sends_exactly_one_notification_and_metrics_match() {
    let smtp = SmtpSink::start();
    let metrics_port = free_port();
    let (sandbox, setup) = michelle_and_revoked_dave(&format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
        notify_section(smtp.port)
    ));

    let mut daemon = setup.start_daemon();
    wait_until("michelle synced", WAIT, || {
        setup.decisions(MICHELLE) == 6 && setup.state_of(MICHELLE) == "ok"
    });
    wait_until("dave needs reauth", WAIT, || {
        setup.state_of(DAVE) == "needs_reauth"
    });
    wait_until("the notification", WAIT, || !smtp.messages().is_empty());

    // A reload restarts Dave's worker, which fails again: still only one email.
    daemon.signal("HUP");
    wait_until("the reload", WAIT, || {
        daemon.log_text().contains("config reloaded")
    });
    std::thread::sleep(Duration::from_secs(3));
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "exactly one notification: {messages:#?}");
    let mail = &messages[0];
    assert_eq!(mail.from, "mailsync@abcorp.com");
    let mut to = mail.to.clone();
    to.sort();
    assert_eq!(to, vec!["dave@abcorp.com", "ops@abcorp.com"]);
    assert!(
        mail.data.contains("dave@abcorp.com needs re-authorization"),
        "{}",
        mail.data
    );
    assert!(
        mail.data
            .contains("mailsync auth login --user dave@abcorp.com")
    );
    for private in ["Secret subject", ALICE, "Body of message"] {
        assert!(
            !mail.data.contains(private),
            "the notification contains {private:?}"
        );
    }

    // Metrics: parse and compare with what happened.
    let (status, body, head) = common::gmail::http(
        "GET",
        &format!("http://127.0.0.1:{metrics_port}/metrics"),
        b"",
    );
    assert_eq!(status, 200, "{head}");
    let metrics = parse_metrics(&String::from_utf8(body).unwrap());
    let value = |series: &str| metrics.get(series).copied().unwrap_or(0.0);
    assert_eq!(
        value(&format!(
            "mailsync_messages_fetched_total{{user=\"{MICHELLE}\"}}"
        )),
        6.0
    );
    assert_eq!(
        value("mailsync_decisions_total{decision=\"synced\",reason=\"synced\"}"),
        3.0
    );
    assert_eq!(
        value("mailsync_decisions_total{decision=\"skipped\",reason=\"no_qualifying_party\"}"),
        3.0
    );
    let gets = value("mailsync_gmail_requests_total{method=\"users.messages.get\",status=\"200\"}");
    assert_eq!(
        gets as u64,
        sandbox.answers(MICHELLE, "messages.get", "200")
    );
    assert!(
        value(&format!(
            "mailsync_last_success_timestamp_seconds{{user=\"{MICHELLE}\"}}"
        )) > 1.7e9
    );
    assert!(metrics.contains_key(&format!("mailsync_sync_lag_seconds{{user=\"{MICHELLE}\"}}")));
    assert!(value(&format!("mailsync_sync_failures_total{{user=\"{DAVE}\"}}")) >= 1.0);
    assert!(value("mailsync_store_write_seconds_count") >= 1.0);
    for series in metrics.keys() {
        assert!(
            !series.contains(ALICE) && !series.contains("vendor.example"),
            "a contact address in a label: {series}"
        );
    }

    // Status shows the same health.
    let dave = setup.status_of(DAVE);
    assert!(
        dave["last_error"]
            .as_str()
            .unwrap()
            .contains("invalid_grant")
    );
    let michelle = setup.status_of(MICHELLE);
    assert!(michelle["lag_secs"].as_i64().unwrap() < 60);
    assert!(michelle["next_poll_at"].is_string());
    assert_eq!(michelle["consecutive_failures"], 0);

    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
    let log = daemon.log_text();
    assert!(log.contains("notification sent"));
    for private in [
        "Secret subject",
        ALICE,
        "stranger@vendor.example",
        "1//sandbox-",
        "ya29.",
    ] {
        assert!(!log.contains(private), "the log contains {private:?}");
    }
}

#[test]
fn repeated_failures_notify_once_the_threshold_is_reached() {
    let smtp = SmtpSink::start();
    let one_message = message(1, ALICE, MICHELLE, "Secret subject");
    let (_sandbox, setup) = Scenario::new()
        .mailbox(MICHELLE, [("1.eml".to_string(), one_message.into_bytes())])
        // Every Gmail request fails with a 500: polls keep failing.
        .sandbox_flags(&["--fault-rate", "1", "--fault-kind", "500"])
        .contacts(&[ALICE])
        .service_account()
        .config_after_users(&notify_section(smtp.port))
        .start();
    // One attempt per request, so each poll fails fast.
    setup.edit_config(|config| config.replace("max_attempts = 10", "max_attempts = 1"));
    let daemon = setup.start_daemon();
    wait_until("two failed polls and a notification", WAIT, || {
        !smtp.messages().is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "at most one per interval");
    assert!(
        messages[0]
            .data
            .contains("The last 2 polls of michelle@abcorp.com"),
        "{}",
        messages[0].data
    );
    let row = setup.status_of(MICHELLE);
    assert_eq!(row["state"], "error");
    assert!(row["consecutive_failures"].as_u64().unwrap() >= 2);
    drop(daemon);
}

#[test]
fn notify_test_sends_one_email() {
    let smtp = SmtpSink::start();
    let (_sandbox, setup) = Scenario::new()
        .mailbox(MICHELLE, [])
        .contacts(&[ALICE])
        .service_account()
        .start();
    // The notify section is what is tested: here it points at the sink, below at nothing.
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        format!("{config}{}", notify_section(smtp.port)),
    )
    .unwrap();
    let output = setup.mailsync(&["notify", "test"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].to, vec!["ops@abcorp.com"]);
    assert!(
        messages[0]
            .data
            .contains("Subject: mailsync: test notification")
    );

    // With nothing listening, the failure is clear and exits 1.
    let dead_port = free_port();
    std::fs::write(
        &setup.config,
        format!("{config}{}", notify_section(dead_port)),
    )
    .unwrap();
    let output = setup.mailsync(&["notify", "test"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains(&format!("SMTP relay 127.0.0.1:{dead_port} failed"))
    );
}

/// Runs Debian's headless Chromium on `url` with `args`; CI installs it (`.ci/run`).
fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let output = std::process::Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("Debian's chromium is needed for the status page test: apt-get install chromium");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The status page on the metrics listener, in a real browser: every mailbox with its state,
/// the one that needs re-authorisation marked as such, no mail content, no script; and a
/// screenshot that shows it (kept as target/status-page.png).
#[test]
fn the_status_page_shows_each_mailbox_in_a_browser() {
    let metrics_port = free_port();
    let (_sandbox, setup) = michelle_and_revoked_dave(&format!(
        "\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    ));
    let mut daemon = setup.start_daemon();
    wait_until("michelle synced, dave needing reauth", WAIT, || {
        setup.state_of(MICHELLE) == "ok" && setup.state_of(DAVE) == "needs_reauth"
    });
    let url = format!("http://127.0.0.1:{metrics_port}/status");
    let (status, body, head) = common::gmail::http("GET", &url, b"");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_lowercase().contains("content-type: text/html"),
        "{head}"
    );
    let page = String::from_utf8(body).unwrap();
    for private in ["Secret subject", ALICE, "Body of message"] {
        assert!(!page.contains(private), "the page shows {private:?}");
    }
    assert!(!page.contains("<script"), "the page needs no JavaScript");

    // What the browser makes of it.
    let dom = String::from_utf8(chromium(&["--dump-dom"], &url).stdout).unwrap();
    assert!(
        dom.contains(&format!(
            "<tr class=\"needs_reauth\" data-user=\"{DAVE}\" data-state=\"needs_reauth\">"
        )),
        "{dom}"
    );
    assert!(dom.contains("needs re-authorisation"));
    assert!(dom.contains(&format!("data-user=\"{MICHELLE}\" data-state=\"ok\"")));
    assert!(dom.contains("Messages synced per hour"));

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &[
            "--window-size=1280,800",
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (1280, 800));
    let channels = frame.color_type.samples();
    let pixels = &pixels[..frame.buffer_size()];
    let colours: std::collections::HashSet<&[u8]> = pixels.chunks(channels).collect();
    let inked = pixels
        .chunks(channels)
        .filter(|pixel| pixel[..3].iter().any(|&value| value < 128))
        .count();
    // Readable: text drawn (dark pixels on the white page), the badges and bars in colour,
    // and the needs-re-authorisation badge's red among them.
    assert!(
        colours.len() > 50,
        "{} colours: a blank page?",
        colours.len()
    );
    assert!(inked > 2_000, "{inked} dark pixels: no text?");
    assert!(
        pixels
            .chunks(channels)
            .any(|pixel| pixel[..3] == [0xfd, 0xe2, 0xe2]),
        "the needs_reauth badge is not drawn"
    );
    let kept = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page.png");
    let _ = std::fs::copy(&shot, &kept);

    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
}
