//! Email addresses and domains as the decision spec compares them.
//!
//! The spec is deliberately plain: addresses compare case-insensitively on the whole address,
//! with no dot or `+tag` folding, and a domain matches itself and its subdomains. Every module
//! that compares addresses goes through here so that there is exactly one definition of "same".

/// Lower-cases and trims an address; the one normal form stored and compared everywhere.
pub fn normalize(address: &str) -> String {
    address.trim().to_lowercase()
}

/// The part after the last `@`, if there is a non-empty local part and domain.
pub fn domain_of(address: &str) -> Option<&str> {
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        None
    } else {
        Some(domain)
    }
}

/// True when `domain` equals `parent` or is one of its subdomains (`eu.abcorp.com` under
/// `abcorp.com`). Both sides are expected in normal (lower-case) form.
pub fn domain_is_within(domain: &str, parent: &str) -> bool {
    domain == parent
        || (domain.len() > parent.len()
            && domain.ends_with(parent)
            && domain.as_bytes()[domain.len() - parent.len() - 1] == b'.')
}

/// Validates an address written by an operator (config, rules, contacts). Mail from the
/// internet is never validated this strictly; this is for input we can ask a human to fix.
pub fn validate(address: &str) -> Result<(), String> {
    let Some(domain) = domain_of(address) else {
        return Err(format!(
            "`{address}` is not an email address (expected local@domain)"
        ));
    };
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{address}` contains whitespace or control characters"
        ));
    }
    if address.matches('@').count() != 1 {
        return Err(format!("`{address}` has more than one `@`"));
    }
    validate_domain(domain)
}

/// Validates a domain written by an operator: labels of letters, digits and hyphens, at
/// least one dot.
pub fn validate_domain(domain: &str) -> Result<(), String> {
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
    });
    if labels_ok && domain.contains('.') {
        Ok(())
    } else {
        Err(format!("`{domain}` is not a valid domain name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_are_within_their_parent_but_lookalikes_are_not() {
        assert!(domain_is_within("abcorp.com", "abcorp.com"));
        assert!(domain_is_within("eu.abcorp.com", "abcorp.com"));
        assert!(!domain_is_within("notabcorp.com", "abcorp.com"));
        assert!(!domain_is_within("com", "abcorp.com"));
    }

    #[test]
    fn domain_of_needs_both_halves() {
        assert_eq!(domain_of("a@b.com"), Some("b.com"));
        assert_eq!(domain_of("@b.com"), None);
        assert_eq!(domain_of("a@"), None);
        assert_eq!(domain_of("ab.com"), None);
    }

    #[test]
    fn operator_addresses_are_checked() {
        assert!(validate("michelle@abcorp.com").is_ok());
        assert!(validate("michelle@abcorp").is_err());
        assert!(validate("michelle abcorp.com").is_err());
        assert!(validate("a@b@c.com").is_err());
        assert!(validate("a b@c.com").is_err());
    }
}
