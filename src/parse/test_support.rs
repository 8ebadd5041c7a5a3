//! What the parser's tests share: a parse that must succeed, and questions about its result.

use crate::parse::{Mailbox, ParsedMessage, parse_message};

pub(super) fn parse(s: &str) -> ParsedMessage {
    match parse_message(s.as_bytes()) {
        Ok(m) => m,
        Err(e) => panic!("expected a parse, got {e}"),
    }
}

pub(super) fn addrs(list: &[Mailbox]) -> Vec<&str> {
    list.iter().map(|m| m.address.as_str()).collect()
}

pub(super) fn has_problem(m: &ParsedMessage, needle: &str) -> bool {
    m.problems.iter().any(|p| p.contains(needle))
}
