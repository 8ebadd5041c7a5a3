//! The end-to-end figures: the built `mailsync` binary as the daemon (`run`, `run --once`)
//! against the built `mailsync sandbox` on loopback, exactly as the integration tests run
//! them. Quota is the sandbox's own per-user sliding minute; where only a ratio matters the
//! budget is scaled up on both sides to keep the run short, and the report says so.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "../../tests/integration/common/gmail.rs"]
mod harness;
/// The scratch databases the harness's PostgreSQL setups, the in-process worlds and the
/// failover scenario use.
#[path = "../../tests/integration/common/postgres.rs"]
#[allow(dead_code)]
pub mod postgres;

pub use harness::{Auth, SandboxProcess, binary, wait_until, write_credentials};

use super::mailgen::{self, Cast, MailGenerator, Mix};
use super::report::{Report, Target, quantile, trim};

/// Gmail's per-user budget (2026 figure), units per minute.
pub const GMAIL_UNITS_PER_MINUTE: u32 = 6_000;
const MESSAGES_GET_UNITS: f64 = 20.0;

/// A folder with mailboxes for the sandbox, a config, credentials and the store: a SQLite
/// file in the folder, or a scratch PostgreSQL database.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub mailboxes: PathBuf,
    pub config: PathBuf,
    pub store: PathBuf,
    pub database: Option<postgres::ScratchDatabase>,
}

/// What the sandbox counted for one run, summed over users.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counted {
    pub units: u64,
    pub requests: u64,
    pub gets_ok: u64,
    /// Answers 403 or 429: quota or concurrency refusals.
    pub refused: u64,
}

impl Deployment {
    pub fn new() -> Deployment {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mailboxes = dir.path().join("mailboxes");
        std::fs::create_dir_all(&mailboxes).expect("mailboxes dir");
        Deployment {
            config: dir.path().join("mailsync.toml"),
            store: dir.path().join("crm.sqlite3"),
            mailboxes,
            dir,
            database: None,
        }
    }

    /// A deployment whose store is a scratch PostgreSQL database, dropped with it.
    pub fn on_postgres() -> Deployment {
        Deployment {
            database: Some(postgres::ScratchDatabase::create()),
            ..Deployment::new()
        }
    }

    /// Writes `messages` as the `.eml` files of `user`'s mailbox.
    pub fn write_mailbox(&self, user: &str, messages: impl IntoIterator<Item = Vec<u8>>) {
        let folder = self.mailboxes.join(user);
        std::fs::create_dir_all(&folder).expect("mailbox folder");
        for (index, raw) in messages.into_iter().enumerate() {
            std::fs::write(folder.join(format!("{index:06}.eml")), raw).expect("message file");
        }
    }

    pub fn start_sandbox(&self, units_per_minute: u32, extra: &[&str]) -> SandboxProcess {
        let units = units_per_minute.to_string();
        let mut args = vec!["--quota-units-per-minute", units.as_str()];
        args.extend_from_slice(extra);
        SandboxProcess::start(&self.mailboxes, &args)
    }

    /// The config of a production deployment (defaults everywhere) pointed at `sandbox`,
    /// with `gmail_extra` lines in `[gmail]` and `rest` after it.
    pub fn write_config(
        &self,
        sandbox: &SandboxProcess,
        users: &[String],
        gmail_extra: &str,
        rest: &str,
    ) {
        let credentials =
            write_credentials(self.dir.path(), &sandbox.base_url, Auth::ServiceAccount);
        let store = match &self.database {
            None => "path = \"crm.sqlite3\"".to_string(),
            Some(database) => format!("url = \"{}\"", database.url()),
        };
        let mut config = format!(
            "[company]\ndomains = [\"abcorp.com\"]\n[store]\n{store}\n[gmail]\napi_base_url = \"{}\"\n{credentials}\ninitial_sync_days = 36500\n{gmail_extra}\n{rest}\n",
            sandbox.base_url
        );
        for email in users {
            config.push_str(&format!(
                "[[users]]\nemail = \"{email}\"\nsync = true\nemails_visible = true\n"
            ));
        }
        std::fs::write(&self.config, config).expect("config file");
    }

    pub fn import_contacts(&self, addresses: &[String]) {
        let csv = self.dir.path().join("contacts.csv");
        let mut rows = "name,email,visible_to\n".to_string();
        for address in addresses {
            rows.push_str(&format!(",{address},\n"));
        }
        std::fs::write(&csv, rows).expect("contacts file");
        let output = self.mailsync(&["contacts", "import", csv.to_str().expect("utf-8 path")]);
        assert!(output.status.success(), "{}", stderr(&output));
    }

    pub fn mailsync(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("mailsync runs")
    }

    /// `mailsync run --once`, timed from start to exit.
    pub fn run_once(&self) -> Duration {
        let started = Instant::now();
        let output = self.mailsync(&["run", "--once"]);
        let elapsed = started.elapsed();
        assert!(
            output.status.success(),
            "run --once failed: {}",
            stderr(&output)
        );
        elapsed
    }

    /// The daemon, at the log level ops run it with.
    pub fn start_daemon(&self) -> Daemon {
        self.start_instance("daemon")
    }

    /// One more daemon on the same config (several instances on a PostgreSQL store), with a
    /// log of its own named `name`.
    pub fn start_instance(&self, name: &str) -> Daemon {
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new(binary())
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start daemon");
        Daemon { child, log }
    }

    /// One number from the store, read as the CRM would (WAL: never blocks the daemon).
    pub fn scalar(&self, sql: &str) -> i64 {
        if let Some(database) = &self.database {
            return database
                .client()
                .query_one(sql, &[])
                .map_or(0, |row| row.get(0));
        }
        let connection = rusqlite::Connection::open_with_flags(
            &self.store,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("store opens");
        connection
            .busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        connection.query_row(sql, [], |row| row.get(0)).unwrap_or(0)
    }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What the sandbox counted, over all users.
pub fn counted(sandbox: &SandboxProcess) -> Counted {
    let stats = sandbox.stats();
    let mut counted = Counted::default();
    let users = stats["users"].as_object().cloned().unwrap_or_default();
    for user in users.values() {
        let sum = |key: &str| -> u64 {
            user[key]
                .as_object()
                .map(|map| map.values().filter_map(|v| v.as_u64()).sum())
                .unwrap_or(0)
        };
        counted.units += sum("units");
        counted.requests += sum("requests");
        if let Some(statuses) = user["statuses"].as_object() {
            for (key, count) in statuses {
                let count = count.as_u64().unwrap_or(0);
                if key == "messages.get 200" {
                    counted.gets_ok += count;
                }
                if key.ends_with(" 403") || key.ends_with(" 429") {
                    counted.refused += count;
                }
            }
        }
    }
    counted
}

pub struct Daemon {
    child: std::process::Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) the daemon has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(&self.pid().to_string())
    }

    /// Resident memory now and at its peak, in MB.
    pub fn memory_mb(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches(" kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let output = Command::new("getconf").arg("CLK_TCK").output();
        output
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A mailbox of `count` generated messages in which every `contact_every`-th message (at
/// a random place in each run of that length) has a contact on it; returns the messages'
/// raw bytes and how many have a contact.
fn mailbox(
    seed: u64,
    owner: &str,
    contacts: &[String],
    count: usize,
    contact_every: usize,
) -> (Vec<Vec<u8>>, usize) {
    let cast = Cast {
        contacts: contacts.to_vec(),
        ..Cast::new(owner, 0, 1)
    };
    let mut generator = MailGenerator::new(seed, cast, Mix::default());
    let mut with_contact = 0;
    let raws = (0..count)
        .map(|index| {
            let contact = index % contact_every == (seed as usize) % contact_every;
            with_contact += usize::from(contact);
            generator.message_with(Some(contact)).raw
        })
        .collect();
    (raws, with_contact)
}

/// A company's mailboxes for the many-mailbox scenarios: `users` mailboxes of `count`
/// messages, every one with a contact on it, generated from `seed` on.
struct Company {
    contacts: Vec<String>,
    owners: Vec<String>,
    mailboxes: Vec<Vec<Vec<u8>>>,
    /// Messages with a contact: every one of them is synced.
    with_contact: usize,
}

impl Company {
    fn new(users: usize, count: usize, seed: u64) -> Company {
        let contacts = mailgen::contact_addresses(200, 50);
        let owners: Vec<String> = (0..users)
            .map(|i| format!("user{i:03}@abcorp.com"))
            .collect();
        let mut with_contact = 0;
        let mailboxes = owners
            .iter()
            .enumerate()
            .map(|(index, owner)| {
                let (raws, contacts_in) = mailbox(seed + index as u64, owner, &contacts, count, 1);
                with_contact += contacts_in;
                raws
            })
            .collect();
        Company {
            contacts,
            owners,
            mailboxes,
            with_contact,
        }
    }

    /// The mailboxes as the sandbox of `deployment` reads them.
    fn write(&self, deployment: &Deployment) {
        for (owner, raws) in self.owners.iter().zip(&self.mailboxes) {
            deployment.write_mailbox(owner, raws.iter().cloned());
        }
    }
}

/// One mailbox's first sync by `mailsync run --once`, with the same budget on both sides.
struct FirstSync {
    wall: Duration,
    counted: Counted,
    synced: usize,
    with_contact: usize,
    decided: usize,
    bytes: usize,
    budget: u32,
}

impl FirstSync {
    /// `count` generated messages for `owner`, every `contact_every`-th with one of `contacts`.
    fn run(
        seed: u64,
        owner: &str,
        contacts: &[String],
        count: usize,
        contact_every: usize,
        budget: u32,
    ) -> FirstSync {
        let deployment = Deployment::new();
        let (raws, with_contact) = mailbox(seed, owner, contacts, count, contact_every);
        let bytes = raws.iter().map(Vec::len).sum();
        deployment.write_mailbox(owner, raws);
        let sandbox = deployment.start_sandbox(budget, &[]);
        deployment.write_config(
            &sandbox,
            &[owner.to_string()],
            &format!("[gmail.quota]\nunits_per_minute = {budget}"),
            "",
        );
        deployment.import_contacts(contacts);
        let wall = deployment.run_once();
        FirstSync {
            wall,
            counted: counted(&sandbox),
            synced: deployment.scalar("SELECT count(*) FROM activities") as usize,
            with_contact,
            decided: deployment.scalar("SELECT count(*) FROM decisions") as usize,
            bytes,
            budget,
        }
    }

    /// The time the quota spent needs at the budget, in seconds.
    fn quota_floor_secs(&self) -> f64 {
        self.counted.units as f64 / f64::from(self.budget) * 60.0
    }

    fn report_refusals(&self, report: &mut Report) {
        report.figure(
            "requests answered 403/429",
            100.0 * self.counted.refused as f64 / self.counted.requests as f64,
            "%",
            Some(Target::AtMost(1.0)),
        );
    }
}

/// Initial sync of one mailbox where 10% of the mail involves a contact, at Gmail's real
/// per-user budget: the quota it spends per synced message, and how long it takes against
/// the time that quota needs.
pub fn quota(smoke: bool) -> Report {
    let (count, budget) = if smoke {
        (200, 600_000)
    } else {
        (5_000, GMAIL_UNITS_PER_MINUTE)
    };
    let mut report = Report::new("quota", smoke);
    let contacts = mailgen::contact_addresses(300, 60);
    let run = FirstSync::run(11, "michelle@abcorp.com", &contacts, count, 10, budget);
    let (counted, synced, with_contact) = (run.counted, run.synced as u64, run.with_contact);
    assert_eq!(run.decided, count, "every message has a decision");
    assert_eq!(
        synced as usize, with_contact,
        "every contact message is synced, no other"
    );
    report.fact(
        "mailbox",
        format!(
            "{count} messages ({} MB), {with_contact} with one of 300 contacts; budget {budget} units/minute on both sides",
            trim(run.bytes as f64 / 1e6)
        ),
    );
    let fetch_everything = count as f64 * MESSAGES_GET_UNITS;
    report.fact(
        "fetch-everything would spend",
        format!(
            "at least {} units = {} × the floor",
            fetch_everything,
            trim(fetch_everything / (MESSAGES_GET_UNITS * synced as f64))
        ),
    );
    report.fact(
        "spent",
        format!(
            "{} units in {} requests, {} messages fetched",
            counted.units, counted.requests, counted.gets_ok
        ),
    );
    report.figure(
        "quota per synced message ÷ 20 units",
        counted.units as f64 / (MESSAGES_GET_UNITS * synced as f64),
        "×",
        Some(Target::AtMost(1.3)),
    );
    let floor = run.quota_floor_secs();
    report.fact(
        "wall time",
        format!(
            "{} s; quota floor {} s",
            trim(run.wall.as_secs_f64()),
            trim(floor)
        ),
    );
    report.figure(
        "initial sync wall time ÷ quota floor",
        run.wall.as_secs_f64() / floor,
        "×",
        Some(Target::AtMost(1.10)),
    );
    run.report_refusals(&mut report);
    report
}

/// A full sync where every message must be fetched (all of it involves contacts), so its
/// quota floor is the fetching itself: wall time over that floor, refusals, and requests per
/// fetched message. The budget is scaled ×10 on both sides (only the ratio matters).
pub fn full_sync(smoke: bool) -> Report {
    let (count, budget) = if smoke {
        (100, 600_000)
    } else {
        (2_000, 10 * GMAIL_UNITS_PER_MINUTE)
    };
    let mut report = Report::new("full_sync", smoke);
    let contacts = mailgen::contact_addresses(100, 30);
    let run = FirstSync::run(12, "dave@abcorp.com", &contacts, count, 1, budget);
    let counted = run.counted;
    assert_eq!(run.synced, run.with_contact, "every message is synced");
    let floor = run.quota_floor_secs();
    report.fact(
        "mailbox",
        format!("{count} messages, every one with a contact; budget {budget} units/minute (Gmail's ×10) on both sides"),
    );
    report.fact(
        "spent",
        format!(
            "{} units in {} requests, {} fetched; {} s against a floor of {} s",
            counted.units,
            counted.requests,
            counted.gets_ok,
            trim(run.wall.as_secs_f64()),
            trim(floor)
        ),
    );
    report.figure(
        "full sync wall time ÷ quota floor",
        run.wall.as_secs_f64() / floor,
        "×",
        Some(Target::AtMost(1.10)),
    );
    run.report_refusals(&mut report);
    report.figure(
        "requests per fetched message",
        counted.requests as f64 / counted.gets_ok as f64,
        "",
        Some(Target::AtMost(1.02)),
    );
    report
}

/// Many mailboxes syncing at once, each with its own per-user budget: total time over the
/// slowest mailbox's own quota floor.
pub fn many(smoke: bool) -> Report {
    let (users, count, budget) = if smoke {
        (3, 20, 600_000)
    } else {
        (50, 200, GMAIL_UNITS_PER_MINUTE)
    };
    let mut report = Report::new("many_mailboxes", smoke);
    let company = Company::new(users, count, 1_000);
    let (contacts, owners, with_contact) =
        (&company.contacts, &company.owners, company.with_contact);
    let deployment = Deployment::new();
    company.write(&deployment);
    let sandbox = deployment.start_sandbox(budget, &[]);
    deployment.write_config(
        &sandbox,
        owners,
        &format!("[gmail.quota]\nunits_per_minute = {budget}"),
        "",
    );
    deployment.import_contacts(contacts);
    let wall = deployment.run_once();
    let slowest_units = slowest_mailbox_units(&sandbox);
    let counted = counted(&sandbox);
    let synced = deployment.scalar("SELECT count(*) FROM activities") as usize;
    assert_eq!(
        synced, with_contact,
        "every message of every mailbox is synced"
    );
    let floor = slowest_units as f64 / f64::from(budget) * 60.0;
    report.fact(
        "mailboxes",
        format!("{users} × {count} messages, all with contacts; {budget} units/minute per user; daemon.max_concurrent_users at its default (50)"),
    );
    report.fact(
        "spent",
        format!(
            "{} units in {} requests ({} refused); {} s against a per-user floor of {} s",
            counted.units,
            counted.requests,
            counted.refused,
            trim(wall.as_secs_f64()),
            trim(floor)
        ),
    );
    report.figure(
        "all mailboxes' wall time ÷ per-user floor",
        wall.as_secs_f64() / floor,
        "×",
        Some(Target::AtMost(1.2)),
    );
    report
}

/// The first sync of many mailboxes on PostgreSQL, by one instance and then by three
/// sharing them: how close each comes to the time one mailbox's own quota needs.
pub fn shared_first_sync(smoke: bool) -> Report {
    let (users, count, budget) = if smoke {
        (6, 10, 600_000)
    } else {
        (100, 200, GMAIL_UNITS_PER_MINUTE)
    };
    let mut report = Report::new("shared_first_sync", smoke);
    let company = Company::new(users, count, 3_000);
    let (contacts, owners, with_contact) =
        (&company.contacts, &company.owners, company.with_contact);
    report.fact(
        "mailboxes",
        format!("{users} × {count} messages, all with contacts; {budget} units/minute per user; daemon.max_concurrent_users = {users}, so one instance may sync them all at once"),
    );
    for instances in [1, 3] {
        let deployment = Deployment::on_postgres();
        company.write(&deployment);
        let sandbox = deployment.start_sandbox(budget, &[]);
        deployment.write_config(
            &sandbox,
            owners,
            &format!("[gmail.quota]\nunits_per_minute = {budget}"),
            &format!("[daemon]\nmax_concurrent_users = {users}\n"),
        );
        deployment.import_contacts(contacts);
        let started = Instant::now();
        let daemons: Vec<Daemon> = (0..instances)
            .map(|index| deployment.start_instance(&format!("instance-{index}")))
            .collect();
        wait_until(
            "every mailbox's first sync",
            Duration::from_secs(if smoke { 120 } else { 900 }),
            || {
                deployment.scalar("SELECT count(*) FROM sync_state WHERE history_id IS NOT NULL")
                    == users as i64
            },
        );
        let wall = started.elapsed();
        for daemon in daemons {
            daemon.stop();
        }
        let synced = deployment.scalar("SELECT count(*) FROM activities") as usize;
        assert_eq!(
            synced, with_contact,
            "every message of every mailbox is synced"
        );
        let duplicates = deployment.scalar(
            "SELECT count(*) FROM (SELECT message_id FROM activities GROUP BY message_id HAVING count(*) > 1) twice",
        );
        assert_eq!(duplicates, 0, "no message is stored twice");
        let counted = counted(&sandbox);
        let floor = slowest_mailbox_units(&sandbox) as f64 / f64::from(budget) * 60.0;
        report.fact(
            &format!("{instances} instance(s)"),
            format!(
                "{} units in {} requests ({} refused); {} s against a per-mailbox floor of {} s",
                counted.units,
                counted.requests,
                counted.refused,
                trim(wall.as_secs_f64()),
                trim(floor)
            ),
        );
        report.figure(
            &format!("{instances} instance(s): wall time ÷ per-mailbox quota floor"),
            wall.as_secs_f64() / floor,
            "×",
            Some(Target::AtMost(1.2)),
        );
    }
    report
}

/// The quota units the sandbox charged the mailbox that spent the most.
fn slowest_mailbox_units(sandbox: &SandboxProcess) -> u64 {
    let stats = sandbox.stats();
    stats["users"]
        .as_object()
        .expect("users")
        .values()
        .map(|user| {
            user["units"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>())
        })
        .max()
        .unwrap_or(0)
}

/// Sum of one method's requests over every user the sandbox served.
fn requests_of(sandbox: &SandboxProcess, method: &str) -> u64 {
    let stats = sandbox.stats();
    stats["users"]
        .as_object()
        .map(|users| {
            users
                .values()
                .filter_map(|user| user["requests"][method].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Users every one of whom has made at least `n` requests of `method`.
fn users_with(sandbox: &SandboxProcess, method: &str, n: u64) -> usize {
    let stats = sandbox.stats();
    stats["users"]
        .as_object()
        .map(|users| {
            users
                .values()
                .filter(|user| user["requests"][method].as_u64().unwrap_or(0) >= n)
                .count()
        })
        .unwrap_or(0)
}

/// Many sync-enabled users with no new mail: the CPU one poll cycle costs the daemon, and
/// its memory.
pub fn idle(smoke: bool) -> Report {
    idle_over(Report::new("idle", smoke), Deployment::new(), 1, smoke)
}

/// The same idle mailboxes shared by two instances on PostgreSQL: each instance's CPU and
/// memory, and the load on the database.
pub fn shared_idle(smoke: bool) -> Report {
    idle_over(
        Report::new("shared_idle", smoke),
        Deployment::on_postgres(),
        2,
        smoke,
    )
}

fn idle_over(mut report: Report, deployment: Deployment, instances: usize, smoke: bool) -> Report {
    let (users, poll_secs) = if smoke { (30, 1) } else { (10_000, 60) };
    let fleet = IdleFleet::start(&deployment, users, poll_secs, None, instances, smoke);
    let (sandbox, daemons, started) = (fleet.sandbox, fleet.daemons, fleet.started);
    let first_cycle = started.elapsed();
    let cpu_of =
        |daemons: &[Daemon]| -> Vec<f64> { daemons.iter().map(Daemon::cpu_seconds).collect() };
    let cpu_first = cpu_of(&daemons);
    // Every user's next poll is an idle one (a history.list with nothing new); the cycle is
    // over when each user has made one.
    let polled_before = requests_of(&sandbox, "history.list");
    assert_eq!(
        polled_before, 0,
        "no incremental poll yet: each mailbox just had its first sync"
    );
    // Three idle cycles, each over when every user has made one more idle poll (a
    // history.list with nothing new); the machine is a VM whose speed wanders, so the
    // median is the figure. Asked once a second: the sandbox's statistics of 10,000 users
    // are a large answer, and making it costs CPU on the machine being measured.
    let mut cycles: Vec<Cycle> = Vec::new();
    let mut cpu_before = cpu_first.clone();
    let mut database_before = deployment.database.as_ref().map(DatabaseLoad::now);
    for cycle in 1..=3 {
        let cycle_started = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(poll_secs * 3 + 120);
        while users_with(&sandbox, "history.list", cycle) < users {
            assert!(
                Instant::now() < deadline,
                "not every mailbox polled in time"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        let cpu = cpu_of(&daemons);
        let database = deployment.database.as_ref().map(DatabaseLoad::now);
        cycles.push(Cycle {
            cpu: cpu
                .iter()
                .zip(&cpu_before)
                .map(|(now, before)| now - before)
                .collect(),
            wall: cycle_started.elapsed(),
            database: database
                .zip(database_before)
                .map(|(now, before)| now.since(&before)),
        });
        cpu_before = cpu;
        database_before = database;
    }
    let memory: Vec<(f64, f64)> = daemons.iter().map(Daemon::memory_mb).collect();
    let polls = requests_of(&sandbox, "history.list");
    for daemon in daemons {
        daemon.stop();
    }
    let floor_per_request = bare_request_cpu(&sandbox, if smoke { 200 } else { 10_000 });
    let mut cpu_per_cycle: Vec<f64> = cycles.iter().map(|cycle| cycle.cpu.iter().sum()).collect();
    let median = quantile(&mut cpu_per_cycle, 0.5);
    let store = if deployment.database.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    report.fact(
        "users",
        format!("{users} sync-enabled, empty mailboxes, poll_interval_secs = {poll_secs}, service-account tokens; {instances} instance(s) on {store}"),
    );
    report.fact(
        "first cycle (start, a token and a full sync per user)",
        format!(
            "{} s wall, {} CPU-s",
            trim(first_cycle.as_secs_f64()),
            trim(cpu_first.iter().sum())
        ),
    );
    report.fact(
        "measured cycles",
        format!(
            "{polls} idle polls in 3 cycles: {}",
            cycles
                .iter()
                .map(Cycle::describe)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    );
    report.fact(
        "the HTTP floor",
        format!(
            "a bare hyper GET to the sandbox over a kept-alive connection costs this machine {} µs of client CPU; one per mailbox per cycle is {} CPU-s",
            trim(floor_per_request * 1e6),
            trim(floor_per_request * users as f64)
        ),
    );
    let one_instance = instances == 1;
    report.figure(
        "CPU per idle poll cycle (median of 3)",
        median,
        "CPU-s",
        one_instance.then_some(Target::AtMost(1.0)),
    );
    report.figure(
        "CPU per idle poll ÷ a bare HTTP request",
        median / users as f64 / floor_per_request,
        "×",
        None,
    );
    if !one_instance {
        let mut busiest: Vec<f64> = cycles
            .iter()
            .map(|cycle| cycle.cpu.iter().copied().fold(0.0, f64::max))
            .collect();
        report.figure(
            "CPU per idle poll cycle, busiest instance (median of 3)",
            quantile(&mut busiest, 0.5),
            "CPU-s",
            None,
        );
    }
    let rss = memory.iter().map(|(rss, _)| *rss).fold(0.0, f64::max);
    let peak = memory.iter().map(|(_, peak)| *peak).fold(0.0, f64::max);
    let per_instance = if one_instance {
        ""
    } else {
        ", largest instance"
    };
    report.figure(
        &format!("resident memory after the cycles{per_instance}"),
        rss,
        "MB",
        one_instance.then_some(Target::AtMost(150.0)),
    );
    report.figure(
        &format!("peak resident memory{per_instance}"),
        peak,
        "MB",
        None,
    );
    let mut load: Vec<DatabaseLoad> = cycles.iter().filter_map(|cycle| cycle.database).collect();
    if !load.is_empty() {
        let seconds: f64 = cycles.iter().map(|cycle| cycle.wall.as_secs_f64()).sum();
        let transactions: f64 = load.iter().map(|load| load.transactions).sum();
        let mut server_cpu: Vec<f64> = load.iter_mut().map(|load| load.server_cpu).collect();
        report.figure(
            "database: transactions per second over the cycles",
            transactions / seconds,
            "/s",
            None,
        );
        report.figure(
            "database: server CPU per idle poll cycle (median of 3)",
            quantile(&mut server_cpu, 0.5),
            "CPU-s",
            None,
        );
    }
    report
}

/// Idle mailboxes, a sandbox serving them and daemons syncing them, once every mailbox has
/// had its first sync (and, with push, its watch).
struct IdleFleet {
    sandbox: SandboxProcess,
    daemons: Vec<Daemon>,
    /// When the daemons started.
    started: Instant,
}

impl IdleFleet {
    fn start(
        deployment: &Deployment,
        users: usize,
        poll_secs: u64,
        safety_poll_secs: Option<u64>,
        instances: usize,
        smoke: bool,
    ) -> IdleFleet {
        let owners: Vec<String> = (0..users)
            .map(|i| format!("user{i:05}@abcorp.com"))
            .collect();
        for owner in &owners {
            deployment.write_mailbox(owner, std::iter::empty());
        }
        let sandbox = deployment.start_sandbox(GMAIL_UNITS_PER_MINUTE, &[]);
        let mut gmail = format!("poll_interval_secs = {poll_secs}");
        if let Some(safety_poll_secs) = safety_poll_secs {
            gmail = format!("{gmail}\n{}", push_section(&sandbox, safety_poll_secs));
        }
        deployment.write_config(&sandbox, &owners, &gmail, "");
        deployment.import_contacts(&mailgen::contact_addresses(1_000, 200));
        let started = Instant::now();
        let daemons: Vec<Daemon> = (0..instances)
            .map(|index| deployment.start_instance(&format!("instance-{index}")))
            .collect();
        let first_cycle_timeout = Duration::from_secs(if smoke { 60 } else { 900 });
        let ready = if safety_poll_secs.is_some() {
            "SELECT count(*) FROM sync_state WHERE history_id IS NOT NULL AND push_state = 'push'"
        } else {
            "SELECT count(*) FROM sync_state WHERE history_id IS NOT NULL"
        };
        // Asked once a second at most: on the machine being measured.
        wait_until("every mailbox's first sync", first_cycle_timeout, || {
            let done = deployment.scalar(ready) == users as i64;
            if !done {
                std::thread::sleep(Duration::from_millis(900));
            }
            done
        });
        IdleFleet {
            sandbox,
            daemons,
            started,
        }
    }
}

/// 10,000 idle mailboxes with push: the daemon's CPU per minute, the Gmail requests each
/// mailbox costs a day, and memory. The window covers a whole safety poll (15 minutes), so
/// every mailbox's idle requests are in it.
pub fn push_idle(smoke: bool) -> Report {
    let (users, safety_poll_secs) = if smoke { (30, 2) } else { (10_000, 900) };
    let mut report = Report::new("push_idle", smoke);
    let deployment = Deployment::new();
    let fleet = IdleFleet::start(&deployment, users, 60, Some(safety_poll_secs), 1, smoke);
    let first_cycle = fleet.started.elapsed();
    let daemon = &fleet.daemons[0];
    let cpu_first = daemon.cpu_seconds();
    let requests_before = counted(&fleet.sandbox).requests;
    let window = Duration::from_secs(safety_poll_secs + if smoke { 1 } else { 60 });
    let window_started = Instant::now();
    std::thread::sleep(window);
    let measured = window_started.elapsed().as_secs_f64();
    let cpu = daemon.cpu_seconds() - cpu_first;
    let requests = counted(&fleet.sandbox).requests - requests_before;
    let (rss, peak) = daemon.memory_mb();
    let watches = requests_of(&fleet.sandbox, "watch");
    for daemon in fleet.daemons {
        daemon.stop();
    }
    let per_day = 86_400.0 / measured;
    // The window holds the safety polls; a watch is renewed once a day, outside it.
    let requests_per_mailbox_day = requests as f64 / users as f64 * per_day + 1.0;
    report.fact(
        "users",
        format!("{users} sync-enabled, empty mailboxes, push on (safety_poll_secs = {safety_poll_secs}), service-account tokens"),
    );
    report.fact(
        "first cycle (start, a token, a full sync and a watch per user)",
        format!(
            "{} s wall, {} CPU-s, {watches} users.watch",
            trim(first_cycle.as_secs_f64()),
            trim(cpu_first)
        ),
    );
    report.fact(
        "window",
        format!(
            "{} s: {} CPU-s, {requests} Gmail requests (the safety polls); a day adds one users.watch per mailbox",
            trim(measured),
            trim(cpu)
        ),
    );
    report.figure(
        "daemon CPU per minute, idle",
        cpu / measured * 60.0,
        "CPU-s",
        Some(Target::AtMost(0.25)),
    );
    report.figure(
        "Gmail requests per idle mailbox per day",
        requests_per_mailbox_day,
        "",
        Some(Target::AtMost(110.0)),
    );
    report.figure("resident memory", rss, "MB", Some(Target::AtMost(150.0)));
    report.figure("peak resident memory", peak, "MB", None);
    report
}

/// One measured idle cycle.
struct Cycle {
    /// CPU seconds each instance used.
    cpu: Vec<f64>,
    wall: Duration,
    database: Option<DatabaseLoad>,
}

impl Cycle {
    fn describe(&self) -> String {
        let cpu: Vec<String> = self.cpu.iter().map(|cpu| trim(*cpu)).collect();
        format!(
            "{} CPU-s ({}) in {} s",
            trim(self.cpu.iter().sum()),
            cpu.join(" + "),
            trim(self.wall.as_secs_f64())
        )
    }
}

/// The database server's work: transactions committed or rolled back in the scenario's
/// database, and the CPU of every PostgreSQL server process. Statements are not counted:
/// that needs `pg_stat_statements` preloaded, which the shared test server is not; each
/// statement outside a transaction is a transaction of its own.
#[derive(Debug, Clone, Copy)]
struct DatabaseLoad {
    transactions: f64,
    server_cpu: f64,
}

impl DatabaseLoad {
    fn now(database: &postgres::ScratchDatabase) -> DatabaseLoad {
        let mut client = database.client();
        // The server's statistics are flushed at most once a second.
        std::thread::sleep(Duration::from_millis(1_100));
        let transactions: i64 = client
            .query_one(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database
                 WHERE datname = current_database()",
                &[],
            )
            .expect("database statistics")
            .get(0);
        DatabaseLoad {
            transactions: transactions as f64,
            server_cpu: postgres_server_cpu_seconds(),
        }
    }

    fn since(&self, before: &DatabaseLoad) -> DatabaseLoad {
        DatabaseLoad {
            transactions: self.transactions - before.transactions,
            server_cpu: self.server_cpu - before.server_cpu,
        }
    }
}

/// CPU seconds used so far by every process named `postgres` (the server and its backends;
/// a backend that exited since is not counted, so this is a lower bound).
fn postgres_server_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|byte| byte.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .filter_map(|pid| try_cpu_seconds_of(&pid))
        .sum()
}

/// What one HTTP request costs a client on this machine at the least: CPU seconds per bare
/// hyper GET to the sandbox's history route over a kept-alive connection (unauthenticated, so
/// the answer is a small JSON error, about the size of an empty history page).
fn bare_request_cpu(sandbox: &SandboxProcess, requests: usize) -> f64 {
    use http_body_util::{BodyExt, Empty};
    let url: hyper::Uri = format!(
        "{}gmail/v1/users/me/history?startHistoryId=1",
        sandbox.base_url
    )
    .parse()
    .expect("a sandbox url");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<bytes::Bytes>>();
        let started = own_cpu_seconds();
        for _ in 0..requests {
            let response = client.get(url.clone()).await.expect("the sandbox answers");
            let _ = response.into_body().collect().await.expect("a body");
        }
        (own_cpu_seconds() - started) / requests as f64
    })
}

fn own_cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

fn cpu_seconds_of(pid: &str) -> f64 {
    try_cpu_seconds_of(pid).expect("a process's CPU time in /proc")
}

/// `None` when the process is gone (or /proc does not say).
fn try_cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

/// Messages delivered while the daemon polls: time from delivery to the activity in the store.
pub fn latency(smoke: bool) -> Report {
    let (deliveries, poll_secs, mean_gap_ms) = if smoke { (10, 1, 100) } else { (200, 5, 500) };
    let mut report = Report::new("latency", smoke);
    let mut run = Deliveries::run(deliveries, mean_gap_ms, Arrival::Polling { poll_secs });
    report.fact(
        "deliveries",
        format!(
            "{deliveries} to 4 mailboxes, Poisson arrivals (mean gap {mean_gap_ms} ms), each from a contact; poll_interval_secs = {poll_secs}; the store is read every 20 ms"
        ),
    );
    run.report(
        &mut report,
        "delivered → stored p99",
        0.99,
        poll_secs as f64 + 1.0,
    );
    report
}

/// The same deliveries with push: a notification wakes the mailbox; the safety poll (every
/// 15 minutes) never comes into it.
pub fn push_latency(smoke: bool) -> Report {
    let (deliveries, mean_gap_ms) = if smoke { (10, 100) } else { (200, 500) };
    let mut report = Report::new("push_latency", smoke);
    let mut run = Deliveries::run(
        deliveries,
        mean_gap_ms,
        Arrival::Push {
            safety_poll_secs: 900,
            drop_rate: 0.0,
        },
    );
    report.fact(
        "deliveries",
        format!(
            "{deliveries} to 4 mailboxes, Poisson arrivals (mean gap {mean_gap_ms} ms), each from a contact; push on, safety_poll_secs = 900; the store is read every 20 ms"
        ),
    );
    run.report(&mut report, "delivered → stored p99, by push", 0.99, 2.0);
    report
}

/// Push with a tenth of the notifications lost: the safety poll finds their mail. The
/// target is relative to `safety_poll_secs`, so it is short here, to keep the run short.
pub fn push_drops(smoke: bool) -> Report {
    let (deliveries, mean_gap_ms, safety_poll_secs) =
        if smoke { (10, 100, 2) } else { (200, 500, 30) };
    let mut report = Report::new("push_drops", smoke);
    let mut run = Deliveries::run(
        deliveries,
        mean_gap_ms,
        Arrival::Push {
            safety_poll_secs,
            drop_rate: 0.1,
        },
    );
    report.fact(
        "deliveries",
        format!(
            "{deliveries} to 4 mailboxes, Poisson arrivals (mean gap {mean_gap_ms} ms); the sandbox drops 10% of the notifications; safety_poll_secs = {safety_poll_secs}"
        ),
    );
    report.fact("notifications dropped", run.dropped);
    run.report(
        &mut report,
        "delivered → stored, the slowest",
        1.0,
        (safety_poll_secs + 5) as f64,
    );
    report
}

/// How the daemon of a delivery scenario learns of new mail.
#[derive(Clone, Copy)]
enum Arrival {
    Polling {
        poll_secs: u64,
    },
    Push {
        safety_poll_secs: u64,
        drop_rate: f64,
    },
}

/// How long after its delivery each message was stored.
struct Deliveries {
    latencies: Vec<f64>,
    /// Notifications the sandbox dropped.
    dropped: u64,
}

impl Deliveries {
    /// `deliveries` messages from contacts to four mailboxes, Poisson arrivals `mean_gap_ms`
    /// apart, once every mailbox is synced (and, with push, watched).
    fn run(deliveries: usize, mean_gap_ms: u32, arrival: Arrival) -> Deliveries {
        let deployment = Deployment::new();
        let owners: Vec<String> = (0..4).map(|i| format!("seller{i}@abcorp.com")).collect();
        for owner in &owners {
            deployment.write_mailbox(owner, std::iter::empty());
        }
        let contacts = mailgen::contact_addresses(50, 10);
        let (gmail, drop_flag, drain_secs) = match arrival {
            Arrival::Polling { poll_secs } => (
                format!("poll_interval_secs = {poll_secs}"),
                None,
                poll_secs * 4 + 30,
            ),
            Arrival::Push {
                safety_poll_secs,
                drop_rate,
            } => (
                "poll_interval_secs = 60".to_string(),
                (drop_rate > 0.0).then(|| drop_rate.to_string()),
                safety_poll_secs * 2 + 30,
            ),
        };
        let mut flags = Vec::new();
        if let Some(rate) = &drop_flag {
            flags.extend(["--push-drop-rate", rate.as_str()]);
        }
        let sandbox = deployment.start_sandbox(GMAIL_UNITS_PER_MINUTE, &flags);
        let gmail = match arrival {
            Arrival::Push {
                safety_poll_secs, ..
            } => format!("{gmail}\n{}", push_section(&sandbox, safety_poll_secs)),
            Arrival::Polling { .. } => gmail,
        };
        deployment.write_config(&sandbox, &owners, &gmail, "");
        deployment.import_contacts(&contacts);
        let daemon = deployment.start_daemon();
        let push = matches!(arrival, Arrival::Push { .. });
        wait_until(
            "every mailbox's first sync (and watch)",
            Duration::from_secs(60),
            || {
                deployment.scalar("SELECT count(*) FROM sync_state WHERE history_id IS NOT NULL")
                    == owners.len() as i64
                    && (!push
                        || deployment
                            .scalar("SELECT count(*) FROM sync_state WHERE push_state = 'push'")
                            == owners.len() as i64)
            },
        );
        let cast = Cast {
            contacts: contacts.clone(),
            ..Cast::new("seller0@abcorp.com", 0, 1)
        };
        let mut generator = MailGenerator::new(
            21,
            cast,
            Mix {
                automated: 0.0,
                ..Mix::default()
            },
        );
        let mut rng_state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next_random = move || {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            (rng_state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut delivered: Vec<(String, Instant)> = Vec::new();
        let mut stored: std::collections::HashMap<String, Instant> = Default::default();
        let connection = rusqlite::Connection::open_with_flags(
            &deployment.store,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("store opens");
        connection
            .busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        let observe = |stored: &mut std::collections::HashMap<String, Instant>| {
            let mut statement = connection
                .prepare_cached("SELECT message_id FROM activities")
                .expect("a query");
            let ids: Vec<String> = statement
                .query_map([], |row| row.get::<_, Option<String>>(0))
                .expect("rows")
                .filter_map(|row| row.ok().flatten())
                .collect();
            let now = Instant::now();
            for id in ids {
                stored.entry(id).or_insert(now);
            }
        };
        let mut next_delivery = Instant::now();
        while delivered.len() < deliveries {
            if Instant::now() >= next_delivery {
                let owner = &owners[delivered.len() % owners.len()];
                let generated = generator.message_with(Some(true));
                let raw = String::from_utf8(generated.raw).expect("generated mail is UTF-8");
                let raw = raw.replace("seller0@abcorp.com", owner);
                sandbox.deliver(owner, &raw);
                delivered.push((generated.message_id, Instant::now()));
                // Exponential gaps: deliveries arrive as a Poisson process.
                let gap = -(1.0 - next_random()).ln() * f64::from(mean_gap_ms);
                next_delivery = Instant::now() + Duration::from_millis(gap as u64);
            }
            observe(&mut stored);
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(drain_secs);
        while Instant::now() < deadline && delivered.iter().any(|(id, _)| !stored.contains_key(id))
        {
            observe(&mut stored);
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon.stop();
        let latencies = delivered
            .iter()
            .map(|(id, at)| {
                stored
                    .get(id)
                    .unwrap_or_else(|| panic!("delivered message {id} never stored"))
                    .saturating_duration_since(*at)
                    .as_secs_f64()
            })
            .collect();
        Deliveries {
            latencies,
            dropped: sandbox.stats()["pubsub"]["dropped"].as_u64().unwrap_or(0),
        }
    }

    /// The median and the slowest as facts, and the `quantile` as the figure.
    fn report(&mut self, report: &mut Report, name: &str, quantile_of: f64, target: f64) {
        report.fact(
            "latency",
            format!(
                "median {} s, max {} s",
                trim(quantile(&mut self.latencies, 0.5)),
                trim(quantile(&mut self.latencies, 1.0))
            ),
        );
        report.figure(
            name,
            quantile(&mut self.latencies, quantile_of),
            "s",
            Some(Target::AtMost(target)),
        );
    }
}

/// The `[gmail.push]` section for `sandbox`'s default topic and subscription, to end the
/// `[gmail]` lines with.
fn push_section(sandbox: &SandboxProcess, safety_poll_secs: u64) -> String {
    format!(
        "[gmail.push]\ntopic = \"projects/sandbox/topics/gmail\"\nsubscription = \"projects/sandbox/subscriptions/mailsync\"\npubsub_base_url = \"{}\"\nsafety_poll_secs = {safety_poll_secs}\n",
        sandbox.base_url
    )
}

/// Failover on PostgreSQL: three instances share 30 mailboxes at the default lease (30 s),
/// one is SIGKILLed, and a message is delivered at once to every mailbox it held. Measured:
/// how long until every one of those messages is stored by the survivors, against the
/// promise `lease_secs` + `poll_interval_secs` + 5 s.
pub fn failover(smoke: bool) -> Report {
    let (mailboxes, lease_secs, poll_secs): (usize, u64, u64) =
        if smoke { (6, 3, 1) } else { (30, 30, 5) };
    let mut report = Report::new("failover", smoke);
    let deployment = Deployment::on_postgres();
    let database = deployment.database.as_ref().expect("on PostgreSQL");
    let owners: Vec<String> = (0..mailboxes)
        .map(|i| format!("owner{i}@abcorp.com"))
        .collect();
    let contact = "alice@customer.example".to_string();
    for owner in &owners {
        deployment.write_mailbox(
            owner,
            [harness::message(1, &contact, owner, "Hello").into_bytes()],
        );
    }
    let sandbox = deployment.start_sandbox(GMAIL_UNITS_PER_MINUTE, &[]);
    deployment.write_config(
        &sandbox,
        &owners,
        &format!("poll_interval_secs = {poll_secs}"),
        &format!("[daemon]\nlease_secs = {lease_secs}\n"),
    );
    deployment.import_contacts(std::slice::from_ref(&contact));
    let mut client = database.client();
    let mut count = |sql: &str| -> i64 { client.query_one(sql, &[]).map_or(0, |row| row.get(0)) };
    let mut instances: Vec<Daemon> = (0..3)
        .map(|index| deployment.start_instance(&format!("instance-{index}")))
        .collect();
    wait_until(
        "every first sync, spread over three instances",
        Duration::from_secs(120),
        || {
            count("SELECT count(*) FROM sync_state WHERE history_id IS NOT NULL")
                == mailboxes as i64
                && count(
                    "SELECT count(DISTINCT owner) FROM mailbox_leases WHERE expires_at > clock_timestamp()",
                ) == 3
                // An even spread: the busiest instance holds its share, no more.
                && count(
                    "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM mailbox_leases
                     WHERE expires_at > clock_timestamp() GROUP BY owner) shares",
                ) == mailboxes.div_ceil(3) as i64
        },
    );
    // The instance holding the most mailboxes dies.
    let victim_pid: i64 = database
        .client()
        .query_one(
            "SELECT i.pid FROM instances i JOIN mailbox_leases l ON l.owner = i.instance
             GROUP BY i.pid ORDER BY count(*) DESC LIMIT 1",
            &[],
        )
        .expect("a holder")
        .get(0);
    let orphans: Vec<String> = database
        .client()
        .query(
            "SELECT l.user_email FROM mailbox_leases l JOIN instances i ON i.instance = l.owner
             WHERE i.pid = $1",
            &[&victim_pid],
        )
        .expect("its mailboxes")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let victim = instances
        .iter()
        .position(|daemon| i64::from(daemon.pid()) == victim_pid)
        .expect("the victim is one of ours");
    let killed = Instant::now();
    drop(instances.remove(victim));
    for owner in &orphans {
        sandbox.deliver(
            owner,
            &harness::message(2, &contact, owner, "After the kill"),
        );
    }
    let expected = (mailboxes + orphans.len()) as i64;
    wait_until(
        "every orphaned mailbox synced again",
        Duration::from_secs(lease_secs + poll_secs + 120),
        || count("SELECT count(*) FROM activities") == expected,
    );
    let failover = killed.elapsed().as_secs_f64();
    report.fact(
        "deployment",
        format!(
            "3 instances, {mailboxes} mailboxes, lease_secs = {lease_secs}, poll_interval_secs = {poll_secs}; the killed instance held {}",
            orphans.len()
        ),
    );
    report.figure(
        "SIGKILL → every orphaned mailbox's new mail stored",
        failover,
        "s",
        Some(Target::AtMost((lease_secs + poll_secs + 5) as f64)),
    );
    for instance in instances {
        instance.stop();
    }
    report
}
