//! Reaching PostgreSQL: the URL from the config, the password from where it may be kept, TLS
//! through rustls, session limits, and the pool every store operation takes a client from.

use std::path::PathBuf;
use std::time::Duration;

use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

pub(super) type Manager = PostgresConnectionManager<MakeRustlsConnect>;
pub(super) type Pool = r2d2::Pool<Manager>;

/// What the server ends on its own so that a stalled instance (SIGSTOP, a pause, a cut
/// network) cannot hold row locks others wait for: a statement running this long, or a
/// transaction idle this long.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an operation waits for a free connection before failing as busy.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// Connections per instance: mailboxes are synced several at a time, and the CRM and
/// commands share the server.
const POOL_SIZE: u32 = 8;

/// Where a PostgreSQL store is and how to log in.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// As written in the config: for messages (it holds no password).
    pub url: String,
    pub password_file: Option<PathBuf>,
}

impl PostgresSettings {
    /// The client configuration: the URL, a password from `password_file`, else from
    /// `PGPASSWORD`, else from libpq's passfile (`PGPASSFILE` or `~/.pgpass`), and the
    /// session limits.
    pub(super) fn client_config(&self) -> Result<postgres::Config, StoreError> {
        let mut config: postgres::Config = self.url.parse().map_err(|error| {
            StoreError::Conflict(format!("`[store] url` is not a PostgreSQL URL: {error}"))
        })?;
        if config.get_password().is_none() {
            if let Some(password) = self.password()? {
                config.password(password);
            } else if let Some(password) = passfile_password(&config) {
                config.password(password);
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("mailsync");
        }
        config.options(&format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            STATEMENT_TIMEOUT.as_millis(),
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
        ));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        Ok(config)
    }

    fn password(&self) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(path) = &self.password_file {
            let bytes = crate::secret_file::read(path).map_err(|error| {
                StoreError::Conflict(format!("`[store] password_file`: {error}"))
            })?;
            let trimmed = bytes.trim_ascii_end().to_vec();
            return Ok(Some(trimmed));
        }
        Ok(std::env::var_os("PGPASSWORD").map(|value| value.into_encoded_bytes()))
    }

    /// Opens a connection pool; fails at once (not after the pool's wait) when the server
    /// cannot be reached or refuses the login.
    pub(super) fn pool(&self) -> Result<Pool, StoreError> {
        let config = self.client_config()?;
        let manager = PostgresConnectionManager::new(config, tls_connector());
        r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            // A check at every checkout is a round trip before every store call. A closed
            // connection is noticed without one (`has_broken`), and a statement on one that
            // broke meanwhile fails like any other database error: the caller retries at its
            // next poll.
            .test_on_check_out(false)
            .connection_timeout(POOL_WAIT)
            .build(manager)
            .map_err(|error| {
                StoreError::Conflict(format!(
                    "cannot connect to PostgreSQL at {}: {error}",
                    self.url
                ))
            })
    }
}

/// TLS by rustls with the web's root certificates (`sslmode=prefer`, the default, uses it
/// when the server offers it; `require` insists; `disable` never starts it).
fn tls_connector() -> MakeRustlsConnect {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

/// libpq's passfile: `PGPASSFILE`, else `~/.pgpass`; lines `host:port:database:user:password`
/// where `*` matches anything, and `\:` and `\\` are escapes. Like libpq, the file is
/// ignored unless only its owner can read it.
fn passfile_password(config: &postgres::Config) -> Option<Vec<u8>> {
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pgpass")))?;
    let text = String::from_utf8(crate::secret_file::read(&path).ok()?).ok()?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default().to_string();
    let database = config.get_dbname().unwrap_or(&user).to_string();
    let wanted = [
        host.as_str(),
        port.as_str(),
        database.as_str(),
        user.as_str(),
    ];
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(split_passfile_line)
        .find(|fields| {
            fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, wanted)| field == "*" || field == wanted)
        })
        .map(|fields| fields[4].clone().into_bytes())
}

fn split_passfile_line(line: &str) -> Option<[String; 5]> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next().unwrap_or('\\')),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    fields.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passfile_lines_split_on_unescaped_colons() {
        let cases = [
            (
                "db:5432:crm:app:secret",
                Some(["db", "5432", "crm", "app", "secret"]),
            ),
            ("*:*:*:app:pa\\:ss", Some(["*", "*", "*", "app", "pa:ss"])),
            (
                "h:1:d:u:with:colon",
                Some(["h", "1", "d", "u", "with:colon"]),
            ),
            ("h:1:d:u", None),
        ];
        for (line, expected) in cases {
            let expected = expected.map(|fields| fields.map(String::from));
            assert_eq!(split_passfile_line(line), expected, "{line}");
        }
    }
}
