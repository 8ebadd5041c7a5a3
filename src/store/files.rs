//! Content-addressed attachment files: `<dir>/<first 2 hex>/<sha256 hex>`.
//!
//! A file's name is the lower-case hex SHA-256 of its content and nothing else: a name from
//! mail never becomes a path. Writes are crash-safe (a temporary file in the same folder,
//! fsync, rename, fsync of the folder) and happen inside the store's write transaction before
//! it commits, so a committed row never points to a missing file; a crash can at worst leave
//! an unreferenced file, which retention's sweep removes. Files are 0600, folders 0700.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;

/// True for exactly 64 lower-case hex digits: the only strings that become file names.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where the content with this hash lives; `None` unless `sha256` is 64 lower-case hex.
pub(super) fn content_path(dir: &Path, sha256: &str) -> Option<PathBuf> {
    is_sha256_hex(sha256).then(|| dir.join(&sha256[..2]).join(sha256))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::AttachmentFile {
        path: path.to_path_buf(),
        source,
    }
}

fn private_folder(path: &Path) -> Result<(), StoreError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_error(path))?;
    // `mode` applies to folders it creates; an existing one is tightened too.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io_error(path))
}

/// Writes `bytes` as the content with hash `sha256`, unless it is there already. Returns
/// whether a file was written.
pub(super) fn write_content(dir: &Path, sha256: &str, bytes: &[u8]) -> Result<bool, StoreError> {
    let Some(path) = content_path(dir, sha256) else {
        return Err(StoreError::Conflict(
            "an attachment hash is not 64 lower-case hex digits: this is a bug".to_string(),
        ));
    };
    if path.exists() {
        return Ok(false);
    }
    private_folder(dir)?;
    let folder = path.parent().expect("a content path has a fan-out folder");
    private_folder(folder)?;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let temporary = folder.join(format!(
        ".tmp-{sha256}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(folder)?.sync_all()
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(StoreError::AttachmentFile { path, source });
    }
    Ok(true)
}

/// Reads the content with hash `sha256` and checks it still has that hash.
pub(super) fn read_content(dir: &Path, sha256: &str) -> Result<Vec<u8>, StoreError> {
    use sha2::{Digest, Sha256};
    let path = content_path(dir, sha256).ok_or_else(|| {
        StoreError::Conflict("an attachment hash must be 64 lower-case hex digits".to_string())
    })?;
    let bytes = std::fs::read(&path).map_err(io_error(&path))?;
    if hex::encode(Sha256::digest(&bytes)) != sha256 {
        return Err(StoreError::AttachmentFile {
            path,
            source: std::io::Error::other(
                "content does not match its SHA-256; the file is damaged",
            ),
        });
    }
    Ok(bytes)
}

/// Removes the content with hash `sha256`; a file already gone is not an error. Returns
/// whether a file was removed.
pub(super) fn remove_content(dir: &Path, sha256: &str) -> Result<bool, StoreError> {
    let Some(path) = content_path(dir, sha256) else {
        return Ok(false);
    };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(StoreError::AttachmentFile { path, source }),
    }
}

/// Every content hash with a file in `dir`, and every leftover temporary file (a write
/// interrupted by a crash). Anything else in the folder is left alone.
pub(super) fn list_contents(dir: &Path) -> Result<(Vec<String>, Vec<PathBuf>), StoreError> {
    let mut hashes = Vec::new();
    let mut leftovers = Vec::new();
    let top = match std::fs::read_dir(dir) {
        Ok(top) => top,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((hashes, leftovers));
        }
        Err(source) => return Err(io_error(dir)(source)),
    };
    for folder in top {
        let folder = folder.map_err(io_error(dir))?;
        let name = folder.file_name();
        let Some(prefix) = name.to_str() else {
            continue;
        };
        if prefix.len() != 2 || !folder.path().is_dir() {
            continue;
        }
        let path = folder.path();
        for entry in std::fs::read_dir(&path).map_err(io_error(&path))? {
            let entry = entry.map_err(io_error(&path))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if is_sha256_hex(name) && name.starts_with(prefix) {
                hashes.push(name.to_string());
            } else if name.starts_with(".tmp-") {
                leftovers.push(entry.path());
            }
        }
    }
    Ok((hashes, leftovers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hex_hashes_become_paths() {
        let dir = Path::new("/store/attachments");
        let hash = "ab".repeat(32);
        assert_eq!(
            content_path(dir, &hash).unwrap(),
            dir.join("ab").join(&hash)
        );
        for hostile in [
            "../../etc/passwd",
            "/abs",
            "",
            &"AB".repeat(32),
            &format!("{}/", "a".repeat(63)),
            &"a".repeat(65),
        ] {
            assert!(content_path(dir, hostile).is_none(), "{hostile:?}");
        }
    }

    #[test]
    fn content_is_written_once_privately_and_read_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("attachments");
        let bytes = b"hello attachment";
        let hash = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(bytes))
        };
        assert!(write_content(&store, &hash, bytes).unwrap());
        assert!(
            !write_content(&store, &hash, bytes).unwrap(),
            "already there"
        );
        let path = content_path(&store, &hash).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&store), 0o700);
        assert_eq!(read_content(&store, &hash).unwrap(), bytes);
        assert_eq!(list_contents(&store).unwrap().0, vec![hash.clone()]);
        std::fs::write(&path, b"tampered").unwrap();
        assert!(read_content(&store, &hash).is_err());
        assert!(remove_content(&store, &hash).unwrap());
        assert!(!remove_content(&store, &hash).unwrap());
    }
}
