//! Text made safe for a terminal: every character that could change how the text around it
//! is seen is written as a visible escape, `\u{202e}`, so that support can still see the
//! trick instead of falling for it.

use std::borrow::Cow;

/// Whether `c` can change what a reader sees without being seen itself:
///
/// - control characters (C0, DEL and C1): terminal escapes, carriage returns that overwrite
///   a line, line breaks that forge a table row;
/// - bidi controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), which reorder
///   what follows them;
/// - line and paragraph separators (U+2028, U+2029), which some terminals and editors break
///   lines at;
/// - invisible format characters that hide text or split a word without a trace: zero width
///   space (U+200B), word joiner and invisible operators (U+2060–U+2064), the deprecated
///   format characters (U+206A–U+206F), the byte order mark (U+FEFF), interlinear annotation
///   (U+FFF9–U+FFFB), and tag characters (U+E0000–U+E007F), which can carry a whole
///   invisible ASCII text;
/// - characters drawn as nothing although they are not format characters: the combining
///   grapheme joiner (U+034F), the Mongolian vowel separator (U+180E) and the Hangul fillers
///   (U+115F, U+1160, U+3164, U+FFA0), which make a name look blank or like another.
///
/// Zero width joiner and non-joiner, variation selectors and the soft hyphen are kept: emoji
/// and several scripts need them, and they change how a word is drawn, not which word it is.
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{200B}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206A}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
                | '\u{034F}'
                | '\u{180E}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{3164}'
                | '\u{FFA0}'
        )
}

/// `text` for one line of a terminal or a table: every [deceptive](is_deceptive) character,
/// line breaks and tabs included, becomes `\u{hex}` (Rust's escape: lower-case hex, no
/// padding, as in `\u{1b}` and `\u{202e}`). A backslash already in the text stays as it is,
/// so the escaped form is for reading, not for decoding: JSON output is the faithful one.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_where(text, |_, _| true)
}

/// `text` where its line breaks are part of it (a body in a CSV cell, a multi-line error
/// message): like [`escape`], but line feeds, tabs and the carriage return of a CRLF stay. A
/// carriage return on its own would send the cursor back over the line, so it is escaped.
pub fn escape_keeping_line_breaks(text: &str) -> Cow<'_, str> {
    escape_where(text, |c, next| match c {
        '\n' | '\t' => false,
        '\r' => next != Some('\n'),
        _ => true,
    })
}

/// Escapes the deceptive characters of `text` for which `should_escape(character, the next
/// character)` holds; borrows when there is nothing to escape, which is almost always.
fn escape_where(text: &str, should_escape: impl Fn(char, Option<char>) -> bool) -> Cow<'_, str> {
    let needs = |(i, c): (usize, char)| {
        is_deceptive(c) && should_escape(c, text[i + c.len_utf8()..].chars().next())
    };
    if !text.char_indices().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for (i, c) in text.char_indices() {
        if needs((i, c)) {
            escaped.extend(c.escape_unicode());
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::{escape, escape_keeping_line_breaks};

    /// (input, as one line, as text with its line breaks)
    const CASES: &[(&str, &str, &str)] = &[
        ("Renewal terms", "Renewal terms", "Renewal terms"),
        ("", "", ""),
        (
            "张三 <a@b.com> Ünïcödé",
            "张三 <a@b.com> Ünïcödé",
            "张三 <a@b.com> Ünïcödé",
        ),
        // Drawn as nothing: a "blank" sender name and a filler inside a word.
        (
            "\u{3164}\u{115F}\u{1160}\u{FFA0} ad\u{034F}min\u{180E}",
            "\\u{3164}\\u{115f}\\u{1160}\\u{ffa0} ad\\u{34f}min\\u{180e}",
            "\\u{3164}\\u{115f}\\u{1160}\\u{ffa0} ad\\u{34f}min\\u{180e}",
        ),
        // Bidi: the classic reversed file name, and each of the isolates and marks.
        (
            "invoice\u{202E}fdp.exe",
            "invoice\\u{202e}fdp.exe",
            "invoice\\u{202e}fdp.exe",
        ),
        (
            "\u{202A}\u{202B}\u{202C}\u{202D}",
            "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
            "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
        ),
        (
            "\u{2066}\u{2067}\u{2068}\u{2069}",
            "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
            "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
        ),
        (
            "a\u{200E}b\u{200F}c\u{061C}",
            "a\\u{200e}b\\u{200f}c\\u{61c}",
            "a\\u{200e}b\\u{200f}c\\u{61c}",
        ),
        // Terminal escapes: colour (CSI), a hyperlink (OSC 8), 8-bit CSI (C1), DEL, NUL.
        ("\u{1b}[31mred", "\\u{1b}[31mred", "\\u{1b}[31mred"),
        (
            "\u{1b}]8;;http://evil.example\u{7}x\u{1b}]8;;\u{7}",
            "\\u{1b}]8;;http://evil.example\\u{7}x\\u{1b}]8;;\\u{7}",
            "\\u{1b}]8;;http://evil.example\\u{7}x\\u{1b}]8;;\\u{7}",
        ),
        (
            "\u{9b}2J\u{7f}\u{0}",
            "\\u{9b}2J\\u{7f}\\u{0}",
            "\\u{9b}2J\\u{7f}\\u{0}",
        ),
        ("\u{85}next", "\\u{85}next", "\\u{85}next"),
        // Line breaks forge rows in a table, but are the text itself in a body.
        (
            "a\nb\tc\r\nd",
            "a\\u{a}b\\u{9}c\\u{d}\\u{a}d",
            "a\nb\tc\r\nd",
        ),
        ("over\rwrite", "over\\u{d}write", "over\\u{d}write"),
        ("end\r", "end\\u{d}", "end\\u{d}"),
        (
            "a\u{2028}b\u{2029}",
            "a\\u{2028}b\\u{2029}",
            "a\\u{2028}b\\u{2029}",
        ),
        // Invisible characters that hide text.
        (
            "pay\u{200B}pal\u{2060}\u{FEFF}",
            "pay\\u{200b}pal\\u{2060}\\u{feff}",
            "pay\\u{200b}pal\\u{2060}\\u{feff}",
        ),
        (
            "hi\u{E0041}\u{E0042}",
            "hi\\u{e0041}\\u{e0042}",
            "hi\\u{e0041}\\u{e0042}",
        ),
        (
            "\u{FFF9}x\u{FFFB}\u{206A}",
            "\\u{fff9}x\\u{fffb}\\u{206a}",
            "\\u{fff9}x\\u{fffb}\\u{206a}",
        ),
        // Kept: joiners in emoji and scripts, variation selectors, the soft hyphen, a backslash.
        (
            "👨\u{200D}👩 می\u{200C}خواهم ❤\u{FE0F} soft\u{AD}ware C:\\x",
            "👨\u{200D}👩 می\u{200C}خواهم ❤\u{FE0F} soft\u{AD}ware C:\\x",
            "👨\u{200D}👩 می\u{200C}خواهم ❤\u{FE0F} soft\u{AD}ware C:\\x",
        ),
    ];

    #[test]
    fn deceptive_characters_are_shown_as_escapes() {
        for (input, line, with_breaks) in CASES {
            assert_eq!(escape(input), *line, "escape({input:?})");
            assert_eq!(
                escape_keeping_line_breaks(input),
                *with_breaks,
                "escape_keeping_line_breaks({input:?})"
            );
        }
    }
}
