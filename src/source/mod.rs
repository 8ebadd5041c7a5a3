//! Where raw messages come from for `replay`: a folder of `.eml` files or an mbox file (the
//! Gmail source lives in `gmail`). Sources only read bytes; they never decide anything.

mod dir;
mod mbox;

use std::path::PathBuf;

pub use dir::read_dir;
pub use mbox::MboxReader;

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
#[error("cannot read message {source_id}: {error}")]
pub struct SourceError {
    pub source_id: String,
    pub error: std::io::Error,
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

impl SourceSpec {
    /// The name recorded in the store's decision log: the kind and the absolute path, so two
    /// folders with the same file names stay apart.
    pub fn store_name(&self) -> String {
        let (kind, path) = match self {
            SourceSpec::Dir(path) => ("dir", path),
            SourceSpec::Mbox(path) => ("mbox", path),
            // Decisions from Gmail are keyed by Gmail message id, whichever path fetched them
            // (daemon or replay), so the two never decide the same message twice.
            SourceSpec::Gmail => return crate::sync::gmail::GMAIL_SOURCE.to_string(),
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
