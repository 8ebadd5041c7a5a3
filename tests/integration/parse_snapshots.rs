//! What the parser makes of real, ugly mail (`tests/fixtures/corpus/`), as reviewed
//! snapshots: a change in parsing shows up as a diff to look at, not as silence.
//! Update with `cargo insta review` (or `INSTA_UPDATE=always cargo test --test parse_snapshots`).

use crate::common;

use mailsync::parse::{ParsedMessage, parse_message};
use mailsync::source::MboxReader;
use serde_json::json;

/// Licence and provenance files sit beside the fixtures; they are not mail.
fn is_mail_fixture(name: &str) -> bool {
    let upper = name.to_uppercase();
    !(upper.contains("LICENSE")
        || upper.contains("COPYING")
        || upper.contains("NOTICE")
        || upper.ends_with(".MD")
        || upper.ends_with(".JSON"))
}

/// The facts mailsync decides and stores on, with the body cut short to keep snapshots
/// readable.
fn summary(parsed: &Result<ParsedMessage, mailsync::parse::ParseError>) -> serde_json::Value {
    match parsed {
        Err(error) => json!({ "error": error.to_string() }),
        Ok(message) => {
            let addresses = |list: &[mailsync::parse::Mailbox]| -> Vec<String> {
                list.iter()
                    .map(|m| match &m.display_name {
                        Some(name) => format!("{name} <{}>", m.address),
                        None => m.address.clone(),
                    })
                    .collect()
            };
            let body = message.body_text.as_deref().map(|body| {
                let start: String = body.chars().take(160).collect();
                json!({ "chars": body.chars().count(), "start": start })
            });
            json!({
                "from": addresses(&message.from),
                "to": addresses(&message.to),
                "cc": addresses(&message.cc),
                "bcc": addresses(&message.bcc),
                "subject": message.subject,
                "date": message.date.map(|d| d.to_rfc3339()),
                "message_id": message.message_id,
                "in_reply_to": message.in_reply_to,
                "references": message.references.len(),
                "body": body,
                "attachments": message.attachments,
                "gmail_labels": message.gmail_labels,
                "automation": message.automation,
                "problems": message.problems,
            })
        }
    }
}

#[test]
fn corpus_fixtures_parse_as_reviewed() {
    let root = common::fixtures().join("corpus");
    let mut folders: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut snapshots = 0;
    for folder in folders {
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if !is_mail_fixture(&name) {
                continue;
            }
            let bytes = std::fs::read(&file).unwrap();
            let folder_name = folder.file_name().unwrap().to_string_lossy().into_owned();
            let value = if name.ends_with(".mbox") {
                let messages: Vec<serde_json::Value> = MboxReader::new(bytes.as_slice())
                    .map(|m| {
                        let m = m.unwrap();
                        json!({ "position": m.source_id, "labels": m.labels, "parsed": summary(&parse_message(&m.raw)) })
                    })
                    .collect();
                json!(messages)
            } else {
                summary(&parse_message(&bytes))
            };
            insta::assert_json_snapshot!(format!("{folder_name}__{name}"), value);
            snapshots += 1;
        }
    }
    assert!(snapshots >= 25, "only {snapshots} fixtures found");
}
