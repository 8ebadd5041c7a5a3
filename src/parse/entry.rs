//! The entry points: a message's bytes through each stage in order to a [`ParsedMessage`],
//! with a guard that turns a panic in any dependency into an error for that message alone.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mailparse::MailHeader;

use crate::parse::addresses::{AddressBudget, addresses_for};
use crate::parse::headers::{
    DecodeBudget, HeaderBlock, HeaderFields, auto_submitted_is_set, date_from, limit_header_block,
    message_id_from, msg_ids_from, normalize_bare_cr, precedence_is_bulk, strip_preamble,
    subject_from,
};
use crate::parse::labels::labels_from_headers;
use crate::parse::limits::Limits;
use crate::parse::mime::{MimeFacts, read_mime};
use crate::parse::problems::Problems;
use crate::parse::{AutomationSignals, ParseError, ParsedMessage};

/// Parses one message with the default [`Limits`]. See the [module documentation](crate::parse)
/// for the rules.
pub fn parse_message(raw: &[u8]) -> Result<ParsedMessage, ParseError> {
    parse_message_with(raw, &Limits::default())
}

/// Parses one message within `limits`. See the [module documentation](crate::parse) for the
/// rules.
pub fn parse_message_with(raw: &[u8], limits: &Limits) -> Result<ParsedMessage, ParseError> {
    // The dependencies are not known to panic on any input, but a daemon must not die on one
    // odd message, so a panic that escapes the finer-grained guards below becomes an error.
    match catch_unwind(AssertUnwindSafe(|| parse_message_inner(raw, limits))) {
        Ok(result) => result,
        Err(_) => Err(ParseError::UnreadableHeaders(
            "internal error while reading the headers".to_string(),
        )),
    }
}

fn parse_message_inner(raw: &[u8], limits: &Limits) -> Result<ParsedMessage, ParseError> {
    if raw.is_empty() {
        return Err(ParseError::Empty);
    }
    if raw.len() > limits.max_message_bytes {
        return Err(ParseError::TooLarge {
            bytes: raw.len(),
            limit: limits.max_message_bytes,
        });
    }
    let mut problems = Problems::default();
    let converted = normalize_bare_cr(raw, &mut problems);
    let start = strip_preamble(&converted, &mut problems);
    if start.is_empty() {
        return Err(ParseError::Empty);
    }
    let (limited, headers_dropped) =
        limit_header_block(start, limits.max_header_bytes, &mut problems);
    let block = HeaderBlock::read(&limited, &mut problems)?;
    let headers = match mailparse::parse_headers(&block.bytes) {
        Ok((headers, _)) => headers,
        Err(_) => {
            return Err(ParseError::UnreadableHeaders(
                "the header block could not be parsed".to_string(),
            ));
        }
    };
    let fields = HeaderFields::collect(&headers);
    if !fields.looks_like_mail() {
        let message = if headers_dropped {
            format!(
                "none of From, To, Cc, Bcc, Subject, Date or Message-ID is among the header \
                 fields that fit the {}-byte limit ([limits] max_header_bytes)",
                limits.max_header_bytes
            )
        } else {
            "none of From, To, Cc, Bcc, Subject, Date or Message-ID is present".to_string()
        };
        return Err(ParseError::UnreadableHeaders(message));
    }

    let mut decode = DecodeBudget::default();
    let mut budget = AddressBudget::new(limits);
    let mut fields_of = |headers: &[&MailHeader], name: &'static str| {
        addresses_for(headers, name, &mut budget, &mut decode, &mut problems)
    };
    let from = fields_of(&fields.from, "from");
    let to = fields_of(&fields.to, "to");
    let cc = fields_of(&fields.cc, "cc");
    let bcc = fields_of(&fields.bcc, "bcc");

    let subject = fields
        .subject
        .map(|h| subject_from(h, &mut decode, &mut problems));
    let date = fields
        .date
        .and_then(|h| date_from(h, &mut decode, &mut problems));
    let message_id = fields.message_id.and_then(message_id_from);
    let in_reply_to = msg_ids_from(&fields.in_reply_to, "in-reply-to", &mut problems);
    let references = msg_ids_from(&fields.references, "references", &mut problems);
    let gmail_labels = labels_from_headers(&fields.gmail_labels, &mut decode, &mut problems);

    let mime = match catch_unwind(AssertUnwindSafe(|| {
        let mut mime_problems = Problems::default();
        let facts = read_mime(&block.bytes, limits, &mut mime_problems);
        (facts, mime_problems)
    })) {
        Ok((facts, mime_problems)) => {
            problems.absorb(mime_problems);
            facts
        }
        Err(_) => {
            problems.note(
                "internal error while reading the MIME structure; body and attachments skipped",
            );
            MimeFacts::default()
        }
    };

    let automation = AutomationSignals {
        list_id: !fields.list_id.is_empty(),
        list_unsubscribe: !fields.list_unsubscribe.is_empty(),
        precedence_bulk: fields.precedence.is_some_and(precedence_is_bulk),
        auto_submitted: fields.auto_submitted.is_some_and(auto_submitted_is_set),
        calendar_only: mime.calendar_only,
    };

    Ok(ParsedMessage {
        from,
        to,
        cc,
        bcc,
        subject,
        date,
        message_id,
        in_reply_to,
        references,
        body_text: mime.body_text,
        attachments: mime.attachments,
        gmail_labels,
        automation,
        problems: problems.into_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Mailbox;
    use crate::parse::test_support::{addrs, has_problem, parse};

    #[test]
    fn plain_message() {
        let m = parse(
            "From: Alice <Alice@Example.COM>\r\nTo: bob@example.com\r\nSubject: Hello\r\n\
             Date: Sun, 02 Oct 2016 07:06:22 -0700 (PDT)\r\nMessage-ID: <Abc.1@Example.com>\r\n\r\nHi Bob\r\n",
        );
        assert_eq!(
            m.from,
            vec![Mailbox {
                display_name: Some("Alice".into()),
                address: "alice@example.com".into()
            }]
        );
        assert_eq!(addrs(&m.to), ["bob@example.com"]);
        assert_eq!(m.subject.as_deref(), Some("Hello"));
        assert_eq!(m.date.map(|d| d.timestamp()), Some(1_475_417_182));
        assert_eq!(m.message_id.as_deref(), Some("<Abc.1@Example.com>"));
        assert_eq!(m.body_text.as_deref(), Some("Hi Bob\r\n"));
        assert!(m.attachments.is_empty());
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        assert_eq!(m.automation, AutomationSignals::default());
    }

    #[test]
    fn errors() {
        assert_eq!(parse_message(b""), Err(ParseError::Empty));
        assert_eq!(parse_message(b"\r\n  \n"), Err(ParseError::Empty));
        assert!(matches!(
            parse_message(b"just some text\nwith no headers\n\nat all"),
            Err(ParseError::UnreadableHeaders(_))
        ));
        assert!(matches!(
            parse_message(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Err(ParseError::UnreadableHeaders(_))
        ));
        assert!(matches!(
            parse_message(b"X-Only: 1\n\nbody"),
            Err(ParseError::UnreadableHeaders(_))
        ));
    }

    #[test]
    fn headers_only_message() {
        let m = parse("From: a@x.com\r\nSubject: no body");
        assert_eq!(m.subject.as_deref(), Some("no body"));
        assert_eq!(m.body_text, None);
        assert!(m.attachments.is_empty());
    }

    #[test]
    fn too_large_is_an_error_without_content() {
        let limits = Limits {
            max_message_bytes: 10,
            ..Limits::default()
        };
        let error = parse_message_with(b"Subject: secret words\n\nx", &limits).unwrap_err();
        assert_eq!(
            error,
            ParseError::TooLarge {
                bytes: 24,
                limit: 10
            }
        );
        assert_eq!(
            error.to_string(),
            "message is 24 bytes, over the 10-byte limit ([limits] max_message_bytes)"
        );
        assert_eq!(parse_message_with(b"", &limits), Err(ParseError::Empty));
    }

    #[test]
    fn nul_and_control_characters() {
        let m = parse_message(
            b"From: \"A\0B\" <a@x.com>\nMessage-ID: <id\0\x1b@x>\nSubject: s\0t\n\nbo\0dy",
        )
        .expect("parses");
        assert_eq!(m.from[0].display_name.as_deref(), Some("A B"));
        assert_eq!(m.message_id.as_deref(), Some("<id@x>"));
        assert_eq!(m.subject.as_deref(), Some("s t"));
        assert_eq!(m.body_text.as_deref(), Some("body"));
        assert!(has_problem(&m, "NUL characters removed"));
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;
        use crate::parse::gmail_labels;
        use crate::parse::test_support::no_internal_error;

        const HEADER: &str = "From: a@x.com\r\nTo: \"B, b\" <b@x.com>\r\nSubject: s\r\n\
                              Content-Type: multipart/mixed; boundary=b\r\n\r\n";

        /// Fragments that steer random input into the parser's interesting states.
        fn fragment() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                any::<Vec<u8>>(),
                Just(b"--b\r\n".to_vec()),
                Just(b"--b--\r\n".to_vec()),
                Just(b"Content-Type: multipart/alternative; boundary=b\r\n".to_vec()),
                Just(b"Content-Type: text/html; charset=x-foo\r\n".to_vec()),
                Just(b"Content-Type: text/calendar\r\n".to_vec()),
                Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
                Just(b"Content-Transfer-Encoding: quoted-printable\r\n".to_vec()),
                Just(b"Content-Disposition: attachment; filename*=UTF-8''%E2%82\r\n".to_vec()),
                Just(b"To: =?UTF-8?B?5byg?= <a@b>, Team: c@d;, e\r\n".to_vec()),
                Just(b"=?utf-8?q?=E2=82?=".to_vec()),
                Just(b"<div><table><tr><td>".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b" \t".to_vec()),
                Just(b"\r".to_vec()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let result = parse_message(&raw);
                prop_assert!(no_internal_error(&result));
                let _ = gmail_labels(&raw);
            }

            #[test]
            fn arbitrary_body_after_valid_headers(tail in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let mut raw = HEADER.as_bytes().to_vec();
                raw.extend_from_slice(&tail);
                let result = parse_message(&raw);
                prop_assert!(result.is_ok());
                prop_assert!(no_internal_error(&result));
            }

            #[test]
            fn structured_noise_never_panics(parts in proptest::collection::vec(fragment(), 0..40)) {
                let mut raw = HEADER.as_bytes().to_vec();
                for p in &parts {
                    raw.extend_from_slice(p);
                }
                let result = parse_message(&raw);
                prop_assert!(no_internal_error(&result));
                let headerless: Vec<u8> = parts.concat();
                let result = parse_message(&headerless);
                prop_assert!(no_internal_error(&result));
            }
        }
    }
}
