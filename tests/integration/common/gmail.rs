//! Process-level harness for the Gmail path: the real `mailsync sandbox` and `mailsync run`
//! binaries, talking over loopback, as ops would run them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const CLIENT_ID: &str = "test-client.apps.example";
pub const CLIENT_SECRET: &str = "test-client-secret";

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mailsync"))
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A minimal HTTP/1.1 request over a fresh connection (the sandbox's control routes).
pub fn http(method: &str, url: &str, body: &[u8]) -> (u16, Vec<u8>, String) {
    let rest = url.strip_prefix("http://").expect("http url");
    // A URL may have a query but no path (`http://localhost:1234?code=x`).
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, path) = (&rest[..split], &rest[split..]);
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut stream = TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, response[split + 4..].to_vec(), head)
}

/// A message from `from` to `to`, with a unique Message-ID.
pub fn message(index: usize, from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 02 Sep 2024 09:{:02}:{:02} +0000\r\nMessage-ID: <m{index}-{}@test.example>\r\n\r\nBody of message {index}.\r\n",
        (index / 60) % 60,
        index % 60,
        to.replace('@', ".")
    )
}

/// The sandbox, run as `mailsync sandbox`.
pub struct SandboxProcess {
    child: Child,
    pub base_url: String,
}

impl SandboxProcess {
    pub fn start(mailboxes: &Path, extra: &[&str]) -> SandboxProcess {
        let mut child = Command::new(binary())
            .args([
                "sandbox",
                "--listen",
                "127.0.0.1:0",
                "--client-id",
                CLIENT_ID,
                "--client-secret",
                CLIENT_SECRET,
                "--mailboxes",
            ])
            .arg(mailboxes)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sandbox");
        let mut first_line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first_line).unwrap();
        let base_url = first_line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected sandbox output {first_line:?}"))
            .to_string();
        // The rest is read for the server's lifetime: a closed pipe would kill it, and a full
        // one (the banner lists every mailbox: 10,000 of them fill a pipe) would stall it.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        SandboxProcess { child, base_url }
    }

    pub fn control(&self, action: &str, query: &str, body: &[u8]) -> serde_json::Value {
        let (status, body, _) = http(
            "POST",
            &format!("{}sandbox/{action}?{query}", self.base_url),
            body,
        );
        assert_eq!(
            status,
            200,
            "sandbox {action}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    pub fn deliver(&self, user: &str, raw: &str) -> String {
        self.control("deliver", &format!("user={user}"), raw.as_bytes())["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Changes the push faults the body names (`POST /sandbox/push`: `drop_rate`,
    /// `duplicate_rate`, `delay_ms`, `pull_failure`, `watch_forbidden`; the others stay) and
    /// returns all of them.
    pub fn push_faults(&self, body: serde_json::Value) -> serde_json::Value {
        self.control("push", "", body.to_string().as_bytes())
    }

    /// Every watch expires now (`POST /sandbox/expire-watches`): nothing is published until
    /// the client calls `users.watch` again.
    pub fn expire_watches(&self) {
        self.control("expire-watches", "", b"");
    }

    pub fn stats(&self) -> serde_json::Value {
        let (_, body, _) = http("GET", &format!("{}sandbox/stats", self.base_url), b"");
        serde_json::from_slice(&body).unwrap()
    }

    /// Answers the sandbox sent for `method` ("messages.get") with `status` for `user`.
    pub fn answers(&self, user: &str, method: &str, status: &str) -> u64 {
        self.stats()["users"][user]["statuses"][format!("{method} {status}")]
            .as_u64()
            .unwrap_or(0)
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway RSA key for service-account tests, made once per test run with openssl (never
/// committed: the repository holds no keys).
pub fn test_rsa_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let output = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("openssl is installed (.ci/run installs it)");
        assert!(output.status.success(), "openssl genpkey failed");
        String::from_utf8(output.stdout).unwrap()
    })
}

/// Writes the credential file `auth` needs for `base_url`'s sandbox into `dir` (chmod 600)
/// and returns the `[gmail]` line that names it.
pub fn write_credentials(dir: &Path, base_url: &str, auth: Auth) -> String {
    use std::os::unix::fs::PermissionsExt;
    match auth {
        Auth::ServiceAccount => {
            let key = serde_json::json!({
                "type": "service_account",
                "project_id": "mailsync-test",
                "private_key_id": "test",
                "private_key": test_rsa_key(),
                "client_email": "mailsync@mailsync-test.iam.example",
                "client_id": "1",
                "auth_uri": format!("{}o/oauth2/auth", base_url),
                "token_uri": format!("{}token", base_url),
            });
            let path = dir.join("service-account.json");
            std::fs::write(&path, serde_json::to_vec(&key).unwrap()).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            "service_account_key = \"service-account.json\"".to_string()
        }
        Auth::RefreshTokens => {
            let secret = serde_json::json!({"installed": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "auth_uri": format!("{}o/oauth2/auth", base_url),
                "token_uri": format!("{}token", base_url),
                "redirect_uris": ["http://127.0.0.1"],
            }});
            let path = dir.join("client_secret.json");
            std::fs::write(&path, serde_json::to_vec(&secret).unwrap()).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            "client_secret = \"client_secret.json\"".to_string()
        }
    }
}

/// A folder with a config, contacts and credentials for the given sandbox.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The SQLite store file (unused when the store is in `database`).
    pub store: PathBuf,
    /// The scratch PostgreSQL database `[store] url` names, for a setup on PostgreSQL.
    pub database: Option<super::postgres::ScratchDatabase>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    ServiceAccount,
    RefreshTokens,
}

impl Setup {
    /// `users`: (email, sync). `extra_gmail`: more `[gmail]` lines. Tests build one with
    /// `common::scenario::Scenario`, which says the same in words.
    pub fn new(
        sandbox: &SandboxProcess,
        users: &[(&str, bool)],
        contacts: &[&str],
        auth: Auth,
        extra_gmail: &str,
        database: Option<super::postgres::ScratchDatabase>,
    ) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("crm.sqlite3");
        let credentials = write_credentials(dir.path(), &sandbox.base_url, auth);
        let store_line = match &database {
            Some(database) => format!("url = \"{}\"", database.url()),
            None => "path = \"crm.sqlite3\"".to_string(),
        };
        let mut config = format!(
            "[company]\ndomains = [\"abcorp.com\"]\n[store]\n{store_line}\n[gmail]\napi_base_url = \"{}\"\n{credentials}\ninitial_sync_days = 36500\npoll_interval_secs = 1\nlist_page_size = 10\nrequest_timeout_secs = 5\nbackoff_max_secs = 2\nmax_attempts = 10\n{extra_gmail}\n",
            sandbox.base_url
        );
        for (email, sync) in users {
            config.push_str(&format!(
                "[[users]]\nemail = \"{email}\"\nsync = {sync}\nemails_visible = true\n"
            ));
        }
        let config_path = dir.path().join("mailsync.toml");
        std::fs::write(&config_path, config).unwrap();
        let csv = dir.path().join("contacts.csv");
        let mut rows = "name,email,visible_to\n".to_string();
        for contact in contacts {
            rows.push_str(&format!(",{contact},\n"));
        }
        std::fs::write(&csv, rows).unwrap();
        let setup = Setup {
            dir,
            config: config_path,
            store,
            database,
        };
        let output = setup.mailsync(&["contacts", "import", csv.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if auth == Auth::RefreshTokens {
            for (email, _) in users {
                let token = sandbox.control(
                    "refresh-token",
                    &format!("user={email}&client_id={CLIENT_ID}"),
                    b"",
                )["refresh_token"]
                    .as_str()
                    .unwrap()
                    .to_string();
                setup.write_sql(&format!(
                    "INSERT INTO oauth_tokens (user_email, client_id, refresh_token, updated_at) \
                     VALUES ('{email}', '{CLIENT_ID}', '{token}', 0)"
                ));
            }
        }
        setup
    }

    /// Rewrites the config file with `edit` (a test changing a setting, or adding a section).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let config = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, edit(config)).unwrap();
    }

    pub fn mailsync(&self, args: &[&str]) -> std::process::Output {
        self.mailsync_logging(args, "warn")
    }

    /// `mailsync` with `RUST_LOG` set to `rust_log`, for tests that read its log.
    pub fn mailsync_logging(&self, args: &[&str], rust_log: &str) -> std::process::Output {
        Command::new(binary())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", rust_log)
            .output()
            .unwrap()
    }

    /// Runs `sql` on the store, as a CRM or an operator would (plain SQL, no parameters).
    pub fn write_sql(&self, sql: &str) {
        match &self.database {
            Some(database) => database.client().batch_execute(sql).unwrap(),
            None => rusqlite::Connection::open(&self.store)
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
        }
    }

    /// `SELECT count(*)` with a WHERE clause over the store.
    pub fn count(&self, table: &str, condition: &str) -> i64 {
        if let Some(database) = &self.database {
            // PostgreSQL 15 wants a name for a subquery in FROM, and a boolean condition.
            let alias = if table.starts_with('(') { " AS t" } else { "" };
            let condition = if condition == "1" { "TRUE" } else { condition };
            let counted = database.client().query_one(
                &format!("SELECT count(*) FROM {table}{alias} WHERE {condition}"),
                &[],
            );
            return match counted {
                Ok(row) => row.get(0),
                // Before the daemon's first start there is no schema yet.
                Err(error) if error.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => {
                    0
                }
                Err(error) => panic!("{table} WHERE {condition}: {error:?}"),
            };
        }
        let connection = rusqlite::Connection::open(&self.store).unwrap();
        connection.busy_timeout(Duration::from_secs(10)).unwrap();
        connection
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE {condition}"),
                [],
                |row| row.get(0),
            )
            .unwrap_or(0)
    }

    pub fn decisions(&self, user: &str) -> i64 {
        self.count("decisions", &format!("user_email = '{user}'"))
    }

    pub fn status(&self) -> Vec<serde_json::Value> {
        let output = self.mailsync(&["status", "--json"]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// `status --json`'s row for one user.
    pub fn status_of(&self, user: &str) -> serde_json::Value {
        self.status()
            .into_iter()
            .find(|row| row["user"] == user)
            .unwrap_or_else(|| panic!("no status row for {user}"))
    }

    /// The user's state, or "" while `status` has no row for them (tolerant: used in waits).
    pub fn state_of(&self, user: &str) -> String {
        self.status()
            .into_iter()
            .find(|row| row["user"] == user)
            .and_then(|row| row["state"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn start_daemon(&self) -> Daemon {
        let log = self.dir.path().join(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let child = Command::new(binary())
            .arg("--config")
            .arg(&self.config)
            .args(["--log-format", "json", "run"])
            // Trace: the privacy promise (no contact address, subject, body, link, token or
            // key) holds at every level, and the tests scan these logs.
            .env("RUST_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start daemon");
        Daemon {
            child: Some(child),
            log,
        }
    }
}

pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `timeout`; its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
