-- The CRM store as mailsync writes it. Addresses and user emails are stored lower-cased;
-- times are seconds since the Unix epoch (UTC).

CREATE TABLE contacts (
    id          INTEGER PRIMARY KEY,
    name        TEXT,
    created_at  INTEGER NOT NULL
);

-- One row per address; an address belongs to exactly one contact.
CREATE TABLE contact_emails (
    email       TEXT PRIMARY KEY NOT NULL,
    contact_id  INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX contact_emails_by_contact ON contact_emails(contact_id);

-- No rows for a contact = visible to every user.
CREATE TABLE contact_visible_to (
    contact_id  INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    user_email  TEXT NOT NULL,
    PRIMARY KEY (contact_id, user_email)
) WITHOUT ROWID;

-- One row per message: the same RFC Message-ID seen in several mailboxes is one activity.
CREATE TABLE activities (
    id           INTEGER PRIMARY KEY,
    -- The Message-ID as written, or `sha256:<hex>` of the raw bytes when there is none.
    message_key  TEXT NOT NULL UNIQUE,
    message_id   TEXT,
    date         INTEGER,
    -- Relative to the company: outgoing when sent from any configured user's address.
    direction    TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
    subject      TEXT,
    body         TEXT,
    in_reply_to  TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX activities_by_date ON activities(date DESC, id DESC);

-- Which mailboxes an activity came from, and what each mailbox's decision said.
CREATE TABLE activity_sources (
    activity_id  INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    user_email   TEXT NOT NULL,
    source       TEXT NOT NULL,
    source_id    TEXT NOT NULL,
    visibility   TEXT NOT NULL CHECK (visibility IN ('visible', 'private')),
    direction    TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
    rules        TEXT NOT NULL DEFAULT '[]',
    synced_at    INTEGER NOT NULL,
    PRIMARY KEY (activity_id, user_email)
) WITHOUT ROWID;
CREATE INDEX activity_sources_by_user ON activity_sources(user_email, activity_id);

CREATE TABLE activity_contacts (
    activity_id  INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    contact_id   INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    -- The address as it appeared in the message (lower-cased).
    address      TEXT NOT NULL,
    PRIMARY KEY (activity_id, contact_id, address)
) WITHOUT ROWID;
CREATE INDEX activity_contacts_by_contact ON activity_contacts(contact_id, activity_id);

-- Metadata only: content is not kept by the core store.
CREATE TABLE attachments (
    activity_id   INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    file_name     TEXT,
    content_type  TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    PRIMARY KEY (activity_id, position)
) WITHOUT ROWID;

-- Per-user sync progress; written by the Gmail sync.
CREATE TABLE sync_state (
    user_email    TEXT PRIMARY KEY NOT NULL,
    state         TEXT NOT NULL DEFAULT 'ok',
    history_id    TEXT,
    last_sync_at  INTEGER,
    last_error    TEXT
) WITHOUT ROWID;

-- One row per message per source: what was decided and why. Skipped mail keeps no addresses
-- and no subject, only the decision, reason and rule names.
CREATE TABLE decisions (
    user_email   TEXT NOT NULL,
    source       TEXT NOT NULL,
    source_id    TEXT NOT NULL,
    decision     TEXT NOT NULL CHECK (decision IN ('synced', 'skipped')),
    reason       TEXT NOT NULL,
    rules        TEXT NOT NULL DEFAULT '[]',
    activity_id  INTEGER REFERENCES activities(id) ON DELETE SET NULL,
    decided_at   INTEGER NOT NULL,
    PRIMARY KEY (user_email, source, source_id)
) WITHOUT ROWID;
