//! The message's header block and the values mailsync reads from it. What stands before the
//! first header is skipped (`preamble`); the block is held to `max_header_bytes` (`limit`)
//! and repaired once if `mailparse` cannot read it (`block`); the fields mailsync uses are
//! picked out in one pass (`fields`) and their values read: decoded within a budget
//! (`decode`), cleaned and bounded (`values`), or kept byte for byte (`ids`). Addresses and
//! labels have modules of their own. The MIME part headers reuse the repair and the limit.

mod block;
mod decode;
mod fields;
mod ids;
mod limit;
mod preamble;
mod values;

pub(super) use block::{HeaderBlock, repair_header_lines};
pub(super) use decode::{DecodeBudget, has_encoded_word, header_value, note_text_problems};
pub(super) use fields::{HeaderFields, key_is};
pub(super) use ids::{angle_tokens, message_id_from, msg_ids_from};
pub(super) use limit::{fit_header_fields, limit_header_block};
pub(super) use preamble::{normalize_bare_cr, strip_preamble};
pub(super) use values::{auto_submitted_is_set, date_from, precedence_is_bulk, subject_from};
