//! What only the PostgreSQL backend has to promise: instances that start together migrate the
//! schema once, a newer schema is refused, looking changes nothing, contact changes enter the log in commit order, and server errors carry no row
//! values. Everything both backends promise is in the conformance tests (`store.rs`,
//! `privacy.rs`).

use std::time::Duration;

use mailsync::store::{NewContact, PostgresSettings, PostgresStore, Store, StoreError};

use crate::common::postgres::ScratchDatabase;

fn settings(database: &ScratchDatabase) -> PostgresSettings {
    PostgresSettings {
        url: database.url(),
        password_file: None,
    }
}

fn contact(email: &str) -> NewContact {
    NewContact {
        emails: vec![email.to_string()],
        ..NewContact::default()
    }
}

#[test]
fn instances_starting_together_apply_the_schema_once() {
    let database = ScratchDatabase::create();
    let settings = settings(&database);
    let opened: Vec<_> = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| PostgresStore::open(&settings).map(drop)))
            .collect();
        starts
            .into_iter()
            .map(|start| start.join().unwrap())
            .collect()
    });
    for result in opened {
        result.unwrap();
    }
    let mut client = database.client();
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT version), max(version) FROM mailsync_schema",
            &[],
        )
        .unwrap();
    let (rows, versions, newest): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (rows, versions),
        (newest, newest),
        "each version applied once"
    );
}

#[test]
fn a_schema_newer_than_this_mailsync_is_refused() {
    let database = ScratchDatabase::create();
    PostgresStore::open(&settings(&database)).unwrap();
    database
        .client()
        .batch_execute(
            "INSERT INTO mailsync_schema (version, name, applied_at) VALUES (99, 'future', 0)",
        )
        .unwrap();
    let error = PostgresStore::open(&settings(&database))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("upgrade mailsync"), "{error}");
}

#[test]
fn looking_at_a_store_changes_nothing() {
    let database = ScratchDatabase::create();
    let error = PostgresStore::open_for_looking(&settings(&database))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("schema version 0"), "{error}");
    assert!(database.dump().is_empty(), "no table was created");
}

/// The contact change log is read by position: an event that committed after a reader moved
/// past its id would never be backfilled. A CRM's transaction that added a contact holds
/// back every other contact write until it commits, so ids are visible in commit order.
#[test]
fn contact_changes_enter_the_log_in_commit_order() {
    let database = ScratchDatabase::create();
    let store = PostgresStore::open(&settings(&database)).unwrap();
    let mut crm = database.client();
    let mut transaction = crm.transaction().unwrap();
    let id: i64 = transaction
        .query_one(
            "INSERT INTO contacts (name, created_at) VALUES ('Slow', 0) RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    transaction
        .execute(
            "INSERT INTO contact_emails (email, contact_id) VALUES ('slow@crm.example', $1)",
            &[&id],
        )
        .unwrap();
    std::thread::scope(|scope| {
        let mailsync_write = scope.spawn(|| store.add_contact(&contact("fast@crm.example")));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !mailsync_write.is_finished(),
            "a contact write went ahead of an uncommitted one"
        );
        transaction.commit().unwrap();
        mailsync_write.join().unwrap().unwrap();
    });
    let order: Vec<String> = database
        .client()
        .query("SELECT email FROM contact_events ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(order, ["slow@crm.example", "fast@crm.example"]);
}

/// A server error's DETAIL quotes the row (`Key (email)=(…) already exists`); what mailsync
/// reports, and so logs, does not.
#[test]
fn database_errors_carry_no_row_values() {
    let database = ScratchDatabase::create();
    PostgresStore::open(&settings(&database)).unwrap();
    let mut client = database.client();
    client
        .batch_execute(
            "INSERT INTO contacts (id, name, created_at) VALUES (1, 'A', 0);
             INSERT INTO contact_emails (email, contact_id) VALUES ('secret.person@customer.com', 1)",
        )
        .unwrap();
    let error = client
        .execute(
            "INSERT INTO contact_emails (email, contact_id) VALUES ('secret.person@customer.com', 1)",
            &[],
        )
        .unwrap_err();
    assert!(
        format!("{error:?}").contains("secret.person"),
        "the server quotes it"
    );
    let reported = StoreError::from(error).to_string();
    assert!(!reported.contains("secret.person"), "{reported}");
    assert!(reported.contains("23505"), "{reported}");
}

fn instance(name: &str, lease_secs: u64) -> mailsync::store::InstanceInfo {
    mailsync::store::InstanceInfo {
        instance: name.to_string(),
        host: "test-host".to_string(),
        pid: 1,
        lease_secs,
        config_fingerprint: "same".to_string(),
    }
}

fn mailboxes(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("user{i}@abcorp.com")).collect()
}

/// Property 2 of docs/spec/instances.md: an instance whose lease ran out and was taken over
/// can write nothing more for that mailbox, whatever it still believes.
#[test]
fn a_stale_instance_cannot_write_for_a_mailbox_it_lost() {
    let database = ScratchDatabase::create();
    let stale = PostgresStore::open(&settings(&database)).unwrap();
    let fresh = PostgresStore::open(&settings(&database)).unwrap();
    let wanted = mailboxes(1);
    let user = wanted[0].as_str();
    stale.join(&instance("stale", 1)).unwrap();
    let round = stale.lease_round(&wanted, Duration::from_secs(1)).unwrap();
    assert!(round.held.contains(user) && round.runner);
    stale
        .finish_poll(user, mailsync::store::SyncStatus::Ok, None, 0, None)
        .unwrap();

    // The stale one pauses past its lease; the fresh one takes the mailbox over.
    std::thread::sleep(Duration::from_millis(1_300));
    fresh.join(&instance("fresh", 30)).unwrap();
    let round = fresh.lease_round(&wanted, Duration::from_secs(30)).unwrap();
    assert!(round.held.contains(user), "{round:?}");
    assert!(round.runner, "the runner's lease moved too");

    let cursor = mailsync::store::Cursor {
        user_email: user.to_string(),
        history_id: "999".to_string(),
    };
    for (what, result) in [
        (
            "finish_poll",
            stale.finish_poll(user, mailsync::store::SyncStatus::Ok, None, 0, None),
        ),
        ("record_all", stale.record_all(&[], Some(&cursor)).map(drop)),
        ("clear_cursor", stale.clear_cursor(user)),
        (
            "place_backfill_mark",
            stale.place_backfill_mark(user).map(drop),
        ),
        // A label changed in Gmail, decided again by the worker that lost the mailbox.
        (
            "apply_mailbox_changes",
            stale.apply_mailbox_changes(user, &[]).map(drop),
        ),
        (
            "forget_blocked_decision",
            stale
                .forget_blocked_decision(user, "gmail", "1", &["label: CRM/Never".to_string()])
                .map(drop),
        ),
    ] {
        let error = result.expect_err(what);
        assert!(error.is_fenced(), "{what}: {error}");
    }
    assert_eq!(stale.sync_state(user).unwrap().unwrap().history_id, None);
    fresh.record_all(&[], Some(&cursor)).unwrap();
    // Its next round tells the stale one the mailbox is gone.
    let round = stale.lease_round(&wanted, Duration::from_secs(1)).unwrap();
    assert!(!round.held.contains(user) && !round.runner, "{round:?}");
    assert_eq!(
        fresh
            .sync_state(user)
            .unwrap()
            .unwrap()
            .history_id
            .as_deref(),
        Some("999")
    );
}

/// A write in flight keeps the lease row: a takeover waits for it to commit rather than
/// commit in the middle of it.
#[test]
fn a_takeover_waits_for_a_write_in_flight() {
    let database = ScratchDatabase::create();
    let store = PostgresStore::open(&settings(&database)).unwrap();
    let wanted = mailboxes(1);
    store.join(&instance("holder", 30)).unwrap();
    store.lease_round(&wanted, Duration::from_secs(30)).unwrap();
    let mut writer = database.client();
    let mut transaction = writer.transaction().unwrap();
    transaction
        .query_one(
            "SELECT 1 FROM mailbox_leases WHERE user_email = $1 FOR SHARE",
            &[&wanted[0]],
        )
        .unwrap();
    std::thread::scope(|scope| {
        let takeover = scope.spawn(|| {
            database
                .client()
                .execute(
                    "UPDATE mailbox_leases SET owner = 'thief', epoch = epoch + 1 WHERE user_email = $1",
                    &[&wanted[0]],
                )
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(!takeover.is_finished(), "the takeover did not wait");
        transaction.commit().unwrap();
        assert_eq!(takeover.join().unwrap(), 1);
    });
}

/// Property 5: mailboxes spread evenly, and an instance that joins gets its share from the
/// others' next rounds; one runner at a time.
#[test]
fn instances_take_fair_shares_and_rebalance_when_one_joins() {
    let database = ScratchDatabase::create();
    let wanted = mailboxes(7);
    let lease = Duration::from_secs(30);
    let stores: Vec<PostgresStore> = (0..3)
        .map(|_| PostgresStore::open(&settings(&database)).unwrap())
        .collect();
    stores[0].join(&instance("a", 30)).unwrap();
    assert_eq!(stores[0].lease_round(&wanted, lease).unwrap().held.len(), 7);
    stores[1].join(&instance("b", 30)).unwrap();
    stores[2].join(&instance("c", 30)).unwrap();
    let mut rounds = Vec::new();
    for _ in 0..3 {
        rounds = stores
            .iter()
            .map(|store| store.lease_round(&wanted, lease).unwrap())
            .collect();
    }
    let sizes: Vec<usize> = rounds.iter().map(|round| round.held.len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 7, "{sizes:?}");
    let mut sorted = sizes.clone();
    sorted.sort();
    assert_eq!(sorted, [2, 2, 3], "as even as can be");
    let all: std::collections::BTreeSet<&String> =
        rounds.iter().flat_map(|round| round.held.iter()).collect();
    assert_eq!(all.len(), 7, "no mailbox held twice");
    assert_eq!(rounds.iter().filter(|round| round.runner).count(), 1);
    assert!(rounds.iter().all(|round| round.live_instances == 3));
    // A clean stop gives everything back at once.
    stores[0].leave().unwrap();
    let round = stores[1].lease_round(&wanted, lease).unwrap();
    assert_eq!(round.live_instances, 2);
    assert!(round.held.len() >= 3, "{round:?}");
}

#[test]
fn a_different_config_is_counted() {
    let database = ScratchDatabase::create();
    let one = PostgresStore::open(&settings(&database)).unwrap();
    let other = PostgresStore::open(&settings(&database)).unwrap();
    one.join(&instance("one", 30)).unwrap();
    other
        .join(&mailsync::store::InstanceInfo {
            config_fingerprint: "edited".to_string(),
            ..instance("other", 30)
        })
        .unwrap();
    let round = one
        .lease_round(&mailboxes(2), Duration::from_secs(30))
        .unwrap();
    assert_eq!(round.config_mismatches, 1);
    let listed = one.instances().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].instance, "one");
}

/// A copy stopped halfway (here: after its first batch) is finished by running it again,
/// and a finished one is unchanged by another run.
#[test]
fn an_interrupted_store_migration_finishes_when_run_again() {
    use mailsync::store::migrate::{self, Endpoint};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.sqlite3");
    {
        let store = mailsync::store::SqliteStore::open(&path).unwrap();
        for i in 0..1_200 {
            store
                .add_contact(&contact(&format!("c{i}@customer.example")))
                .unwrap();
        }
    }
    let database = ScratchDatabase::create();
    let from = Endpoint::Sqlite(path);
    let to = Endpoint::parse(&database.url(), None).unwrap();
    let source = migrate::open_source(&from).unwrap();
    let target = migrate::open_target(&to).unwrap();
    let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        migrate::copy(&*source, &*target, &mut |_, _| {
            panic!("the operator pressed ^C")
        })
    }));
    assert!(stopped.is_err());
    let partial = migrate::verify(&*source, &*target).unwrap();
    assert!(
        partial.iter().any(|check| !check.matches()),
        "the copy was cut short"
    );
    for _ in 0..2 {
        migrate::copy(&*source, &*target, &mut |_, _| {}).unwrap();
        let checks = migrate::verify(&*source, &*target).unwrap();
        assert!(checks.iter().all(|check| check.matches()), "{checks:?}");
    }
    // The copied store works: its sequences are past the copied ids.
    let copied = PostgresStore::open(&settings(&database)).unwrap();
    let id = copied
        .add_contact(&contact("new@customer.example"))
        .unwrap();
    assert!(id > 1_200, "{id}");
}

/// A reload records the new config's fingerprint and keeps the instance's leases.
#[test]
fn joining_again_after_a_reload_keeps_the_leases() {
    let database = ScratchDatabase::create();
    let store = PostgresStore::open(&settings(&database)).unwrap();
    let wanted = mailboxes(1);
    store.join(&instance("one", 30)).unwrap();
    store.lease_round(&wanted, Duration::from_secs(30)).unwrap();
    store
        .join(&mailsync::store::InstanceInfo {
            config_fingerprint: "reloaded".to_string(),
            ..instance("one", 30)
        })
        .unwrap();
    store
        .finish_poll(&wanted[0], mailsync::store::SyncStatus::Ok, None, 0, None)
        .expect("still the mailbox's holder");
    assert_eq!(store.instances().unwrap()[0].config_fingerprint, "reloaded");
}
