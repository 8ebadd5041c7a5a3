-- Per-conversation privacy (docs/spec/decisions.md, "Conversations" and "The level of a
-- synced message").
--
-- Every activity carries its conversation key: the first Message-ID of its References, else
-- its In-Reply-To, else its own Message-ID (else its message key).
ALTER TABLE activities ADD COLUMN conversation TEXT;
-- Before this version only the first In-Reply-To was kept: a reply joins its parent's
-- conversation (the root's for a first reply; a deeper reply stays with its parent).
UPDATE activities SET conversation = COALESCE(in_reply_to, message_key);
CREATE INDEX activities_by_conversation ON activities(conversation);

-- Each copy's choice gains the `participants` level, who made it (`owner`, `label`, `rule`,
-- `default`) and the labels label rules matched on it. SQLite cannot change a CHECK, so the
-- table is rebuilt with every column it has gained since 001.
CREATE TABLE activity_sources_new (
    activity_id  INTEGER NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    user_email   TEXT NOT NULL,
    source       TEXT NOT NULL,
    source_id    TEXT NOT NULL,
    visibility   TEXT NOT NULL CHECK (visibility IN ('visible', 'private', 'participants')),
    direction    TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
    rules        TEXT NOT NULL DEFAULT '[]',
    synced_at    INTEGER NOT NULL,
    parties      TEXT NOT NULL DEFAULT '[]',
    decided_by   TEXT NOT NULL DEFAULT 'default'
                 CHECK (decided_by IN ('owner', 'label', 'rule', 'default')),
    labels       TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (activity_id, user_email)
) WITHOUT ROWID;
INSERT INTO activity_sources_new
    (activity_id, user_email, source, source_id, visibility, direction, rules, synced_at, parties, decided_by)
SELECT activity_id, user_email, source, source_id, visibility, direction, rules, synced_at, parties,
       CASE WHEN rules = '[]' THEN 'default' ELSE 'rule' END
FROM activity_sources;
DROP TABLE activity_sources;
ALTER TABLE activity_sources_new RENAME TO activity_sources;
CREATE INDEX activity_sources_by_user ON activity_sources(user_email, activity_id);

-- The choice an owner made for a whole conversation of their mailbox (`activity set
-- --conversation`): later replies inherit it.
CREATE TABLE conversation_overrides (
    user_email    TEXT NOT NULL,
    conversation  TEXT NOT NULL,
    choice        TEXT NOT NULL CHECK (choice IN ('skip', 'participants', 'private', 'visible')),
    set_at        INTEGER NOT NULL,
    PRIMARY KEY (user_email, conversation)
) WITHOUT ROWID;

-- The access log also records owners' choices (`path = 'set'`, with what was chosen).
CREATE TABLE access_log_new (
    id               INTEGER PRIMARY KEY,
    viewer           TEXT NOT NULL,
    activity_id      INTEGER NOT NULL,
    message_id       TEXT,
    path             TEXT NOT NULL CHECK (path IN ('feed', 'search', 'export', 'attachment', 'set')),
    viewer_is_owner  INTEGER NOT NULL,
    accessed_at      INTEGER NOT NULL,
    change           TEXT
);
INSERT INTO access_log_new (id, viewer, activity_id, message_id, path, viewer_is_owner, accessed_at)
SELECT id, viewer, activity_id, message_id, path, viewer_is_owner, accessed_at FROM access_log;
DROP TABLE access_log;
ALTER TABLE access_log_new RENAME TO access_log;
CREATE INDEX access_log_by_time ON access_log(accessed_at);

-- A decision that weighed the conversation (synced, or skipped by a label or its owner) keeps
-- the labels label rules matched on the copy and the SHA-256 of the conversation key, so that
-- a later reply in the mailbox inherits a label even from a copy that was not kept.
ALTER TABLE decisions ADD COLUMN conversation_hash TEXT;
ALTER TABLE decisions ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
CREATE INDEX decisions_by_conversation ON decisions(user_email, conversation_hash)
    WHERE conversation_hash IS NOT NULL;

-- The status page counts the sources synced per hour of the last day.
CREATE INDEX activity_sources_by_synced_at ON activity_sources(synced_at);
