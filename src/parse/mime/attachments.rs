//! Attachments: every leaf other than the body that has an `attachment` disposition or a
//! file name, or whose type is neither `text/*` nor `multipart/*`, described by its decoded
//! content.

use sha2::{Digest, Sha256};

use super::decode::part_bytes;
use super::walk::Leaf;
use crate::parse::Attachment;
use crate::parse::limits::Limits;
use crate::parse::problems::Problems;

/// The attachments among `leaves`, in order, leaving out the body leaf.
pub(super) fn describe_attachments(
    leaves: &[Leaf],
    body_leaf: Option<usize>,
    limits: &Limits,
    problems: &mut Problems,
) -> Vec<Attachment> {
    let mut attachments = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        if Some(i) == body_leaf {
            continue;
        }
        let mime = leaf.mime_or_text();
        let is_attachment = leaf.disposition_attachment
            || leaf.file_name.is_some()
            || !(mime.starts_with("text/") || mime.starts_with("multipart/"));
        if !is_attachment {
            continue;
        }
        let content_type = match &leaf.mime {
            Some(m) => m.clone(),
            None => {
                problems.note(format!(
                    "invalid content type in part {}; reported as application/octet-stream",
                    leaf.path
                ));
                "application/octet-stream".to_string()
            }
        };
        let bytes = part_bytes(leaf.part, &leaf.path, problems);
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let size_bytes = bytes.len() as u64;
        let keep = limits.keep_attachment_bytes > 0 && bytes.len() <= limits.keep_attachment_bytes;
        attachments.push(Attachment {
            file_name: leaf.file_name.clone(),
            content_type,
            size_bytes,
            sha256,
            content: keep.then_some(bytes),
        });
    }
    attachments
}

#[cfg(test)]
mod tests {
    use crate::parse::test_support::parse;

    #[test]
    fn attachments_with_known_hashes() {
        let m = parse(concat!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=\"xx\"\n\n",
            "--xx\nContent-Type: text/plain\n\nbody\n",
            "--xx\nContent-Type: application/pdf; name=\"ignored.pdf\"\n",
            "Content-Disposition: attachment; filename=\"r\u{e9}sum\u{e9}/../x.pdf\"\n",
            "Content-Transfer-Encoding: base64\n\naGVsbG8g\nd29ybGQ=\n",
            "--xx\nContent-Type: image/png\nContent-Disposition: inline\n",
            "Content-Transfer-Encoding: base64\n\naGVsbG8gd29ybGQ=\n",
            "--xx\nContent-Type: text/plain; name=notes.txt\n\nhello world\n",
            "--xx--\n"
        ));
        let hello = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        assert_eq!(m.body_text.as_deref(), Some("body"));
        assert_eq!(m.attachments.len(), 3, "{:?}", m.attachments);
        let pdf = &m.attachments[0];
        assert_eq!(pdf.content_type, "application/pdf");
        assert_eq!(pdf.file_name.as_deref(), Some("résumé/../x.pdf"));
        assert_eq!(pdf.size_bytes, 11);
        assert_eq!(pdf.sha256, hello);
        // A bare inline image counts, without a name.
        assert_eq!(m.attachments[1].file_name, None);
        assert_eq!(m.attachments[1].content_type, "image/png");
        assert_eq!(m.attachments[1].sha256, hello);
        // A named text part is an attachment, not the body.
        assert_eq!(m.attachments[2].file_name.as_deref(), Some("notes.txt"));
        assert_eq!(m.attachments[2].sha256, hello);
    }
}
