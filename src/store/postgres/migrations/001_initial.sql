-- The CRM store in PostgreSQL: the same tables as the SQLite backend's, at its current
-- version (migrations 001–014 there). Addresses and user emails are stored lower-cased;
-- times are seconds since the Unix epoch (UTC), as in SQLite, so both backends read alike.

CREATE TABLE contacts (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT,
    created_at  BIGINT NOT NULL,
    -- "Never sync this contact": a skip rule for every address of the contact.
    no_sync     BOOLEAN NOT NULL DEFAULT FALSE
);

-- One row per address; an address belongs to exactly one contact.
CREATE TABLE contact_emails (
    email       TEXT PRIMARY KEY,
    contact_id  BIGINT NOT NULL REFERENCES contacts(id) ON DELETE CASCADE
);
CREATE INDEX contact_emails_by_contact ON contact_emails(contact_id);

-- No rows for a contact = visible to every user.
CREATE TABLE contact_visible_to (
    contact_id  BIGINT NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    user_email  TEXT NOT NULL,
    PRIMARY KEY (contact_id, user_email)
);

-- One row per message: the same RFC Message-ID seen in several mailboxes is one activity.
CREATE TABLE activities (
    id                 BIGSERIAL PRIMARY KEY,
    -- The Message-ID as written, or `sha256:<hex>` of the raw bytes when there is none.
    message_key        TEXT NOT NULL UNIQUE,
    message_id         TEXT,
    date               BIGINT,
    direction          TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
    subject            TEXT,
    body               TEXT,
    in_reply_to        TEXT,
    created_at         BIGINT NOT NULL,
    fingerprint        TEXT,
    automated          BOOLEAN,
    calendar_only      BOOLEAN,
    content_erased_at  BIGINT
);
CREATE INDEX activities_by_date ON activities(date DESC NULLS LAST, id DESC);

CREATE TABLE activity_sources (
    activity_id  BIGINT NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    user_email   TEXT NOT NULL,
    source       TEXT NOT NULL,
    source_id    TEXT NOT NULL,
    visibility   TEXT NOT NULL CHECK (visibility IN ('visible', 'private')),
    direction    TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
    rules        TEXT NOT NULL DEFAULT '[]',
    synced_at    BIGINT NOT NULL,
    -- Per party its domain and the SHA-256 of its address (JSON), for retroactive rules.
    parties      TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (activity_id, user_email)
);
CREATE INDEX activity_sources_by_user ON activity_sources(user_email, activity_id);

CREATE TABLE activity_contacts (
    activity_id  BIGINT NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    contact_id   BIGINT NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    address      TEXT NOT NULL,
    -- The activity's date, so a contact's feed is read newest first from its own links.
    date         BIGINT,
    PRIMARY KEY (activity_id, contact_id, address)
);
CREATE INDEX activity_contacts_by_contact_date
    ON activity_contacts(contact_id, date DESC NULLS LAST, activity_id DESC);

CREATE TABLE attachments (
    activity_id   BIGINT NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    position      BIGINT NOT NULL,
    file_name     TEXT,
    content_type  TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    stored        BOOLEAN NOT NULL DEFAULT FALSE,
    too_large     BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (activity_id, position)
);
CREATE INDEX attachments_by_sha256 ON attachments(sha256);

-- Full-text search: terms only (a tsvector), never the text, which stays in `activities`.
-- The read path decides who may match.
CREATE TABLE activity_search (
    activity_id  BIGINT PRIMARY KEY REFERENCES activities(id) ON DELETE CASCADE,
    document     TSVECTOR NOT NULL
);
CREATE INDEX activity_search_terms ON activity_search USING GIN (document);

CREATE TABLE sync_state (
    user_email            TEXT PRIMARY KEY,
    state                 TEXT NOT NULL DEFAULT 'ok',
    history_id            TEXT,
    last_sync_at          BIGINT,
    last_error            TEXT,
    consecutive_failures  BIGINT NOT NULL DEFAULT 0,
    next_poll_at          BIGINT,
    last_verify_at        BIGINT,
    verify_gaps           BIGINT NOT NULL DEFAULT 0
);

-- One row per message per source: what was decided and why. Skipped mail keeps no addresses
-- and no subject.
CREATE TABLE decisions (
    user_email   TEXT NOT NULL,
    source       TEXT NOT NULL,
    source_id    TEXT NOT NULL,
    decision     TEXT NOT NULL CHECK (decision IN ('synced', 'skipped')),
    reason       TEXT NOT NULL,
    rules        TEXT NOT NULL DEFAULT '[]',
    activity_id  BIGINT REFERENCES activities(id) ON DELETE SET NULL,
    decided_at   BIGINT NOT NULL,
    detail       TEXT,
    PRIMARY KEY (user_email, source, source_id)
);
CREATE INDEX decisions_by_activity ON decisions(activity_id);

CREATE TABLE oauth_tokens (
    user_email     TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    refresh_token  TEXT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE notifications (
    user_email  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    sent_at     BIGINT NOT NULL,
    PRIMARY KEY (user_email, kind)
);

CREATE TABLE access_log (
    id               BIGSERIAL PRIMARY KEY,
    viewer           TEXT NOT NULL,
    activity_id      BIGINT NOT NULL,
    message_id       TEXT,
    path             TEXT NOT NULL CHECK (path IN ('feed', 'search', 'export', 'attachment')),
    viewer_is_owner  BOOLEAN NOT NULL,
    accessed_at      BIGINT NOT NULL
);
CREATE INDEX access_log_by_time ON access_log(accessed_at);

-- The contact change log, filled by triggers whoever writes the contacts (mailsync or the
-- CRM's own code). Readers move marks through it by id, so ids must become visible in order:
-- every writer takes the table's self-conflicting lock before its id is drawn and keeps it
-- to commit, so no event commits behind a later one (a sequence alone does not promise
-- that with concurrent writers).
CREATE TABLE contact_events (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('address_added', 'no_sync_changed')),
    email       TEXT,
    contact_id  BIGINT NOT NULL,
    at          BIGINT NOT NULL
);

CREATE TABLE backfill_marks (
    user_email       TEXT PRIMARY KEY,
    covered_through  BIGINT NOT NULL
);
CREATE INDEX backfill_marks_by_position ON backfill_marks(covered_through);

CREATE TABLE event_marks (
    name             TEXT PRIMARY KEY,
    covered_through  BIGINT NOT NULL
);
INSERT INTO event_marks (name, covered_through) VALUES ('rules', 0);

CREATE FUNCTION mailsync_log_contact_event(event_kind TEXT, address TEXT, contact BIGINT)
RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE contact_events IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO contact_events (kind, email, contact_id, at)
    VALUES (event_kind, address, contact, extract(epoch FROM now())::BIGINT);
END;
$$;

-- Addresses are compared lower-cased and trimmed everywhere: whoever writes, they are
-- stored that way.
CREATE FUNCTION mailsync_contact_emails_normalize() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    NEW.email := lower(trim(NEW.email));
    RETURN NEW;
END;
$$;
CREATE TRIGGER contact_emails_lower_case BEFORE INSERT OR UPDATE OF email ON contact_emails
FOR EACH ROW EXECUTE FUNCTION mailsync_contact_emails_normalize();

CREATE FUNCTION mailsync_contact_visible_to_normalize() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    NEW.user_email := lower(trim(NEW.user_email));
    RETURN NEW;
END;
$$;
CREATE TRIGGER contact_visible_to_lower_case BEFORE INSERT OR UPDATE OF user_email ON contact_visible_to
FOR EACH ROW EXECUTE FUNCTION mailsync_contact_visible_to_normalize();

-- An address added, or changed in place (a new address on the contact, to backfill like an
-- added one).
CREATE FUNCTION mailsync_contact_emails_event() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.email IS DISTINCT FROM OLD.email THEN
        PERFORM mailsync_log_contact_event('address_added', NEW.email, NEW.contact_id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER contact_events_address AFTER INSERT OR UPDATE OF email ON contact_emails
FOR EACH ROW EXECUTE FUNCTION mailsync_contact_emails_event();

CREATE FUNCTION mailsync_contacts_no_sync_event() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.no_sync IS DISTINCT FROM OLD.no_sync THEN
        PERFORM mailsync_log_contact_event('no_sync_changed', NULL, NEW.id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER contact_events_no_sync AFTER UPDATE OF no_sync ON contacts
FOR EACH ROW EXECUTE FUNCTION mailsync_contacts_no_sync_event();
