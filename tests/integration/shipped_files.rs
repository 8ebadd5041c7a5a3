//! The files the repository ships for operators (the example config, example rules, the
//! privacy example, the systemd unit) must be valid: a broken example is a broken first
//! impression.

use crate::common;

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
    assert!(
        matches!(&config.store, mailsync::config::StoreLocation::Sqlite { path } if path.starts_with("/var/lib/mailsync")),
        "{}",
        config.store
    );
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
    let demo = common::demo().join("mailsync.toml");
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

/// The ready-made label rules are valid, say what the README promises, and the demo ships
/// the same file.
#[test]
fn ready_made_label_rules_are_valid_and_the_demo_uses_them() {
    let demo = common::demo().join("mailsync.toml");
    let config = Config::load(&demo).unwrap();
    let path = repo().join("rules/labels.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let rules = RuleSet::from_files(vec![(path, text.clone())], &config)
        .unwrap_or_else(|problems| panic!("{problems}"));
    let shipped: Vec<(Option<&str>, &str)> = rules
        .rules
        .iter()
        .map(|rule| (rule.matcher.label.as_deref(), rule.action.as_str()))
        .collect();
    assert_eq!(
        shipped,
        [
            (Some("crm/private"), "private"),
            (Some("crm/never"), "skip")
        ]
    );
    assert_eq!(
        std::fs::read_to_string(common::demo().join("rules/labels.toml")).unwrap(),
        text,
        "the demo's copy is the shipped file"
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.contains("rules/labels.toml /etc/mailsync/rules/labels.toml"));
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
    let config = Config::load(&common::demo().join("mailsync.toml")).unwrap();
    let rules = RuleSet::from_files(vec![(PathBuf::from("docs/privacy.md"), example)], &config)
        .unwrap_or_else(|problems| panic!("{problems}"));
    assert_eq!(rules.rules.len(), 5);
}

// ---------------------------------------------------------------------------------------------
// The repository stands alone: links resolve, nothing points outside it, fixtures exist.

/// Folders that are not the repository's own files: build output, generated fuzz corpora,
/// the demo's playground.
const NOT_OURS: &[&str] = &[
    ".git",
    "target",
    "mailsync-demo",
    "fuzz/corpus",
    "fuzz/artifacts",
    "fuzz/coverage",
];

/// Every file of the repository, relative to its root, sorted.
fn repository_files() -> Vec<PathBuf> {
    let root = repo();
    let mut stack = vec![root.clone()];
    let mut files = Vec::new();
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(&root).unwrap().to_path_buf();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                let skipped = NOT_OURS
                    .iter()
                    .any(|not_ours| relative == Path::new(not_ours))
                    || relative.file_name().is_some_and(|name| name == "target");
                if !skipped {
                    stack.push(path);
                }
            } else if kind.is_file() && relative != Path::new(".git") {
                // (`.git` is a file in a git worktree.)
                files.push(relative);
            }
        }
    }
    files.sort();
    files
}

/// Text outside fenced code blocks, with inline code spans kept (link texts often are code).
fn markdown_outside_fences(text: &str) -> Vec<(usize, &str)> {
    let mut inside = false;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
        } else if !inside {
            lines.push((index + 1, line));
        }
    }
    lines
}

/// The targets of inline links `[text](target)` and `![alt](target)` in a line, without an
/// optional title.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        if !target.is_empty() {
            targets.push(target.trim_matches(['<', '>']).to_string());
        }
        rest = &after[end..];
    }
    targets
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces made hyphens.
fn heading_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors a Markdown file offers: one per heading (a repeated heading gets `-1`, `-2`,
/// ... as on GitHub).
fn anchors_of(text: &str) -> std::collections::HashSet<String> {
    let mut anchors = std::collections::HashSet::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (_, line) in markdown_outside_fences(text) {
        let trimmed = line.trim_start();
        let level = trimmed.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&level) || !trimmed[level..].starts_with(' ') {
            continue;
        }
        let anchor = heading_anchor(trimmed[level..].trim_end_matches('#'));
        let count = seen.entry(anchor.clone()).or_default();
        anchors.insert(if *count == 0 {
            anchor.clone()
        } else {
            format!("{anchor}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// Every relative link in every Markdown file of the repository leads to a file or folder of
/// the repository, and a `#anchor` to a heading of the Markdown file it names.
#[test]
fn every_relative_link_in_the_markdown_files_resolves() {
    let root = repo().canonicalize().unwrap();
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in repository_files() {
        if file.extension().is_none_or(|ext| ext != "md") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(&file)) else {
            continue;
        };
        for (line_number, line) in markdown_outside_fences(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = match target.split_once('#') {
                    Some((path, anchor)) => (path, Some(anchor)),
                    None => (target.as_str(), None),
                };
                let at = format!("{}:{line_number}: ({target})", file.display());
                let resolved = if path.is_empty() {
                    root.join(&file)
                } else if path.starts_with('/') {
                    broken.push(format!("{at}: an absolute path; use a relative one"));
                    continue;
                } else {
                    root.join(file.parent().unwrap()).join(path)
                };
                let Ok(resolved) = resolved.canonicalize() else {
                    broken.push(format!("{at}: no such file"));
                    continue;
                };
                if !resolved.starts_with(&root) {
                    broken.push(format!("{at}: outside the repository"));
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                if resolved.extension().is_some_and(|ext| ext == "md") {
                    let target_text = std::fs::read_to_string(&resolved).unwrap();
                    if !anchors_of(&target_text).contains(anchor) {
                        broken.push(format!("{at}: no heading with the anchor #{anchor}"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 100, "only {checked} relative links found");
}

/// No file of the repository outside `.ci/` points at the project's shared folder beside it
/// (its spec or corpus, by a relative path or by name) or at an absolute path of the machine
/// it was written on: a clean clone has nothing beside it. Mail fixtures are byte-exact copies
/// and are left out, but not the notes about them.
#[test]
fn no_file_points_outside_the_repository() {
    // Built from pieces so that this file does not match itself.
    let beside = concat!("..", "/shared");
    let shared_paths = [concat!("shared", "/spec/"), concat!("shared", "/corpus")];
    let machine = concat!("/wo", "rk/");
    let mut found = Vec::new();
    for file in repository_files() {
        let name = file.to_string_lossy().replace('\\', "/");
        if name.starts_with(".ci/") {
            continue;
        }
        if name.starts_with("tests/fixtures/") && !name.ends_with(".md") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(repo().join(&file)) else {
            continue; // not text
        };
        for (index, line) in text.lines().enumerate() {
            let outside = line.contains(beside)
                || line.contains(machine)
                || shared_paths.iter().any(|needle| line.contains(needle));
            if outside {
                found.push(format!("{name}:{}: {}", index + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "files that point outside the repository (use docs/spec/..., tests/fixtures/... or \
         MAILSYNC_CORPUS):\n{}",
        found.join("\n")
    );
}

/// Every fixture path that the tests, benchmarks and fuzz scripts name — a literal
/// `tests/fixtures/...` or `fixtures().join("...")` — exists.
#[test]
fn every_fixture_path_named_by_tests_benches_and_fuzz_scripts_exists() {
    let mut named = 0;
    let mut missing = Vec::new();
    for file in repository_files() {
        let name = file.to_string_lossy().replace('\\', "/");
        let scanned = (name.starts_with("tests/") && name.ends_with(".rs"))
            || (name.starts_with("benches/") && name.ends_with(".rs"))
            || (name.starts_with("fuzz/") && (name.ends_with(".sh") || name.ends_with(".rs")));
        if !scanned {
            continue;
        }
        let text = std::fs::read_to_string(repo().join(&file)).unwrap();
        for (index, line) in text.lines().enumerate() {
            let mut paths = Vec::new();
            let mut rest = line;
            while let Some(at) = rest.find("tests/fixtures") {
                let path: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || "_-./@+".contains(*c))
                    .collect();
                rest = &rest[at + path.len()..];
                paths.push(path);
            }
            let mut rest = line;
            while let Some(at) = rest.find("fixtures().join(\"") {
                let after = &rest[at + "fixtures().join(\"".len()..];
                let Some(end) = after.find('"') else { break };
                paths.push(format!("tests/fixtures/{}", &after[..end]));
                rest = &after[end..];
            }
            for path in paths {
                let path = path.trim_end_matches(['.', ',']).trim_end_matches('/');
                named += 1;
                if !repo().join(path).exists() {
                    missing.push(format!("{name}:{}: {path}", index + 1));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "missing fixtures:\n{}",
        missing.join("\n")
    );
    assert!(named > 10, "only {named} fixture paths found");
}

/// Each file of the curated corpus has its origin and licence in the corpus README, with the
/// sha256 of what is in the repository; licence and provenance files are listed there too.
#[test]
fn every_curated_corpus_file_has_its_origin_and_licence() {
    use sha2::{Digest, Sha256};

    let corpus = common::fixtures().join("corpus");
    let readme = std::fs::read_to_string(corpus.join("README.md")).unwrap();
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split(" | ")
            .map(|cell| cell.trim().to_string())
            .collect()
    };
    let section = |heading: &str| -> Vec<Vec<String>> {
        readme
            .split(&format!("\n{heading}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("the corpus README has `{heading}`"))
            .split("\n## ")
            .next()
            .unwrap()
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(cells)
            .collect()
    };
    let mut listed = std::collections::HashSet::new();
    for row in section("## Messages") {
        let [path, origin, sha256, licence, _why] = row.as_slice() else {
            panic!("a message row has five cells: {row:?}")
        };
        let path = path.trim_matches('`');
        let bytes = std::fs::read(corpus.join(path))
            .unwrap_or_else(|error| panic!("{path} is listed but cannot be read: {error}"));
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            sha256.trim_matches('`'),
            "{path}: the sha256 in the README"
        );
        assert!(
            origin.contains(" @ `") && origin.contains("`: `"),
            "{path}: the origin names a repository, a commit and a path: {origin}"
        );
        assert!(!licence.is_empty(), "{path}: a licence");
        listed.insert(path.to_string());
    }
    for row in section("## Licence and provenance files") {
        let folder = row[0].trim_matches('`');
        for name in row[1].split(", ") {
            listed.insert(format!("{folder}{}", name.trim_matches('`')));
        }
    }
    let mut unlisted = Vec::new();
    for file in repository_files() {
        let Ok(relative) = file.strip_prefix("tests/fixtures/corpus") else {
            continue;
        };
        let relative = relative.to_string_lossy().replace('\\', "/");
        if relative != "README.md" && !listed.contains(&relative) {
            unlisted.push(relative);
        }
    }
    assert!(
        unlisted.is_empty(),
        "curated corpus files without origin and licence in tests/fixtures/corpus/README.md: \
         {unlisted:?}"
    );
    assert!(listed.len() >= 40);
}

/// ARCHITECTURE.md's code map matches the tree: every path it names exists, and every file and
/// folder directly under `src/` (and each crate) is named, so a new module cannot go unmapped.
#[test]
fn the_code_map_matches_the_tree() {
    let architecture = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let code_map = architecture
        .split("## Code map")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("ARCHITECTURE.md has a Code map section");
    let named: Vec<&str> = code_map
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|token| {
            [
                "src/",
                "crates/",
                "tests/",
                "benches/",
                "fuzz/",
                "docs/",
                "examples/",
            ]
            .iter()
            .any(|prefix| token.starts_with(prefix))
        })
        .collect();
    assert!(
        named.len() > 30,
        "only {} paths in the code map",
        named.len()
    );
    let missing: Vec<&&str> = named
        .iter()
        .filter(|path| !repo().join(path.trim_end_matches('/')).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "the code map names paths that do not exist: {missing:?}"
    );
    let mut unmapped = Vec::new();
    for entry in std::fs::read_dir(repo().join("src")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let is_folder = repo().join("src").join(&name).is_dir();
        let path = if is_folder {
            format!("src/{name}/")
        } else {
            format!("src/{name}")
        };
        if !named.contains(&path.as_str()) {
            unmapped.push(path);
        }
    }
    unmapped.sort();
    assert!(
        unmapped.is_empty(),
        "not in ARCHITECTURE.md's code map: {unmapped:?}"
    );
}

/// The metric names a PromQL expression uses (`mailsync_*`, `process_*`, `up`).
fn metrics_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    for c in expr.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            if word.starts_with("mailsync_") || word.starts_with("process_") || word == "up" {
                names.push(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    names
}

/// The shipped alert rules and Grafana dashboard load, and every metric they use is one the
/// daemon exports from its first scrape (Prometheus's own `up` aside).
#[test]
fn shipped_alerts_and_dashboard_use_only_metrics_that_exist() {
    // As the daemon sets them up at start.
    let metrics = mailsync::metrics::Metrics::new();
    metrics.register_methods(mailsync::gmail::client::Method::ALL.map(|method| method.as_str()));
    metrics.register_user("dave@abcorp.com", mailsync::store::SyncStatus::Ok);
    metrics.synced("dave@abcorp.com");
    let exported: std::collections::HashSet<String> = metrics
        .render()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let exists = |name: &str| name == "up" || exported.contains(name);

    let text = std::fs::read_to_string(repo().join("ops/prometheus/mailsync-alerts.yml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("the alert rules are YAML");
    let rules = docs[0]["groups"][0]["rules"]
        .as_vec()
        .expect("one group of rules");
    let mut alerts = Vec::new();
    for rule in rules {
        let name = rule["alert"].as_str().expect("every rule is an alert");
        let expr = rule["expr"].as_str().expect("every alert has an expr");
        assert!(rule["annotations"]["summary"].as_str().is_some(), "{name}");
        assert!(
            rule["annotations"]["description"].as_str().is_some(),
            "{name}"
        );
        for metric in metrics_in(expr) {
            assert!(
                exists(&metric),
                "alert {name} uses {metric}, which is not exported"
            );
        }
        alerts.push(name.to_string());
    }
    for wanted in [
        "MailsyncNeedsReauth",
        "MailsyncSyncLag",
        "MailsyncVerifyGaps",
        "MailsyncQuotaRefusals",
        "MailsyncPollsStopped",
    ] {
        assert!(alerts.iter().any(|alert| alert == wanted), "no {wanted}");
    }

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("ops/grafana/mailsync-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    let mut used = std::collections::HashSet::new();
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for metric in metrics_in(expr) {
                assert!(
                    exists(&metric),
                    "panel {} uses {metric}, which is not exported",
                    panel["title"]
                );
                used.insert(metric);
            }
        }
    }
    assert!(used.contains("mailsync_user_state") && used.contains("process_resident_memory_bytes"));
}
