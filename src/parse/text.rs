//! Decoded text made safe for one-line fields, and cut to size on a character boundary.

/// Replaces control characters by spaces: names and subjects are shown in terminals, where a
/// CR, LF or escape sequence could rewrite what the user sees.
pub(super) fn replace_controls(s: &str, keep_tab: bool) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && !(keep_tab && c == '\t') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Cuts `s` to at most `max` bytes on a char boundary; returns whether it cut.
pub(super) fn truncate_on_char_boundary(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}
