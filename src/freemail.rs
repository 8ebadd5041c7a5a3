//! The free-mail domain list: public mailbox providers whose domain never makes a party
//! internal just because a user happens to have an address there.

use std::collections::HashSet;
use std::path::Path;

use crate::address;
use crate::diagnostic::{Diagnostic, Diagnostics};

/// The list shipped in `rules/freemail.txt`, compiled in so the binary works without files.
const BUILTIN_LIST: &str = include_str!("../rules/freemail.txt");

/// The file name that, in the configured rules folder, adds domains to the built-in list.
pub const ADDITIONS_FILE_NAME: &str = "freemail.txt";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreemailDomains {
    domains: HashSet<String>,
}

impl FreemailDomains {
    /// The compiled-in list alone.
    pub fn builtin() -> Self {
        let (domains, problems) = parse_list(Path::new("rules/freemail.txt"), BUILTIN_LIST);
        debug_assert!(
            problems.is_empty(),
            "the shipped free-mail list must be valid: {problems}"
        );
        FreemailDomains { domains }
    }

    /// The built-in list plus `freemail.txt` in `rules_dir`, if there is one.
    pub fn load_with_additions(rules_dir: &Path) -> (Self, Diagnostics) {
        let mut list = FreemailDomains::builtin();
        let path = rules_dir.join(ADDITIONS_FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (additions, problems) = parse_list(&path, &text);
                list.domains.extend(additions);
                (list, problems)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                (list, Diagnostics::default())
            }
            Err(error) => {
                let problem =
                    Diagnostic::new(&path, None, format!("cannot read free-mail list: {error}"));
                (list, problem.into())
            }
        }
    }

    /// True when `domain` is on the list; subdomains are not implied (`mail.gmail.com` is not
    /// free-mail because `gmail.com` is).
    pub fn contains(&self, domain: &str) -> bool {
        self.domains.contains(domain)
    }

    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

/// One domain per line; `#` starts a comment; blank lines are ignored.
fn parse_list(path: &Path, text: &str) -> (HashSet<String>, Diagnostics) {
    let mut domains = HashSet::new();
    let mut problems = Diagnostics::default();
    for (index, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let domain = address::normalize(entry);
        match address::validate_domain(&domain) {
            Ok(()) => {
                domains.insert(domain);
            }
            Err(problem) => problems.push(Diagnostic::new(path, Some(index + 1), problem)),
        }
    }
    (domains, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_list_is_valid_and_has_the_big_providers() {
        let (domains, problems) = parse_list(Path::new("rules/freemail.txt"), BUILTIN_LIST);
        assert!(problems.is_empty(), "{problems}");
        for provider in [
            "gmail.com",
            "outlook.com",
            "yahoo.com",
            "hotmail.com",
            "icloud.com",
        ] {
            assert!(domains.contains(provider), "{provider} missing");
        }
    }

    #[test]
    fn additions_are_added_and_bad_lines_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("freemail.txt"),
            "# ours\nexample-mail.org\n\nnot a domain\n",
        )
        .unwrap();
        let (list, problems) = FreemailDomains::load_with_additions(dir.path());
        assert!(list.contains("example-mail.org"));
        assert!(list.contains("gmail.com"));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems.0[0].line, Some(4));
    }
}
