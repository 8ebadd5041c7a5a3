//! Getting mail into the store: the per-message pipeline ([`pipeline`]) and the per-user
//! Gmail sync built on it ([`gmail`]), shared by the daemon and `replay`.

pub mod capture;
pub mod gmail;
pub mod owner_choice;
mod pipeline;
pub mod retention;
pub mod retro;

pub use pipeline::{
    DecisionLine, Mode, PartyVerdict, Prepared, Processed, company_direction, prepare, prepare_all,
    process, process_too_large,
};
