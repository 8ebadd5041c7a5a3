//! CSV cells that a spreadsheet shows as they are: neither run as a formula nor able to
//! spoof the terminal of someone who looks at the file.

/// The characters that start a formula: `=`, `+`, `-`, `@`, their full-width and small forms
/// and the minus sign, which some spreadsheets and import tools read as the ASCII ones.
const FORMULA_STARTS: [char; 13] = [
    '=', '+', '-', '@', '＝', '＋', '－', '＠', '﹦', '﹢', '﹣', '﹫', '\u{2212}',
];

/// A CSV cell for `text`. Subjects and bodies come from whoever sent the mail, and
/// `=HYPERLINK(...)` in a subject must stay text when someone opens the export:
///
/// - [deceptive](super::is_deceptive) characters become `\u{hex}` escapes, except the line
///   breaks and tabs of a body, which CSV quoting keeps inside the cell;
/// - a cell whose first character that is not blank (spaces, tabs, no-break and ideographic
///   spaces, line breaks) starts a formula, or that starts with a tab or carriage return,
///   gets a leading `'` (OWASP's advice), which spreadsheets show as text and hide. Some
///   spreadsheets and import tools trim leading blanks, which brings a formula behind them
///   to the front, so checking only the first character is not enough.
pub fn cell(text: &str) -> String {
    let text = super::escape_keeping_line_breaks(text);
    let formula = text.trim_start().starts_with(FORMULA_STARTS);
    if formula || text.starts_with(['\t', '\r']) {
        format!("'{text}")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::cell;

    /// (text, the cell written)
    const CASES: &[(&str, &str)] = &[
        ("", ""),
        ("Renewal terms", "Renewal terms"),
        ("<a@b>", "<a@b>"),
        ("2024-09-02T09:15:00Z", "2024-09-02T09:15:00Z"),
        ("a=b", "a=b"),
        ("'quoted", "'quoted"),
        ("alice@customer.com", "alice@customer.com"),
        // What spreadsheets run.
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("﹦1+1", "'﹦1+1"),
        ("﹢1", "'﹢1"),
        ("﹣1", "'﹣1"),
        ("\u{2212}1", "'\u{2212}1"),
        ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
        ("\tx", "'\tx"),
        ("\r\nx", "'\r\nx"),
        // After blanks.
        ("  =1+1", "'  =1+1"),
        (" \t\n@SUM(A1)", "' \t\n@SUM(A1)"),
        ("\u{A0}+1", "'\u{A0}+1"),
        ("\u{3000}-1", "'\u{3000}-1"),
        // Full-width forms, at the start and after blanks.
        ("＝1+1", "'＝1+1"),
        ("＋1", "'＋1"),
        ("－1", "'－1"),
        ("＠SUM(A1)", "'＠SUM(A1)"),
        ("\u{3000}＝HYPERLINK(\"x\")", "'\u{3000}＝HYPERLINK(\"x\")"),
        // Deceptive characters are escaped; an escape in front makes a formula plain text.
        ("invoice\u{202E}fdp.exe", "invoice\\u{202e}fdp.exe"),
        ("\u{1b}[31m=1", "\\u{1b}[31m=1"),
        ("\u{200B}=1+1", "\\u{200b}=1+1"),
        ("a lone\rreturn", "a lone\\u{d}return"),
        ("\rx", "\\u{d}x"),
        // A body keeps its lines.
        ("Hello,\r\n\r\nthe quote.\n", "Hello,\r\n\r\nthe quote.\n"),
    ];

    #[test]
    fn cells_are_never_formulas_and_never_spoof() {
        for (text, written) in CASES {
            assert_eq!(cell(text), *written, "cell({text:?})");
        }
    }
}
