//! Log set-up. Logs go to standard error; standard output is for command results.
//!
//! What may be logged, at any level: user emails, source ids, counts, decisions and reasons.
//! What may not, at any level: contact addresses, subjects, bodies, links, tokens and keys.
//!
//! Our own code keeps to that by what it writes. Other crates cannot be trusted to: html5ever
//! (under html2text) logs every text node and attribute of HTML mail at debug and trace,
//! html2text logs at info, yup-oauth2 logs whole token responses at debug, hyper and h2 log
//! headers. So only targets of this project obey `RUST_LOG` below warn; every other crate is
//! held at warn whatever `RUST_LOG` asks for. An allowlist, not a list of known offenders,
//! so that a new dependency cannot open a leak.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// How log lines on standard error are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The most verbose level a crate outside this project may log at.
pub const FOREIGN_CRATE_LEVEL: Level = Level::WARN;

/// Whether a log line from `target` at `level` may be written at all (before `RUST_LOG`).
pub fn is_allowed(target: &str, level: &Level) -> bool {
    is_own_target(target) || *level <= FOREIGN_CRATE_LEVEL
}

/// Targets of this project: the `mailsync` crate and its modules (`mailsync::daemon`, ...).
fn is_own_target(target: &str) -> bool {
    target == "mailsync" || target.starts_with("mailsync::") || target.starts_with("mailsync_")
}

/// The format `init` installed: process-wide, like the subscriber itself.
static FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Installs the global subscriber; `RUST_LOG` overrides `default_level`, within the cap above.
/// Colours only when standard error is a terminal: journald and log files get plain text.
pub fn init(format: LogFormat, default_level: &str) {
    let _ = FORMAT.set(format);
    let env_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let filter = env_filter.and(filter_fn(|metadata| {
        is_allowed(metadata.target(), metadata.level())
    }));
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let layer = match format {
        LogFormat::Text => layer.with_filter(filter).boxed(),
        LogFormat::Json => layer.json().flatten_event(true).with_filter(filter).boxed(),
    };
    // A second initialisation (in tests) is harmless, so its error is ignored.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// A fatal error, written the way the log is: one JSON object in JSON mode (so that every
/// line on standard error parses), `mailsync: …` otherwise. Errors name files, message ids and
/// rows of files others wrote, so control and bidi characters are escaped either way.
pub fn fatal(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!(
            "mailsync: {}",
            crate::printable::escape_keeping_line_breaks(message)
        ),
        LogFormat::Json => write_json_line(&json_line("ERROR", message)),
    }
}

/// A problem a command reports on standard error while it goes on (a bad row of a file the
/// operator gave it), written like the log: `problem` as text, or one JSON line in JSON mode,
/// whatever `RUST_LOG` says (it is the command's output, not a log line).
pub fn report_problem(problem: &str) {
    match FORMAT.get().copied().unwrap_or(LogFormat::Text) {
        LogFormat::Text => eprintln!("{}", crate::printable::escape(problem)),
        LogFormat::Json => write_json_line(&json_line("WARN", problem)),
    }
}

fn write_json_line(value: &serde_json::Value) {
    let mut line = Vec::new();
    if crate::printable::json::to_writer(&mut line, value).is_ok() {
        line.push(b'\n');
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), &line);
    }
}

/// Replaces the default panic report, which prints the panic's message. A panic caught
/// inside a parsing crate (mailparse, html2text and what is beneath them) can quote the text
/// it choked on, which is mail; so the report gives where it happened and never the message,
/// in both formats (one JSON line in JSON mode, like every other line on standard error).
pub fn install_panic_hook(format: LogFormat) {
    std::panic::set_hook(panic_hook(format, || Box::new(std::io::stderr())));
}

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync + 'static>;

fn panic_hook<W>(format: LogFormat, writer: W) -> PanicHook
where
    W: Fn() -> Box<dyn std::io::Write> + Send + Sync + 'static,
{
    Box::new(move |info| {
        let location = info
            .location()
            .map(|location| {
                format!(
                    " at {}:{}",
                    crate::printable::escape(location.file()),
                    location.line()
                )
            })
            .unwrap_or_default();
        let thread = std::thread::current();
        let thread = crate::printable::escape(thread.name().unwrap_or("unnamed"));
        let message = format!(
            "internal error: panic in thread {thread}{location} (its message is not shown: it may quote mail)"
        );
        let line = match format {
            LogFormat::Text => format!("mailsync: {message}\n"),
            LogFormat::Json => format!("{}\n", json_line("ERROR", &message)),
        };
        let _ = writer().write_all(line.as_bytes());
    })
}

fn json_line(level: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": level,
        "message": message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_projects_targets_log_below_warn() {
        let cases = [
            ("mailsync", Level::TRACE, true),
            ("mailsync::daemon::worker", Level::DEBUG, true),
            ("mailsync_sandbox::http", Level::TRACE, true),
            ("html5ever::tree_builder", Level::TRACE, false),
            ("html5ever::tree_builder", Level::DEBUG, false),
            ("html2text", Level::INFO, false),
            ("yup_oauth2::installed", Level::DEBUG, false),
            ("hyper_util::client", Level::INFO, false),
            ("h2::codec", Level::TRACE, false),
            ("rustls::client", Level::WARN, true),
            ("html5ever::serialize", Level::ERROR, true),
            ("mailsyncer", Level::DEBUG, false),
        ];
        for (target, level, allowed) in cases {
            assert_eq!(is_allowed(target, &level), allowed, "{target} at {level}");
        }
    }

    /// A writer the hook can own that the test can read afterwards.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panic_report_gives_the_place_and_never_the_message() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let written = Shared::default();
            let sink = written.clone();
            let hook = panic_hook(format, move || Box::new(sink.clone()));
            let previous = std::panic::take_hook();
            std::panic::set_hook(hook);
            let outcome = std::panic::catch_unwind(|| {
                panic!("byte index 3 is not a char boundary; it is inside 'Board minutes: layoffs'")
            });
            std::panic::set_hook(previous);
            assert!(outcome.is_err());
            let text = String::from_utf8(written.0.lock().unwrap().clone()).unwrap();
            assert!(text.contains("src/logging.rs:"), "{format:?}: {text}");
            assert!(!text.contains("layoffs"), "{format:?}: {text}");
            assert!(!text.contains("char boundary"), "{format:?}: {text}");
            if format == LogFormat::Json {
                let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
                assert_eq!(value["level"], "ERROR");
            }
        }
    }
}
