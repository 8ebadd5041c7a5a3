//! What the parser's tests share: a parse that must succeed, and questions about its result.

use crate::parse::{Mailbox, ParseError, ParsedMessage, parse_message};

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

/// Whether a parse went through without one of the internal-error notes or errors that
/// stand for a caught panic.
pub(super) fn no_internal_error(result: &Result<ParsedMessage, ParseError>) -> bool {
    match result {
        Ok(m) => !m.problems.iter().any(|p| p.starts_with("internal error")),
        Err(ParseError::UnreadableHeaders(s)) => !s.starts_with("internal error"),
        Err(ParseError::Empty | ParseError::TooLarge { .. }) => true,
    }
}
