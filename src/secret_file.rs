//! Files that hold secrets (a service-account key, an OAuth client secret, the SMTP password):
//! read only when nobody but their owner can read them. One rule for every such file, used by
//! the config check, the Gmail credentials and notifications alike.

use std::path::{Path, PathBuf};

/// Secrets are small (a service-account key is about 2 KiB); more is not a secret file.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error(
        "{path} is readable by group or others (mode {mode:o}): it holds a secret; run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is not a regular file: a secret must be kept in one")]
    NotAFile { path: PathBuf },
    #[error("{path} is larger than {MAX_SECRET_BYTES} bytes: it is not a secret file")]
    TooLarge { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Refuses a secret file that anyone but its owner can read, that is not a regular file,
/// that is too large, or that this process cannot read: what `read` would refuse.
pub fn check(path: &Path) -> Result<(), SecretFileError> {
    read(path).map(drop)
}

/// The file's content, if [`check`] passes. The file is opened once and what is checked is
/// what was opened (no window for a swap between a check and a read); opened non-blocking,
/// so that a FIFO put in a secret's place is refused instead of waited on.
pub fn read(path: &Path) -> Result<Vec<u8>, SecretFileError> {
    use std::io::Read;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let unreadable = |source| SecretFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(SecretFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut content = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut content)
        .map_err(unreadable)?;
    if content.len() as u64 > MAX_SECRET_BYTES {
        return Err(SecretFileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(content)
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

    #[test]
    fn a_secret_must_be_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // Nobody writes to it: a blocking open would wait forever.
        assert!(matches!(read(&fifo), Err(SecretFileError::NotAFile { .. })));
        assert!(matches!(
            check(dir.path()),
            Err(SecretFileError::NotAFile { .. })
        ));
        let large = dir.path().join("large.json");
        std::fs::write(&large, vec![b' '; 64 * 1024 + 1]).unwrap();
        std::fs::set_permissions(&large, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            read(&large),
            Err(SecretFileError::TooLarge { .. })
        ));
    }
}
