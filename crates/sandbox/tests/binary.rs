//! The `mailsync-sandbox` binary as a test harness runs it: it refuses any address but
//! loopback, prints where it listens, answers, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sandbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailsync-sandbox"))
}

#[test]
fn refuses_addresses_other_than_loopback() {
    let mailboxes = tempfile::tempdir().unwrap();
    for address in ["0.0.0.0:0", "[::]:0"] {
        let output = sandbox()
            .arg("--mailboxes")
            .arg(mailboxes.path())
            .args(["--listen", address])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("listens on loopback only"),
            "{output:?}"
        );
    }
}

#[test]
fn serves_on_loopback_and_stops_on_sigterm() {
    let mailboxes = tempfile::tempdir().unwrap();
    std::fs::create_dir(mailboxes.path().join("alice@example.com")).unwrap();
    std::fs::write(
        mailboxes.path().join("alice@example.com/1.eml"),
        "From: bob@customer.com\r\nTo: alice@example.com\r\nSubject: Hi\r\n\r\nHello\r\n",
    )
    .unwrap();
    let mut child = sandbox()
        .arg("--mailboxes")
        .arg(mailboxes.path())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    stdout.read_line(&mut banner).unwrap();
    let mut mailboxes_line = String::new();
    stdout.read_line(&mut mailboxes_line).unwrap();
    assert_eq!(mailboxes_line.trim(), "mailboxes: alice@example.com");
    let address = banner
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected banner {banner:?}"))
        .to_string();

    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "GET /sandbox/stats HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"users\""), "{response}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn push_flags_that_make_no_sense_are_usage_errors() {
    let mailboxes = tempfile::tempdir().unwrap();
    let cases: [&[&str]; 5] = [
        &["--pubsub-topic", "gmail"],
        &["--pubsub-subscription", "projects/p/subscriptions/s"],
        &[
            "--pubsub-subscription",
            "projects/p/subscriptions/s=projects/p/topics/unknown",
        ],
        &["--ack-deadline-secs", "0"],
        &["--push-drop-rate", "1.5"],
    ];
    for flags in cases {
        let output = sandbox()
            .arg("--mailboxes")
            .arg(mailboxes.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {output:?}");
    }
}
