//! HTML body text: rendered by html2text within the input and nesting limits, or
//! tag-stripped where it cannot be.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::parse::limits::{Limits, size_label};
use crate::parse::problems::Problems;
use crate::parse::text::truncate_on_char_boundary;

/// html2text's time grows with the square of the element nesting depth (10,000 nested
/// elements take half a second, 100,000 take a minute), so deeper HTML is tag-stripped.
const MAX_HTML_NESTING: usize = 2_000;
const HTML_WIDTH: usize = 100;

pub(super) fn html_to_text(
    mut html: String,
    limits: &Limits,
    path: &str,
    problems: &mut Problems,
) -> String {
    let max_input = limits.max_html_bytes;
    if truncate_on_char_boundary(&mut html, max_input) {
        problems.note(format!(
            "HTML body part {path} truncated to {} before conversion",
            size_label(max_input)
        ));
    }
    if html_nesting_estimate(&html) > MAX_HTML_NESTING {
        problems.note(format!(
            "HTML body part {path} nested too deeply; tags stripped instead of rendered"
        ));
        return strip_tags(&html);
    }
    let converted = catch_unwind(AssertUnwindSafe(|| {
        html2text::from_read(html.as_bytes(), HTML_WIDTH)
    }));
    match converted {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            problems.note(format!(
                "HTML body part {path} could not be rendered; tags stripped"
            ));
            strip_tags(&html)
        }
        Err(_) => {
            problems.note(format!(
                "internal error while rendering HTML body part {path}; tags stripped"
            ));
            strip_tags(&html)
        }
    }
}

/// Estimates the deepest element nesting: opening tags add one, closing tags subtract one.
/// Void elements and elements whose end tag the HTML parser supplies itself (`p`, `li`, `td`,
/// ...) are not counted, since they do not nest in the parsed tree. One linear pass.
fn html_nesting_estimate(html: &str) -> usize {
    const NOT_NESTING: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr", "p", "li", "td", "th", "tr", "dt", "dd", "option", "optgroup",
        "tbody", "thead", "tfoot", "colgroup", "rt", "rp", "!doctype",
    ];
    let bytes = html.as_bytes();
    let mut depth: usize = 0;
    let mut max_depth: usize = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) != Some(&b'<') {
            i += 1;
            continue;
        }
        let closing = bytes.get(i + 1) == Some(&b'/');
        let name_start = i + 1 + usize::from(closing);
        let name_len = bytes
            .get(name_start..)
            .unwrap_or(&[])
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'!')
            .count();
        if name_len == 0 {
            i += 1;
            continue;
        }
        let name = html
            .get(name_start..name_start + name_len)
            .unwrap_or("")
            .to_ascii_lowercase();
        let tag_end = bytes
            .get(name_start + name_len..)
            .unwrap_or(&[])
            .iter()
            .position(|&b| b == b'>')
            .map(|p| name_start + name_len + p);
        let self_closing = tag_end.is_some_and(|e| e > 0 && bytes.get(e - 1) == Some(&b'/'));
        if !NOT_NESTING.contains(&name.as_str()) && !self_closing {
            if closing {
                depth = depth.saturating_sub(1);
            } else {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
        }
        i = name_start + name_len;
    }
    max_depth
}

/// A plain fallback for HTML that html2text cannot take: drops tags, script and style
/// contents and decodes the common entities. Linear in the input.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        push_text(&mut out, rest.get(..lt).unwrap_or(""));
        let after = rest.get(lt..).unwrap_or("");
        let lower_head: String = after
            .chars()
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        let skip_to = if lower_head.starts_with("<script") {
            find_ci(after, "</script").map(|p| p + 1)
        } else if lower_head.starts_with("<style") {
            find_ci(after, "</style").map(|p| p + 1)
        } else {
            Some(0)
        };
        let Some(skip_to) = skip_to else { break };
        let tail = after.get(skip_to..).unwrap_or("");
        match tail.find('>') {
            Some(gt) => {
                out.push(' ');
                rest = tail.get(gt + 1..).unwrap_or("");
            }
            None => {
                rest = "";
            }
        }
    }
    push_text(&mut out, rest);
    let mut collapsed = String::with_capacity(out.len());
    let mut last_space = true;
    for c in out.chars() {
        if c.is_whitespace() {
            if !last_space {
                collapsed.push(' ');
            }
            last_space = true;
        } else {
            collapsed.push(c);
            last_space = false;
        }
    }
    collapsed.trim_end().to_string()
}

/// Finds an ASCII needle case-insensitively; returns a byte offset in `haystack`.
fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn push_text(out: &mut String, text: &str) {
    out.push_str(
        &text
            .replace("&nbsp;", " ")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::{has_problem, parse};

    #[test]
    fn html_only_body() {
        let m = parse(
            "Subject: s\nContent-Type: text/html; charset=utf-8\n\n<html><body><p>Hello <b>there</b></p><script>x()</script></body></html>",
        );
        let body = m.body_text.unwrap_or_default();
        assert!(body.contains("Hello"));
        assert!(!body.contains("<p>"));
        assert!(m.attachments.is_empty());
    }

    #[test]
    fn deep_html_is_stripped_not_rendered() {
        let html = format!("{}deep text", "<div>".repeat(5_000));
        let m = parse(&format!("Subject: s\nContent-Type: text/html\n\n{html}"));
        assert_eq!(m.body_text.as_deref(), Some("deep text"));
        assert!(has_problem(&m, "nested too deeply"));
    }

    #[test]
    fn html_nesting_estimate_counts_real_nesting() {
        assert_eq!(html_nesting_estimate("<p>a<p>b<br><img src=x/>"), 0);
        assert_eq!(html_nesting_estimate("<div><span>a</span></div><div>"), 2);
        assert_eq!(strip_tags("<style>p{}</style><b>a &amp; b</b>"), "a & b");
    }
}
