//! A folder of message files, one message per file.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{FileKind, SourceError, SourceMessage, SourceProblem, TooLarge};
use crate::parse::{self, Limits};

/// The messages of a folder, read lazily one file at a time, and what was skipped.
pub struct DirReader {
    entries: std::vec::IntoIter<Entry>,
    skipped: BTreeMap<&'static str, usize>,
    limits: Limits,
}

struct Entry {
    path: PathBuf,
    source_id: String,
    /// Why the entry is not read, known from the listing alone.
    refused: Option<SourceProblem>,
}

/// Every regular file in `folder`, sorted by file name, each read within `limits`. Hidden
/// files (editor and OS litter such as `.DS_Store`) and entries that are not regular files
/// (folders, symbolic links, FIFOs, sockets, devices) are skipped without being opened and
/// counted ([`DirReader::skipped`]): a link could lead out of the folder, and a FIFO or a
/// device could block or never end.
pub fn read_dir(folder: &Path, limits: &Limits) -> std::io::Result<DirReader> {
    let mut skipped = BTreeMap::new();
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let name = entry.file_name();
        let source_id = source_id_of_name(&name);
        let kind = match entry.file_type() {
            Ok(file_type) => FileKind::of(file_type),
            Err(error) => {
                entries.push(Entry {
                    path: entry.path(),
                    source_id,
                    refused: Some(SourceProblem::Io(error)),
                });
                continue;
            }
        };
        let skipped_as = match kind {
            FileKind::Regular if name.as_bytes().starts_with(b".") => Some("hidden file"),
            FileKind::Regular => None,
            kind => Some(kind.as_str()),
        };
        if let Some(kind) = skipped_as {
            *skipped.entry(kind).or_default() += 1;
            continue;
        }
        entries.push(Entry {
            path: entry.path(),
            source_id,
            refused: None,
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    refuse_taken_source_ids(&mut entries);
    Ok(DirReader {
        entries: entries.into_iter(),
        skipped,
        limits: *limits,
    })
}

/// A file name's source id: the name itself when it is UTF-8 (as it always was, so stores
/// keep their ids). Otherwise `\` is written `\\` and each byte that is not UTF-8 `\xNN`, so
/// two names that differ only in such bytes keep different ids, and the same name always
/// has the same one.
fn source_id_of_name(name: &OsStr) -> String {
    if let Some(name) = name.to_str() {
        return name.to_string();
    }
    let mut id = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        id.push_str(&chunk.valid().replace('\\', "\\\\"));
        for byte in chunk.invalid() {
            id.push_str(&format!("\\x{byte:02x}"));
        }
    }
    id
}

/// The escaped id of a name that is not UTF-8 can only equal the id of a UTF-8 name (one
/// spelling `\xNN` out): that file keeps its id and the other is refused, rather than one
/// decision overwriting the other.
fn refuse_taken_source_ids(entries: &mut [Entry]) {
    let is_utf8 = |entry: &Entry| entry.path.file_name().and_then(OsStr::to_str).is_some();
    let utf8_ids: HashSet<String> = entries
        .iter()
        .filter(|entry| is_utf8(entry))
        .map(|entry| entry.source_id.clone())
        .collect();
    for entry in entries.iter_mut() {
        if !is_utf8(entry) && utf8_ids.contains(&entry.source_id) {
            entry.refused = Some(SourceProblem::SourceIdTaken);
        }
    }
}

impl DirReader {
    /// Entries not read, by kind (`folder`, `symbolic link`, `FIFO`, `hidden file`, …).
    pub fn skipped(&self) -> &BTreeMap<&'static str, usize> {
        &self.skipped
    }
}

impl Iterator for DirReader {
    type Item = Result<SourceMessage, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.entries.next()?;
        let problem = match entry.refused {
            Some(problem) => problem,
            None => match read_file(&entry.path, &self.limits) {
                Ok(raw) => {
                    return Some(Ok(SourceMessage {
                        labels: parse::gmail_labels_with(&raw, &self.limits),
                        source_id: entry.source_id,
                        raw,
                    }));
                }
                Err(problem) => problem,
            },
        };
        Some(Err(SourceError {
            source_id: entry.source_id,
            problem,
        }))
    }
}

/// The file's bytes, if it is still a regular file and within `max_message_bytes`.
fn read_file(path: &Path, limits: &Limits) -> Result<Vec<u8>, SourceProblem> {
    let file = super::open_regular(path, false)?.map_err(SourceProblem::NotRegular)?;
    let size = file.metadata()?.len();
    let limit = limits.max_message_bytes;
    let mut raw = Vec::with_capacity(size.min(limit as u64 + 1) as usize);
    (&file).take(limit as u64 + 1).read_to_end(&mut raw)?;
    if raw.len() > limit {
        return Err(SourceProblem::TooLarge(TooLarge {
            bytes: size.max(raw.len() as u64),
            limit,
            labels: parse::gmail_labels_with(&raw[..limit], limits),
        }));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(bytes: &[u8]) -> &OsStr {
        OsStr::from_bytes(bytes)
    }

    #[test]
    fn source_ids_keep_utf8_names_and_escape_other_bytes() {
        let cases: &[(&[u8], &str)] = &[
            (b"01-hello.eml", "01-hello.eml"),
            (
                "caf\u{e9} \u{1f600}.eml".as_bytes(),
                "caf\u{e9} \u{1f600}.eml",
            ),
            // A UTF-8 name keeps its id as written, backslashes included.
            (br"back\slash.eml", r"back\slash.eml"),
            (b"a\xff.eml", r"a\xff.eml"),
            (b"a\xfe.eml", r"a\xfe.eml"),
            (b"caf\xe9.eml", r"caf\xe9.eml"),
            // In a name that is not UTF-8, a backslash is escaped too, so `\xff` spelled out
            // stays apart from the byte.
            (b"\\xff\xfe", r"\\xff\xfe"),
            (b"\xff\xfe", r"\xff\xfe"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(source_id_of_name(name(bytes)), *expected, "{bytes:?}");
        }
    }

    fn make_fifo(path: &Path) {
        let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    }

    fn folder_with(files: &[(&[u8], &str)]) -> tempfile::TempDir {
        let folder = tempfile::tempdir().unwrap();
        for (file_name, text) in files {
            std::fs::write(folder.path().join(name(file_name)), text).unwrap();
        }
        folder
    }

    fn read_all(folder: &Path, limits: &Limits) -> Vec<(String, Result<String, String>)> {
        read_dir(folder, limits)
            .unwrap()
            .map(|message| match message {
                Ok(message) => (
                    message.source_id,
                    Ok(String::from_utf8(message.raw).unwrap()),
                ),
                Err(error) => (error.source_id, Err(error.problem.to_string())),
            })
            .collect()
    }

    #[test]
    fn names_that_differ_only_in_bytes_that_are_not_utf8_are_two_messages() {
        let folder = folder_with(&[
            (b"m\xff.eml", "Subject: one\n"),
            (b"m\xfe.eml", "Subject: two\n"),
        ]);
        let first = read_all(folder.path(), &Limits::default());
        assert_eq!(
            first,
            vec![
                (r"m\xfe.eml".to_string(), Ok("Subject: two\n".to_string())),
                (r"m\xff.eml".to_string(), Ok("Subject: one\n".to_string())),
            ]
        );
        assert_eq!(
            read_all(folder.path(), &Limits::default()),
            first,
            "ids are stable"
        );
    }

    #[test]
    fn a_name_whose_escaped_form_is_another_file_name_is_refused() {
        let folder = folder_with(&[
            (b"m\xff.eml", "Subject: bytes\n"),
            (br"m\xff.eml", "Subject: spelled out\n"),
        ]);
        let read = read_all(folder.path(), &Limits::default());
        assert_eq!(read.len(), 2);
        assert!(
            read.contains(&(
                r"m\xff.eml".to_string(),
                Ok("Subject: spelled out\n".to_string())
            )),
            "{read:?}"
        );
        assert!(
            read.iter().any(|(id, outcome)| id == r"m\xff.eml"
                && outcome
                    .as_ref()
                    .is_err_and(|error| error.contains("rename one of them"))),
            "{read:?}"
        );
    }

    #[test]
    fn entries_that_are_not_message_files_are_skipped_unopened_and_counted() {
        let folder = folder_with(&[(b"a.eml", "Subject: a\n"), (b".DS_Store", "litter")]);
        let path = folder.path();
        std::fs::create_dir(path.join("sub")).unwrap();
        std::os::unix::fs::symlink(path.join("a.eml"), path.join("link.eml")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", path.join("zero.eml")).unwrap();
        make_fifo(&path.join("pipe.eml"));

        let reader = read_dir(path, &Limits::default()).unwrap();
        let skipped: Vec<(&str, usize)> = reader
            .skipped()
            .iter()
            .map(|(kind, count)| (*kind, *count))
            .collect();
        assert_eq!(
            skipped,
            vec![
                ("FIFO", 1),
                ("folder", 1),
                ("hidden file", 1),
                ("symbolic link", 2)
            ]
        );
        // Reading must not block on the FIFO: only the regular file is handed over.
        let ids: Vec<String> = reader.map(|message| message.unwrap().source_id).collect();
        assert_eq!(ids, vec!["a.eml"]);
    }

    #[test]
    fn a_file_swapped_for_a_fifo_after_listing_is_refused_not_waited_on() {
        let folder = folder_with(&[(b"a.eml", "Subject: a\n")]);
        let path = folder.path().join("a.eml");
        let mut reader = read_dir(folder.path(), &Limits::default()).unwrap();
        std::fs::remove_file(&path).unwrap();
        make_fifo(&path);
        let error = reader.next().unwrap().unwrap_err();
        assert!(
            matches!(error.problem, SourceProblem::NotRegular(FileKind::Fifo)),
            "{error}"
        );
    }

    #[test]
    fn a_file_over_the_limit_is_not_read_into_memory() {
        let folder = folder_with(&[(b"small.eml", "Subject: a\n")]);
        let big = std::fs::File::create(folder.path().join("big.eml")).unwrap();
        // Sparse: a gigabyte that costs no disk, and would cost a gigabyte of memory to read.
        big.set_len(1 << 30).unwrap();
        let limits = Limits {
            max_message_bytes: 64 * 1024,
            ..Limits::default()
        };
        let read = read_all(folder.path(), &limits);
        assert_eq!(
            read,
            vec![
                (
                    "big.eml".to_string(),
                    Err("message is 1073741824 bytes, over the 65536-byte limit ([limits] max_message_bytes)".to_string())
                ),
                ("small.eml".to_string(), Ok("Subject: a\n".to_string())),
            ]
        );
    }
}
