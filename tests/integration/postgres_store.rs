//! What only the PostgreSQL backend has to promise: instances that start together migrate the
//! schema once, a newer schema is refused, looking changes nothing, one daemon holds the
//! store, contact changes enter the log in commit order, and server errors carry no row
//! values. Everything both backends promise is in the conformance tests (`store.rs`,
//! `privacy.rs`).

use std::time::Duration;

use mailsync::store::{
    NewContact, PostgresDaemonLock, PostgresSettings, PostgresStore, Store, StoreError,
};

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
    let versions: i64 = client
        .query_one("SELECT count(*) FROM mailsync_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(versions, 1);
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

#[test]
fn one_daemon_holds_the_store_until_it_lets_go() {
    let database = ScratchDatabase::create();
    let settings = settings(&database);
    let held = PostgresDaemonLock::acquire(&settings).unwrap();
    let refused = PostgresDaemonLock::acquire(&settings)
        .err()
        .unwrap()
        .to_string();
    assert!(refused.contains("another mailsync daemon"), "{refused}");
    drop(held);
    // The holder's session ends on its own thread; the server then frees the lock.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match PostgresDaemonLock::acquire(&settings) {
            Ok(_) => break,
            Err(error) if std::time::Instant::now() < deadline => {
                let _ = error;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("the lock was not released: {error}"),
        }
    }
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
