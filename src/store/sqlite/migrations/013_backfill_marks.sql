-- Backfill as positions in the contact change log instead of one row per (mailbox, address):
-- a company of 10,000 users importing 1,000 contacts wrote 10,000,000 `backfill_tasks` rows.
-- `contact_events` stays the ordered log the triggers fill (ids are AUTOINCREMENT, so never
-- reused, and SQLite's single writer hands them out in commit order); each mailbox keeps how
-- far into it it has backfilled, and the daemon how far it has applied never-sync changes.
-- Rows: one per mailbox plus one per contact change, never their product. An event is deleted
-- once every mark is past it.

-- Every contact_events row with id <= covered_through is covered for that mailbox: its
-- earlier mail with the address has been searched for and decided, or its first full sync
-- started after the address was stored. A mailbox without a mark has not started syncing.
CREATE TABLE backfill_marks (
    user_email       TEXT PRIMARY KEY NOT NULL,
    covered_through  INTEGER NOT NULL
) WITHOUT ROWID;

-- Pruning needs the lowest mark without reading them all.
CREATE INDEX backfill_marks_by_position ON backfill_marks (covered_through);

-- The daemon's own positions in the log: 'rules' is how far never-sync changes have been
-- applied to stored activities.
CREATE TABLE event_marks (
    name             TEXT PRIMARY KEY NOT NULL,
    covered_through  INTEGER NOT NULL
) WITHOUT ROWID;

-- Existing state. Mailboxes that have decided mail, or finished a first sync with nothing to
-- decide (they have a cursor), would have been given tasks for the events not drained yet:
-- their mark goes just before the oldest of those (or at the end of the log when it is
-- empty). A mailbox with neither starts a first full sync, which places its own mark and
-- sees every contact, as it used to drop its tasks.
INSERT INTO event_marks (name, covered_through)
VALUES ('rules', COALESCE(
    (SELECT min(id) - 1 FROM contact_events),
    (SELECT seq FROM sqlite_sequence WHERE name = 'contact_events'),
    0));

INSERT INTO backfill_marks (user_email, covered_through)
SELECT user_email, (SELECT covered_through FROM event_marks WHERE name = 'rules')
FROM (SELECT DISTINCT user_email FROM decisions
      UNION SELECT user_email FROM sync_state WHERE history_id IS NOT NULL);

-- Pending tasks become events again, after every mark, so the mailboxes that had them
-- backfill them. Mailboxes that had already done an address redo it once: a search per ten
-- addresses, and deciding again changes nothing that was decided with the contact. Oldest
-- task first, as they were served.
INSERT INTO contact_events (kind, email, contact_id, at)
SELECT 'address_added', t.email,
       COALESCE((SELECT e.contact_id FROM contact_emails e WHERE e.email = t.email), 0),
       unixepoch()
FROM (SELECT email, min(created_at) AS created_at FROM backfill_tasks GROUP BY email) t
ORDER BY t.created_at, t.email;

DROP TABLE backfill_tasks;
