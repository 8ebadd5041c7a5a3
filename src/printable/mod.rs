//! Output that cannot be spoofed. Names, addresses, subjects, bodies, attachment and message
//! file names, labels and rule names come from strangers' mail, from the CRM or from files
//! on disk, and mailsync prints them into terminals, JSON lines and spreadsheets. A control
//! character there can rewrite what the terminal shows (an ANSI escape that moves the cursor
//! or makes a link), and a bidi control makes `invoice<U+202E>fdp.exe` read as
//! `invoiceexe.pdf`.
//!
//! So every command prints data only through this module: [`escape`] for text on a terminal,
//! [`json::to_writer`] for JSON, [`spreadsheet::cell`] for CSV. They share one list of the
//! characters that deceive, [`is_deceptive`], and escape them instead of removing them, so
//! that whoever reads the output sees that a trick was tried.

pub mod json;
pub mod spreadsheet;
mod text;

pub use text::{escape, escape_keeping_line_breaks, is_deceptive};
