//! Where raw messages come from for `replay`: a folder of `.eml` files or an mbox file (the
//! Gmail source lives in `gmail`). Sources only read bytes; they never decide anything.
//!
//! Both read only regular files: a FIFO, socket or device (`mbox:/dev/zero`) could block
//! forever or never end, so it is refused before it is opened, and again after opening in
//! case the path was swapped in between. No message is held in memory beyond
//! `[limits] max_message_bytes`.

mod dir;
mod mbox;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use dir::{DirReader, read_dir};
pub use mbox::{MboxOpenError, MboxReader, Preamble, open_mbox};

/// One message as a source hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMessage {
    /// The message's name in its source: a file name, or a 1-based mbox position.
    pub source_id: String,
    pub raw: Vec<u8>,
    /// Gmail label ids from the API, or Takeout's `X-Gmail-Labels` names.
    pub labels: Vec<String>,
}

/// A source that could not hand over one message; the others carry on.
#[derive(Debug, thiserror::Error)]
#[error("cannot read message {source_id}: {problem}")]
pub struct SourceError {
    pub source_id: String,
    pub problem: SourceProblem,
}

/// Why a source did not hand over a message.
#[derive(Debug, thiserror::Error)]
pub enum SourceProblem {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The message is larger than `[limits] max_message_bytes`; its decision is a
    /// `parse_error` (`sync::process_too_large`).
    #[error("{0}")]
    TooLarge(TooLarge),
    /// The file stopped being a regular file between listing and reading.
    #[error("it is a {0}, not a regular file; not read")]
    NotRegular(FileKind),
    /// A file name that is not UTF-8 whose escaped form is another file's name, so both
    /// would be one message in the store.
    #[error(
        "its name is not UTF-8 and, written with \\xNN escapes, it is the name of another file in the folder; rename one of them"
    )]
    SourceIdTaken,
}

/// A message over `[limits] max_message_bytes`, read past without being kept. Its labels come
/// from its first bytes, so that an excluded label still decides it, as for any message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message is {bytes} bytes, over the {limit}-byte limit ([limits] max_message_bytes)")]
pub struct TooLarge {
    pub bytes: u64,
    pub limit: usize,
    pub labels: Vec<String>,
}

impl TooLarge {
    /// What `parse` says of a message over the limit, for the `parse_error` decision.
    pub fn parse_error(&self) -> crate::parse::ParseError {
        crate::parse::ParseError::TooLarge {
            bytes: usize::try_from(self.bytes).unwrap_or(usize::MAX),
            limit: self.limit,
        }
    }
}

/// What a directory entry or a path is, for refusing what is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    Regular,
    Folder,
    SymbolicLink,
    Fifo,
    Socket,
    Device,
    Other,
}

impl FileKind {
    pub fn of(file_type: std::fs::FileType) -> FileKind {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_file() {
            FileKind::Regular
        } else if file_type.is_dir() {
            FileKind::Folder
        } else if file_type.is_symlink() {
            FileKind::SymbolicLink
        } else if file_type.is_fifo() {
            FileKind::Fifo
        } else if file_type.is_socket() {
            FileKind::Socket
        } else if file_type.is_block_device() || file_type.is_char_device() {
            FileKind::Device
        } else {
            FileKind::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Regular => "regular file",
            FileKind::Folder => "folder",
            FileKind::SymbolicLink => "symbolic link",
            FileKind::Fifo => "FIFO",
            FileKind::Socket => "socket",
            FileKind::Device => "device",
            FileKind::Other => "special file",
        }
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Opens `path` only if it is a regular file; otherwise says what it is. The open is
/// non-blocking, so a FIFO put in place after the caller looked cannot hang it, and the type
/// is checked again on the opened file, which is what is read. With `follow_symlinks` false
/// a symbolic link is not followed (`dir:` reads the folder's own files only).
fn open_regular(path: &Path, follow_symlinks: bool) -> std::io::Result<Result<File, FileKind>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if !follow_symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(file) => file,
        // O_NOFOLLOW on a symbolic link fails with ELOOP.
        Err(error) if !follow_symlinks && error.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Err(FileKind::SymbolicLink));
        }
        Err(error) => return Err(error),
    };
    match FileKind::of(file.metadata()?.file_type()) {
        FileKind::Regular => Ok(Ok(file)),
        kind => Ok(Err(kind)),
    }
}

/// What `replay --source` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// Every file in a folder, sorted by name.
    Dir(PathBuf),
    /// An mboxrd file, such as a Google Takeout export.
    Mbox(PathBuf),
    /// The user's Gmail, through the API.
    Gmail,
}

impl std::str::FromStr for SourceSpec {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "gmail" {
            return Ok(SourceSpec::Gmail);
        }
        match value.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => Ok(SourceSpec::Dir(PathBuf::from(path))),
            Some(("mbox", path)) if !path.is_empty() => Ok(SourceSpec::Mbox(PathBuf::from(path))),
            _ => Err(format!(
                "`{value}` is not a source: use dir:PATH (a folder of .eml files), mbox:PATH (an mbox file) or gmail"
            )),
        }
    }
}

/// The `source` name of every decision that came from Gmail.
pub const GMAIL_SOURCE: &str = "gmail";

impl SourceSpec {
    /// The name recorded in the store's decision log: the kind and the absolute path, so two
    /// folders with the same file names stay apart.
    pub fn store_name(&self) -> String {
        let (kind, path) = match self {
            SourceSpec::Dir(path) => ("dir", path),
            SourceSpec::Mbox(path) => ("mbox", path),
            // Decisions from Gmail are keyed by Gmail message id, whichever path fetched them
            // (daemon or replay), so the two never decide the same message twice.
            SourceSpec::Gmail => return GMAIL_SOURCE.to_string(),
        };
        let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        format!("{kind}:{}", absolute.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_parse() {
        assert_eq!("dir:/a/b".parse(), Ok(SourceSpec::Dir("/a/b".into())));
        assert_eq!("mbox:x.mbox".parse(), Ok(SourceSpec::Mbox("x.mbox".into())));
        assert!("gmial:x".parse::<SourceSpec>().is_err());
        assert_eq!("gmail".parse(), Ok(SourceSpec::Gmail));
        assert!("dir:".parse::<SourceSpec>().is_err());
    }
}
