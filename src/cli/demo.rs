//! `mailsync demo`: a playground that runs the whole pipeline on bundled data, so a new user
//! sees what mailsync does before pointing it at real mail.
//!
//! The files are the ones under `tests/fixtures/demo/`, compiled in so the binary needs
//! nothing else. The demo writes them into a folder and then does exactly what an operator
//! would: import the contacts, replay each mailbox, read the feed.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::{
    CommandResult, ContactsCommand, DemoArgs, ExitStatus, FeedArgs, ReplayArgs, load_policy,
};
use crate::source::SourceSpec;

/// Every file of the demo, by path inside the demo folder.
const DEMO_FILES: &[(&str, &[u8])] = &[
    (
        "contacts.csv",
        include_bytes!("../../tests/fixtures/demo/contacts.csv"),
    ),
    (
        "mailboxes/ceo/01-bookkeeper.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/ceo/01-bookkeeper.eml"),
    ),
    (
        "mailboxes/ceo/02-alice-thanks.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/ceo/02-alice-thanks.eml"),
    ),
    (
        "mailboxes/dave/01-reply-to-alice-cc.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/dave/01-reply-to-alice-cc.eml"),
    ),
    (
        "mailboxes/dave/02-bob.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/dave/02-bob.eml"),
    ),
    (
        "mailboxes/michelle/01-alice-asks.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/michelle/01-alice-asks.eml"),
    ),
    (
        "mailboxes/michelle/02-reply-to-alice.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/michelle/02-reply-to-alice.eml"),
    ),
    (
        "mailboxes/michelle/03-from-dave.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/michelle/03-from-dave.eml"),
    ),
    (
        "mailboxes/michelle/04-stranger.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/michelle/04-stranger.eml"),
    ),
    (
        "mailboxes/michelle/05-doctor-cc.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/michelle/05-doctor-cc.eml"),
    ),
    (
        "mailboxes/michelle/06-draft.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/michelle/06-draft.eml"),
    ),
    (
        "mailboxes/michelle/07-not-a-message.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/michelle/07-not-a-message.eml"),
    ),
    (
        "mailboxes/michelle/08-group-and-encoded.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/michelle/08-group-and-encoded.eml"),
    ),
    (
        "mailboxes/michelle/09-subsidiary.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/michelle/09-subsidiary.eml"),
    ),
    (
        "mailboxes/michelle/10-freelancer.eml",
        include_bytes!("../../tests/fixtures/demo/mailboxes/michelle/10-freelancer.eml"),
    ),
    (
        "mailsync.toml",
        include_bytes!("../../tests/fixtures/demo/mailsync.toml"),
    ),
    (
        "rules/demo.toml",
        include_bytes!("../../tests/fixtures/demo/rules/demo.toml"),
    ),
];

/// Which folder under `mailboxes/` belongs to which user.
const MAILBOXES: &[(&str, &str)] = &[
    ("michelle", "michelle@abcorp.com"),
    ("dave", "dave@abcorp.com"),
    ("ceo", "ceo@abcorp.com"),
];

pub fn run(args: DemoArgs) -> CommandResult {
    let dir = args.dir.as_path();
    write_files(dir)?;
    let config_path = dir.join("mailsync.toml");
    let policy = load_policy(&config_path)?;
    let mut status = ExitStatus::Success;

    heading(&format!("importing {}", dir.join("contacts.csv").display()))?;
    let import = ContactsCommand::Import {
        file: dir.join("contacts.csv"),
    };
    status = worse(status, super::contacts::run(&policy, import)?);
    for (folder, user) in MAILBOXES {
        heading(&format!("replaying {user}'s mailbox"))?;
        let replay = ReplayArgs {
            user: user.to_string(),
            source: SourceSpec::Dir(dir.join("mailboxes").join(folder)),
            dry_run: false,
            json: false,
        };
        status = worse(status, super::replay::run(&policy, replay)?);
    }
    for viewer in ["dave@abcorp.com", "michelle@abcorp.com"] {
        heading(&format!("what {viewer} sees"))?;
        let feed = FeedArgs {
            viewer: viewer.to_string(),
            contact: None,
            limit: None,
            json: false,
        };
        super::feed::run(&policy, feed)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nThe store is {store}. Try:\n  mailsync --config {config} explain --user michelle@abcorp.com {example}\n  mailsync --config {config} feed --as michelle@abcorp.com --json",
        store = policy.config.store_path.display(),
        config = config_path.display(),
        example = dir.join("mailboxes/michelle/05-doctor-cc.eml").display(),
    )?;
    Ok(status)
}

fn heading(text: &str) -> std::io::Result<()> {
    writeln!(std::io::stdout().lock(), "\n== {text} ==")
}

fn worse(a: ExitStatus, b: ExitStatus) -> ExitStatus {
    if a == ExitStatus::Success { b } else { a }
}

/// Writes the bundled files, leaving any the user has edited alone so the playground can be
/// played with.
fn write_files(dir: &Path) -> anyhow::Result<()> {
    for (relative, content) in DEMO_FILES {
        let path = dir.join(relative);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in list must be exactly the fixture folder, so a fixture added for the
    /// demo cannot be silently left out of the binary.
    #[test]
    fn demo_files_match_the_fixture_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo");
        let mut on_disk = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else if !path.to_string_lossy().contains(".sqlite3") {
                    // A store made by running commands against the fixture config is not part
                    // of the demo.
                    on_disk.push(
                        path.strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        on_disk.sort();
        let compiled: Vec<String> = DEMO_FILES
            .iter()
            .map(|(path, _)| path.to_string())
            .collect();
        assert_eq!(compiled, on_disk);
        for (path, content) in DEMO_FILES {
            assert_eq!(std::fs::read(root.join(path)).unwrap(), *content, "{path}");
        }
    }
}
