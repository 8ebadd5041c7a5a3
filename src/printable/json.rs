//! JSON output that stays faithful and still cannot spoof: serde_json writes control
//! characters below U+0020 as escapes but everything else as it is, so a DEL, a C1 control
//! or a bidi control would reach the terminal of whoever reads `--json` output. Here every
//! [deceptive](super::is_deceptive) character is written as a `\uXXXX` escape, which any
//! JSON parser decodes back to the exact original.

use std::io::{self, Write};

use serde_json::ser::Formatter;

/// Writes `value` as one line of compact JSON, with every deceptive character escaped.
pub fn to_writer(out: &mut impl Write, value: &impl serde::Serialize) -> io::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(&mut *out, EscapingFormatter);
    value.serialize(&mut serializer).map_err(io::Error::from)
}

/// serde_json's compact format, except in the unescaped runs of strings (keys included).
struct EscapingFormatter;

impl Formatter for EscapingFormatter {
    fn write_string_fragment<W>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()>
    where
        W: ?Sized + Write,
    {
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| super::is_deceptive(c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::to_writer;

    fn json(value: &str) -> String {
        let mut out = Vec::new();
        to_writer(&mut out, &serde_json::json!({ value: value })).expect("writes to a Vec");
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// (string, how it is written inside quotes)
    const CASES: &[(&str, &str)] = &[
        ("plain Ünïcödé 张三", "plain Ünïcödé 张三"),
        ("invoice\u{202E}fdp.exe", "invoice\\u202efdp.exe"),
        ("\u{1b}[31m", "\\u001b[31m"),
        (
            "del\u{7f} csi\u{9b} nel\u{85}",
            "del\\u007f csi\\u009b nel\\u0085",
        ),
        (
            "\u{2066}\u{2069}\u{200E}\u{061C}",
            "\\u2066\\u2069\\u200e\\u061c",
        ),
        (
            "line\nbreak\ttab \"q\" \\",
            "line\\nbreak\\ttab \\\"q\\\" \\\\",
        ),
        ("\u{2028}\u{FEFF}\u{200B}", "\\u2028\\ufeff\\u200b"),
        // Beyond the BMP, as JSON requires: a surrogate pair.
        ("tag\u{E0041}", "tag\\udb40\\udc41"),
        ("👨\u{200D}👩", "👨\u{200D}👩"),
    ];

    #[test]
    fn deceptive_characters_are_json_escapes_that_decode_to_the_original() {
        for (value, written) in CASES {
            let line = json(value);
            assert_eq!(
                line,
                format!("{{\"{written}\":\"{written}\"}}"),
                "{value:?}"
            );
            assert!(
                !line.chars().any(crate::printable::is_deceptive),
                "{line:?}"
            );
            let decoded: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&line).expect("valid JSON");
            assert_eq!(decoded[*value], *value, "round trip of {value:?}");
        }
    }
}
