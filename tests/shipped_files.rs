//! The files the repository ships for operators (the example config, example rules, the
//! privacy example, the systemd unit) must be valid: a broken example is a broken first
//! impression.

mod common;

use std::path::{Path, PathBuf};

use mailsync::config::Config;
use mailsync::rules::RuleSet;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The first ```toml block under `heading` in a Markdown file of the repository.
fn toml_block_under(file: &str, heading: &str) -> String {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let section = text
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("{file} has a section `{heading}`"));
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = section[start..].find("```").unwrap() + start;
    section[start..end].to_string()
}

/// `examples/mailsync.toml`, the config the README's quick start installs, is valid as it
/// would be read from `/etc/mailsync/mailsync.toml`, and shows what a real Workspace needs.
#[test]
fn example_config_is_valid() {
    let text = std::fs::read_to_string(repo().join("examples/mailsync.toml")).unwrap();
    let config = Config::from_toml(Path::new("/etc/mailsync/mailsync.toml"), text)
        .unwrap_or_else(|problems| panic!("examples/mailsync.toml:\n{problems}"));
    assert_eq!(
        config.gmail.service_account_key.as_deref(),
        Some(Path::new("/etc/mailsync/service-account.json"))
    );
    assert!(config.gmail.client_secret.is_none());
    assert!(config.store_path.starts_with("/var/lib/mailsync"));
    assert!(
        config
            .attachments_dir
            .as_ref()
            .is_some_and(|dir| dir.starts_with("/var/lib/mailsync")),
        "the unit lets the daemon write only under /var/lib/mailsync"
    );
    assert_eq!(
        config.rules_dir.as_deref(),
        Some(Path::new("/etc/mailsync/rules"))
    );
    assert!(config.notify.is_some() && config.metrics.is_some());
    assert!(config.users.iter().any(|user| user.sync));
    assert!(config.users.iter().any(|user| !user.sync));
}

/// The short config in the configuration reference is valid too.
#[test]
fn configuration_reference_example_is_valid() {
    let text = toml_block_under("docs/configuration.md", "## A short config");
    let config = Config::from_toml(Path::new("/etc/mailsync/mailsync.toml"), text)
        .unwrap_or_else(|problems| panic!("docs/configuration.md example:\n{problems}"));
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

/// The privacy model's CEO example (`docs/privacy.md`) is a valid rules file for the demo's
/// users.
#[test]
fn privacy_example_rules_are_valid() {
    let example = toml_block_under("docs/privacy.md", "## The CEO example");
    let config = Config::load(&common::fixtures().join("demo/mailsync.toml")).unwrap();
    let rules = RuleSet::from_files(vec![(PathBuf::from("docs/privacy.md"), example)], &config)
        .unwrap_or_else(|problems| panic!("{problems}"));
    assert_eq!(rules.rules.len(), 5);
}
