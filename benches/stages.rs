//! Criterion benchmarks of the in-process stages, one message at a time: parsing (mailparse
//! alone, then mailsync's parse), deciding, and the store's write and read paths. These are the
//! numbers to watch when changing one stage; `figures` gives the end-to-end ratios.
//!
//! `cargo bench --bench stages` (add a filter such as `parse` to run fewer).

mod support;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mailsync::source::SourceMessage;
use mailsync::store::Viewer;
use mailsync::sync::prepare;
use support::mailgen::{Cast, Generated, MailGenerator, Mix};
use support::world::World;

/// One message of each size class: a short note, a median message, a newsletter-sized
/// HTML message, and one with a large attachment.
fn samples() -> Vec<(&'static str, Generated)> {
    let cast = Cast::new("michelle@abcorp.com", 200, 50);
    let mut generator = MailGenerator::new(3, cast, Mix::default());
    let mut pick = |name: &'static str, wanted: &dyn Fn(&Generated) -> bool| {
        (0..10_000)
            .map(|_| generator.message_with(Some(true)))
            .find(|m| wanted(m))
            .map(|m| (name, m))
            .unwrap_or_else(|| panic!("no {name} message generated"))
    };
    vec![
        pick("2KB", &|m| m.raw.len() < 2_500 && m.attachments == 0),
        pick("10KB", &|m| {
            (9_000..11_000).contains(&m.raw.len()) && m.attachments == 0
        }),
        pick("100KB", &|m| {
            (90_000..120_000).contains(&m.raw.len()) && m.attachments == 0
        }),
        pick("1MB-attachment", &|m| {
            m.raw.len() > 900_000 && m.attachments > 0
        }),
    ]
}

fn parsing(c: &mut Criterion) {
    let limits = mailsync::parse::Limits::default();
    let mut group = c.benchmark_group("parse");
    for (name, message) in samples() {
        group.throughput(Throughput::Bytes(message.raw.len() as u64));
        group.bench_function(format!("mailparse/{name}"), |b| {
            b.iter(|| black_box(mailparse::parse_mail(&message.raw).map(|m| m.subparts.len())))
        });
        group.bench_function(format!("mailsync/{name}"), |b| {
            b.iter(|| black_box(mailsync::parse::parse_message_with(&message.raw, &limits).is_ok()))
        });
    }
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let mut world = World::new("");
    let contacts = Cast::new("michelle@abcorp.com", 200, 50).contacts;
    world.add_contacts(&contacts, 10);
    let user = world
        .policy
        .config
        .user_by_address("michelle@abcorp.com")
        .expect("bench user")
        .clone();
    let mut group = c.benchmark_group("pipeline");
    for (name, message) in samples() {
        group.throughput(Throughput::Bytes(message.raw.len() as u64));
        let source = SourceMessage {
            source_id: "1".to_string(),
            raw: message.raw.clone(),
            labels: Vec::new(),
        };
        group.bench_function(format!("parse+decide/{name}"), |b| {
            b.iter(|| {
                black_box(prepare(&world.policy, &*world.store, &user, "gmail", &source).is_ok())
            })
        });
    }
    // Storing: each iteration records a message never seen before (its own Message-ID).
    let (_, median) = samples().swap_remove(1);
    let text = String::from_utf8(median.raw).expect("generated mail is UTF-8");
    let mut next = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse+decide+store/10KB", |b| {
        b.iter_batched(
            || {
                next += 1;
                SourceMessage {
                    source_id: format!("s{next}"),
                    raw: text
                        .replace(&median.message_id, &format!("<bench-{next}@x.example>"))
                        .into_bytes(),
                    labels: Vec::new(),
                }
            },
            |source| {
                let prepared = prepare(&world.policy, &*world.store, &user, "gmail", &source)
                    .expect("prepared");
                world
                    .store
                    .record_all(&[prepared.record()], None)
                    .expect("recorded")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn reading(c: &mut Criterion) {
    let mut world = World::new("");
    let cast = Cast::new("dave@abcorp.com", 500, 100);
    world.add_contacts(&cast.contacts, 10);
    let mix = Mix {
        with_contact: 1.0,
        max_bytes: 64 * 1024,
        ..Mix::default()
    };
    let mut generator = MailGenerator::new(5, cast, mix);
    // `cargo test` runs each benchmark once: a small store keeps that quick.
    let count = if std::env::args().any(|arg| arg == "--bench") {
        5_000
    } else {
        300
    };
    let messages: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| (format!("{i:08}"), generator.message().raw))
        .collect();
    let batch: Vec<(String, &[u8])> = messages
        .iter()
        .map(|(id, raw)| (id.clone(), raw.as_slice()))
        .collect();
    world.ingest("dave@abcorp.com", &batch);
    let viewer = Viewer {
        email: "sam@abcorp.com".to_string(),
        addresses: vec!["sam@abcorp.com".to_string()],
        is_admin: false,
        admins_see_private_emails: false,
    };
    let mut group = c.benchmark_group(format!("read_path_{count}"));
    group.bench_function("feed/first-page", |b| {
        b.iter(|| {
            black_box(
                world
                    .store
                    .feed(&viewer, None, Some(50))
                    .expect("feed")
                    .len(),
            )
        })
    });
    group.bench_function("search/common-word", |b| {
        b.iter(|| {
            black_box(
                world
                    .store
                    .search(&viewer, "contract", Some(50))
                    .expect("search")
                    .len(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, parsing, pipeline, reading);
criterion_main!(benches);
