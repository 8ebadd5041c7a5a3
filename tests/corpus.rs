//! The whole shared corpus of real-world mail (`../shared/corpus/`, beside the repository)
//! through parse and decide: nothing may panic, and every mbox in it splits into messages
//! that are each decided.
//!
//! The corpus is not copied into the repository (a selection is, in `tests/fixtures/corpus`).
//! When it is missing the test says so and passes, unless `MAILSYNC_REQUIRE_CORPUS=1` (set
//! by `.ci/run`), where a missing corpus is a failure.

mod common;

use std::path::{Path, PathBuf};

use mailsync::parse::parse_message;
use mailsync::rules::{ContactBook, decide};
use mailsync::source::MboxReader;

const CONFIG: &str = r#"
[company]
domains = ["abcorp.com"]
[store]
path = "unused.sqlite3"
[[users]]
email = "michelle@abcorp.com"
sync = true
"#;

fn corpus_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if root.is_dir() {
        return Some(root);
    }
    assert!(
        std::env::var("MAILSYNC_REQUIRE_CORPUS").as_deref() != Ok("1"),
        "MAILSYNC_REQUIRE_CORPUS=1 but there is no corpus at {}",
        root.display()
    );
    eprintln!("no shared corpus at {}; skipped", root.display());
    None
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    let mut files = Vec::new();
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && meta.len() < 10 * 1024 * 1024 {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_corpus_file_is_parsed_and_decided_without_a_panic() {
    let Some(root) = corpus_root() else { return };
    let policy = common::policy(CONFIG, "");
    let user = policy
        .config
        .user_by_address("michelle@abcorp.com")
        .unwrap();
    let contacts = ContactBook::default();
    let (mut mail, mut not_mail, mut mbox_messages) = (0, 0, 0);
    let mut panics = Vec::new();
    for path in files_under(&root) {
        let bytes = std::fs::read(&path).unwrap();
        let is_mbox = path.extension().is_some_and(|ext| ext == "mbox");
        let outcome = std::panic::catch_unwind(|| {
            let messages: Vec<Vec<u8>> = if is_mbox {
                MboxReader::new(bytes.as_slice())
                    .map(|m| m.unwrap().raw)
                    .collect()
            } else {
                vec![bytes.clone()]
            };
            let mut parsed_ok = 0;
            for raw in &messages {
                let parsed = parse_message(raw);
                parsed_ok += usize::from(parsed.is_ok());
                let decision = decide(&policy, user, &[], parsed.as_ref(), &contacts);
                assert_eq!(decision.reason.as_str() == "parse_error", parsed.is_err());
            }
            (messages.len(), parsed_ok)
        });
        match outcome {
            Ok((count, parsed_ok)) if is_mbox => {
                assert!(
                    count > 0 && parsed_ok == count,
                    "{}: {parsed_ok} of {count} mbox messages parsed",
                    path.display()
                );
                mbox_messages += count;
            }
            Ok((_, 1)) => mail += 1,
            Ok(_) => not_mail += 1,
            Err(_) => panics.push(path.display().to_string()),
        }
    }
    println!(
        "corpus: {mail} files read as mail, {not_mail} not mail, {mbox_messages} messages in mbox files"
    );
    assert!(panics.is_empty(), "panicked on {panics:?}");
    // The corpus is mostly mail: if most of it stopped parsing, something broke.
    assert!(mail > 350, "only {mail} corpus files parsed as mail");
    assert!(mbox_messages > 50);
}

/// Every message of the real Google Takeout export carries labels, and the mbox reader
/// hands them over for the excluded-label decision.
#[test]
fn takeout_labels_of_the_real_export_are_read() {
    let Some(root) = corpus_root() else { return };
    let takeout = files_under(&root).into_iter().find(|p| {
        p.to_string_lossy().contains("takeout") && p.extension().is_some_and(|e| e == "mbox")
    });
    let Some(takeout) = takeout else {
        panic!("the corpus has a Takeout mbox")
    };
    let bytes = std::fs::read(&takeout).unwrap();
    let messages: Vec<_> = MboxReader::new(bytes.as_slice())
        .map(|m| m.unwrap())
        .collect();
    assert!(!messages.is_empty());
    let labelled = messages.iter().filter(|m| !m.labels.is_empty()).count();
    assert_eq!(
        labelled,
        messages.len(),
        "every Takeout message carries X-Gmail-Labels"
    );
}
