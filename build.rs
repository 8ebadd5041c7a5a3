//! What `mailsync --version` and the `mailsync_build_info` metric say about the build: the
//! commit it was built from (`unknown` outside a git checkout) and the build date (UTC, or
//! `SOURCE_DATE_EPOCH`'s for a reproducible build).

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|commit| commit.trim().to_string())
        .filter(|commit| !commit.is_empty())
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
    // A new commit (HEAD moving, or the branch it names) means new build facts.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
