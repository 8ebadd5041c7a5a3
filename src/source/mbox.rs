//! mboxrd files, as Google Takeout writes them: each message starts with a `From ` line at
//! the start of the file or after an empty line, and body lines that began with `From ` were
//! written as `>From ` (one more `>` per level), which reading undoes.
//!
//! Takeout exports run to many gigabytes, so messages are read one at a time.

use std::io::BufRead;

use super::{SourceError, SourceMessage};
use crate::parse;

pub struct MboxReader<R> {
    input: R,
    position: usize,
    /// The separator line of the next message, already read.
    pending_separator: bool,
    finished: bool,
}

impl<R: BufRead> MboxReader<R> {
    pub fn new(input: R) -> Self {
        MboxReader {
            input,
            position: 0,
            pending_separator: false,
            finished: false,
        }
    }

    fn read_line(&mut self, line: &mut Vec<u8>) -> std::io::Result<bool> {
        line.clear();
        Ok(self.input.read_until(b'\n', line)? > 0)
    }

    /// Reads up to the next separator; `None` at the end of the input.
    fn next_message(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        if !self.pending_separator {
            // Skip anything before the first separator (there should be nothing).
            loop {
                if !self.read_line(&mut line)? {
                    return Ok(None);
                }
                if line.starts_with(b"From ") {
                    break;
                }
            }
        }
        self.pending_separator = false;
        let mut message = Vec::new();
        let mut previous_line_blank = false;
        let mut saw_any_line = false;
        while self.read_line(&mut line)? {
            if previous_line_blank && line.starts_with(b"From ") {
                self.pending_separator = true;
                break;
            }
            saw_any_line = true;
            previous_line_blank = line == b"\n" || line == b"\r\n";
            message.extend_from_slice(unescape_from_line(&line));
        }
        // The empty line before the next separator belongs to the mbox format, not to the
        // message.
        if self.pending_separator || !saw_any_line {
            if message.ends_with(b"\r\n") {
                message.truncate(message.len() - 2);
            } else if message.ends_with(b"\n") {
                message.truncate(message.len() - 1);
            }
        }
        Ok(Some(message))
    }
}

/// `>From ` → `From `, `>>From ` → `>From `: mboxrd's reversible quoting.
fn unescape_from_line(line: &[u8]) -> &[u8] {
    let quotes = line.iter().take_while(|&&byte| byte == b'>').count();
    if quotes > 0 && line[quotes..].starts_with(b"From ") {
        &line[1..]
    } else {
        line
    }
}

impl<R: BufRead> Iterator for MboxReader<R> {
    type Item = Result<SourceMessage, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.next_message() {
            Ok(Some(raw)) => {
                self.position += 1;
                Some(Ok(SourceMessage {
                    source_id: self.position.to_string(),
                    labels: parse::gmail_labels(&raw),
                    raw,
                }))
            }
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(error) => {
                // An I/O error mid-file leaves us unable to find the next boundary reliably.
                self.finished = true;
                Some(Err(SourceError {
                    source_id: (self.position + 1).to_string(),
                    error,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(input: &str) -> Vec<(String, String)> {
        MboxReader::new(input.as_bytes())
            .map(|m| {
                let m = m.unwrap();
                (m.source_id, String::from_utf8(m.raw).unwrap())
            })
            .collect()
    }

    #[test]
    fn splits_on_separators_after_blank_lines_and_unquotes() {
        let mbox = "From 1@xxx Mon Jan  1 00:00:00 2024\n\
                    Subject: one\n\nbody\n>From the start\n>>From quoted\nFrom not a separator\n\n\
                    From 2@xxx Mon Jan  1 00:00:00 2024\n\
                    X-Gmail-Labels: Inbox,Spam\nSubject: two\n\nsecond\n";
        let parsed = messages(mbox);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "1");
        assert_eq!(
            parsed[0].1,
            "Subject: one\n\nbody\nFrom the start\n>From quoted\nFrom not a separator\n"
        );
        assert_eq!(
            parsed[1].1,
            "X-Gmail-Labels: Inbox,Spam\nSubject: two\n\nsecond\n"
        );
        let labels = MboxReader::new(mbox.as_bytes())
            .nth(1)
            .unwrap()
            .unwrap()
            .labels;
        assert_eq!(labels, vec!["Inbox".to_string(), "Spam".to_string()]);
    }

    #[test]
    fn empty_and_separator_only_inputs() {
        assert!(messages("").is_empty());
        assert_eq!(messages("From x\n").len(), 1);
        assert_eq!(messages("garbage\nFrom x\nSubject: a\n").len(), 1);
    }
}
