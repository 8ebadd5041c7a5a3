//! The Debian package: what `packaging/build-deb.sh` makes from the production binary. CI
//! builds the package after the production build and runs this with `MAILSYNC_DEB` naming it;
//! without it, only the packaging metadata is checked.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What ops need from the package, by where it lands.
const INSTALLED: &[&str] = &[
    "./usr/bin/mailsync",
    "./usr/lib/systemd/system/mailsync.service",
    "./usr/share/man/man1/mailsync.1.gz",
    "./usr/share/bash-completion/completions/mailsync",
    "./usr/share/zsh/vendor-completions/_mailsync",
    "./usr/share/fish/vendor_completions.d/mailsync.fish",
    "./usr/share/doc/mailsync/examples/mailsync.toml",
    "./usr/share/doc/mailsync/examples/rules/example.toml",
    "./usr/share/doc/mailsync/examples/rules/labels.toml",
    "./usr/share/doc/mailsync/ops/mailsync-alerts.yml",
    "./usr/share/doc/mailsync/ops/mailsync-dashboard.json",
];

/// Every asset the manifest lists is a file in the repository or one the build script makes,
/// and every place above is one of them.
#[test]
fn the_package_metadata_lists_what_ops_need() {
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let script = std::fs::read_to_string(repo().join("packaging/build-deb.sh")).unwrap();
    let mut targets = Vec::new();
    for asset in deb["assets"].as_array().unwrap() {
        let source = asset[0].as_str().unwrap();
        let target = asset[1].as_str().unwrap();
        let made = source.starts_with("target/");
        assert!(
            made || repo().join(source).is_file(),
            "{source} is not in the repository"
        );
        if let Some(generated) = source.strip_prefix("target/package/") {
            assert!(
                script.contains(generated),
                "build-deb.sh does not make {source}"
            );
        }
        targets.push(if target.ends_with('/') {
            format!(
                "./{target}{}",
                Path::new(source).file_name().unwrap().to_string_lossy()
            )
        } else {
            format!("./{target}")
        });
    }
    // The unit comes from `systemd-units` (the build script's copy for /usr/bin); the man page
    // is compressed by cargo-deb.
    for wanted in INSTALLED
        .iter()
        .filter(|path| !path.ends_with("mailsync.service"))
    {
        let wanted = wanted.trim_end_matches(".gz");
        assert!(
            targets.iter().any(|t| t == wanted),
            "no asset installs {wanted}"
        );
    }
    assert_eq!(
        deb["systemd-units"]["unit-scripts"].as_str(),
        Some("target/package")
    );
    assert!(script.contains("mailsync.service"));
    let postinst = std::fs::read_to_string(repo().join("packaging/debian/postinst")).unwrap();
    assert!(postinst.contains("groupadd --system mailsync"));
    assert!(
        postinst.contains("useradd --system --gid mailsync")
            && postinst.contains("/var/lib/mailsync")
    );
    assert!(postinst.contains("#DEBHELPER#"));
}

/// The package itself, when CI has built it: every file in place, the production binary
/// (no test server) with its commit, the unit pointing at it, and the system user made.
#[test]
fn the_debian_package_holds_the_production_binary_and_what_ops_need() {
    let Some(deb) = std::env::var_os("MAILSYNC_DEB") else {
        eprintln!("MAILSYNC_DEB is not set: CI builds the package and sets it");
        return;
    };
    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in INSTALLED {
        assert!(
            listing.lines().any(|line| line.ends_with(path)),
            "{path} is not in the package:\n{listing}"
        );
    }
    let root = tempfile::tempdir().unwrap();
    assert!(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(root.path())
            .status()
            .unwrap()
            .success()
    );
    let binary = root.path().join("usr/bin/mailsync");
    let version = Command::new(&binary).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.contains("(commit ") && !version.contains("commit unknown"),
        "{version}"
    );
    let demo = Command::new(&binary)
        .args(["demo", "--dir"])
        .arg(root.path().join("demo"))
        .output()
        .unwrap();
    assert_eq!(
        demo.status.code(),
        Some(2),
        "the production binary has no demo"
    );
    assert!(
        String::from_utf8_lossy(&demo.stderr)
            .contains("built without the Gmail-compatible test server")
    );
    let unit = std::fs::read_to_string(root.path().join("usr/lib/systemd/system/mailsync.service"))
        .unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/mailsync"), "{unit}");
    assert!(!unit.contains("/usr/local/bin"), "{unit}");
    let completions = std::fs::read_to_string(
        root.path()
            .join("usr/share/bash-completion/completions/mailsync"),
    )
    .unwrap();
    assert!(completions.contains("_mailsync()"));
    let control = Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("postinst")
        .output()
        .unwrap();
    let postinst = String::from_utf8_lossy(&control.stdout);
    assert!(
        postinst.contains("useradd --system")
            && postinst.contains("install -d -m 0700 -o mailsync -g mailsync /var/lib/mailsync"),
        "{postinst}"
    );
}
