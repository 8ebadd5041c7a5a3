//! Problems found in files an operator wrote (config, rules, contact lists), each pinned to a
//! file and line so that `check-config` can print every one of them at once.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one file. `line` is 1-based; `None` when the problem is about the file as a
/// whole (unreadable, missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
    /// Where on the line, when known: the line's text, and the 1-based column and width
    /// (in characters) of what the problem is about.
    pub snippet: Option<Snippet>,
}

/// The line a problem is on, shown under it with a caret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    pub source: String,
    pub column: usize,
    pub width: usize,
}

impl Diagnostic {
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line,
            message: message.into(),
            snippet: None,
        }
    }

    pub fn with_snippet(mut self, snippet: Option<Snippet>) -> Self {
        self.snippet = snippet;
        self
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line: message`, then, when the place is known, the line and a caret under the
    /// column, as compilers show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message)?,
            None => write!(f, "{}: {}", self.file.display(), self.message)?,
        }
        if let (Some(line), Some(snippet)) = (self.line, &self.snippet) {
            let gutter = line.to_string().len();
            write!(
                f,
                "\n{line:>gutter$} | {}\n{:>gutter$} | {}{} column {}",
                crate::printable::escape(&snippet.source),
                "",
                " ".repeat(snippet.column.saturating_sub(1)),
                "^".repeat(snippet.width.max(1)),
                snippet.column,
            )?;
        }
        Ok(())
    }
}

/// Every problem found while loading a set of files; loading never stops at the first one.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok(value)` when nothing was found, else every problem, sorted by file and line.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.sorted())
        }
    }

    /// The same problems, by file and line.
    pub fn sorted(mut self) -> Diagnostics {
        self.0
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(diagnostic: Diagnostic) -> Self {
        Diagnostics(vec![diagnostic])
    }
}

/// The candidate most like `typed`, if it is close enough to be a likely typo (Jaro-Winkler
/// similarity of at least 0.85, case ignored): the one "did you mean" of every message.
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let typed = typed.to_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            (
                strsim::jaro_winkler(&typed, &candidate.to_lowercase()),
                candidate,
            )
        })
        .filter(|(similarity, _)| *similarity >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}
