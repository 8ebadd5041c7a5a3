//! `mailsync store migrate`: a store copied to another backend (SQLite to PostgreSQL, and
//! back), resumable and verified.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::output::json_line;
use super::{CommandError, CommandResult, ExitStatus};
use crate::store::migrate::{self, Endpoint};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a store to another place or backend, then compare every table's rows and
    /// checksum on both sides (exit 1 if any differs). Run again after an interruption: rows
    /// already copied are written again unchanged. Stop the daemons first: mail they sync
    /// meanwhile would be missing from the copy. Ignores --config.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The store to copy: a SQLite file's path, or postgresql://USER@HOST:PORT/DB.
    #[arg(long, value_name = "PATH|URL")]
    pub from: String,
    /// Where to copy it (created and migrated if needed; best a new, empty store).
    #[arg(long, value_name = "PATH|URL")]
    pub to: String,
    /// A file (chmod 600) with the password of the PostgreSQL side(s); without it,
    /// PGPASSWORD or the passfile.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The comparison as one JSON object per table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: StoreCommand) -> CommandResult {
    let StoreCommand::Migrate(args) = command;
    let endpoint =
        |text: &str| Endpoint::parse(text, args.password_file.clone()).map_err(CommandError::Usage);
    let (from, to) = (endpoint(&args.from)?, endpoint(&args.to)?);
    let failed = |what: String| {
        move |error: crate::store::StoreError| {
            CommandError::Failed(anyhow::Error::new(error).context(what))
        }
    };
    let source = migrate::open_source(&from).map_err(failed(format!("cannot open {from}")))?;
    let target = migrate::open_target(&to).map_err(failed(format!("cannot open {to}")))?;
    let total = migrate::total_rows(&*source).map_err(failed(format!("cannot read {from}")))?;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>20} {wide_bar} {pos}/{len} rows ({eta})")
            .expect("a valid template"),
    );
    migrate::copy(&*source, &*target, &mut |table, rows| {
        bar.set_message(table);
        bar.inc(rows);
    })
    .map_err(failed(format!(
        "copying {from} to {to} stopped; run the same command again to finish"
    )))?;
    bar.finish_and_clear();
    let checks = migrate::verify(&*source, &*target)
        .map_err(failed("cannot compare the two stores".to_string()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for check in &checks {
            json_line(&mut out, check)?;
        }
    } else {
        writeln!(
            out,
            "{:<20} {:>10} {:>10}  CHECKSUM",
            "TABLE", "SOURCE", "TARGET"
        )?;
        for check in &checks {
            writeln!(
                out,
                "{:<20} {:>10} {:>10}  {}",
                check.table,
                check.source_rows,
                check.target_rows,
                if check.matches() { "same" } else { "DIFFERS" }
            )?;
        }
    }
    let differing = checks.iter().filter(|check| !check.matches()).count();
    if differing > 0 {
        tracing::error!(tables = differing, "the copy differs from its source");
        return Ok(ExitStatus::SomeFailed);
    }
    if !args.json {
        writeln!(
            out,
            "copied {total} rows from {from} to {to}; every table verified"
        )?;
    }
    Ok(ExitStatus::Success)
}
