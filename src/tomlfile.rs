//! Loads a TOML file into a typed structure and reports every problem with its line.
//!
//! serde stops at the first error and, with `deny_unknown_fields`, names an unknown key without
//! saying where the others are. Operators fixing a config at 3 a.m. deserve the whole list, so
//! unknown keys are collected with `serde_ignored` instead, and every problem (syntax, type,
//! unknown key, or a later semantic check that names a key path) is turned into `file:line`
//! through the spans of toml's own parse tree.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::{Diagnostic, Diagnostics, Snippet};

/// One step into a TOML document: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPathSegment {
    Key(String),
    Index(usize),
}

/// Where a value sits in a document, e.g. `users[2].email`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<KeyPathSegment>);

impl KeyPath {
    pub fn key(mut self, key: &str) -> Self {
        self.0.push(KeyPathSegment::Key(key.to_string()));
        self
    }

    pub fn index(mut self, index: usize) -> Self {
        self.0.push(KeyPathSegment::Index(index));
        self
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                KeyPathSegment::Key(key) if position == 0 => write!(f, "{key}")?,
                KeyPathSegment::Key(key) => write!(f, ".{key}")?,
                KeyPathSegment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The keys a table at a path may hold (`serde_introspect` of its type); empty when unknown.
pub type KnownKeys = dyn Fn(&KeyPath) -> &'static [&'static str];

/// A parsed file that can still answer "on which line is this key?" for later checks.
pub struct TomlFile {
    pub path: PathBuf,
    text: String,
}

impl TomlFile {
    pub fn new(path: &Path, text: String) -> Self {
        TomlFile {
            path: path.to_path_buf(),
            text,
        }
    }

    /// Deserializes the whole document. On success also returns the problems that did not
    /// prevent deserialization (unknown keys), so callers can add their own and report all.
    pub fn deserialize<T: DeserializeOwned>(&self) -> (Option<T>, Diagnostics) {
        self.deserialize_suggesting(&|_| &[])
    }

    /// [`TomlFile::deserialize`], suggesting for an unknown key the known key of its table
    /// (`known` gives them for the table at a path) it most likely misspells.
    pub fn deserialize_suggesting<T: DeserializeOwned>(
        &self,
        known: &KnownKeys,
    ) -> (Option<T>, Diagnostics) {
        let mut diagnostics = Diagnostics::default();
        let table = match DeTable::parse(&self.text) {
            Ok(table) => table,
            Err(error) => {
                diagnostics.push(self.error_diagnostic(&error));
                return (None, diagnostics);
            }
        };
        let mut unknown_keys = Vec::new();
        let deserializer = toml::de::Deserializer::from(table);
        let value = serde_ignored::deserialize(deserializer, |path| {
            unknown_keys.push(key_path_of(&path));
        });
        for key_path in unknown_keys {
            diagnostics.push(self.unknown_key(&key_path, &key_path, known));
        }
        match value {
            Ok(value) => (Some(value), diagnostics),
            Err(error) => {
                diagnostics.push(self.error_diagnostic(&error));
                (None, diagnostics)
            }
        }
    }

    /// Deserializes each table of the top-level array `key` (`[[key]]` sections) on its own,
    /// so that a type error in one does not hide the problems of the others (serde stops at
    /// the first). Returns the items that deserialized, with their index, and every problem
    /// of every item; the rest of the document is the caller's to check.
    pub fn deserialize_items<T: DeserializeOwned>(
        &self,
        key: &str,
        known: &KnownKeys,
    ) -> (Vec<(usize, T)>, Diagnostics) {
        let mut diagnostics = Diagnostics::default();
        let mut items = Vec::new();
        let root = match DeTable::parse(&self.text) {
            Ok(root) => root,
            Err(error) => {
                diagnostics.push(self.error_diagnostic(&error));
                return (items, diagnostics);
            }
        };
        let array = root
            .get_ref()
            .iter()
            .find(|(candidate, _)| candidate.get_ref().as_ref() == key)
            .map(|(_, value)| value);
        let Some(DeValue::Array(array)) = array.map(Spanned::get_ref) else {
            return (items, diagnostics);
        };
        for (index, item) in array.iter().enumerate() {
            let at = KeyPath::default().key(key).index(index);
            let DeValue::Table(table) = item.get_ref() else {
                diagnostics.push(self.diagnostic(&at, format!("`{at}` must be a table")));
                continue;
            };
            let deserializer =
                toml::de::Deserializer::from(Spanned::new(item.span(), table.clone()));
            let mut unknown_keys = Vec::new();
            let value = serde_ignored::deserialize(deserializer, |path| {
                unknown_keys.push(key_path_of(&path));
            });
            for relative in unknown_keys {
                let mut key_path = at.clone();
                key_path.0.extend(relative.0.iter().cloned());
                diagnostics.push(self.unknown_key(&key_path, &relative, known));
            }
            match value {
                Ok(value) => items.push((index, value)),
                Err(error) => diagnostics.push(self.error_diagnostic(&error)),
            }
        }
        (items, diagnostics)
    }

    /// An unknown key at `key_path` (`relative` within what `known` describes), with the
    /// known key it most likely misspells.
    fn unknown_key(&self, key_path: &KeyPath, relative: &KeyPath, known: &KnownKeys) -> Diagnostic {
        let mut message = format!("unknown key `{key_path}`");
        if let Some((KeyPathSegment::Key(typed), parent)) = relative.0.split_last() {
            let siblings = known(&KeyPath(parent.to_vec()));
            if let Some(near) = crate::diagnostic::closest(typed, siblings.iter().copied()) {
                message.push_str(&format!(" (did you mean `{near}`?)"));
            }
        }
        self.diagnostic(key_path, message)
    }

    /// A problem about the value at `key_path`, located at that key's line and column.
    pub fn diagnostic(&self, key_path: &KeyPath, message: impl Into<String>) -> Diagnostic {
        let span = self.span_of(key_path);
        Diagnostic::new(
            &self.path,
            span.as_ref().map(|span| self.line_at(span.start)),
            message,
        )
        .with_snippet(span.and_then(|span| self.snippet(span)))
    }

    fn error_diagnostic(&self, error: &toml::de::Error) -> Diagnostic {
        let line = error.span().map(|span| self.line_at(span.start));
        // toml's own message is one line describing the problem; its Display adds a source
        // excerpt of its own, which ours replaces.
        Diagnostic::new(&self.path, line, error.message().trim().to_string())
            .with_snippet(error.span().and_then(|span| self.snippet(span)))
    }

    /// The line holding `span`, with the column and width of the span on it. Never a line
    /// that may hold a secret (a store URL, anything about a password): its key is enough.
    fn snippet(&self, span: std::ops::Range<usize>) -> Option<Snippet> {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |at| at + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |at| start + at);
        let source = self.text[line_start..line_end].trim_end_matches('\r');
        let lowered = source.to_lowercase();
        if ["://", "url", "uri", "dsn", "password", "secret", "token"]
            .iter()
            .any(|risky| lowered.contains(risky))
        {
            return None;
        }
        let column = self.text[line_start..start].chars().count() + 1;
        let width = self.text[start..span.end.clamp(start, line_end)]
            .chars()
            .count();
        Some(Snippet {
            source: source.to_string(),
            column,
            width,
        })
    }

    /// The line of the key (for table entries) or value (for array items) at `key_path`;
    /// the closest enclosing item that exists when the full path does not.
    pub fn line_of(&self, key_path: &KeyPath) -> Option<usize> {
        self.span_of(key_path).map(|span| self.line_at(span.start))
    }

    /// Where the key (or array item) at `key_path` is written, or the closest enclosing one.
    fn span_of(&self, key_path: &KeyPath) -> Option<std::ops::Range<usize>> {
        let root = DeTable::parse(&self.text).ok()?;
        let mut current_table: Option<&DeTable<'_>> = Some(root.get_ref());
        let mut current_array: Option<&[Spanned<DeValue<'_>>]> = None;
        let mut best_span = None;
        for segment in &key_path.0 {
            let found = match segment {
                KeyPathSegment::Key(key) => current_table.and_then(|table| {
                    table
                        .iter()
                        .find(|(candidate, _)| candidate.get_ref().as_ref() == key.as_str())
                        .map(|(key, value)| (key.span(), value))
                }),
                KeyPathSegment::Index(index) => current_array
                    .and_then(|array| array.get(*index))
                    .map(|value| (value.span(), value)),
            };
            let Some((span, value)) = found else { break };
            best_span = Some(span);
            current_table = match value.get_ref() {
                DeValue::Table(table) => Some(table),
                _ => None,
            };
            current_array = match value.get_ref() {
                DeValue::Array(array) => Some(&array[..]),
                _ => None,
            };
        }
        best_span
    }

    fn line_at(&self, byte_offset: usize) -> usize {
        let end = byte_offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }
}

fn key_path_of(path: &serde_ignored::Path<'_>) -> KeyPath {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut Vec<KeyPathSegment>) {
        match path {
            serde_ignored::Path::Root => {}
            serde_ignored::Path::Seq { parent, index } => {
                walk(parent, out);
                out.push(KeyPathSegment::Index(*index));
            }
            serde_ignored::Path::Map { parent, key } => {
                walk(parent, out);
                out.push(KeyPathSegment::Key(key.clone()));
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut segments = Vec::new();
    walk(path, &mut segments);
    KeyPath(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Item {
        value: u32,
    }

    fn load(text: &str) -> (Option<Sample>, Vec<String>) {
        let file = TomlFile::new(Path::new("t.toml"), text.to_string());
        let (value, diagnostics) = file.deserialize::<Sample>();
        (value, diagnostics.0.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_line() {
        let (value, problems) = load("name = \"x\"\ncolour = 1\n[[items]]\nvalue = 1\nvalu = 2\n");
        assert!(value.is_some());
        assert_eq!(
            problems,
            vec![
                "t.toml:2: unknown key `colour`\n2 | colour = 1\n  | ^^^^^^ column 1".to_string(),
                "t.toml:5: unknown key `items[0].valu`\n5 | valu = 2\n  | ^^^^ column 1"
                    .to_string()
            ]
        );
    }

    #[test]
    fn type_errors_and_syntax_errors_have_lines() {
        let (value, problems) = load("name = \"x\"\n\n[[items]]\nvalue = \"one\"\n");
        assert!(value.is_none());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("t.toml:4: "), "{problems:?}");

        let (value, problems) = load("name = \n");
        assert!(value.is_none());
        assert!(problems[0].starts_with("t.toml:1: "), "{problems:?}");
    }

    #[test]
    fn each_item_reports_its_own_problems() {
        let file = TomlFile::new(
            Path::new("t.toml"),
            "[[items]]\nvalue = \"one\"\n[[items]]\nvalue = 2\n[[items]]\nvalue = -3\nextra = 1\n[[items]]\nvalu = 4\n"
                .to_string(),
        );
        let (items, diagnostics) = file.deserialize_items::<Item>("items", &|_| &["value"]);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].0, 1);
        // Every item's problems, in item order: a type error, an unknown key and a bad value,
        // an unknown key and the missing field it should have been.
        let lines: Vec<Option<usize>> = diagnostics.0.iter().map(|d| d.line).collect();
        assert_eq!(
            lines,
            [Some(2), Some(7), Some(6), Some(9), Some(8)],
            "{diagnostics}"
        );
        assert!(
            diagnostics.0[1].message.contains("items[2].extra"),
            "{diagnostics}"
        );
        assert!(
            diagnostics.0[4].message.contains("missing field `value`"),
            "{diagnostics}"
        );
    }

    #[test]
    fn a_value_is_pointed_at_by_its_column_and_a_secret_line_is_never_shown() {
        let (_, problems) = load("name = \"x\"\n\n[[items]]\nvalue =   \"one\"\n");
        assert!(
            problems[0].ends_with("\n4 | value =   \"one\"\n  |           ^^^^^ column 11"),
            "{problems:?}"
        );
        let file = TomlFile::new(
            Path::new("t.toml"),
            "url = \"postgresql://u:hunter2@db/crm\"\nsmtp_password = \"hunter2\"\ndatabase_uri = \"postgresql://u:hunter2@db\"\nstore = { url = \"postgresql://u:hunter2@db\" }\n".to_string(),
        );
        for key in ["url", "smtp_password", "database_uri", "store"] {
            let shown = file
                .diagnostic(&KeyPath::default().key(key), "bad")
                .to_string();
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[test]
    fn key_paths_resolve_to_lines() {
        let file = TomlFile::new(
            Path::new("t.toml"),
            "name = \"x\"\n[[items]]\nvalue = 1\n[[items]]\nvalue = 2\n".to_string(),
        );
        let path = KeyPath::default().key("items").index(1).key("value");
        assert_eq!(file.line_of(&path), Some(5));
        assert_eq!(path.to_string(), "items[1].value");
        // A path that does not exist points at the closest thing that does.
        let missing = KeyPath::default().key("items").index(1).key("other");
        assert_eq!(file.line_of(&missing), Some(4));
    }
}
