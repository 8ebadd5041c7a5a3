-- Per-conversation privacy (docs/spec/decisions.md, "Conversations" and "The level of a
-- synced message"); the same schema as SQLite's 016.
ALTER TABLE activities ADD COLUMN conversation TEXT;
-- Before this version only the first In-Reply-To was kept: a reply joins its parent's
-- conversation (the root's for a first reply; a deeper reply stays with its parent).
UPDATE activities SET conversation = COALESCE(in_reply_to, message_key);
CREATE INDEX activities_by_conversation ON activities(conversation);

ALTER TABLE activity_sources DROP CONSTRAINT activity_sources_visibility_check;
ALTER TABLE activity_sources ADD CONSTRAINT activity_sources_visibility_check
    CHECK (visibility IN ('visible', 'private', 'participants'));
ALTER TABLE activity_sources ADD COLUMN decided_by TEXT NOT NULL DEFAULT 'default'
    CHECK (decided_by IN ('owner', 'label', 'rule', 'default'));
UPDATE activity_sources SET decided_by = 'rule' WHERE rules <> '[]';
ALTER TABLE activity_sources ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';

CREATE TABLE conversation_overrides (
    user_email    TEXT NOT NULL,
    conversation  TEXT NOT NULL,
    choice        TEXT NOT NULL CHECK (choice IN ('skip', 'participants', 'private', 'visible')),
    set_at        BIGINT NOT NULL,
    PRIMARY KEY (user_email, conversation)
);

ALTER TABLE access_log DROP CONSTRAINT access_log_path_check;
ALTER TABLE access_log ADD CONSTRAINT access_log_path_check
    CHECK (path IN ('feed', 'search', 'export', 'attachment', 'set'));
ALTER TABLE access_log ADD COLUMN change TEXT;

-- A decision that weighed the conversation (synced, or skipped by a label or its owner) keeps
-- the labels label rules matched on the copy and the SHA-256 of the conversation key, so that
-- a later reply in the mailbox inherits a label even from a copy that was not kept.
ALTER TABLE decisions ADD COLUMN conversation_hash TEXT;
ALTER TABLE decisions ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
CREATE INDEX decisions_by_conversation ON decisions(user_email, conversation_hash)
    WHERE conversation_hash IS NOT NULL;

-- The status page counts the sources synced per hour of the last day.
CREATE INDEX activity_sources_by_synced_at ON activity_sources(synced_at);
