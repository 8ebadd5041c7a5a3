//! A folder of message files, one message per file.

use std::path::Path;

use super::{SourceError, SourceMessage};
use crate::parse;

/// Every regular file in `folder`, sorted by file name. Hidden files (editor and OS litter
/// such as `.DS_Store`) are skipped. Files are read lazily, one at a time.
pub fn read_dir(
    folder: &Path,
) -> std::io::Result<impl Iterator<Item = Result<SourceMessage, SourceError>>> {
    let mut paths: Vec<_> = std::fs::read_dir(folder)?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| entry.path())
        .collect();
    paths.sort();
    Ok(paths.into_iter().map(|path| {
        let source_id = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        match std::fs::read(&path) {
            Ok(raw) => Ok(SourceMessage {
                labels: parse::gmail_labels(&raw),
                source_id,
                raw,
            }),
            Err(error) => Err(SourceError { source_id, error }),
        }
    }))
}
