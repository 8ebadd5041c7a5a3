//! Gmail's search syntax, as the sync speaks it: the window (`after:`) and the candidate
//! searches (`{from:a to:a cc:a bcc:a …}`). Only what can be searched for exactly is put in a
//! query; anything else turns the candidate search off.

/// The longest `q` a candidate or backfill search sends. Gmail documents no limit; queries
/// far longer than this are known to fail, and this keeps about ten addresses per query.
pub const MAX_QUERY_CHARS: usize = 1_500;

/// Whether Gmail search can be asked for `address` exactly: the characters that Gmail's
/// query language gives a meaning to (spaces, quotes, braces, parentheses, a leading `-`)
/// would change the query, so such an address turns the candidate search off.
pub fn is_searchable(address: &str) -> bool {
    !address.is_empty()
        && !address.starts_with('-')
        && address.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '@' | '.'
                        | '_'
                        | '-'
                        | '+'
                        | '\''
                        | '%'
                        | '='
                        | '!'
                        | '#'
                        | '$'
                        | '&'
                        | '*'
                        | '/'
                        | '?'
                        | '^'
                        | '`'
                        | '|'
                        | '~'
                )
        })
}

/// Gmail searches for messages with any of `addresses` in From, To, Cc or Bcc, each with
/// `suffix` (the window) and at most [`MAX_QUERY_CHARS`] long. `None` if an address cannot be
/// searched for exactly. No addresses → no queries.
pub fn address_queries(addresses: &[String], suffix: &str) -> Option<Vec<String>> {
    let mut queries = Vec::new();
    let mut terms = String::new();
    for address in addresses {
        if !is_searchable(address) {
            return None;
        }
        let term = format!("from:{address} to:{address} cc:{address} bcc:{address}");
        if !terms.is_empty() && terms.len() + term.len() + suffix.len() + 4 > MAX_QUERY_CHARS {
            queries.push(format!("{{{terms}}} {suffix}"));
            terms.clear();
        }
        if !terms.is_empty() {
            terms.push(' ');
        }
        terms.push_str(&term);
    }
    if !terms.is_empty() {
        queries.push(format!("{{{terms}}} {suffix}"));
    }
    Some(queries)
}

/// The window term: messages received after `epoch_seconds`.
pub fn after(epoch_seconds: i64) -> String {
    format!("after:{epoch_seconds}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(count: usize) -> Vec<String> {
        (0..count)
            .map(|i| format!("person.{i}@customer-{i}.example"))
            .collect()
    }

    #[test]
    fn queries_cover_every_address_in_every_header_within_the_length_limit() {
        let addresses = addresses(100);
        let queries = address_queries(&addresses, "after:1700000000").expect("searchable");
        assert!(queries.len() > 1, "100 addresses do not fit one query");
        for query in &queries {
            assert!(query.len() <= MAX_QUERY_CHARS, "{} chars", query.len());
            assert!(query.starts_with('{') && query.ends_with("} after:1700000000"));
        }
        let terms: Vec<String> = queries
            .iter()
            .flat_map(|query| query.split_whitespace())
            .map(|term| term.trim_matches(['{', '}']).to_string())
            .collect();
        for address in &addresses {
            for header in ["from", "to", "cc", "bcc"] {
                let term = format!("{header}:{address}");
                assert_eq!(
                    terms.iter().filter(|t| **t == term).count(),
                    1,
                    "{term} appears exactly once"
                );
            }
        }
    }

    #[test]
    fn no_addresses_no_queries_and_unsearchable_addresses_turn_search_off() {
        assert_eq!(address_queries(&[], "after:1"), Some(Vec::new()));
        for hostile in [
            "a b@x.example",
            "\"quoted\"@x.example",
            "a}@x.example",
            "-a@x.example",
            "a(b)@x.example",
        ] {
            assert!(!is_searchable(hostile), "{hostile}");
            assert_eq!(
                address_queries(&[hostile.to_string()], "after:1"),
                None,
                "{hostile}"
            );
        }
        assert!(is_searchable("o'brien+crm@sub.example.co.uk"));
    }
}
