//! Part content: transfer decoding (base64 leniently when it is broken), then, for text,
//! charset decoding.

use mailparse::ParsedMail;
use mailparse::body::Body;

use crate::parse::problems::Problems;

/// The part's content with its transfer encoding removed. Base64 that `mailparse` rejects is
/// decoded leniently (skipping stray characters, restarting after inner padding), because
/// that is what mail clients show; any other decoding failure yields the raw bytes. `path`
/// names the part in problems.
pub(super) fn part_bytes(part: &ParsedMail, path: &str, problems: &mut Problems) -> Vec<u8> {
    match part.get_body_raw() {
        Ok(bytes) => bytes,
        Err(_) => match part.get_body_encoded() {
            Body::Base64(body) => {
                problems.note(format!("invalid base64 in part {path}; decoded leniently"));
                lenient_base64(body.get_raw())
            }
            Body::QuotedPrintable(body) => {
                problems.note(format!(
                    "invalid quoted-printable in part {path}; used raw bytes"
                ));
                body.get_raw().to_vec()
            }
            Body::SevenBit(body) | Body::EightBit(body) => body.get_raw().to_vec(),
            Body::Binary(body) => body.get_raw().to_vec(),
        },
    }
}

fn lenient_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for &b in input {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                // Padding ends a chunk; some senders concatenate padded chunks.
                acc = 0;
                bits = 0;
                continue;
            }
            _ => continue,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xFF) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The part's text: transfer-decoded, then charset-decoded (see `decode_text`).
pub(super) fn part_text(part: &ParsedMail, path: &str, problems: &mut Problems) -> String {
    let bytes = part_bytes(part, path, problems);
    let label = part
        .ctype
        .params
        .get("charset")
        .map(|c| c.trim().to_ascii_lowercase());
    decode_text(&bytes, label.as_deref(), path, problems)
}

/// Decodes text bytes. Text that declares no charset or US-ASCII but is valid UTF-8 is read
/// as UTF-8: US-ASCII cannot hold the 8-bit bytes, and senders that forget the charset almost
/// always send UTF-8. Other 8-bit text without a charset is read as windows-1252, which is
/// what `mailparse` (through encoding_rs) does for US-ASCII. An unknown charset is noted and
/// read as UTF-8 when valid, else windows-1252.
fn decode_text(bytes: &[u8], label: Option<&str>, path: &str, problems: &mut Problems) -> String {
    match label {
        None | Some("" | "us-ascii" | "ascii" | "us_ascii" | "ansi_x3.4-1968") => {
            match std::str::from_utf8(bytes) {
                Ok(s) => s.to_string(),
                Err(_) => decode_with_charset(bytes, "windows-1252"),
            }
        }
        Some("utf-8" | "utf8") => match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            Err(_) => {
                problems.note(format!("invalid UTF-8 in body part {path}; replaced"));
                String::from_utf8_lossy(bytes).into_owned()
            }
        },
        Some(label) if charset_is_known(label) => decode_with_charset(bytes, label),
        Some(label) => {
            problems.note(format!(
                "unknown charset {} in body part {path}",
                loggable_label(label)
            ));
            match std::str::from_utf8(bytes) {
                Ok(s) => s.to_string(),
                Err(_) => decode_with_charset(bytes, "windows-1252"),
            }
        }
    }
}

/// A charset label is header data, not message content, but it is still cut to a short
/// run of safe characters before it goes into a log line.
fn loggable_label(label: &str) -> String {
    let safe: String = label
        .chars()
        .map(|c| if is_label_char(c) { c } else { '?' })
        .take(40)
        .collect();
    safe
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._:+-()".contains(c)
}

/// Whether `mailparse` knows the charset. The charset table lives in a crate this module does
/// not depend on directly, so the question is put to `mailparse` itself: it decodes an
/// encoded word only when it knows the word's charset, and leaves it as written otherwise.
fn charset_is_known(label: &str) -> bool {
    if label.is_empty() || label.len() > 64 || !label.chars().all(is_label_char) {
        return false;
    }
    let probe = format!("=?{label}?B?QQ==?=");
    let header = format!("X: {probe}");
    match mailparse::parse_header(header.as_bytes()) {
        Ok((h, _)) => h.get_value() != probe,
        Err(_) => false,
    }
}

/// Decodes bytes with a charset `mailparse` knows, by handing them to it as the body of a
/// one-part message that declares the charset.
fn decode_with_charset(bytes: &[u8], label: &str) -> String {
    let mut message = format!(
        "Content-Type: text/plain; charset=\"{label}\"\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    )
    .into_bytes();
    message.extend_from_slice(bytes);
    match mailparse::parse_mail(&message).and_then(|m| m.get_body()) {
        Ok(text) => text,
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::parse_message;
    use crate::parse::test_support::{has_problem, parse};

    #[test]
    fn bad_base64_is_decoded_leniently() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\ntext\n--b\n",
            "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n",
            "aGVs!!bG8g\nd29y*bGQ=\n--b--\n"
        ));
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].size_bytes, 11);
        assert!(has_problem(&m, "invalid base64 in part 2"));
    }

    #[test]
    fn unknown_charset_is_noted() {
        let m = parse("Subject: s\nContent-Type: text/plain; charset=x-foo\n\nplain words");
        assert_eq!(m.body_text.as_deref(), Some("plain words"));
        assert!(has_problem(&m, "unknown charset x-foo in body"));
        let m =
            parse_message(b"Subject: s\nContent-Type: text/plain; charset=iso-8859-1\n\ncaf\xe9")
                .expect("parses");
        assert_eq!(m.body_text.as_deref(), Some("caf\u{e9}"));
        assert!(m.problems.is_empty());
    }

    #[test]
    fn undeclared_utf8_body_is_read_as_utf8() {
        let m = parse("Subject: s\n\ncafé");
        assert_eq!(m.body_text.as_deref(), Some("café"));
    }

    #[test]
    fn latin1_bytes_in_undeclared_body() {
        let m = parse_message(b"Subject: s\n\ncaf\xe9").expect("parses");
        assert_eq!(m.body_text.as_deref(), Some("café"));
    }
}
