//! The subset of Gmail's `q` search language that a sync client uses, parsed into a tree and
//! evaluated in three-valued logic so that anything not understood can only widen a result.
//!
//! Understood: `after:` / `before:` (`YYYY/MM/DD`, `YYYY-MM-DD` as UTC midnight, or epoch
//! seconds), `newer_than:` / `older_than:` (`Nd`, `Nm` = 30 days, `Ny` = 365 days), `from:`,
//! `to:`, `cc:`, `bcc:` (case-insensitive substring of that header; `me` is the mailbox owner;
//! `to:` looks at To only), `in:` (inbox, sent, spam, trash, draft, chats, anywhere, or a label),
//! `label:`, `is:` (unread, read, starred, important), `OR`, `{a b}` (any of), `-term`,
//! `( ... )` and quoted values.
//!
//! **An unknown term may widen the result, never narrow it.** Bare words, unknown operators
//! and unreadable values evaluate to *unknown*; `AND`, `OR` and `NOT` follow Kleene's logic, and
//! a message whose result is unknown matches. So for any real meaning of the unknown terms, the
//! sandbox returns a superset of what Gmail would: a client filtering with `q` may fetch more
//! than it needs in a test, but never silently misses a message.

use super::mailbox::Mailbox;
use super::mailbox::Message;

const DAY_MS: i64 = 86_400_000;
/// Deeper nesting than this is not parsed further (treated as unknown) so that a hostile
/// query cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

/// A parsed `q` value. Parsing never fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    root: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
    Term(Term),
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    /// internalDate >= this (ms).
    AtOrAfter(i64),
    /// internalDate < this (ms).
    Before(i64),
    NewerThanMs(i64),
    OlderThanMs(i64),
    /// A header (From, To, Cc, Bcc) contains this lower-cased text; `None` = the owner's address.
    Header(&'static str, Option<String>),
    /// A label, by its search name or id (`spam`, `inbox`, `my-label`).
    Label(String),
    Anywhere,
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBrace,
    CloseBrace,
    Minus,
    Or,
    Word(String),
}

impl Query {
    pub fn parse(text: &str) -> Query {
        let tokens = tokenize(text);
        let mut parser = Parser {
            tokens,
            position: 0,
        };
        let mut items = Vec::new();
        while parser.position < parser.tokens.len() {
            match parser.peek() {
                // A stray closer at top level is ignored rather than ending the query early.
                Some(Token::Close | Token::CloseBrace) => parser.position += 1,
                _ => items.push(parser.parse_or(0)),
            }
        }
        Query {
            root: Expr::All(items),
        }
    }

    /// Whether `message` of `mailbox` matches, an unknown result counting as a match.
    pub fn matches(&self, message: &Message, mailbox: &Mailbox, now_ms: i64) -> bool {
        evaluate(&self.root, message, mailbox, now_ms) != Some(false)
    }

    /// Whether the query asks (not negated) for spam or trash, which like Gmail lifts the default
    /// exclusion of SPAM and TRASH from `messages.list`.
    pub fn asks_for_spam_or_trash(&self) -> bool {
        fn walk(expr: &Expr, negated: bool) -> bool {
            match expr {
                Expr::All(items) | Expr::Any(items) => items.iter().any(|item| walk(item, negated)),
                Expr::Not(inner) => walk(inner, !negated),
                Expr::Term(Term::Anywhere) => !negated,
                Expr::Term(Term::Label(name)) => !negated && (name == "spam" || name == "trash"),
                Expr::Term(_) => false,
            }
        }
        walk(&self.root, false)
    }
}

fn evaluate(expr: &Expr, message: &Message, mailbox: &Mailbox, now_ms: i64) -> Option<bool> {
    match expr {
        Expr::All(items) => {
            let mut result = Some(true);
            for item in items {
                match evaluate(item, message, mailbox, now_ms) {
                    Some(false) => return Some(false),
                    None => result = None,
                    Some(true) => {}
                }
            }
            result
        }
        Expr::Any(items) => {
            let mut result = Some(false);
            for item in items {
                match evaluate(item, message, mailbox, now_ms) {
                    Some(true) => return Some(true),
                    None => result = None,
                    Some(false) => {}
                }
            }
            result
        }
        Expr::Not(inner) => evaluate(inner, message, mailbox, now_ms).map(|value| !value),
        Expr::Term(term) => evaluate_term(term, message, mailbox, now_ms),
    }
}

fn evaluate_term(term: &Term, message: &Message, mailbox: &Mailbox, now_ms: i64) -> Option<bool> {
    let date = message.internal_date_ms;
    Some(match term {
        Term::AtOrAfter(ms) => date >= *ms,
        Term::Before(ms) => date < *ms,
        Term::NewerThanMs(ms) => date > now_ms.saturating_sub(*ms),
        Term::OlderThanMs(ms) => date < now_ms.saturating_sub(*ms),
        Term::Header(name, value) => {
            let wanted = value.as_deref().unwrap_or(&mailbox.email);
            message.header_values(name).to_lowercase().contains(wanted)
        }
        // A label the mailbox does not have matches nothing, as in Gmail.
        Term::Label(name) => mailbox
            .label_id_for_search(name)
            .is_some_and(|id| message.has_label(&id)),
        Term::Anywhere => true,
        Term::Unknown => return None,
    })
}

fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut quoted_word = false;
    let mut in_quotes = false;
    let flush = |word: &mut String, quoted: &mut bool, tokens: &mut Vec<Token>| {
        if !word.is_empty() || *quoted {
            match word.as_str() {
                "OR" if !*quoted => tokens.push(Token::Or),
                "AND" if !*quoted => {}
                _ => tokens.push(Token::Word(std::mem::take(word))),
            }
        }
        word.clear();
        *quoted = false;
    };
    for character in text.chars() {
        if in_quotes {
            if character == '"' {
                in_quotes = false;
            } else {
                word.push(character);
            }
            continue;
        }
        match character {
            '"' => {
                in_quotes = true;
                quoted_word = true;
            }
            c if c.is_whitespace() => flush(&mut word, &mut quoted_word, &mut tokens),
            '(' | ')' | '{' | '}' => {
                flush(&mut word, &mut quoted_word, &mut tokens);
                tokens.push(match character {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '{' => Token::OpenBrace,
                    _ => Token::CloseBrace,
                });
            }
            '-' if word.is_empty() && !quoted_word => tokens.push(Token::Minus),
            _ => word.push(character),
        }
    }
    flush(&mut word, &mut quoted_word, &mut tokens);
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    /// `a OR b OR c`: in Gmail, OR binds tighter than the implicit AND between terms.
    fn parse_or(&mut self, depth: usize) -> Expr {
        let mut items = vec![self.parse_unary(depth)];
        while self.peek() == Some(&Token::Or) {
            self.position += 1;
            items.push(self.parse_unary(depth));
        }
        if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Any(items)
        }
    }

    fn parse_unary(&mut self, depth: usize) -> Expr {
        if depth > MAX_DEPTH {
            self.position = self.tokens.len();
            return Expr::Term(Term::Unknown);
        }
        match self.next() {
            Some(Token::Minus) => Expr::Not(Box::new(self.parse_unary(depth + 1))),
            Some(Token::Open) => Expr::All(self.parse_group(Token::Close, depth + 1)),
            Some(Token::OpenBrace) => Expr::Any(self.parse_group(Token::CloseBrace, depth + 1)),
            Some(Token::Word(word)) => parse_term(&word),
            // A dangling OR, a stray closer, or the end of input: not understood, so unknown.
            Some(Token::Or | Token::Close | Token::CloseBrace) | None => Expr::Term(Term::Unknown),
        }
    }

    /// Items up to `closer` (consumed); a missing closer just ends the group at the end of input.
    fn parse_group(&mut self, closer: Token, depth: usize) -> Vec<Expr> {
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None => return items,
                Some(token) if *token == closer => {
                    self.position += 1;
                    return items;
                }
                Some(Token::Close | Token::CloseBrace) => self.position += 1,
                Some(_) => items.push(self.parse_or(depth)),
            }
        }
    }
}

fn parse_term(word: &str) -> Expr {
    let Some((operator, value)) = word.split_once(':') else {
        return Expr::Term(Term::Unknown);
    };
    let value = value.trim();
    if value.is_empty() {
        return Expr::Term(Term::Unknown);
    }
    let lower = value.to_lowercase();
    let term = match operator.to_ascii_lowercase().as_str() {
        "after" => parse_date_ms(value).map_or(Term::Unknown, Term::AtOrAfter),
        "before" => parse_date_ms(value).map_or(Term::Unknown, Term::Before),
        "newer_than" => parse_age_ms(&lower).map_or(Term::Unknown, Term::NewerThanMs),
        "older_than" => parse_age_ms(&lower).map_or(Term::Unknown, Term::OlderThanMs),
        "from" => header_term("From", lower),
        "to" => header_term("To", lower),
        "cc" => header_term("Cc", lower),
        "bcc" => header_term("Bcc", lower),
        "in" => match lower.as_str() {
            "anywhere" => Term::Anywhere,
            "draft" | "drafts" => Term::Label("draft".to_string()),
            "chats" => Term::Label("chat".to_string()),
            _ => Term::Label(lower),
        },
        "label" => Term::Label(lower),
        "is" => match lower.as_str() {
            "unread" | "starred" | "important" => Term::Label(lower),
            "read" => return Expr::Not(Box::new(Expr::Term(Term::Label("unread".to_string())))),
            _ => Term::Unknown,
        },
        _ => Term::Unknown,
    };
    Expr::Term(term)
}

fn header_term(name: &'static str, value: String) -> Term {
    Term::Header(name, if value == "me" { None } else { Some(value) })
}

/// `YYYY/MM/DD` or `YYYY-MM-DD` as UTC midnight (Gmail uses the account's time zone; UTC is
/// documented here instead), or epoch seconds.
fn parse_date_ms(value: &str) -> Option<i64> {
    if value.chars().all(|c| c.is_ascii_digit()) {
        return value.parse::<i64>().ok()?.checked_mul(1000);
    }
    let parts: Vec<&str> = value.split(['/', '-']).collect();
    let [year, month, day] = parts.as_slice() else {
        return None;
    };
    let date = chrono::NaiveDate::from_ymd_opt(
        year.parse().ok()?,
        month.parse().ok()?,
        day.parse().ok()?,
    )?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

fn parse_age_ms(value: &str) -> Option<i64> {
    let unit_days = match value.chars().last()? {
        'd' => 1,
        'm' => 30,
        'y' => 365,
        _ => return None,
    };
    let count: i64 = value[..value.len() - 1].parse().ok()?;
    count.checked_mul(unit_days)?.checked_mul(DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::super::mailbox::SourceFile;
    use super::*;

    const NOW_MS: i64 = 1_705_000_000_000; // 2024-01-11T19:06:40Z

    fn mailbox() -> Mailbox {
        let files = [
            (
                "a",
                "From: Alice <alice@customer.com>\r\nTo: me@corp.com\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\na",
            ),
            (
                "b",
                "From: me@corp.com\r\nTo: bob@vendor.org\r\nCc: carol@customer.com\r\nDate: Wed, 10 Jan 2024 10:00:00 +0000\r\n\r\nb",
            ),
            (
                "c",
                "From: spammer@junk.net\r\nX-Gmail-Labels: Spam\r\nDate: Fri, 01 Dec 2023 10:00:00 +0000\r\n\r\nc",
            ),
            (
                "d",
                "From: dave@customer.com\r\nX-Gmail-Labels: Inbox,Starred,Clients\r\nDate: Thu, 11 Jan 2024 10:00:00 +0000\r\n\r\nd",
            ),
        ];
        let files = files
            .iter()
            .map(|(name, text)| SourceFile {
                name: name.to_string(),
                raw: text.as_bytes().to_vec(),
                mtime_ms: 0,
            })
            .collect();
        Mailbox::new("me@corp.com", 3, files)
    }

    /// Runs `q` over the sample mailbox and returns the matching bodies (= names) sorted.
    fn check(q: &str, expected: &str) {
        let mailbox = mailbox();
        let query = Query::parse(q);
        let request = super::super::mailbox::ListRequest {
            query: Some(&query),
            max_results: 100,
            include_spam_trash: true,
            now_ms: NOW_MS,
            ..Default::default()
        };
        let mut names: Vec<String> = mailbox
            .list(&request)
            .expect("list")
            .messages
            .iter()
            .map(|message| message.snippet.clone())
            .collect();
        names.sort();
        assert_eq!(names.join(""), expected, "query {q:?}");
    }

    #[test]
    fn supported_terms() {
        let cases = [
            ("", "abcd"),
            ("from:alice", "a"),
            ("from:\"alice@customer.com\"", "a"),
            ("FROM:CUSTOMER.COM", "ad"),
            ("from:me", "b"),
            ("to:bob@vendor.org", "b"),
            ("to:carol", ""),
            ("cc:carol", "b"),
            ("bcc:anyone", ""),
            ("after:2024/01/02", "bd"),
            ("after:2024-01-10 before:2024/01/11", "b"),
            ("before:1704103200", "c"),
            ("after:1704103200", "abd"),
            ("newer_than:2d", "bd"),
            ("older_than:1m", "c"),
            ("newer_than:1y", "abcd"),
            ("in:inbox", "ad"),
            ("in:sent", "b"),
            ("in:spam", "c"),
            ("in:anywhere", "abcd"),
            ("label:clients", "d"),
            ("label:starred", "d"),
            ("label:nosuchlabel", ""),
            ("is:starred", "d"),
            ("is:unread", "a"),
            ("is:read", "bcd"),
            ("from:alice OR from:dave", "ad"),
            ("{from:alice from:dave}", "ad"),
            ("from:alice OR from:dave after:2024/01/05", "d"),
            ("-from:me", "acd"),
            ("-(from:alice OR from:dave)", "bc"),
            ("(from:alice OR to:bob) -in:sent", "a"),
        ];
        for (q, expected) in cases {
            check(q, expected);
        }
    }

    #[test]
    fn unknown_terms_never_narrow() {
        let cases = [
            ("subject:hello", "abcd"),
            ("invoice", "abcd"),
            ("-invoice", "abcd"),
            ("from:alice invoice", "a"),
            ("from:alice OR invoice", "abcd"),
            ("-(from:alice invoice)", "abcd"),
            ("-from:alice -invoice", "bcd"),
            ("has:attachment -has:attachment", "abcd"),
            ("after:yesterday", "abcd"),
            ("newer_than:3w", "abcd"),
            ("from:", "abcd"),
            ("OR", "abcd"),
            ("from:alice OR", "abcd"),
            (")) from:alice ((", "a"),
            ("\"unterminated from:alice", "abcd"),
        ];
        for (q, expected) in cases {
            check(q, expected);
        }
    }

    #[test]
    fn hostile_queries_do_not_panic() {
        let deep = "(".repeat(10_000) + "from:a" + &")".repeat(10_000);
        let _ = Query::parse(&deep);
        let _ = Query::parse(&"-".repeat(10_000));
        let _ = Query::parse("after:99999999999999999999 older_than:99999999999999y newer_than:é");
        check(&("{".repeat(100) + "from:alice"), "abcd");
    }

    #[test]
    fn spam_and_trash_are_included_only_when_asked_for() {
        assert!(Query::parse("in:spam").asks_for_spam_or_trash());
        assert!(Query::parse("from:a OR in:anywhere").asks_for_spam_or_trash());
        assert!(!Query::parse("-in:trash").asks_for_spam_or_trash());
        assert!(!Query::parse("from:spam").asks_for_spam_or_trash());
    }
}
