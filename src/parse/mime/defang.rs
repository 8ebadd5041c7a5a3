//! MIME header lines that would make `mailparse` do unbounded work (costly encoded words,
//! huge boundaries), neutralised before it runs.

use crate::parse::headers::DecodeBudget;
use crate::parse::lines::split_first_line;

/// RFC 2046 limits a boundary to 70 characters; far longer ones only serve to make
/// `mailparse`'s boundary search slow.
const MAX_BOUNDARY_BYTES: usize = 200;

/// Finds MIME header lines that would make `mailparse` do unbounded work and returns a copy
/// with them neutralised, or None when there are none. `mailparse` decodes the values of
/// Content-Type, Content-Disposition and Content-Transfer-Encoding itself, so only lines that
/// start with `Content-` and indented lines (possible continuations) are looked at: their
/// encoded-word cost is checked (see `HEADER_DECODE_BUDGET` and `MESSAGE_DECODE_BUDGET`;
/// once the message's budget is spent, every later line with an encoded word is
/// neutralised), and a Content-Type boundary
/// longer than `MAX_BOUNDARY_BYTES` is renamed so that the part is read as a leaf.
pub(super) fn defang_costly_mime_lines(buf: &[u8]) -> Option<Vec<u8>> {
    let mut costly: Vec<(usize, usize)> = Vec::new();
    let mut decode = DecodeBudget::default();
    let mut offset = 0;
    let mut rest = buf;
    loop {
        let (line, next) = split_first_line(rest);
        let is_content = line.len() >= 8
            && line
                .get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"content-"));
        let indented = matches!(line.first(), Some(b' ' | b'\t'));
        if (is_content || indented) && (!decode.allows(line) || has_long_boundary(line)) {
            costly.push((offset, line.len()));
        }
        offset += line.len() + 1;
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    if costly.is_empty() {
        return None;
    }
    let mut out = buf.to_vec();
    for (start, len) in costly {
        if let Some(line) = out.get_mut(start..start + len) {
            // `=?` becomes `=_`, which cannot start an encoded word.
            let mut from = 0;
            while let Some(i) = line
                .get(from..)
                .and_then(|rest| rest.iter().position(|&b| b == b'='))
            {
                let at = from + i;
                if let Some(b) = line.get_mut(at + 1)
                    && *b == b'?'
                {
                    *b = b'_';
                }
                from = at + 1;
            }
            neutralise_boundary(line);
        }
    }
    Some(out)
}

/// Finds `boundary=` (any case) in a line; returns where the key starts and how many bytes
/// its value has (without quotes).
fn boundary_value_range(line: &[u8]) -> Option<(usize, usize)> {
    const KEY: &[u8] = b"boundary=";
    // The first `=` that ends a `boundary` key; looking for the `=` first is what keeps
    // this cheap on long lines.
    let mut from = 0;
    let pos = loop {
        let eq = from + line.get(from..)?.iter().position(|&b| b == b'=')?;
        let key_start = (eq + 1).checked_sub(KEY.len());
        if let Some(key_start) = key_start
            && line
                .get(key_start..=eq)
                .is_some_and(|w| w.eq_ignore_ascii_case(KEY))
        {
            break key_start;
        }
        from = eq + 1;
    };
    let mut start = pos + KEY.len();
    let quoted = line.get(start) == Some(&b'"');
    if quoted {
        start += 1;
    }
    let tail = line.get(start..)?;
    let len = tail
        .iter()
        .position(|&b| {
            if quoted {
                b == b'"'
            } else {
                b == b';' || b.is_ascii_whitespace()
            }
        })
        .unwrap_or(tail.len());
    Some((pos, len))
}

fn has_long_boundary(line: &[u8]) -> bool {
    // A line too short to hold `boundary=` and a long value needs no search.
    line.len() > MAX_BOUNDARY_BYTES + b"boundary=".len()
        && boundary_value_range(line).is_some_and(|(_, len)| len > MAX_BOUNDARY_BYTES)
}

fn neutralise_boundary(line: &mut [u8]) {
    if line.len() <= MAX_BOUNDARY_BYTES + b"boundary=".len() {
        return;
    }
    if let Some((pos, len)) = boundary_value_range(line)
        && len > MAX_BOUNDARY_BYTES
        && let Some(b) = line.get_mut(pos)
    {
        // `boundary=` becomes `xoundary=`, an unknown parameter.
        *b = b'x';
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::test_support::{has_problem, parse};

    #[test]
    fn long_boundary_is_neutralised() {
        let boundary = "-".repeat(5_000) + "x";
        let m = parse(&format!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\n\n{}",
            "-".repeat(200_000)
        ));
        assert!(has_problem(&m, "pathological MIME header line"));
    }
}
