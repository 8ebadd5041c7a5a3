//! The problems list: best-effort notes about one message, without duplicates and capped.

use std::collections::HashSet;

const MAX_PROBLEMS: usize = 100;

/// Collects problem notes without duplicates, and stops at a fixed number so that a message
/// with a million broken parts cannot produce a million log lines.
#[derive(Default)]
pub(super) struct Problems {
    list: Vec<String>,
    seen: HashSet<String>,
    overflowed: bool,
}

impl Problems {
    pub(super) fn note(&mut self, problem: impl Into<String>) {
        let problem = problem.into();
        if self.seen.contains(&problem) {
            return;
        }
        if self.list.len() >= MAX_PROBLEMS {
            if !self.overflowed {
                self.overflowed = true;
                self.list.push("further problems omitted".to_string());
            }
            return;
        }
        self.seen.insert(problem.clone());
        self.list.push(problem);
    }

    pub(super) fn absorb(&mut self, other: Problems) {
        for problem in other.list {
            self.note(problem);
        }
    }

    pub(super) fn into_vec(self) -> Vec<String> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::test_support::parse;

    #[test]
    fn problems_never_quote_content() {
        let m = parse(concat!(
            "From: secret-name, <secret@x.com> junk\nTo: Secret Group: nobody-secret;\n",
            "Subject: secret subject\nDate: secret\nContent-Type: text/plain; charset=secret-cs\n\n",
            "secret body"
        ));
        assert!(!m.problems.is_empty());
        for p in &m.problems {
            assert!(!p.contains("x.com"), "a problem quotes an address");
            assert!(!p.contains("secret "), "a problem quotes content");
            assert!(!p.contains("secret-name") && !p.contains("nobody"));
        }
    }
}
