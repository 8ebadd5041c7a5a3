//! The MIME structure, read into the body text, the attachments and whether the message is
//! only a calendar invitation. `read` runs the stages in order: lines that would make
//! `mailparse` do unbounded work are neutralised (`defang`); the structure is held to the
//! depth, part and header limits before `mailparse` builds its tree (`bounds`); part headers
//! it rejects are repaired once (`repair`); the tree is walked into leaves (`walk`); and the
//! leaves give the body (`body`), the attachments (`attachments`) and the calendar shape
//! (`calendar`), their content transfer- and charset-decoded (`decode`) and HTML turned into
//! text (`html`). Dependencies run one way, from `read` down: `body`, `attachments` and
//! `calendar` read `walk`'s leaves, and `walk`, `decode`, `html`, `bounds`, `defang` and
//! `repair` use no other stage.

mod attachments;
mod body;
mod bounds;
mod calendar;
mod decode;
mod defang;
mod html;
mod read;
mod repair;
mod walk;

pub(super) use read::{MimeFacts, read_mime};
