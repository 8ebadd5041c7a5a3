-- Per-conversation privacy (docs/spec/decisions.md, "Conversations" and "The level of a
-- synced message"); the same schema as SQLite's 016.
ALTER TABLE activities ADD COLUMN conversation TEXT;
UPDATE activities SET conversation = message_key;
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
