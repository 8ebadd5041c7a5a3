//! `calendar_only`: whether the leaves are a calendar invitation and nothing but the
//! calendar system's own rendering of it.

use super::walk::Leaf;

pub(super) fn is_calendar_only(leaves: &[Leaf], alternative_has_calendar: &[bool]) -> bool {
    if !leaves.iter().any(Leaf::is_calendar) {
        return false;
    }
    leaves.iter().all(|leaf| {
        if leaf.is_calendar() {
            return true;
        }
        let generated_text = matches!(leaf.mime_or_text(), "text/plain" | "text/html")
            && !leaf.disposition_attachment
            && leaf.file_name.is_none();
        generated_text
            && leaf
                .alternative
                .and_then(|a| alternative_has_calendar.get(a).copied())
                .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use crate::parse::test_support::parse;

    const INVITE_ALTERNATIVE: &str = concat!(
        "--alt\nContent-Type: text/plain\n\nInvitation: Meeting\n",
        "--alt\nContent-Type: text/html\n\n<p>Invitation</p>\n",
        "--alt\nContent-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR\nEND:VCALENDAR\n",
        "--alt--\n"
    );

    #[test]
    fn calendar_only_invitations() {
        let outlook = format!(
            "Subject: s\nContent-Type: multipart/alternative; boundary=alt\n\n{INVITE_ALTERNATIVE}"
        );
        assert!(parse(&outlook).automation.calendar_only);

        let google = format!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=mix\n\n--mix\n\
             Content-Type: multipart/alternative; boundary=alt\n\n{INVITE_ALTERNATIVE}\n--mix\n\
             Content-Type: application/ics; name=invite.ics\nContent-Disposition: attachment; filename=invite.ics\n\n\
             BEGIN:VCALENDAR\nEND:VCALENDAR\n--mix--\n"
        );
        let m = parse(&google);
        assert!(m.automation.calendar_only);
        assert_eq!(m.body_text.as_deref(), Some("Invitation: Meeting"));
        assert_eq!(m.attachments.len(), 1);

        let bare = "Subject: s\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\nEND:VCALENDAR\n";
        assert!(parse(bare).automation.calendar_only);
    }

    #[test]
    fn human_text_is_not_calendar_only() {
        let forwarded = format!(
            "Subject: s\nContent-Type: multipart/mixed; boundary=mix\n\n--mix\n\
             Content-Type: text/plain\n\nSee you there!\n--mix\n\
             Content-Type: multipart/alternative; boundary=alt\n\n{INVITE_ALTERNATIVE}\n--mix--\n"
        );
        assert!(!parse(&forwarded).automation.calendar_only);
        let with_ics = "Subject: s\nContent-Type: multipart/mixed; boundary=m\n\n--m\n\nNotes\n--m\n\
             Content-Type: application/ics; name=a.ics\n\nBEGIN:VCALENDAR\n--m--\n";
        assert!(!parse(with_ics).automation.calendar_only);
        assert!(!parse("Subject: s\n\nhello").automation.calendar_only);
    }
}
