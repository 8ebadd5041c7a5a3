//! What `mailsync --version` and the `mailsync_build_info` metric say about the build: the
//! commit it was built from (`unknown` outside a git checkout) and the build date (UTC, or
//! `SOURCE_DATE_EPOCH`'s for a reproducible build).

use std::process::Command;

fn main() {
    // Only this repository's commit: a crate unpacked inside another checkout has none.
    let own_checkout = Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .is_some_and(|top| {
            std::fs::canonicalize(top.trim()).ok()
                == std::env::var("CARGO_MANIFEST_DIR")
                    .ok()
                    .and_then(|dir| std::fs::canonicalize(dir).ok())
        });
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|commit| commit.trim().to_string())
        .filter(|commit| own_checkout && !commit.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let built = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|epoch| epoch.parse::<i64>().ok())
        .and_then(|epoch| chrono::DateTime::from_timestamp(epoch, 0))
        .unwrap_or_else(chrono::Utc::now);
    println!("cargo:rustc-env=MAILSYNC_COMMIT={commit}");
    println!(
        "cargo:rustc-env=MAILSYNC_BUILD_DATE={}",
        built.format("%Y-%m-%d")
    );
    // A new commit (HEAD moving, or the branch it names) means new build facts. Only paths
    // that exist are watched: a missing one would make cargo run this script at every build.
    for watched in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(path) = git_path(watched).filter(|path| std::path::Path::new(path).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}

/// Where git keeps `name` for this checkout (a worktree's own folder included).
fn git_path(name: &str) -> Option<String> {
    Command::new("git")
        .args(["rev-parse", "--git-path", name])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|path| path.trim().to_string())
        .filter(|path| !path.is_empty())
}
