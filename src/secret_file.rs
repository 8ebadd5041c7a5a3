//! Files that hold secrets (a service-account key, an OAuth client secret, the SMTP password):
//! read only when nobody but their owner can read them. One rule for every such file, used by
//! the config check, the Gmail credentials and notifications alike.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error(
        "{path} is readable by group or others (mode {mode:o}): it holds a secret; run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Refuses a secret file that anyone but its owner can read (or that cannot be found).
pub fn check(path: &Path) -> Result<(), SecretFileError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).map_err(|source| SecretFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The file's content, after [`check`].
pub fn read(path: &Path) -> Result<Vec<u8>, SecretFileError> {
    check(path)?;
    std::fs::read(path).map_err(|source| SecretFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn secret_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = check(&path).unwrap_err().to_string();
        assert!(
            error.contains("key.json") && error.contains("readable by group or others"),
            "{error}"
        );
        assert!(read(&path).is_err(), "nothing is read from an open file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&path).unwrap(), b"{}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(check(&path).is_err());
        let missing = check(&dir.path().join("missing.json")).unwrap_err();
        assert!(
            matches!(missing, SecretFileError::Unreadable { .. }),
            "{missing}"
        );
    }
}
