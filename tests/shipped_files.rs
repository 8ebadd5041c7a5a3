//! The files the repository ships for operators (example rules, the README's example
//! config) must be valid: a broken example is a broken first impression.

mod common;

use std::path::{Path, PathBuf};

use mailsync::config::Config;
use mailsync::rules::RuleSet;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The first ```toml block under the README's "Configuration" heading.
fn readme_example_config() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Configuration")
        .nth(1)
        .expect("README has a Configuration section");
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = section[start..].find("```").unwrap() + start;
    section[start..end].to_string()
}

#[test]
fn readme_example_config_is_valid() {
    let config = Config::from_toml(
        Path::new("/etc/mailsync/mailsync.toml"),
        readme_example_config(),
    )
    .unwrap_or_else(|problems| panic!("README example config:\n{problems}"));
    assert!(!config.users.is_empty());
}

#[test]
fn example_rules_are_valid_with_the_demo_users() {
    let demo = common::fixtures().join("demo/mailsync.toml");
    let config = Config::load(&demo).unwrap();
    let example = repo().join("rules/example.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let rules = RuleSet::from_files(vec![(example, text)], &config)
        .unwrap_or_else(|problems| panic!("{problems}"));
    assert_eq!(rules.rules.len(), 6);
    // The shipped newsletter rule skips a contact's bulk mail and leaves their own mail alone.
    let policy = mailsync::rules::Policy::new(config, rules);
    let user = policy
        .config
        .user_by_address("michelle@abcorp.com")
        .unwrap();
    let contacts: mailsync::rules::ContactBook =
        std::collections::HashSet::from(["alice@customer.com".to_string()]).into();
    let decide = |extra: &str| {
        let raw = format!(
            "From: alice@customer.com\nTo: michelle@abcorp.com\n{extra}Subject: s\n\nbody\n"
        );
        let parsed = mailsync::parse::parse_message(raw.as_bytes());
        mailsync::rules::decide(&policy, user, &[], parsed.as_ref(), &contacts)
    };
    let newsletter = decide("List-Unsubscribe: <mailto:u@customer.com>\n");
    assert_eq!(newsletter.reason.as_str(), "blocked_by_rule");
    assert_eq!(newsletter.rule_names(), ["no newsletters or auto-replies"]);
    assert_eq!(decide("").reason.as_str(), "synced");
}

/// The unit file has what the ops promises rest on, and systemd itself finds nothing wrong
/// with it (where `systemd-analyze` is installed).
#[test]
fn systemd_unit_is_hardened_and_valid() {
    let unit = std::fs::read_to_string(repo().join("systemd/mailsync.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "User=mailsync",
        "StateDirectory=mailsync",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "WatchdogSec=",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "the unit lacks {line}"
        );
    }
    let Ok(output) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze not installed; only the keys were checked");
        return;
    };
    assert!(output.status.success());
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("mailsync.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/mailsync", env!("CARGO_BIN_EXE_mailsync")),
    )
    .unwrap();
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
}

/// The README's privacy-model example is a valid rules file for the demo's users.
#[test]
fn readme_privacy_example_rules_are_valid() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Privacy model")
        .nth(1)
        .expect("README has a Privacy model section");
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = section[start..].find("```").unwrap() + start;
    let config = Config::load(&common::fixtures().join("demo/mailsync.toml")).unwrap();
    let rules = RuleSet::from_files(
        vec![(PathBuf::from("README.md"), section[start..end].to_string())],
        &config,
    )
    .unwrap_or_else(|problems| panic!("{problems}"));
    assert_eq!(rules.rules.len(), 5);
}
