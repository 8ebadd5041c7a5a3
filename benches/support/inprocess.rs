//! The in-process figures: the per-message pipeline against `mailparse` alone, and the read
//! path over a large store.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mailsync::source::SourceMessage;
use mailsync::store::{Store, Viewer};

use super::mailgen::{self, Cast, MailGenerator, Mix};
use super::report::{Report, Target, quantile, trim};
use super::world::{World, store_bytes};

/// Parse + decide + store (search index included) over generated mail, against parsing the
/// same bytes with `mailparse` alone.
pub fn pipeline(smoke: bool) -> Report {
    let count = if smoke { 300 } else { 10_000 };
    let mut report = Report::new("pipeline", smoke);
    let cast = Cast::new("michelle@abcorp.com", 500, 120);
    let contacts = cast.contacts.clone();
    let mut generator = MailGenerator::new(7, cast, Mix::default());
    let messages: Vec<mailgen::Generated> = (0..count).map(|_| generator.message()).collect();
    let sizes = mailgen::summarize(messages.iter().map(|m| m.raw.len()));
    let total_mb = sizes.total_bytes as f64 / 1e6;
    report.fact(
        "messages",
        format!(
            "{count} generated: {} MB, median {} B, p90 {} B, max {} B, {} with attachments, {} with a contact",
            trim(total_mb),
            sizes.median_bytes,
            sizes.p90_bytes,
            sizes.max_bytes,
            messages.iter().filter(|m| m.attachments > 0).count(),
            messages.iter().filter(|m| m.contact.is_some()).count()
        ),
    );

    // mailparse's `parse_mail` is lazy: it finds the MIME structure and parses headers but
    // decodes no body. Reading a message means decoding its parts too, so the floor is
    // mailparse doing both; the lazy parse alone is reported beside it.
    let structure_only = best_of(3, || {
        for message in &messages {
            let parsed = mailparse::parse_mail(&message.raw).expect("generated mail parses");
            black_box(parsed.subparts.len());
        }
    });
    let floor = best_of(3, || {
        for message in &messages {
            let parsed = mailparse::parse_mail(&message.raw).expect("generated mail parses");
            black_box(decode_every_part(&parsed));
        }
    });
    let limits = mailsync::parse::Limits::default();
    let parse_only = best_of(3, || {
        for message in &messages {
            black_box(mailsync::parse::parse_message_with(&message.raw, &limits).is_ok());
        }
    });

    // The daemon holds each fetched message in memory, as these are.
    let sources: Vec<SourceMessage> = messages
        .iter()
        .enumerate()
        .map(|(index, message)| SourceMessage {
            source_id: format!("{index:016x}"),
            raw: message.raw.clone(),
            labels: Vec::new(),
        })
        .collect();
    let run = |mut world: World| {
        world.add_contacts(&contacts, 10);
        let started = Instant::now();
        let ingested = world.ingest_messages("michelle@abcorp.com", &sources);
        let elapsed = started.elapsed();
        let bytes = match world.database {
            Some(_) => 0,
            None => store_bytes(&world.store_path()),
        };
        (elapsed, ingested, bytes)
    };
    // Best of three, as the floor is: this machine's speed wanders from run to run.
    let (pipeline, ingested, store_size) = (0..3)
        .map(|_| run(World::new("")))
        .min_by_key(|(elapsed, _, _)| *elapsed)
        .expect("three runs");
    let (with_files, _, _) = run(World::new("attachments_dir = \"attachments\""));
    // The same on PostgreSQL, in the same run.
    let (on_postgres, postgres_ingested, _) = (0..3)
        .map(|_| run(World::on_postgres("")))
        .min_by_key(|(elapsed, _, _)| *elapsed)
        .expect("three runs");

    report.fact(
        "synced",
        format!(
            "{}; parse + decide {} s, store {} s",
            ingested.synced,
            trim(ingested.parse_and_decide.as_secs_f64()),
            trim(ingested.store.as_secs_f64())
        ),
    );
    report.fact(
        "store after the run",
        format!("{} MB", trim(store_size as f64 / 1e6)),
    );
    let seconds = pipeline.as_secs_f64();
    report.figure("pipeline messages/s", count as f64 / seconds, "msg/s", None);
    report.figure("pipeline MB/s", total_mb / seconds, "MB/s", None);
    report.figure(
        "mailparse parse + decode MB/s (the floor)",
        total_mb / floor.as_secs_f64(),
        "MB/s",
        None,
    );
    report.figure(
        "mailparse parse_mail alone MB/s (lazy)",
        total_mb / structure_only.as_secs_f64(),
        "MB/s",
        None,
    );
    report.figure(
        "mailsync parse alone ÷ floor",
        parse_only.as_secs_f64() / floor.as_secs_f64(),
        "×",
        None,
    );
    report.figure(
        "pipeline ÷ floor (mailparse parse + decode)",
        seconds / floor.as_secs_f64(),
        "×",
        Some(Target::AtMost(3.0)),
    );
    report.figure(
        "pipeline ÷ mailparse parse_mail alone (lazy)",
        seconds / structure_only.as_secs_f64(),
        "×",
        None,
    );
    report.figure(
        "pipeline keeping attachment files ÷ floor",
        with_files.as_secs_f64() / floor.as_secs_f64(),
        "×",
        None,
    );
    report.fact(
        "PostgreSQL",
        format!(
            "parse + decide {} s, store {} s",
            trim(postgres_ingested.parse_and_decide.as_secs_f64()),
            trim(postgres_ingested.store.as_secs_f64())
        ),
    );
    report.figure(
        "PostgreSQL pipeline messages/s",
        count as f64 / on_postgres.as_secs_f64(),
        "msg/s",
        None,
    );
    report.figure(
        "PostgreSQL pipeline ÷ floor (mailparse parse + decode)",
        on_postgres.as_secs_f64() / floor.as_secs_f64(),
        "×",
        Some(Target::AtMost(3.0)),
    );
    report
}

/// Decodes every leaf the way a mailparse user reads a message: text as text, the rest as
/// bytes; returns the decoded size so the work cannot be optimised away.
fn decode_every_part(part: &mailparse::ParsedMail<'_>) -> usize {
    let own = if !part.subparts.is_empty() {
        0
    } else if part.ctype.mimetype.starts_with("text/") {
        part.get_body().map_or(0, |text| text.len())
    } else {
        part.get_body_raw().map_or(0, |bytes| bytes.len())
    };
    own + part.subparts.iter().map(decode_every_part).sum::<usize>()
}

fn best_of(runs: usize, mut work: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .min()
        .expect("at least one run")
}

/// Feed and search for one viewer over a store of `count` activities.
pub fn read_path(smoke: bool) -> Report {
    let count = if smoke { 2_000 } else { 200_000 };
    let mut report = Report::new("read_path", smoke);
    let contacts = mailgen::contact_addresses(2_000, 400);
    let (world, built) = read_path_world(count, &contacts);
    let activities = world.store.counts().expect("counts").activities;
    report.fact(
        "store",
        format!(
            "{activities} activities in 3 mailboxes, 2,000 contacts (every 10th visible only to the CEO; a few write most of the mail), {} MB{}",
            trim(store_bytes(&world.store_path()) as f64 / 1e6),
            match built {
                Some(took) => format!(", built in {} s", trim(took.as_secs_f64())),
                None => " (kept from an earlier run: target/benchmarks/)".to_string(),
            }
        ),
    );

    let viewers = [
        viewer("dave@abcorp.com", false),
        viewer("michelle@abcorp.com", true),
        viewer("sam@abcorp.com", false),
    ];
    // A few contacts write most of the mail: the busiest, one with a handful of activities
    // (a feed that must find its few among 200,000) and one in between.
    let [busy, middling, quiet] = contacts_by_activity(&world.store_path(), activities);
    report.fact(
        "contacts asked for",
        format!(
            "busy: {} activities, middling: {}, quiet: {}",
            busy.1, middling.1, quiet.1
        ),
    );
    let queries = [
        ("feed, first page", Ask::Feed(None)),
        ("feed of a busy contact", Ask::Feed(Some(&busy.0))),
        ("feed of a middling contact", Ask::Feed(Some(&middling.0))),
        ("feed of a quiet contact", Ask::Feed(Some(&quiet.0))),
        ("search a common word", Ask::Search("contract")),
        ("search two words", Ask::Search("renewal invoice")),
        ("search an accented word", Ask::Search("zürich")),
        (
            "search a word in no message",
            Ask::Search("nosuchwordanywhere"),
        ),
    ];
    let rounds = if smoke { 3 } else { 30 };
    let (p95, p50, worst) = measure_reads(&*world.store, &queries, &viewers, rounds);
    report.fact(
        "queries",
        format!(
            "each {} times, for a user, an admin and a user with no mailbox; p95 per query: {}; median of all {} ms",
            rounds * viewers.len(),
            worst.join(", "),
            trim(p50)
        ),
    );
    report.figure(
        "read path p95, all queries and viewers",
        p95,
        "ms",
        Some(Target::AtMost(20.0)),
    );

    // The same store moved to PostgreSQL (`store migrate`), the same reads.
    let (postgres, moved) = read_path_postgres(count, &world.store_path());
    let (p95, p50, worst) = measure_reads(&*postgres.store, &queries, &viewers, rounds);
    report.fact(
        "PostgreSQL",
        format!(
            "the same store moved with store migrate{}; p95 per query: {}; median of all {} ms",
            match moved {
                Some(took) => format!(" in {} s", trim(took.as_secs_f64())),
                None => " (kept from an earlier run)".to_string(),
            },
            worst.join(", "),
            trim(p50)
        ),
    );
    report.figure(
        "PostgreSQL read path p95, all queries and viewers",
        p95,
        "ms",
        Some(Target::AtMost(20.0)),
    );
    report
}

/// Every query for every viewer `rounds` times: the p95 and median of all reads (ms), and
/// each query's p95.
fn measure_reads(
    store: &dyn Store,
    queries: &[(&str, Ask<'_>)],
    viewers: &[Viewer],
    rounds: usize,
) -> (f64, f64, Vec<String>) {
    let mut all = Vec::new();
    let mut worst = Vec::new();
    for (name, ask) in queries {
        let mut samples = Vec::new();
        let mut shown = 0;
        for _ in 0..rounds {
            for viewer in viewers {
                let started = Instant::now();
                shown += ask.first_page(store, viewer);
                samples.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        assert!(
            shown > 0 || name.contains("no message"),
            "{name} showed nothing"
        );
        let p95 = quantile(&mut samples.clone(), 0.95);
        worst.push(format!("{name} {} ms", trim(p95)));
        all.extend(samples);
    }
    (
        quantile(&mut all.clone(), 0.95),
        quantile(&mut all.clone(), 0.5),
        worst,
    )
}

/// The read path's store moved to PostgreSQL with `store migrate`: at full size into a
/// database kept between runs (named for the size and the generator's version, like the
/// SQLite file), because moving 2 GB takes minutes; at smoke size into a scratch database.
fn read_path_postgres(count: usize, sqlite: &std::path::Path) -> (World, Option<Duration>) {
    use mailsync::store::migrate::{self, Endpoint};
    let move_into = |url: &str| {
        let started = Instant::now();
        let source = migrate::open_source(&Endpoint::Sqlite(sqlite.to_path_buf())).expect("source");
        let target =
            migrate::open_target(&Endpoint::parse(url, None).expect("a URL")).expect("target");
        migrate::copy(&*source, &*target, &mut |_, _| {}).expect("the store moves");
        started.elapsed()
    };
    if smoke_sized(count) {
        let world = World::on_postgres("");
        let url = world.database.as_ref().expect("a database").url();
        let took = move_into(&url);
        return (world, Some(took));
    }
    let server = super::e2e::postgres::server_url();
    let name = format!(
        "mailsync_bench_read_path_{count}_v{}",
        mailgen::GENERATOR_VERSION
    );
    let url = format!("{server}/{name}?sslmode=disable");
    let mut admin = postgres::Client::connect(&format!("{server}/postgres"), postgres::NoTls)
        .expect("the benchmark's PostgreSQL answers");
    let complete = postgres::Client::connect(&url, postgres::NoTls)
        .ok()
        .and_then(|mut kept| {
            // The search index is rebuilt last: complete, the copy is.
            kept.query_one(
                "SELECT (SELECT count(*) FROM activity_search) > 0
                    AND (SELECT count(*) FROM activity_search)
                      = (SELECT count(*) FROM activities WHERE content_erased_at IS NULL)",
                &[],
            )
            .ok()
        })
        .is_some_and(|row| row.get::<_, bool>(0));
    if complete {
        return (World::on_kept_database(&url), None);
    }
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .expect("an unfinished copy goes");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("the kept database");
    let took = move_into(&url);
    (World::on_kept_database(&url), Some(took))
}

/// One read, as a user's screen makes it: the first page of 50.
enum Ask<'a> {
    Feed(Option<&'a str>),
    Search(&'a str),
}

impl Ask<'_> {
    /// How many activities the page showed.
    fn first_page(&self, store: &dyn Store, viewer: &Viewer) -> usize {
        match self {
            Ask::Feed(contact) => store.feed(viewer, *contact, Some(50)),
            Ask::Search(words) => store.search(viewer, words, Some(50)),
        }
        .expect("the read path answers")
        .len()
    }
}

/// The read path's store: generated once per size and kept under `target/benchmarks/` (its
/// name carries the generator's version), because building 200,000 activities takes minutes
/// and the read path never writes to it. Returns how long building took, if it was built.
fn read_path_world(count: usize, contacts: &[String]) -> (World, Option<Duration>) {
    let kept = super::report::results_dir().join(format!(
        "read_path-{count}-v{}.sqlite3",
        mailgen::GENERATOR_VERSION
    ));
    let mut world = World::new("");
    if kept.exists() {
        world.use_store(&kept);
        return (world, None);
    }
    world.add_contacts(contacts, 10);
    let owners = ["michelle@abcorp.com", "dave@abcorp.com", "ceo@abcorp.com"];
    // Small messages: the read path's cost is in rows and index terms, not in big bodies.
    let mix = Mix {
        with_contact: 1.0,
        with_attachment: 0.05,
        automated: 0.0,
        outgoing: 0.3,
        max_bytes: 64 * 1024,
    };
    let started = Instant::now();
    let per_owner = count / owners.len();
    for (owner_index, owner) in owners.iter().enumerate() {
        let cast = Cast {
            contacts: contacts.to_vec(),
            ..Cast::new(owner, 0, 1)
        };
        let mut generator = MailGenerator::new(100 + owner_index as u64, cast, mix);
        let mut chunk = Vec::with_capacity(1_000);
        for index in 0..per_owner {
            chunk.push(SourceMessage {
                source_id: format!("{owner_index}-{index:08}"),
                raw: generator.message().raw,
                labels: Vec::new(),
            });
            if chunk.len() == 1_000 || index + 1 == per_owner {
                world.ingest_messages(owner, &chunk);
                chunk.clear();
            }
        }
    }
    let took = started.elapsed();
    if !smoke_sized(count) {
        world.keep_store_as(&kept);
    }
    (world, Some(took))
}

/// The contact on the most activities, the one whose count is nearest √(16 × activities)
/// (about 1,800 of 200,000), and the one on the fewest (at least one), with their counts,
/// read from the store as the CRM would.
fn contacts_by_activity(store: &std::path::Path, activities: u64) -> [(String, i64); 3] {
    let connection =
        rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("store opens");
    let ranked = |order: &str| -> (String, i64) {
        connection
            .query_row(
                &format!(
                    "SELECT min(address), count(*) AS n FROM activity_contacts
                     GROUP BY contact_id ORDER BY {order} LIMIT 1"
                ),
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("a contact with activities")
    };
    let crossover = (16.0 * activities as f64).sqrt() as i64;
    [
        ranked("n DESC"),
        ranked(&format!("abs(n - {crossover}), n")),
        ranked("n ASC"),
    ]
}

fn smoke_sized(count: usize) -> bool {
    count < 10_000
}

fn viewer(email: &str, is_admin: bool) -> Viewer {
    Viewer {
        email: email.to_string(),
        addresses: vec![email.to_string()],
        is_admin,
        admins_see_private_emails: false,
    }
}
