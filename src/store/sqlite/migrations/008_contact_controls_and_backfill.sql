-- Privacy controls that live with the contact, and what the daemon needs to backfill mail when
-- a contact (or a new address on one) appears, whoever wrote it: mailsync or the CRM itself.

-- "Never sync this contact" (`contacts set ADDR --no-sync`, CSV column `no_sync`): acts as a
-- skip rule for every address of the contact, in every mailbox, retroactively.
ALTER TABLE contacts ADD COLUMN no_sync INTEGER NOT NULL DEFAULT 0 CHECK (no_sync IN (0, 1));

-- Message facts that rules can match besides parties (`match = { automated = true }`,
-- `{ calendar = true }`). NULL on activities stored before this version: unknown facts never
-- satisfy a rule's condition.
ALTER TABLE activities ADD COLUMN automated INTEGER;
ALTER TABLE activities ADD COLUMN calendar_only INTEGER;

-- What a decision rested on, besides its reason: e.g. "decided by search" for a message left
-- out of the candidate search and never fetched. Never message content.
ALTER TABLE decisions ADD COLUMN detail TEXT;

-- Contact changes written by anyone, recorded by triggers so that the daemon notices them
-- by reading this (small, drained) table instead of polling the whole contacts table.
CREATE TABLE contact_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('address_added', 'no_sync_changed')),
    email       TEXT,
    contact_id  INTEGER NOT NULL,
    at          INTEGER NOT NULL
);

CREATE TRIGGER contact_events_address_added AFTER INSERT ON contact_emails
BEGIN
    INSERT INTO contact_events (kind, email, contact_id, at)
    VALUES ('address_added', NEW.email, NEW.contact_id, unixepoch());
END;

CREATE TRIGGER contact_events_no_sync_changed AFTER UPDATE OF no_sync ON contacts
WHEN NEW.no_sync IS NOT OLD.no_sync
BEGIN
    INSERT INTO contact_events (kind, email, contact_id, at)
    VALUES ('no_sync_changed', NULL, NEW.id, unixepoch());
END;

-- One row per (mailbox, address) still to backfill; removed once that mailbox's earlier mail
-- with the address has been searched and decided.
CREATE TABLE backfill_tasks (
    user_email  TEXT NOT NULL,
    email       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_email, email)
) WITHOUT ROWID;
