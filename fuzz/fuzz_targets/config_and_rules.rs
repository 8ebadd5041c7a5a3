//! Operator TOML → `Config::from_toml`, and the same text as a rules file →
//! `RuleSet::from_files`.
//!
//! Checked on every input: no panic, and every diagnostic about the fuzzed text names a line
//! inside it (1 ..= number of lines + 1; the `+ 1` is the line after a final newline, where an
//! "unexpected end of file" points).
//!
//! The rules are validated against the fuzzed config when it is valid, else against a fixed
//! one: text that is a valid config is never a valid rules file (its `[company]` and `[store]`
//! are unknown keys there), so without the fallback the rules loader would only ever see
//! configs.
//!
//! Config loading reads one file: `<rules.dir>/freemail.txt` when the text sets `[rules] dir`.
//! Relative folders resolve under `/fuzz`, which does not exist; diagnostics about that other
//! file are not held to the fuzzed text's line count.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mailsync::config::Config;
use mailsync::diagnostic::Diagnostics;
use mailsync::rules::RuleSet;

const CONFIG_PATH: &str = "/fuzz/mailsync.toml";
const RULES_PATH: &str = "/fuzz/rules/fuzz.toml";

const FALLBACK_CONFIG: &str = r#"
[company]
domains = ["abcorp.com"]
[store]
path = "crm.sqlite3"
[[users]]
email = "michelle@abcorp.com"
aliases = ["m@abcorp.com"]
sync = true
[[users]]
email = "ceo@abcorp.com"
sync = true
"#;

static FALLBACK: LazyLock<Config> = LazyLock::new(|| {
    Config::from_toml(Path::new(CONFIG_PATH), FALLBACK_CONFIG.to_string())
        .unwrap_or_else(|problems| panic!("the fallback config is invalid:\n{problems}"))
});

fn check_lines(diagnostics: &Diagnostics, path: &Path, text: &str) {
    let max_line = text.lines().count() + 1;
    for diagnostic in &diagnostics.0 {
        if diagnostic.file != path {
            continue;
        }
        if let Some(line) = diagnostic.line {
            assert!(
                (1..=max_line).contains(&line),
                "diagnostic line {line} outside 1..={max_line}: {diagnostic:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();

    let config_path = Path::new(CONFIG_PATH);
    let fuzzed_config = match Config::from_toml(config_path, text.clone()) {
        Ok(config) => Some(config),
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "a rejected config says why");
            check_lines(&diagnostics, config_path, &text);
            None
        }
    };

    let config = fuzzed_config.as_ref().unwrap_or(&*FALLBACK);
    let rules_path = PathBuf::from(RULES_PATH);
    match RuleSet::from_files(vec![(rules_path.clone(), text.clone())], config) {
        Ok(rules) => {
            for rule in &rules.rules {
                assert!(
                    (1..=text.lines().count() + 1).contains(&rule.line),
                    "rule line {} outside the text: {rule:?}",
                    rule.line
                );
            }
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "rejected rules say why");
            check_lines(&diagnostics, &rules_path, &text);
        }
    }
});
