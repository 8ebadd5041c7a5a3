//! The header fields mailsync reads, picked out of the block in one pass.

use mailparse::MailHeader;

/// The headers mailsync reads, gathered in one pass so that the work stays linear in the
/// number of headers.
#[derive(Default)]
pub(crate) struct HeaderFields<'h, 'a> {
    pub(crate) from: Vec<&'h MailHeader<'a>>,
    pub(crate) to: Vec<&'h MailHeader<'a>>,
    pub(crate) cc: Vec<&'h MailHeader<'a>>,
    pub(crate) bcc: Vec<&'h MailHeader<'a>>,
    pub(crate) subject: Option<&'h MailHeader<'a>>,
    pub(crate) date: Option<&'h MailHeader<'a>>,
    pub(crate) message_id: Option<&'h MailHeader<'a>>,
    pub(crate) in_reply_to: Vec<&'h MailHeader<'a>>,
    pub(crate) references: Vec<&'h MailHeader<'a>>,
    pub(crate) gmail_labels: Vec<&'h MailHeader<'a>>,
    pub(crate) list_id: Vec<&'h MailHeader<'a>>,
    pub(crate) list_unsubscribe: Vec<&'h MailHeader<'a>>,
    pub(crate) precedence: Option<&'h MailHeader<'a>>,
    pub(crate) auto_submitted: Option<&'h MailHeader<'a>>,
}

impl<'h, 'a> HeaderFields<'h, 'a> {
    pub(crate) fn collect(headers: &'h [MailHeader<'a>]) -> Self {
        let mut f = HeaderFields::default();
        for h in headers {
            let key = h.get_key_raw().trim_ascii();
            let is = |name: &str| key.eq_ignore_ascii_case(name.as_bytes());
            if is("from") {
                f.from.push(h);
            } else if is("to") {
                f.to.push(h);
            } else if is("cc") {
                f.cc.push(h);
            } else if is("bcc") {
                f.bcc.push(h);
            } else if is("subject") {
                f.subject.get_or_insert(h);
            } else if is("date") {
                f.date.get_or_insert(h);
            } else if is("message-id") {
                f.message_id.get_or_insert(h);
            } else if is("in-reply-to") {
                f.in_reply_to.push(h);
            } else if is("references") {
                f.references.push(h);
            } else if is("x-gmail-labels") {
                f.gmail_labels.push(h);
            } else if is("list-id") {
                f.list_id.push(h);
            } else if is("list-unsubscribe") {
                f.list_unsubscribe.push(h);
            } else if is("precedence") {
                f.precedence.get_or_insert(h);
            } else if is("auto-submitted") {
                f.auto_submitted.get_or_insert(h);
            }
        }
        f
    }

    pub(crate) fn looks_like_mail(&self) -> bool {
        !self.from.is_empty()
            || !self.to.is_empty()
            || !self.cc.is_empty()
            || !self.bcc.is_empty()
            || self.subject.is_some()
            || self.date.is_some()
            || self.message_id.is_some()
    }
}

pub(crate) fn key_is(h: &MailHeader, name: &str) -> bool {
    h.get_key_raw()
        .trim_ascii()
        .eq_ignore_ascii_case(name.as_bytes())
}
