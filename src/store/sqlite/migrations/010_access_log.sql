-- Who was shown private content that is not theirs (an admin with admins_see_private_emails),
-- and every export that included private content, even by an owner. Written by the read
-- path. No foreign key: the record outlives the activity (purge, rules), so the Message-ID
-- is kept alongside the id.
CREATE TABLE access_log (
    id               INTEGER PRIMARY KEY,
    viewer           TEXT NOT NULL,
    activity_id      INTEGER NOT NULL,
    message_id       TEXT,
    path             TEXT NOT NULL CHECK (path IN ('feed', 'search', 'export', 'attachment')),
    viewer_is_owner  INTEGER NOT NULL,
    accessed_at      INTEGER NOT NULL
);
CREATE INDEX access_log_by_time ON access_log(accessed_at);
