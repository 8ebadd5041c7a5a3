//! Log set-up. Logs go to standard error; standard output is for command results.
//!
//! What may be logged: user emails, source ids, counts, decisions and reasons. What may not,
//! above `trace`: contact addresses, subjects, bodies, tokens and keys.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Dependencies that log secrets below info: yup-oauth2 writes whole token responses (access
/// tokens) at debug. They are capped at info whatever `RUST_LOG` asks for.
const SECRET_LOGGING_TARGETS: &[&str] = &["yup_oauth2=info"];

/// Installs the global subscriber; `RUST_LOG` overrides `default_level`, except that the
/// targets above never log below info.
pub fn init(format: LogFormat, default_level: &str) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    for directive in SECRET_LOGGING_TARGETS {
        filter = filter.add_directive(directive.parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second initialisation (in tests) is harmless, so its error is ignored.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
