-- What `status` and the notifier need: failures in a row, when the next poll is due, and when
-- each kind of notification last went out for a user (at most one per interval, across
-- restarts).
ALTER TABLE sync_state ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_state ADD COLUMN next_poll_at INTEGER;

CREATE TABLE notifications (
    user_email  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    sent_at     INTEGER NOT NULL,
    PRIMARY KEY (user_email, kind)
) WITHOUT ROWID;
