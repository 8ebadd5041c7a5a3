-- Push (SQLite's migration 015): when each mailbox's Gmail watch runs out (seconds since the
-- epoch; NULL = no watch), and whether new mail reaches it by push ('push') or by polling
-- ('polling'; NULL = push is not configured).
ALTER TABLE sync_state ADD COLUMN watch_expires_at BIGINT;
ALTER TABLE sync_state ADD COLUMN push_state TEXT CHECK (push_state IN ('push', 'polling'));

-- Wake-ups for mailboxes another instance holds: the instance that pulled a notification
-- leaves one here for the lease's owner, which takes it (and syncs the mailbox) within half
-- a second. One row per mailbox: a burst of notifications is one sync.
CREATE TABLE mailbox_wakes (
    user_email    TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    requested_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX mailbox_wakes_by_owner ON mailbox_wakes(owner);
